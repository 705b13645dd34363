"""One served model version in plain Python: verified program, device runtime, encoder.

The Serve replica (``serve._private.factory``) wraps this class; the bench and unit tests call it
directly as the in-process baseline.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from fabric.data.encode import encode
from fabric.kinds import make_runtime
from fabric.records import Program, RunResult
from fabric.store.registry import Registry
from serve._private.resolve import ModelInfo, resolve_model

__all__ = ["ModelServer", "encode_inputs", "split_result"]


def encode_inputs(info: ModelInfo, x: np.ndarray) -> np.ndarray:
    """Raw samples -> spikes ``[N, T, n_in]`` with the encoder, params and seed the model was trained on."""
    e = info.encoder
    spikes = encode(e["name"], x, int(e["timesteps"]), int(e["seed"]), e.get("params") or {})
    if spikes.shape[1:] != (int(e["timesteps"]), info.n_in):
        raise ValueError(f"encoder {e['name']!r} produced {list(spikes.shape[1:])}, model expects "
                         f"[{e['timesteps']}, {info.n_in}]")
    return spikes


class ModelServer:
    """Loads a program from the registry (hash + signature checked) into a device runtime and runs batches."""

    def __init__(self, store: str, model_ref: str, kind: str | None = None, *, tenant: str | None = None,
                 info: dict[str, Any] | None = None, device_id: str | None = None) -> None:
        reg = Registry(store, tenant)
        self.info = ModelInfo.from_dict(info) if info else resolve_model(reg, model_ref, kind)
        program = Program.from_bytes(reg.get(self.info.program_id))
        if program.kind != self.info.kind:
            raise ValueError(f"program {self.info.program_id[:12]} is for {program.kind!r}, not {self.info.kind!r}")
        self.runtime = make_runtime(self.info.kind, device_id=device_id or f"{self.info.kind}-serve-{os.getpid()}")
        self.runtime.load(program)
        self.program = program
        self.batches = 0

    def infer(self, items: list[np.ndarray]) -> list[dict[str, Any]]:
        """Run several requests' spike arrays as one device batch; split the results per request.

        ``device_ms`` / ``energy_mj`` are per inference (batch totals / samples), modelled for emulated kinds.
        """
        res = self.runtime.run(np.concatenate(items, axis=0))
        self.batches += 1
        return split_result(res, [len(a) for a in items])

    def step(self, spikes: np.ndarray, state: Any = None) -> tuple[dict[str, Any], Any]:
        """One streaming chunk ``[B, T, n_in]`` from ``state`` (None: at rest) on the in-process runtime;
        returns the per-request dict (as :meth:`infer`) and the end state. The state travels with the
        call (the replica keeps none), so sessions never share it and any replica can take the next chunk."""
        from fabric.kinds import capabilities

        if not capabilities(self.info.kind).stateful_stream:
            raise ValueError(f"kind {self.info.kind!r} cannot keep network state between chunks")
        res, end = self.runtime.step(spikes, state)
        return split_result(res, [len(spikes)])[0], end

    def health(self) -> dict[str, Any]:
        return dict(self.runtime.health())


def split_result(res: RunResult, sizes: list[int]) -> list[dict[str, Any]]:
    """One device batch's result -> one dict per request (classes, scores, per-inference figures)."""
    tel = res.telemetry
    n = max(sum(sizes), 1)
    device_ms = tel.device_time_s / n * 1e3
    energy_mj = tel.energy_j / n * 1e3
    counts = np.asarray(res.counts)
    out, i = [], 0
    for s in sizes:
        c = counts[i:i + s]
        out.append({"classes": np.argmax(c, axis=1).tolist(), "scores": c.astype(float).tolist(),
                    "device_ms": device_ms, "energy_mj": energy_mj, "emulated": bool(tel.emulated),
                    "batch_samples": n})
        i += s
    return out
