"""The per-kind KPI row the evaluate stage stores, and its gates; the KPIs themselves (fields, gates,
table) are defined once in :mod:`fabric.kpis`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fabric.kpis import format_kpi_table, gates
from fabric.spec import Spec

__all__ = ["KPIRow", "format_kpi_table"]


@dataclass(kw_only=True)
class KPIRow:
    kind: str
    status: str  # "ok" | "does not fit" | "error"
    emulated: bool = False
    accuracy: float | None = None
    latency_p50_ms: float | None = None  # device latency: modelled for emulated kinds, measured for cpu
    latency_p99_ms: float | None = None
    host_p50_ms: float | None = None  # measured compute time inside the actor, batch 1
    energy_mj: float | None = None  # modelled, per inference
    spikes_per_inference: float | None = None
    synops_per_inference: float | None = None
    footprint_kb: float | None = None
    # the band [low, high] of each modelled figure (fabric.kpis.row_bands; docs/measurement.md)
    latency_p50_ms_low: float | None = None
    latency_p50_ms_high: float | None = None
    latency_p99_ms_low: float | None = None
    latency_p99_ms_high: float | None = None
    energy_mj_low: float | None = None
    energy_mj_high: float | None = None
    time_mode: str = ""  # the kind's declared time mode (fabric.kinds.TIME_MODES)
    basis: dict[str, str] = field(default_factory=dict)  # KPI name -> "measured" | "modelled"
    early_exit_accuracy: float | None = None  # Top-K cutoff (spec.early_exit) on the device's raster
    early_exit_steps_saved: float | None = None  # fraction of timesteps not simulated
    gates: dict[str, bool] = field(default_factory=dict)
    reason: str = ""
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "ok" and all(self.gates.values())


def _gates(spec: Spec, row: KPIRow, golden: dict[str, Any] | None = None,
           stats: dict[str, Any] | None = None) -> dict[str, bool]:
    """The KPI gates of ``row`` (one per KPI in :data:`fabric.kpis.KPIS` whose threshold the spec sets),
    then the golden gate: a reference that disagrees fails the kind; an unavailable one is not a gate.
    ``stats``: the kind's repeated-seed statistics (row field -> repeat_stats), gated on ``kpis.on``."""
    out = gates(spec.kpis, row, stats)
    if row.status == "ok" and golden is not None and golden["status"] in ("bit-exact", "mismatch"):
        out["golden"] = golden["status"] == "bit-exact"
    return out
