"""The FastAPI ingress: predict, feedback, health/readiness, metrics and token-gated admin routes.

One ingress replica owns the traffic state of an app (versions, weights, live KPIs) so that a
rollback is a single, ordered decision; the model replicas behind it scale per version. The
``serve.ingress``/``serve.deployment`` wrapping happens in ``serve._private.factory``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import logging
import time
import uuid
from collections import OrderedDict, deque
from typing import Any, Literal

import numpy as np
from fastapi import FastAPI, Header, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fabric.store.registry import ArtifactNotFound, IntegrityError, Registry
from serve._private.kpi import KpiWindow, RolloutPolicy, breaches, figure_labels
from serve._private.metrics import Metrics
from serve._private.model import ModelServer, encode_inputs
from serve._private.policy import PolicyError, Route, ServePolicy, SleepState, Target, board_power
from serve._private.resolve import ModelInfo, ResolveError, resolve_model
from serve._private.schemas import (
    MAX_BODY_BYTES,
    MAX_JSON_DEPTH,
    VERSION_RE,
    DeployRequest,
    FeedbackRequest,
    PredictRequest,
    RequestProblem,
    RollbackRequest,
    SnapshotRequest,
    TrafficRequest,
    check_inputs,
    check_spikes,
    parse_npy,
    to_array,
)
from serve._private.stream import MAX_SESSIONS, Sessions, StreamPolicy, serve_stream
from serve._private.traffic import TrafficError, TrafficState, VersionState

log = logging.getLogger(__name__)

__all__ = ["build_app", "Ingress", "BodyLimit", "BodyTooLarge", "token_digest", "INPUT_WINDOW", "LATENCY_DEFINITION"]

INPUT_WINDOW = 512  # encoded inputs kept per version for drift snapshots
FEEDBACK_MEMORY = 8192  # request ids remembered for /v1/feedback
FEEDBACK_SAMPLES = 8192  # encoded samples of recent requests kept so /v1/feedback can label them
LABELLED_WINDOW = 4096  # labelled samples kept for the autopilot's retrain set (snapshot labelled=true)
KPI_NAMES = ("min_accuracy", "max_latency_p50_ms", "max_latency_p99_ms", "max_energy_mj", "max_footprint_kb")
CALL_RETRIES = 5  # attempts per request when a replica dies under it
LATENCY_DEFINITION = ("p50_ms/p99_ms: modelled device time per inference (batch device_time_s / samples; emulated "
                      "kinds use actors/<kind>/constants.yaml timing constants, cpu is measured) - the quantity the "
                      "spec's max_latency_*_ms gates. serving_*_ms: measured ingress wall time per request.")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def token_digest(token: str) -> str:
    """SHA-256 hex of a bearer token: what the ingress keeps (and Serve stores as an init argument),
    so the deployment config never holds a usable credential."""
    return hashlib.sha256(token.encode()).hexdigest()


class BodyTooLarge(RequestProblem):
    """The request body passed the byte budget while it was streaming in (chunked, or a short Content-Length)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: more than {limit} bytes > limit {limit} (stopped reading)")


class JsonTooDeep(RequestProblem):
    """A JSON body nested deeper than ``MAX_JSON_DEPTH`` (refused before it is parsed)."""

    def __init__(self, limit: int) -> None:
        super().__init__(400, f"body: JSON nested deeper than {limit} levels")


class _JsonDepth:
    """Incremental bracket-depth scanner (strings and escapes aware): O(1) memory per request."""

    def __init__(self, limit: int) -> None:
        self.limit, self.depth, self.in_str, self.esc = limit, 0, False, False

    def feed(self, chunk: bytes) -> None:
        depth, in_str, esc = self.depth, self.in_str, self.esc
        if not in_str and b'"' not in chunk and depth + chunk.count(b"[") + chunk.count(b"{") <= self.limit:
            self.depth = max(0, depth + chunk.count(b"[") + chunk.count(b"{") - chunk.count(b"]") - chunk.count(b"}"))
            return  # fast path: no strings and the depth cannot pass the limit inside this chunk
        for b in chunk:
            if in_str:
                if esc:
                    esc = False
                elif b == 0x5C:  # backslash
                    esc = True
                elif b == 0x22:
                    in_str = False
            elif b == 0x22:
                in_str = True
            elif b in (0x5B, 0x7B):  # [ {
                depth += 1
                if depth > self.limit:
                    raise JsonTooDeep(self.limit)
            elif b in (0x5D, 0x7D):
                depth = max(0, depth - 1)
        self.depth, self.in_str, self.esc = depth, in_str, esc


class BodyLimit:
    """Pure ASGI middleware: the request body's byte budget (and JSON depth) enforced as it streams in.

    A ``Content-Length`` over the limit is refused before any byte is read; a chunked (or lying)
    body is counted chunk by chunk and refused with 413 the moment it passes the limit - the rest is
    never read, so memory stays constant whatever the client sends. FastAPI turns errors raised
    while it reads a body into a 400, so whatever the app answers after an overflow is replaced by
    the 413 here.
    """

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES, max_json_depth: int = MAX_JSON_DEPTH) -> None:
        self.app, self.max_bytes, self.max_json_depth = app, max_bytes, max_json_depth

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        cl = headers.get(b"content-length", b"").decode("latin-1") or None
        if cl is not None and (not cl.isdigit() or int(cl) > self.max_bytes):
            await _error(413, f"body: {cl} bytes > limit {self.max_bytes}")(scope, receive, send)
            return
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        depth = _JsonDepth(self.max_json_depth) if ctype == "application/json" or ctype.endswith("+json") else None
        seen, refused, started = 0, None, False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, refused
            if refused is not None:
                raise refused
            msg = await receive()
            if msg["type"] == "http.request":
                body = msg.get("body", b"")
                seen += len(body)
                try:
                    if seen > self.max_bytes:
                        raise BodyTooLarge(self.max_bytes)
                    if depth is not None:
                        depth.feed(body)
                except RequestProblem as exc:
                    refused = exc
                    raise
            return msg

        async def guarded_send(msg: dict[str, Any]) -> None:
            nonlocal started
            if refused is not None and not started:
                return  # the app's answer to a refused body is replaced by ours below
            started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if refused is None or started:
                raise
        if refused is not None and not started:
            await _error(refused.status, str(refused))(scope, receive, send)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


NPY_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def build_app(ing: Ingress) -> FastAPI:
    """The FastAPI app of one ingress: routes bound to ``ing``, errors mapped to 4xx one-liners."""
    api = FastAPI(title="Neuromorphic fabric serving", version="1",
                  description="Predict on neuromorphic device runtimes (emulated or hardware) with canary, shadow, "
                              "blue-green rollouts and automatic rollback on KPI breach. Admin routes need "
                              "`Authorization: Bearer <token>`.")
    client_errors: list[tuple[type[BaseException], int, str]] = [
        (RequestProblem, 0, ""), (TrafficError, 0, ""), (RecursionError, 400, "body: JSON nested too deeply"),
        (ArtifactNotFound, 404, "model_id: "), (ResolveError, 422, "model_id: "), (IntegrityError, 422, "model_id: ")]
    for exc_type, status, prefix in client_errors:
        async def handler(_: Request, exc: Exception, status: int = status, prefix: str = prefix) -> JSONResponse:
            code = status or int(getattr(exc, "status", 400))
            return _error(code, prefix if status == 400 else f"{prefix}{exc}")
        api.add_exception_handler(exc_type, handler)

    async def invalid(_: Request, exc: Exception) -> JSONResponse:
        return _error(422, _validation_message(exc))  # type: ignore[arg-type]

    api.add_exception_handler(RequestValidationError, invalid)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        # FastAPI's own refusals (an undecodable body: "There was an error parsing the body", 404 routes,
        # 405 methods) get the same one-line {"error": ...} shape as the fabric's (tests/unit/test_fuzz_http.py)
        code = int(getattr(exc, "status_code", 400))
        detail = getattr(exc, "detail", None)
        text = detail if isinstance(detail, str) and detail else "bad request"
        return _error(code, f"body: {text[0].lower()}{text[1:]}" if "body" in text.lower() else text)

    api.add_exception_handler(StarletteHTTPException, http_error)

    api.add_middleware(BodyLimit)  # inside `count`, so refused bodies are counted as 413s

    @api.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        """Count every response by status and version (bodies are bounded by BodyLimit inside)."""
        resp = await call_next(request)
        ing.metrics.request(request.url.path, resp.status_code, resp.headers.get("x-fabric-version", ""))
        return resp

    routes: list[tuple[str, str, Any, dict[str, Any]]] = [
        ("POST", "/v1/predict", ing.predict, {"summary": "Predict from raw samples (encoded server side) or spikes"}),
        ("POST", "/v1/predict.npy", ing.predict_npy, {"summary": "Predict a large batch sent as a .npy body",
                                                      "openapi_extra": NPY_BODY}),
        ("POST", "/v1/feedback", ing.feedback, {"summary": "Labels for an earlier request: live accuracy"}),
        ("GET", "/healthz", ing.healthz, {"summary": "Liveness: the ingress answers"}),
        ("GET", "/readyz", ing.readyz, {"summary": "Readiness: a primary is deployed and its replica answers"}),
        ("GET", "/metrics", ing.metrics_text, {"summary": "Prometheus text format",
                                               "response_class": PlainTextResponse}),
        ("GET", "/admin/status", ing.status, {"summary": "Versions, roles, weights and live KPIs (token)"}),
        ("POST", "/admin/deploy", ing.deploy, {"summary": "Deploy a registry artifact as a new version (token)"}),
        ("POST", "/admin/traffic", ing.traffic, {"summary": "Canary weight, shadow, or blue-green switch (token)"}),
        ("POST", "/admin/rollback", ing.rollback, {"summary": "Roll back a candidate or the last switch (token)"}),
        ("POST", "/admin/snapshot", ing.snapshot, {"summary": "Store recent encoded inputs as served-inputs (token)"}),
    ]
    for method, path, endpoint, kw in routes:
        api.add_api_route(path, endpoint, methods=[method], **kw)
    api.add_api_websocket_route("/v1/stream", ing.stream)  # streaming sessions (serve._private.stream)
    return api


def _running_app_handle(app_name: str) -> Any:
    """Serve handle of ``app_name`` if that application is running, else None."""
    from ray import serve

    app = serve.status().applications.get(app_name)
    if app is None or str(app.status).split(".")[-1] not in ("RUNNING", "DEPLOYING", "UNHEALTHY"):
        return None
    return serve.get_app_handle(app_name)


class Ingress:
    """Routes requests across the versions of one app and runs the rollout monitor."""

    def __init__(self, *, app: str, store: str, tenant: str | None, token: str | None = None,
                 token_sha256: str | None = None, gate_predict: bool = False, predict_token: str | None = None,
                 predict_token_sha256: str | None = None, policy: dict[str, Any] | None = None,
                 device_share: float = 0.01, seed: int | None = None, max_sessions: int = MAX_SESSIONS) -> None:
        """Tokens are kept as SHA-256 digests only; Serve deployments get the ``*_sha256`` forms (see
        ``factory.start_ingress``) so no usable credential sits in the deployment config. ``gate_predict``
        makes predict/feedback take the admin token; ``predict_token`` gives them a token of their own."""
        if (token is None) == (token_sha256 is None):
            raise ValueError("Ingress: give exactly one of token / token_sha256")
        self.app_name, self.store, self.tenant = app, store, tenant
        self._token_sha = token_sha256 or token_digest(token or "")
        self._predict_sha = predict_token_sha256 or (token_digest(predict_token) if predict_token else None)
        self.gate_predict = gate_predict
        self.device_share = device_share
        self.registry = Registry(store, tenant)
        self.state = TrafficState(seed)
        self.policy = RolloutPolicy(**(policy or {}))
        self.infos: dict[str, ModelInfo] = {}
        self.handles: dict[str, Any] = {}
        self.windows: dict[str, KpiWindow] = {}
        self.inputs: dict[str, deque[np.ndarray]] = {}
        self.preds: OrderedDict[str, tuple[str, list[int]]] = OrderedDict()
        self.pred_spikes: OrderedDict[str, np.ndarray] = OrderedDict()  # request id -> its encoded samples
        self._pred_samples = 0
        self.labelled: deque[tuple[np.ndarray, int]] = deque(maxlen=LABELLED_WINDOW)  # (sample, label)
        self.steps: list[dict[str, Any]] = []
        self.metrics = Metrics()
        self.retries = 0
        self.refused: list[dict[str, Any]] = []  # versions restore() left out, and why (in /admin/status)
        self.session = uuid.uuid4().hex[:12]  # tells this ingress's rollout records from earlier ones
        self._tasks: set[asyncio.Task[Any]] = set()
        self._admin_lock = asyncio.Lock()
        self.sessions = Sessions(max_sessions)  # open /v1/stream sessions, each with its own network state
        self.stream_policies: dict[str, StreamPolicy] = {}  # per version: its declared reset policy
        self.routes: dict[str, Route] = {}  # per version with a serve policy: overflow targets (serve._private.policy)
        self.boards: dict[str, SleepState] = {}  # per kind with sleep_after_s: the board's modelled power state

    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve calls this in the replica after ``__init__`` (routes are bound to this instance);
        a restarted ingress first restores its traffic state from the registry."""
        self.restore(_running_app_handle)
        return build_app(self)

    # -- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _presented(authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        return token_digest(authorization[len("Bearer "):])

    def _auth(self, authorization: str | None) -> None:
        got = self._presented(authorization)
        if got is None or not hmac.compare_digest(got, self._token_sha):
            raise RequestProblem(401, "authorization: missing or wrong bearer token (Authorization: Bearer <token>)")

    def _auth_predict(self, authorization: str | None) -> None:
        """Predict/feedback: open unless gated; then the predict token (or, with gate_predict, the admin one)."""
        allowed = ([self._predict_sha] if self._predict_sha else []) + ([self._token_sha] if self.gate_predict else [])
        if not allowed:
            return
        got = self._presented(authorization)
        if got is None or not any(hmac.compare_digest(got, a) for a in allowed):
            raise RequestProblem(401, "authorization: missing or wrong bearer token for predict "
                                      "(Authorization: Bearer <predict token>)")

    def register(self, name: str, info: ModelInfo, handle: Any, *, model_id: str, role: str = "primary",
                 weight: float | None = None, kpis: dict[str, float] | None = None, placement: str = "pool",
                 replicas: int = 1, app_name: str | None = None, policy: dict[str, Any] | None = None,
                 stream: dict[str, Any] | None = None) -> dict[str, Any]:
        """Put a running version (``handle`` has ``infer``/``health``, and ``stream`` for sessions) under
        traffic control; record the step. ``stream``: its reset policy (``{"reset", "every_n"}``)."""
        self.stream_policies[name] = StreamPolicy(**(stream or {}))
        self.handles[name] = handle
        self.infos[name] = info
        self.windows[name] = KpiWindow(self.policy.window)
        self.inputs[name] = deque(maxlen=INPUT_WINDOW)
        for k, val in (policy or {}).items():
            setattr(self.policy, k, val)
        v = VersionState(name=name, model_id=model_id, kind=info.kind, app_name=app_name or f"{self.app_name}-{name}",
                         role=role, kpis=dict(info.kpis) | dict(kpis or {}), program_id=info.program_id,
                         placement=placement, replicas=replicas)
        try:
            step = self.state.add(v, weight)
        except TrafficError:
            for d in (self.handles, self.infos, self.windows, self.inputs):
                d.pop(name, None)
            raise
        return self._record(step, name)

    def install_policy(self, name: str, info: ModelInfo, handle: Any, policy: ServePolicy,
                       overflow: dict[str, Target] | None = None, skipped: dict[str, str] | None = None,
                       max_batch_size: int = 16) -> Route | None:
        """Put version ``name`` under its serve policy: overflow targets after the primary kind, and a
        modelled sleep state for each of their boards (``sleep_after_s``). An empty policy installs nothing."""
        if not policy.to_dict():
            return None
        targets = {info.kind: Target(kind=info.kind, handle=handle, info=info, max_batch_size=max_batch_size)}
        targets |= {k: t for k, t in (overflow or {}).items() if k != info.kind}
        route = Route(policy=policy, primary=info.kind, targets=targets, skipped=dict(skipped or {}))
        self.routes[name] = route
        if policy.sleep_after_s is not None:
            now = time.monotonic()
            for k in targets:
                if k in self.boards:
                    self.boards[k].advance(now)
                    self.boards[k].sleep_after_s = policy.sleep_after_s
                else:
                    self.boards[k] = SleepState(sleep_after_s=policy.sleep_after_s, power=board_power(k), now=now)
        return route

    def _account(self, v: VersionState, route: Route, target: Target, out: dict[str, Any],
                 wake_s: float) -> dict[str, Any]:
        """Count a spill and a wake; the modelled wake latency goes onto this request's device latency."""
        if target.kind != route.primary:
            self.metrics.spills[(route.primary, target.kind)] += 1
        if wake_s > 0:
            self.metrics.wakes[target.kind] += 1
            self.metrics.wake_ms[target.kind] += wake_s * 1e3
            out = dict(out, device_ms=out["device_ms"] + wake_s * 1e3, wake_ms=wake_s * 1e3)
        return out

    async def _overflow_targets(self, info: ModelInfo, policy: ServePolicy, body: DeployRequest,
                                app_name: str) -> tuple[dict[str, Target], dict[str, str]]:
        """A running target per overflow kind that has a compiled program of the same model (same inputs
        and outputs); the others are left out with the reason."""
        import ray

        from fabric.kinds import capabilities
        from serve._private.factory import deploy_model_app, resolve_placement

        out: dict[str, Target] = {}
        skipped: dict[str, str] = {}
        for k in policy.overflow:
            if k == info.kind:
                continue
            try:
                oinfo = await asyncio.to_thread(resolve_model, self.registry, info.model_id or body.model_id, k)
            except (ResolveError, ArtifactNotFound, IntegrityError) as exc:
                skipped[k] = f"no compiled program: {exc}"
                continue
            if (oinfo.n_in, oinfo.n_out, oinfo.encoder) != (info.n_in, info.n_out, info.encoder):
                skipped[k] = "its program takes other inputs or outputs than the primary's"
                continue
            if capabilities(k).needs_resource and ray.cluster_resources().get(k, 0.0) < 1:
                skipped[k] = f"no node of this cluster advertises the {k!r} resource"
                continue
            placement = resolve_placement(k, "auto", 1)
            if placement == "ingress":
                handle = await asyncio.to_thread(self._local_handle, oinfo, body.max_batch_size)
            else:
                from ray import serve

                oapp = f"{app_name}-{k}"
                try:
                    await asyncio.wait_for(asyncio.to_thread(
                        deploy_model_app, oapp, store=self.store, tenant=self.tenant, info=oinfo.to_dict(),
                        replicas=1, max_batch_size=body.max_batch_size, batch_wait_timeout_s=body.batch_wait_timeout_s,
                        device_share=self.device_share, placement=placement), 180)
                except TimeoutError:
                    serve.delete(oapp, _blocking=False)
                    skipped[k] = f"replicas of {oapp} could not be placed within 180 s"
                    continue
                handle = serve.get_app_handle(oapp)
            out[k] = Target(kind=k, handle=handle, info=oinfo, max_batch_size=body.max_batch_size)
        return out, skipped

    def _local_handle(self, info: ModelInfo, max_batch_size: int = 16) -> Any:
        """A version run inside this ingress (placement ``ingress``; see serve._private.local)."""
        from serve._private.local import LocalHandle

        server = ModelServer(self.store, info.program_id, info.kind, tenant=self.tenant, info=info.to_dict())
        return LocalHandle(server, max_batch_size)

    def restore(self, handle_for: Any) -> int:
        """Rebuild versions, roles and weights from this app's newest ``rollout`` artifact.

        Serve restarts a dead ingress replica with its constructor arguments only; this puts the
        traffic state back for every version whose app ``handle_for(app_name)`` still finds running
        (``None`` = gone). Live KPI windows restart empty. Returns the number of versions restored.
        """
        recs = [r for r in self.registry.ls(kind="rollout") if r.extra.get("app") == self.app_name]
        if not recs:
            return 0
        session = max(recs, key=lambda r: r.created).extra.get("session")  # the newest ingress's steps,
        mine = [r for r in recs if r.extra.get("session") == session]  # then its highest step number
        last = self.registry.get_json(max(mine, key=lambda r: (r.extra.get("step", 0), r.created)).id)
        restored: dict[str, VersionState] = {}
        for name, vd in (last.get("versions") or {}).items():
            local = vd.get("placement") == "ingress"  # ran inside the dead ingress: rebuilt here
            handle = None if local else handle_for(vd["app_name"])
            if handle is None and not local:
                continue
            try:
                info = resolve_model(self.registry, vd["model_id"], vd["kind"])
                if local:
                    handle = self._local_handle(info)
            except (ResolveError, ArtifactNotFound, IntegrityError) as exc:  # never skipped without a word
                self.refused.append({"version": name, "model_id": vd.get("model_id"), "kind": vd.get("kind"),
                                     "reason": f"{type(exc).__name__}: {exc}", "time": time.time()})
                log.warning("ingress %s: not restoring version %s (model %s): %s", self.app_name, name,
                            str(vd.get("model_id"))[:12], exc)
                continue
            self.handles[name], self.infos[name] = handle, info
            self.windows[name] = KpiWindow(self.policy.window)
            self.inputs[name] = deque(maxlen=INPUT_WINDOW)
            restored[name] = VersionState(**vd)
        if not any(v.role == "primary" for v in restored.values()):
            for d in (self.handles, self.infos, self.windows, self.inputs):
                d.clear()
            return 0
        self.state.versions = restored
        prev = last.get("previous_primary")
        self.state.previous_primary = prev if prev in restored else None
        self.steps = [s for s in [last] if s]
        self._record({"action": "restore", "from_version": None, "to_version": self.state.primary.name,
                      "weights": self.state.weights(), "reason": f"ingress restarted; state of step {last.get('step')}",
                      "roles": {n: v.role for n, v in restored.items()}}, self.state.primary.name)
        return len(restored)

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def _record(self, step: dict[str, Any], version: str | None) -> dict[str, Any]:
        """Number the step, keep it in memory, and store it as a signed ``rollout`` artifact."""
        step = dict(step, app=self.app_name, step=len(self.steps) + 1, time=time.time(),
                    versions={n: v.to_dict() for n, v in self.state.versions.items()},
                    previous_primary=self.state.previous_primary,
                    kpis={n: self.windows[n].snapshot() for n in self.windows},
                    thresholds={n: v.kpis for n, v in self.state.versions.items()})
        self.steps.append(step)
        parents = [self.infos[version].program_id] if version in self.infos else []

        def put() -> None:
            rec = self.registry.put_json(step, kind="rollout", name=f"{self.app_name}/step-{step['step']}",
                                         parents=parents, extra={"app": self.app_name, "action": step["action"],
                                                                 "step": step["step"], "session": self.session})
            step["artifact"] = rec.id

        try:
            asyncio.get_running_loop()
        except RuntimeError:  # called outside the event loop (set-up): store now
            put()
            return step
        self._spawn(asyncio.to_thread(put))
        return step

    async def _call(self, v: VersionState, spikes: np.ndarray, handle: Any = None) -> dict[str, Any]:
        """One request on a version's replicas (``handle``: an overflow kind's); a replica that dies
        mid-call is retried on another."""
        import ray.exceptions as rex

        last: Exception | None = None
        for attempt in range(CALL_RETRIES):
            try:
                return await (handle or self.handles[v.name]).infer.remote(spikes)
            except (rex.RayActorError, rex.ActorUnavailableError) as exc:
                last = exc
                self.retries += 1
                await asyncio.sleep(0.05 * 2 ** attempt)
        raise RuntimeError(f"version {v.name}: every retry failed: {last}")

    def _monitor(self, v: VersionState) -> None:
        if v.role not in ("canary", "shadow"):
            return
        reasons = breaches(self.windows[v.name].snapshot(), v.kpis, self.policy)
        if reasons:
            step = self.state.rollback(v.name, reason="automatic: " + "; ".join(reasons))
            self.metrics.rollbacks[v.name] += 1
            self._record(step, v.name)

    def _keep_spikes(self, rid: str, spikes: np.ndarray) -> None:
        """Remember a request's encoded samples (bounded by FEEDBACK_SAMPLES) until feedback labels them."""
        self.pred_spikes[rid] = spikes
        self._pred_samples += len(spikes)
        while self._pred_samples > FEEDBACK_SAMPLES and self.pred_spikes:
            self._pred_samples -= len(self.pred_spikes.popitem(last=False)[1])

    def _spikes_for(self, info: ModelInfo, form: str, arr: np.ndarray, field: str) -> np.ndarray:
        if form == "inputs":
            x = check_inputs(arr, info.input_shape, field)
            try:
                return encode_inputs(info, x)
            except ValueError as exc:
                raise RequestProblem(422, f"{field}: {exc}") from None
        return check_spikes(arr, int(info.encoder["timesteps"]), info.n_in, field)

    async def _predict(self, form: str, arr: np.ndarray, pin: str | None, field: str) -> JSONResponse:
        t0 = time.perf_counter()
        v = self.state.get(pin) if pin else self.state.choose()
        info = self.infos[v.name]
        spikes = self._spikes_for(info, form, arr, field)
        win = self.windows[v.name]
        route = self.routes.get(v.name)
        target, depth, wake_s = route.begin(self.boards, time.monotonic()) if route else (None, 0, 0.0)
        t_call = time.perf_counter()
        try:
            out = await self._call(v, spikes, target.handle if target else None)
        except Exception as exc:  # a device failure is the version's error, answered, never a crash
            if route and target:
                route.end(self.boards, target, depth, None, time.monotonic())
            win.add(ok=False)
            self._monitor(v)
            return JSONResponse(status_code=503, content={"error": f"version {v.name}: device unavailable: {exc}"},
                                headers={"x-fabric-version": v.name})
        ran_on = target.kind if target else info.kind
        if route and target:
            route.end(self.boards, target, depth, (time.perf_counter() - t_call) * 1e3, time.monotonic())
            out = self._account(v, route, target, out, wake_s)
        self.metrics.ran_on[(v.name, ran_on)] += 1
        serving_ms = (time.perf_counter() - t0) * 1e3
        n = len(spikes)
        win.add(ok=True, device_ms=out["device_ms"], serving_ms=serving_ms, energy_mj=out["energy_mj"], samples=n)
        self.metrics.served(v.name, serving_ms, out["device_ms"], out["energy_mj"] * n, n)
        self.inputs[v.name].extend(spikes)
        rid = uuid.uuid4().hex
        self.preds[rid] = (v.name, out["classes"])
        self._keep_spikes(rid, spikes)
        while len(self.preds) > FEEDBACK_MEMORY:
            self.preds.popitem(last=False)
        if v.role == "primary":
            for s in self.state.shadows():
                self._spawn(self._shadow(s, form, arr, spikes))
        self._monitor(v)
        labels = figure_labels(ran_on, bool(out["emulated"]))
        body = {"request_id": rid, "version": v.name, "role": v.role, "model_id": info.model_id,
                "program_id": target.info.program_id if target and target.info else info.program_id,
                "kind": info.kind, "ran_on": ran_on, **({"spilled_from": info.kind} if ran_on != info.kind else {}),
                **({"wake_ms": out["wake_ms"]} if out.get("wake_ms") else {}),
                "predictions": [{"class": c, "label": info.classes[c] if c < len(info.classes) else c, "scores": s}
                                for c, s in zip(out["classes"], out["scores"], strict=True)],
                "scores_are": "output-layer spike counts per class",
                "device_latency_ms": out["device_ms"], "energy_mj": out["energy_mj"], **labels,
                "serving_ms": serving_ms, "batch_samples": out["batch_samples"]}
        return JSONResponse(content=body, headers={"x-fabric-version": v.name})

    async def _shadow(self, s: VersionState, form: str, arr: np.ndarray, spikes: np.ndarray) -> None:
        """Copy of a primary request to a shadow: KPIs recorded, response discarded."""
        t0 = time.perf_counter()
        info = self.infos[s.name]
        try:
            x = self._spikes_for(info, form, arr, "shadow") if form == "inputs" else check_spikes(
                spikes, int(info.encoder["timesteps"]), info.n_in, "shadow")
        except RequestProblem:
            self.metrics.shadow[(s.name, "incompatible")] += 1
            return
        win = self.windows[s.name]
        try:
            out = await self._call(s, x)
        except Exception:
            win.add(ok=False)
            self.metrics.shadow[(s.name, "error")] += 1
        else:
            ms = (time.perf_counter() - t0) * 1e3
            win.add(ok=True, device_ms=out["device_ms"], serving_ms=ms, energy_mj=out["energy_mj"], samples=len(x))
            self.metrics.shadow[(s.name, "ok")] += 1
            self.inputs[s.name].extend(x)
            self.preds[uuid.uuid4().hex] = (s.name, out["classes"])
        if s.role == "shadow":
            self._monitor(s)

    # -- public routes -------------------------------------------------------------------------
    async def stream(self, websocket: WebSocket, version: str | None = Query(None, pattern=VERSION_RE),
                     authorization: str | None = Header(None)) -> None:
        """WebSocket streaming session on a version (default: the primary); see serve._private.stream."""
        await serve_stream(self, websocket, version, authorization)

    async def predict(self, body: PredictRequest, authorization: str | None = Header(None)) -> JSONResponse:
        self._auth_predict(authorization)
        if (body.inputs is None) == (body.spikes is None):
            raise RequestProblem(422, "body: give exactly one of 'inputs' (raw samples) or 'spikes'")
        form, field = ("inputs", "inputs") if body.inputs is not None else ("spikes", "spikes")
        arr = to_array(body.inputs if body.inputs is not None else body.spikes, field)
        return await self._predict(form, arr, body.version, field)

    async def predict_npy(self, request: Request, form: Literal["spikes", "inputs"] = "spikes",
                          version: str | None = Query(None, pattern=VERSION_RE),
                          authorization: str | None = Header(None)) -> JSONResponse:
        self._auth_predict(authorization)
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        if ctype not in ("application/octet-stream", "application/x-npy"):
            raise RequestProblem(415, f"content-type: expected application/octet-stream (.npy), got {ctype or 'none'!r}")
        chunks, size = [], 0
        async for chunk in request.stream():  # BodyLimit stops the stream at MAX_BODY_BYTES; checked here too
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BodyTooLarge(MAX_BODY_BYTES)
            chunks.append(chunk)
        data = b"".join(chunks)
        return await self._predict(form, parse_npy(data), version, "body")

    async def feedback(self, body: FeedbackRequest, authorization: str | None = Header(None)) -> dict[str, Any]:
        self._auth_predict(authorization)
        hit = self.preds.get(body.request_id)
        if hit is None:
            raise RequestProblem(404, f"request_id: unknown or expired request id {body.request_id!r}")
        ver, classes = hit
        if len(body.labels) != len(classes):
            raise RequestProblem(422, f"labels: {len(body.labels)} labels for a request of {len(classes)} samples")
        n_out = self.infos[ver].n_out
        if any(not 0 <= y < n_out for y in body.labels):
            raise RequestProblem(422, f"labels: class indices must be in [0, {n_out})")
        correct = [int(a) == int(b) for a, b in zip(classes, body.labels, strict=True)]
        self.windows[ver].feedback(correct)
        x = self.pred_spikes.pop(body.request_id, None)
        if x is not None:  # labelled live samples: what the autopilot retrains on
            self._pred_samples -= len(x)
            self.labelled.extend(zip(x, (int(y) for y in body.labels), strict=True))
        if ver in self.state.versions:
            self._monitor(self.state.versions[ver])
        return {"request_id": body.request_id, "version": ver, "correct": sum(correct), "samples": len(correct),
                "accuracy_feedback": self.windows[ver].snapshot()["accuracy_feedback"]}

    async def healthz(self) -> dict[str, Any]:
        return {"ok": True, "app": self.app_name}

    async def readyz(self) -> JSONResponse:
        p = self.state.primary
        if p is None:
            return JSONResponse(status_code=503, content={"ready": False, "reason": "no primary version deployed"})
        try:
            h = await asyncio.wait_for(self.handles[p.name].health.remote(), 5.0)
        except Exception as exc:
            return JSONResponse(status_code=503, content={"ready": False, "reason": f"{p.name}: {exc}"})
        return JSONResponse(content={"ready": bool(h.get("ok", True)), "primary": p.name, "device": h},
                            status_code=200 if h.get("ok", True) else 503)

    async def metrics_text(self) -> PlainTextResponse:
        now = time.monotonic()
        self.metrics.boards = {k: b.snapshot(now) for k, b in self.boards.items()}
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    # -- admin ---------------------------------------------------------------------------------
    def status_body(self) -> dict[str, Any]:
        deps = []
        for n, v in self.state.versions.items():
            snap = self.windows[n].snapshot()
            deps.append({"version": n, "kind": v.kind, "model_id": v.model_id, "program_id": v.program_id,
                         "app": v.app_name, "placement": v.placement, "replicas": v.replicas,
                         "weight": v.weight, "role": v.role, "kpis": v.kpis,
                         "breaches": breaches(snap, v.kpis, self.policy)} | snap)
        return {"app": self.app_name, "deployments": deps, "policy": self.policy.to_dict(), "retries": self.retries,
                "steps": self.steps[-50:], "latency_definition": LATENCY_DEFINITION, "refused": self.refused[-50:],
                "serve": {n: r.status() for n, r in self.routes.items()},
                "boards": {k: b.snapshot(time.monotonic()) for k, b in self.boards.items()},
                "spills": [{"from": a, "to": b, "requests": n} for (a, b), n in sorted(self.metrics.spills.items())]}

    async def status(self, authorization: str | None = Header(None)) -> dict[str, Any]:
        self._auth(authorization)
        for v in list(self.state.candidates()):
            self._monitor(v)
        return self.status_body()

    async def deploy(self, body: DeployRequest, authorization: str | None = Header(None)) -> dict[str, Any]:
        self._auth(authorization)
        import ray

        from fabric.kinds import capabilities
        from fabric.kinds import kinds as registered
        from serve._private.factory import deploy_model_app, resolve_placement

        async with self._admin_lock:
            name = body.version or self.state.next_name()
            if name in self.state.versions:
                raise RequestProblem(409, f"version: {name!r} already exists")
            if body.kind is not None and body.kind not in registered():
                raise RequestProblem(422, f"kind: unknown device kind {body.kind!r}; valid: {registered()}")
            if body.role != "primary" and self.state.primary is None:
                raise RequestProblem(409, "role: the first version must be the primary")
            unknown = sorted(set(body.kpis or {}) - set(KPI_NAMES))
            if unknown:
                raise RequestProblem(422, f"kpis: unknown threshold(s) {unknown}; valid: {list(KPI_NAMES)}")
            info = await asyncio.to_thread(resolve_model, self.registry, body.model_id, body.kind)
            if capabilities(info.kind).needs_resource and ray.cluster_resources().get(info.kind, 0.0) < 1:
                raise RequestProblem(409, f"kind: no node of this cluster advertises the {info.kind!r} resource")
            try:
                placement = resolve_placement(info.kind, body.placement, body.replicas)
            except ValueError as exc:
                raise RequestProblem(422, str(exc)) from None
            try:  # the serve policy is checked before anything is deployed
                serve_policy = ServePolicy.from_dict(
                    body.serve.model_dump(exclude_none=True) if body.serve else info.serve, registered())
            except PolicyError as exc:
                raise RequestProblem(422, str(exc)) from None
            need = body.replicas * self.device_share
            if (placement == "replica" and capabilities(info.kind).needs_resource
                    and ray.available_resources().get(info.kind, 0.0) < need - 1e-9):
                raise RequestProblem(409, f"placement: no free share of {info.kind!r} for {body.replicas} in-replica "
                                          "runtime(s); use placement 'pool' (the shared device actors)")
            app_name = f"{self.app_name}-{name}"
            if placement == "ingress":
                handle = await asyncio.to_thread(self._local_handle, info, body.max_batch_size)
            else:
                try:
                    await asyncio.wait_for(asyncio.to_thread(
                        deploy_model_app, app_name, store=self.store, tenant=self.tenant, info=info.to_dict(),
                        replicas=body.replicas, max_batch_size=body.max_batch_size,
                        batch_wait_timeout_s=body.batch_wait_timeout_s, device_share=self.device_share,
                        placement=placement), 180)
                except TimeoutError:
                    from ray import serve

                    serve.delete(app_name, _blocking=False)
                    raise RequestProblem(409, f"kind: replicas of {app_name} could not be placed within 180 s") from None
                from ray import serve

                handle = serve.get_app_handle(app_name)
            step = self.register(name, info, handle, model_id=body.model_id, role=body.role,
                                 weight=body.weight, kpis=body.kpis, placement=placement,
                                 replicas=body.replicas, app_name=app_name,
                                 policy=body.policy.model_dump(exclude_none=True) if body.policy else None,
                                 stream=body.stream.model_dump() if body.stream else None)
            route = None
            if serve_policy.to_dict():
                overflow, skipped = await self._overflow_targets(info, serve_policy, body, app_name)
                route = self.install_policy(name, info, handle, serve_policy, overflow, skipped, body.max_batch_size)
            v = self.state.versions[name]
            return {"version": name, "app": app_name, "role": v.role, "weight": v.weight, "kind": info.kind,
                    "kpis": v.kpis, "step": step, "model": info.to_dict(),
                    **({"serve": route.status()} if route else {})}

    async def traffic(self, body: TrafficRequest, authorization: str | None = Header(None)) -> dict[str, Any]:
        self._auth(authorization)
        if body.role == "canary":
            step = self.state.set_canary(body.version, 0.1 if body.weight is None else body.weight)
        elif body.role == "shadow":
            step = self.state.set_shadow(body.version)
        else:
            step = self.state.promote(body.version)
        return self._record(step, body.version)

    async def rollback(self, body: RollbackRequest, authorization: str | None = Header(None)) -> dict[str, Any]:
        self._auth(authorization)
        step = self.state.rollback(body.version, reason=body.reason)
        self.metrics.rollbacks[step["from_version"]] += 1
        return self._record(step, step["from_version"])

    async def snapshot(self, body: SnapshotRequest, authorization: str | None = Header(None)) -> dict[str, Any]:
        self._auth(authorization)
        p = self.state.primary
        name = body.version or (p.name if p else None)
        if name is None:
            raise RequestProblem(409, "version: nothing deployed")
        self.state.get(name)
        info = self.infos[name]
        arrays: dict[str, np.ndarray] = {}
        if body.labelled:  # every version's labelled feedback encoded like this version's inputs
            shape = (int(info.encoder["timesteps"]), info.n_in)
            pairs = [(x, y) for x, y in self.labelled if x.shape == shape]
            if not pairs:
                raise RequestProblem(409, f"labelled: no labelled feedback for inputs like {name!r}'s yet")
            arrays["labels"] = np.array([y for _, y in pairs], dtype=np.int64)
            window = [x for x, _ in pairs]
        else:
            window = list(self.inputs[name])
            if not window:
                raise RequestProblem(409, f"version: {name!r} has served no inputs yet")
        arr = np.stack(window).astype(np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, spikes=arr, **arrays)
        meta = {"app": self.app_name, "version": name, "samples": int(arr.shape[0]), "shape": list(arr.shape),
                "model_id": info.model_id, "program_id": info.program_id, "encoding_id": info.encoding_id,
                "kind": info.kind, "window": LABELLED_WINDOW if body.labelled else INPUT_WINDOW,
                "labelled": bool(body.labelled)}
        what = "feedback" if body.labelled else "served-inputs"
        rec = await asyncio.to_thread(self.registry.put, buf.getvalue(), kind="served-inputs",
                                      name=f"{self.app_name}/{name}/{what}", parents=[info.program_id],
                                      spec_hash=info.spec_hash, extra=meta)
        return {"artifact": rec.id} | meta

