"""The one place runtimes become Ray actors, and the per-kind pool that queues work.

Actors are pinned with ``resources={kind: 1}`` (the ``cpu`` baseline asks for no custom resource),
restart up to ``max_restarts`` times, and are *named* (``fabric/<kind>/<i>``) so that every driver on
the cluster (pipeline jobs, Tune trials, Serve) shares the same boards. The program is passed with
each call as an object ref and cached by hash in the actor, so a restarted actor reloads it
transparently and a retried task is correct.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import ray

from actors.base import get_runtime_class
from fabric.records import Program, RunResult

__all__ = ["DeviceActor", "DevicePool", "remote_runtime_class", "actor_options", "NAMESPACE"]

NAMESPACE = "fabric"


class DeviceActor:
    """Thin actor body: holds one runtime; everything it does is the runtime's plain Python."""

    def __init__(self, kind: str, device_id: str) -> None:
        self.runtime = get_runtime_class(kind)(device_id=device_id)
        self.loaded: str | None = None
        self.busy_s = 0.0
        self.calls = 0

    def execute(self, program: Program, program_hash: str, spikes: np.ndarray, record_raster: bool = False) -> RunResult:
        t0 = time.perf_counter()
        if self.loaded != program_hash:
            self.runtime.load(program)
            self.loaded = program_hash
        out = self.runtime.run(spikes, record_raster=record_raster)
        self.busy_s += time.perf_counter() - t0
        self.calls += 1
        return out

    def compile(self, graph_dict: dict[str, Any], options: dict[str, Any] | None = None) -> Program:
        import nir

        return self.runtime.compile(nir.NIRGraph.from_dict(graph_dict), options)

    def health(self) -> dict[str, Any]:
        h = dict(self.runtime.health())
        h.update(calls=self.calls, busy_s=self.busy_s, node_id=ray.get_runtime_context().get_node_id())
        return h

    def info(self) -> dict[str, Any]:
        return self.runtime.info()


def actor_options(kind: str, max_restarts: int = 3) -> dict[str, Any]:
    opts: dict[str, Any] = {"num_cpus": 0, "max_restarts": max_restarts, "max_task_retries": 3}
    if kind != "cpu":
        opts["resources"] = {kind: 1}
    return opts


_REMOTE = None


def remote_runtime_class():
    """``ray.remote(DeviceActor)``, built once (the single factory)."""
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(DeviceActor)
    return _REMOTE


class DevicePool:
    """``size`` named actors of one kind; ``run`` spreads batches over idle actors and queues the rest.

    When every actor is busy, further batches wait in this pool's queue (``queued`` reports how many),
    so a board is a shared resource, never oversubscribed.
    """

    def __init__(self, kind: str, size: int | None = None, max_restarts: int = 3) -> None:
        if not ray.is_initialized():
            raise RuntimeError("DevicePool needs a connected fabric: call fabric.connect() first")
        get_runtime_class(kind)  # unknown kind -> error listing valid kinds
        self.kind = kind
        if size is None:
            size = max(1, int(ray.cluster_resources().get(kind, 1))) if kind != "cpu" else 1
        if kind != "cpu" and ray.cluster_resources().get(kind, 0) < 1:
            raise RuntimeError(
                f"no node of this cluster advertises the {kind!r} resource; start Ray with "
                f"--resources='{{\"{kind}\": 1}}' or connect to a cluster that hosts it"
            )
        cls = remote_runtime_class()
        self.actors = [
            cls.options(name=f"{kind}/{i}", namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
                        **actor_options(kind, max_restarts)).remote(kind, f"{kind}-emu-{i}")
            for i in range(size)
        ]
        self._refs: dict[str, ray.ObjectRef] = {}  # program digest -> object ref (put once)
        self.queued = 0
        self.in_flight = 0

    def run(self, program: Program, batches: list[np.ndarray], record_raster: bool = False,
            progress: Any | None = None) -> list[RunResult]:
        """Run every batch (in order of the returned list) on the pool's actors."""
        phash = program.digest
        pref = self._refs.get(phash)
        if pref is None:
            pref = self._refs[phash] = ray.put(program)
        results: list[RunResult | None] = [None] * len(batches)
        idle = list(self.actors)
        pending: dict[ray.ObjectRef, tuple[int, Any]] = {}
        todo = list(enumerate(batches))
        self.queued = len(todo)
        while todo or pending:
            while todo and idle:
                i, b = todo.pop(0)
                a = idle.pop()
                pending[a.execute.remote(pref, phash, b, record_raster)] = (i, a)
            self.queued, self.in_flight = len(todo), len(pending)
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i, a = pending.pop(ref)
                results[i] = ray.get(ref)
                idle.append(a)
                if progress is not None:
                    progress.update(1)
        self.queued = self.in_flight = 0
        return results  # type: ignore[return-value]

    def compile(self, graph: Any, options: dict[str, Any] | None = None) -> Program:
        return ray.get(self.actors[0].compile.remote(graph.to_dict(), options))

    def health(self) -> list[dict[str, Any]]:
        return ray.get([a.health.remote() for a in self.actors])

    def info(self) -> dict[str, Any]:
        return ray.get(self.actors[0].info.remote())
