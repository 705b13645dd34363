"""Live KPIs of one served version and the rule that says when a candidate must be rolled back.

Latency definitions (used everywhere in serve, the status JSON and /metrics):

- ``device_ms``: modelled device time per inference = the runtime's ``device_time_s`` for the batch
  divided by the samples in it. This is the quantity the pipeline's KPI report gates with the spec's
  ``max_latency_p50_ms`` / ``max_latency_p99_ms`` (modelled for emulated kinds from each kind's timing
  constants in ``actors/<kind>/constants.yaml``; measured for ``cpu``).
- ``serving_ms``: measured wall time in the ingress from request parsed to response ready (queueing,
  batching, the replica call). Gated only by the optional rollout policy ``max_serving_p99_ms``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fabric.kpis import KPIS, by_name

__all__ = ["KpiWindow", "RolloutPolicy", "breaches", "figure_labels"]


@dataclass(kw_only=True)
class RolloutPolicy:
    """How much evidence a candidate needs before it is judged, and serving-side limits."""

    min_requests: int = 20  # requests seen before latency/error/energy gates apply
    min_feedback: int = 20  # labelled samples before the accuracy gate applies
    max_error_rate: float = 0.05  # fraction of failed requests in the window
    max_serving_p99_ms: float | None = None  # measured serving latency limit (not in the spec)
    window: int = 512  # rolling window of requests per version

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class KpiWindow:
    """Rolling per-version record of outcomes (last ``size`` requests) plus labelled feedback."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._ok: deque[bool] = deque(maxlen=size)
        self._device_ms: deque[float] = deque(maxlen=size)
        self._serving_ms: deque[float] = deque(maxlen=size)
        self._energy_mj: deque[float] = deque(maxlen=size)
        self._correct: deque[bool] = deque(maxlen=size * 8)
        self.requests = 0
        self.errors = 0
        self.inferences = 0

    def add(self, *, ok: bool, device_ms: float | None = None, serving_ms: float | None = None,
            energy_mj: float | None = None, samples: int = 1) -> None:
        """One request's outcome; ``device_ms``/``energy_mj`` are per inference."""
        self.requests += 1
        self._ok.append(bool(ok))
        if not ok:
            self.errors += 1
            return
        self.inferences += samples
        if device_ms is not None:
            self._device_ms.append(float(device_ms))
        if serving_ms is not None:
            self._serving_ms.append(float(serving_ms))
        if energy_mj is not None:
            self._energy_mj.append(float(energy_mj))

    def feedback(self, correct: list[bool]) -> None:
        self._correct.extend(bool(c) for c in correct)

    @staticmethod
    def _pct(values: deque[float], q: float) -> float | None:
        return float(np.percentile(np.fromiter(values, float), q)) if values else None

    def snapshot(self) -> dict[str, Any]:
        n = len(self._ok)
        return {
            "requests": self.requests,
            "window": n,
            "errors": self.errors,
            "error_rate": (sum(not o for o in self._ok) / n) if n else 0.0,
            "p50_ms": self._pct(self._device_ms, 50),
            "p99_ms": self._pct(self._device_ms, 99),
            "serving_p50_ms": self._pct(self._serving_ms, 50),
            "serving_p99_ms": self._pct(self._serving_ms, 99),
            "energy_mj_per_inference": float(np.mean(np.fromiter(self._energy_mj, float))) if self._energy_mj else None,
            "accuracy_feedback": (sum(self._correct) / len(self._correct)) if self._correct else None,
            "feedback_samples": len(self._correct),
        }


# the spec's KPIs that the live window measures, by the evidence they need (fabric.kpis: ``live``)
_PER_REQUEST = tuple(m for m in KPIS if m.live is not None and m.live_from == "requests")
_FROM_FEEDBACK = tuple(m for m in KPIS if m.live is not None and m.live_from == "feedback")


def breaches(snap: dict[str, Any], kpis: dict[str, Any], policy: RolloutPolicy) -> list[str]:
    """Reasons a version's live KPIs break the spec's thresholds (empty: healthy or not enough data)."""
    out: list[str] = []
    if snap["window"] >= policy.min_requests:
        if snap["error_rate"] > policy.max_error_rate:
            out.append(f"error_rate {snap['error_rate']:.3f} > max_error_rate {policy.max_error_rate}")
        for m in _PER_REQUEST:
            lim, v = m.limit(kpis), snap.get(m.live)
            if lim is not None and v is not None and m.breaks(lim, v):
                out.append(f"{m.live} {v:{m.compact}} {m.breach_op} {m.bound} {lim:g} (modelled device figure)")
        lim, v = policy.max_serving_p99_ms, snap.get("serving_p99_ms")
        if lim is not None and v is not None and v > lim:
            out.append(f"serving_p99_ms {v:.4g} > max_serving_p99_ms {lim:g} (measured)")
    for m in _FROM_FEEDBACK:
        lim, v = m.limit(kpis), snap.get(m.live)
        if lim is not None and v is not None and snap["feedback_samples"] >= policy.min_feedback and m.breaks(lim, v):
            out.append(f"{m.live} {v:{m.fmt}} {m.breach_op} {m.bound} {lim:g} on {snap['feedback_samples']} "
                       "labelled samples")
    return out


def figure_labels(kind: str, emulated: bool) -> dict[str, str]:
    """How a response's figures were obtained, per figure, from ``fabric.kpis`` (the kind's declared
    capabilities): cpu latency is measured host time but its energy is modelled (time x declared power),
    so a single "measured" label would be wrong."""
    lat, en = by_name("latency_p50").basis_for(kind), by_name("energy").basis_for(kind)
    figures = "modelled (emulated device)" if emulated else f"latency {lat}, energy {en}"
    return {"figures": figures, "latency_is": lat, "energy_is": en}
