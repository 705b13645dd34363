"""The one place that turns plain classes into Ray Serve deployments (``serve.deployment``,
``serve.ingress``, ``serve.batch``) and starts/stops applications.

Placement of a version's device work (docs/architecture.md, "Serve replicas"):

- ``pool`` (default): replicas batch requests and run each batch on the cluster's shared named
  device actors (``actors.cluster.pool``, ``{kind: 1}`` each), so Serve, jobs and Tune share the boards and
  none is oversubscribed.
- ``replica``: the replica holds the runtime in-process and its ``ray_actor_options`` claim
  ``{kind: device_share}`` of the device resource (no actor hop; needs a free share).
- ``ingress``: for kinds without a device resource (cpu), the ingress itself holds the runtime
  (``serve._private.local``): the request path of bare Ray Serve, proxy -> ingress, no model replica.
  ``auto`` (the default) picks it for such kinds with one replica (:func:`resolve_placement`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from ray import serve

from serve._private.ingress import Ingress, token_digest
from serve._private.model import ModelServer, split_result

__all__ = ["ModelReplica", "IngressDeployment", "deploy_model_app", "start_ingress", "DEVICE_SHARE",
           "replica_actor_options", "resolve_placement", "PLACEMENTS"]

PLACEMENTS = ("pool", "replica", "ingress")  # "ingress": serve._private.local (no model replica at all)

DEVICE_SHARE = 0.01  # fraction of a device resource per replica: pins placement, leaves the boards to the pool


@serve.deployment(ray_actor_options={"num_cpus": 0}, health_check_period_s=2, health_check_timeout_s=10,
                  graceful_shutdown_timeout_s=2)
class ModelReplica:
    """One replica of one version: a :class:`ModelServer` behind Serve's dynamic batching."""

    def __init__(self, store: str, tenant: str | None, info: dict[str, Any], max_batch_size: int = 16,
                 batch_wait_timeout_s: float = 0.005, placement: str = "pool") -> None:
        self.server = ModelServer(store, info["program_id"], info["kind"], tenant=tenant, info=info)
        self.placement = placement
        self.actors: list[Any] = []
        self.pool: Any = None
        if placement == "pool":
            from actors.cluster.pool import DevicePool

            # Through the pool, not straight to a board: the scheduler's fairness between tenants (serve
            # vs jobs vs tune), quotas and the draining of unhealthy boards apply to served traffic too.
            self.pool = DevicePool(info["kind"], tenant=f"serve:{tenant or 'default'}")
            self.actors = self.pool.actors
        self.infer.set_max_batch_size(max_batch_size)
        self.infer.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def infer(self, items: list[np.ndarray]) -> list[dict[str, Any]]:
        if not self.actors:
            return self.server.infer(items)
        batch = np.concatenate(items, axis=0)
        res = (await asyncio.to_thread(self.pool.run, self.server.program, [batch]))[0]
        return split_result(res, [len(a) for a in items])

    async def stream(self, spikes: np.ndarray, state: Any = None) -> tuple[dict[str, Any], Any]:
        """One chunk of a streaming session, on this replica's own runtime (a session is one ordered
        sequence of small chunks: a pool round trip per frame would cost more than the frame)."""
        return await asyncio.to_thread(self.server.step, spikes, state)

    async def health(self) -> dict[str, Any]:
        if not self.actors:
            return self.server.health() | {"placement": "replica"}
        h = await self.actors[0].health.remote()
        return dict(h) | {"placement": "pool", "device_actors": len(self.actors)}

    def check_health(self) -> None:
        h = self.server.health()
        if not h.get("ok", True):
            raise RuntimeError(f"device runtime unhealthy: {h}")


def resolve_placement(kind: str, placement: str, replicas: int = 1) -> str:
    """``auto`` -> the fastest honest placement: ``ingress`` for a kind with no device resource and one
    replica, ``replica`` for such a kind scaled out, ``pool`` (shared boards, scheduler fairness and
    quotas) for kinds with a device; an explicit ``ingress`` for a device kind is refused."""
    from fabric.kinds import capabilities

    needs = capabilities(kind).needs_resource
    if placement == "auto":
        return "pool" if needs else ("ingress" if replicas == 1 else "replica")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement: must be one of {('auto', *PLACEMENTS)}, got {placement!r}")
    if placement == "ingress" and needs:
        raise ValueError(f"placement: 'ingress' runs the runtime in the ingress process, which holds no "
                         f"{kind!r} device; use 'pool' or 'replica'")
    return placement


def replica_actor_options(kind: str, placement: str, device_share: float = DEVICE_SHARE) -> dict[str, Any]:
    """``ray_actor_options`` of a model replica: no CPU (boards, not host compute); a device share
    when the replica itself runs the device runtime."""
    if placement not in PLACEMENTS:
        raise ValueError(f"placement: must be one of {PLACEMENTS}, got {placement!r}")
    opts: dict[str, Any] = {"num_cpus": 0}
    from fabric.kinds import capabilities

    if placement == "replica" and capabilities(kind).needs_resource:
        opts["resources"] = {kind: device_share}
    return opts


IngressDeployment = serve.deployment(num_replicas=1, max_ongoing_requests=512, ray_actor_options={"num_cpus": 0},
                                     graceful_shutdown_timeout_s=2)(serve.ingress()(Ingress))


def deploy_model_app(app_name: str, *, store: str, tenant: str | None, info: dict[str, Any], replicas: int = 1,
                     max_batch_size: int = 16, batch_wait_timeout_s: float = 0.005,
                     device_share: float = DEVICE_SHARE, placement: str = "pool") -> None:
    """Run one model version as its own Serve application (no HTTP route; the ingress calls it)."""
    kind = info["kind"]
    app = ModelReplica.options(name=f"model-{kind}", num_replicas=replicas,
                               ray_actor_options=replica_actor_options(kind, placement, device_share),
                               max_ongoing_requests=max(32, 2 * max_batch_size)).bind(
        store, tenant, info, max_batch_size, batch_wait_timeout_s, placement)
    serve.run(app, name=app_name, route_prefix=None)


def start_ingress(*, app: str, store: str, token: str, port: int, tenant: str | None = None,
                  gate_predict: bool = False, predict_token: str | None = None, policy: dict[str, Any] | None = None,
                  device_share: float = DEVICE_SHARE, seed: int | None = None) -> str:
    """Start Serve's HTTP proxy on 127.0.0.1:``port`` (if not running) and the ingress app at ``/``.

    The tokens reach the deployment as SHA-256 digests only: Serve keeps init arguments in its
    controller's config (and replays them on restarts), which is no place for a usable credential.
    Returns the base URL.
    """
    # One proxy on the head: replicas may land on any node, but on a one-machine multi-node cluster a proxy
    # per node would all want the same port; clients reach one address either way.
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
    serve.run(IngressDeployment.bind(app=app, store=store, tenant=tenant, token_sha256=token_digest(token),
                                     gate_predict=gate_predict,
                                     predict_token_sha256=token_digest(predict_token) if predict_token else None,
                                     policy=policy, device_share=device_share, seed=seed), name=app, route_prefix="/")
    return f"http://127.0.0.1:{port}"
