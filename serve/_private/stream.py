"""Streaming sessions over WebSocket: ``/v1/stream`` on the ingress.

Why here and this shape: a camera or event sensor sends small chunks at a fixed rate and expects the
network to remember the earlier ones (membranes, currents, the Dense pipeline). The state of a session
lives in the ingress replica, keyed by the session id, and travels with each chunk to a model replica
(``stream``: ``ModelServer.step``), which keeps none; so sessions can never see each other's state, a
dropped connection frees its entry, and any model replica may take the next chunk.

Protocol (JSON text messages). After the socket opens the server sends ``{"session", "version", "kind",
"reset", "every_n", "timesteps", "n_in"}``. The client sends ``{"spikes": [T, n_in]}`` (any T >= 1) or
``{"inputs": <one raw sample>}`` (encoded on the server, as ``/v1/predict`` does), optionally with
``"frame"`` (echoed) and ``"reset": true`` (start this chunk at rest); ``{"reset": true}`` alone resets and
is acknowledged. Each chunk is answered with the decision, its scores and the per-frame latency
(``host_ms``: ingress wall time; ``device_ms``: modelled device time, measured on cpu). A bad message gets
``{"error": ...}`` and the session stays open. Close codes: 1008 bad/missing token, 1013 session limit
reached, 4404 unknown version, 4422 the version's kind cannot keep state (``stateful_stream`` False).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from serve._private.schemas import RequestProblem, to_array

__all__ = ["StreamPolicy", "Session", "Sessions", "RESET_POLICIES", "MAX_SESSIONS", "MAX_CHUNK_STEPS",
           "CLOSE_UNAUTHORIZED", "CLOSE_FULL", "CLOSE_UNKNOWN_VERSION", "CLOSE_NOT_STATEFUL", "serve_stream"]

RESET_POLICIES = ("never", "per_chunk", "every_n")
MAX_SESSIONS = 64  # concurrent sessions per ingress (each holds one network state)
MAX_CHUNK_STEPS = 4096  # timesteps per chunk
CLOSE_UNAUTHORIZED, CLOSE_FULL, CLOSE_UNKNOWN_VERSION, CLOSE_NOT_STATEFUL = 1008, 1013, 4404, 4422


@dataclass
class StreamPolicy:
    """A deployment's declared reset policy: keep state (``never``), start each chunk at rest
    (``per_chunk``) or reset every ``every_n`` chunks."""

    reset: str = "never"
    every_n: int = 1

    def __post_init__(self) -> None:
        if self.reset not in RESET_POLICIES:
            raise ValueError(f"stream.reset: must be one of {RESET_POLICIES}, got {self.reset!r}")
        if int(self.every_n) < 1:
            raise ValueError(f"stream.every_n: must be >= 1, got {self.every_n}")

    def resets_before(self, chunk: int) -> bool:
        """Whether chunk number ``chunk`` (0-based, counted since the last reset) starts at rest."""
        return self.reset == "per_chunk" or (self.reset == "every_n" and chunk > 0 and chunk % self.every_n == 0)


@dataclass
class Session:
    id: str
    version: str
    policy: StreamPolicy
    state: Any = None  # the runtime's opaque end state of the last chunk (None: at rest)
    chunks: int = 0  # chunks since the last reset
    frames: int = 0
    opened: float = field(default_factory=time.time)


class Sessions:
    """Open sessions of one ingress, bounded: state per session id, never shared, freed on close."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self.limit = limit
        self.open: dict[str, Session] = {}
        self.opened_total = self.refused_full = 0

    def start(self, version: str, policy: StreamPolicy) -> Session | None:
        if len(self.open) >= self.limit:
            self.refused_full += 1
            return None
        s = Session(id=uuid.uuid4().hex, version=version, policy=policy)
        self.open[s.id] = s
        self.opened_total += 1
        return s

    def close(self, sid: str) -> None:
        self.open.pop(sid, None)


def _chunk(ing: Any, info: Any, msg: dict[str, Any]) -> np.ndarray:
    """A message's chunk as spikes ``[1, T, n_in]`` (uint8)."""
    if ("spikes" in msg) == ("inputs" in msg):
        raise RequestProblem(422, "message: give exactly one of 'spikes' ([T, n_in]) or 'inputs' (one raw sample)")
    if "inputs" in msg:
        return ing._spikes_for(info, "inputs", to_array([msg["inputs"]], "inputs"), "inputs")
    arr = to_array(msg["spikes"], "spikes")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] != 1 or arr.shape[2] != info.n_in or not 1 <= arr.shape[1] <= MAX_CHUNK_STEPS:
        raise RequestProblem(422, f"spikes: a chunk is [T, {info.n_in}] with 1 <= T <= {MAX_CHUNK_STEPS}, "
                                  f"got {list(arr.shape)}")
    if not np.isin(arr, (0, 1)).all():
        raise RequestProblem(422, "spikes: values must be 0 or 1 (binary spikes)")
    return arr.astype(np.uint8)


async def serve_stream(ing: Any, ws: Any, version: str | None, authorization: str | None) -> None:
    """The WebSocket endpoint body (FastAPI ``WebSocket`` ``ws``) for the ingress ``ing``."""
    from fastapi import WebSocketDisconnect

    from fabric.kinds import capabilities

    await ws.accept()
    try:
        ing._auth_predict(authorization)
    except RequestProblem as exc:
        await ws.close(code=CLOSE_UNAUTHORIZED, reason=str(exc)[:120])
        return
    try:
        v = ing.state.get(version) if version else ing.state.primary
    except Exception as exc:  # TrafficError: unknown version
        await ws.close(code=CLOSE_UNKNOWN_VERSION, reason=str(exc)[:120])
        return
    if v is None:
        await ws.close(code=CLOSE_UNKNOWN_VERSION, reason="version: nothing deployed")
        return
    info = ing.infos[v.name]
    if not capabilities(info.kind).stateful_stream:
        await ws.close(code=CLOSE_NOT_STATEFUL, reason=f"kind {info.kind!r} cannot keep network state between "
                                                         "chunks (stateful_stream false); use /v1/predict")
        return
    policy = ing.stream_policies.get(v.name) or StreamPolicy()
    s = ing.sessions.start(v.name, policy)
    if s is None:
        await ws.close(code=CLOSE_FULL, reason=f"session limit: {ing.sessions.limit} streaming sessions open; retry later")
        return
    try:
        await ws.send_json({"session": s.id, "version": v.name, "kind": info.kind, "reset": policy.reset,
                            "every_n": policy.every_n, "timesteps": int(info.encoder["timesteps"]), "n_in": info.n_in})
        while True:
            raw = await ws.receive_text()
            t0 = time.perf_counter()
            try:
                msg = json.loads(raw)
            except ValueError:
                msg = None
            if not isinstance(msg, dict):
                await ws.send_json({"error": "message: must be a JSON object"})
                continue
            reset = bool(msg.get("reset", False))
            if reset:
                s.state, s.chunks = None, 0
            if "spikes" not in msg and "inputs" not in msg:
                if reset:
                    await ws.send_json({"reset": True, "frame": msg.get("frame"), "session": s.id})
                else:
                    await ws.send_json({"error": "message: give 'spikes', 'inputs' or 'reset'"})
                continue
            try:
                x = _chunk(ing, info, msg)
            except RequestProblem as exc:
                await ws.send_json({"error": str(exc), "frame": msg.get("frame")})
                continue
            at_rest = policy.resets_before(s.chunks)
            if at_rest:
                s.state, s.chunks = None, 0
            try:
                out, s.state = await ing.handles[v.name].stream.remote(x, s.state)
            except Exception as exc:  # a device failure is answered, the session stays usable from rest
                s.state, s.chunks = None, 0
                await ws.send_json({"error": f"version {v.name}: device unavailable: {exc}", "frame": msg.get("frame")})
                continue
            s.chunks += 1
            s.frames += 1
            host_ms = (time.perf_counter() - t0) * 1e3
            ing.metrics.served(v.name, host_ms, out["device_ms"], out["energy_mj"], 1)
            c = int(out["classes"][0])
            await ws.send_json({"frame": msg.get("frame", s.frames - 1), "session": s.id, "version": v.name,
                                "class": c, "label": info.classes[c] if c < len(info.classes) else c,
                                "scores": out["scores"][0], "steps": int(x.shape[1]),
                                "reset": reset or at_rest, "host_ms": host_ms, "device_ms": out["device_ms"],
                                "energy_mj": out["energy_mj"], "emulated": out["emulated"]})
    except WebSocketDisconnect:
        pass
    finally:
        ing.sessions.close(s.id)
