"""fabric.kpis: the one KPI list agrees with the spec, gates at and one step over each limit, the KPI
table text is the one `fabric run` printed before the list existed, and the row computations match
the evaluate stage's formulas."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from fabric import kpis as K
from fabric.kinds import capabilities, kinds
from fabric.records import Telemetry
from fabric.spec import KPISpec


def test_every_spec_threshold_field_has_a_kpi_and_back():
    # ``on`` (which repeat statistic a gate compares) is a gate setting, not a threshold
    assert set(KPISpec.model_fields) - {"on"} == {m.bound for m in K.KPIS}
    assert set(KPISpec.model_fields) - {m.bound for m in K.KPIS} == {"on"}
    assert len({m.bound for m in K.KPIS}) == len(K.KPIS)
    for m in K.KPIS:  # a floor for higher-is-better, a ceiling otherwise
        assert m.bound.startswith("min_" if m.better == "higher" else "max_"), m.bound
    # the gate names stored in every KPI report so far
    assert [m.name for m in K.KPIS] == ["accuracy", "latency_p50", "latency_p99", "energy", "footprint"]


def test_names_are_unique_in_every_row_shape():
    for attr in ("name", "row_field", "alias", "live"):
        names = [getattr(m, attr) for m in K.METRICS if getattr(m, attr) is not None]
        assert len(names) == len(set(names)), attr
    assert K.by_name("latency_ms") is K.by_name("latency_p50_ms") is K.by_name("latency_p50")
    with pytest.raises(KeyError, match="unknown KPI 'speed'"):
        K.by_name("speed")


def test_aliases_keep_the_stored_row_shapes():
    assert K.objectives() == {"accuracy": "max", "latency_ms": "min", "energy_mj": "min", "footprint_kb": "min"}
    row = {"accuracy": 0.9, "latency_p50_ms": 1.5, "latency_p99_ms": 2.0, "energy_mj": 0.1, "footprint_kb": 3.0,
           "synops_per_inference": 40.0}
    assert K.objective_metrics(row) == {"accuracy": 0.9, "latency_ms": 1.5, "energy_mj": 0.1, "footprint_kb": 3.0}
    assert list(K.aliased(row).items()) == [("accuracy", 0.9), ("latency_ms", 1.5), ("energy_mj", 0.1),
                                            ("footprint_kb", 3.0), ("synops", 40.0)]
    assert [m.constraint for m in K.objective_kpis()] == ["min_accuracy", "max_latency_ms", "max_energy_mj",
                                                          "max_footprint_kb"]


def _row(**values: Any) -> dict[str, Any]:
    return {"kind": "k", "status": "ok"} | values


@pytest.mark.parametrize("m", K.KPIS, ids=lambda m: m.name)
def test_gate_passes_at_the_limit_and_fails_one_step_over(m):
    limit = 0.5
    step = 1e-3 if m.better == "higher" else -1e-3  # toward passing
    spec = KPISpec(**{m.bound: limit})
    for s in (spec, spec.model_dump()):  # a Spec's kpis, or the dict a deployment record stores
        assert K.gates(s, _row(**{m.row_field: limit})) == {m.name: True}
        assert K.gates(s, _row(**{m.row_field: limit + step})) == {m.name: True}
        assert K.gates(s, _row(**{m.row_field: limit - step})) == {m.name: False}
        assert K.gates(s, _row(**{m.row_field: float("nan")})) == {m.name: False}  # not measured well: fails
        assert K.gates(s, _row()) == {}  # a figure the kind did not report is not gated
    assert K.thresholds(spec) == {m.name: limit}


def test_gates_like_the_pipeline_did():
    spec = KPISpec(min_accuracy=0.9, max_latency_p99_ms=1.5, max_energy_mj=0.001)
    row = _row(accuracy=0.91, latency_p50_ms=9.0, latency_p99_ms=1.5, energy_mj=0.002, footprint_kb=1e6)
    assert list(K.gates(spec, row).items()) == [("accuracy", True), ("latency_p99", True), ("energy", False)]
    assert K.gates(spec, {"kind": "k", "status": "does not fit"}) == {"fits": False}
    assert K.gates(KPISpec(), row) == {} and K.thresholds(KPISpec()) == {}


@dataclass(kw_only=True)
class _Row:  # the KPIRow fields the table reads (KPIRow lives in the pipeline room)
    kind: str
    status: str
    emulated: bool = False
    accuracy: float | None = None
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    host_p50_ms: float | None = None
    energy_mj: float | None = None
    spikes_per_inference: float | None = None
    synops_per_inference: float | None = None
    footprint_kb: float | None = None
    early_exit_accuracy: float | None = None
    early_exit_steps_saved: float | None = None
    gates: dict[str, bool] = field(default_factory=dict)
    reason: str = ""
    sources: dict[str, str] = field(default_factory=dict)


# fabric.flow.pipeline.format_kpi_table's output for ROWS, taken before the KPI list existed
TABLE = """\
kind      mode       accuracy  lat p50 ms  lat p99 ms host p50 ms   energy mJ spikes/inf  synops/inf       KB  gates
--------------------------------------------------------------------------------------------------------------------
cpu       measured      0.912      0.1235      1.5000       0.457     0.00123      123.5        4568     12.3  accuracy:PASS energy:FAIL
loihi     emulated      0.500      0.0123           -           -     0.00001          -           -        -  (none set)
akida     -           does not fit: too big
early exit (cpu, Top-K cutoff): 25% of timesteps saved, accuracy 0.912 -> 0.900
latency = device time per inference (modelled for emulated kinds, measured for cpu); energy is modelled for every kind.
  cpu latency: measured host wall time"""

ROWS = [
    _Row(kind="cpu", status="ok", emulated=False, accuracy=0.91234, latency_p50_ms=0.123456, latency_p99_ms=1.5,
         host_p50_ms=0.4567, energy_mj=0.0012345, spikes_per_inference=123.45, synops_per_inference=4567.8,
         footprint_kb=12.34, gates={"accuracy": True, "energy": False},
         sources={"latency": "measured host wall time", "const.x": "y"}, early_exit_accuracy=0.9,
         early_exit_steps_saved=0.25),
    _Row(kind="loihi", status="ok", emulated=True, accuracy=0.5, latency_p50_ms=0.0123, energy_mj=1e-5),
    _Row(kind="akida", status="does not fit", reason="too big"),
]


def test_kpi_table_text_is_unchanged():
    assert K.format_kpi_table(ROWS) == TABLE
    assert K.format_kpi_table([vars(r) for r in ROWS]) == TABLE  # the stored dict form prints the same


def _tel(i: int, samples: int) -> Telemetry:
    return Telemetry(kind="toy", emulated=True, samples=samples, timesteps=5, spikes_in=10, spikes_out=3,
                     spikes_per_layer={"a": 7 + i, "b": 2 * i}, synaptic_ops=100.0 + 3 * i, neuron_updates=50.0,
                     host_latency_s=1e-3 * (1 + i), device_time_s=2e-4 * (3 + i), energy_j=1e-6 * (1 + i),
                     footprint_bytes=4096, sources={"energy": "modelled", "const.e": "x"})


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def test_row_from_telemetry_matches_the_evaluate_stage():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 10)
    preds = np.where(rng.random(10) < 0.7, y, (y + 1) % 3)
    tel = [_tel(0, 4), _tel(1, 4), _tel(2, 2)]
    probe = [_tel(i, 1) for i in range(7)]
    row = K.row_from_telemetry(tel, probe, preds, y)
    # the evaluate stage's formulas, written out
    n = len(y)
    dev_ms = [t.device_time_s * 1e3 for t in probe]
    host_ms = [t.host_latency_s * 1e3 for t in probe]
    want = {
        "emulated": True, "accuracy": float((preds == y).mean()),
        "latency_p50_ms": _percentile(dev_ms, 50), "latency_p99_ms": _percentile(dev_ms, 99),
        "host_p50_ms": _percentile(host_ms, 50), "energy_mj": sum(t.energy_j for t in tel) / n * 1e3,
        "spikes_per_inference": sum(sum(t.spikes_per_layer.values()) for t in tel) / n,
        "synops_per_inference": sum(t.synaptic_ops for t in tel) / n, "footprint_kb": tel[0].footprint_bytes / 1024,
        "sources": dict(tel[0].sources),
    }
    assert row == want  # exactly: the stored evaluation rows keep their bytes
    assert math.isnan(K.row_from_telemetry(tel, [], preds, y)["latency_p50_ms"])  # no probe: NaN, as before


def test_per_inference_is_the_batch_mean_compare_reports():
    y = np.array([0, 1, 1, 2])
    preds = np.array([0, 1, 2, 2])
    t = _tel(1, 4)
    assert K.per_inference(t, preds, y) == {
        "accuracy": float(np.mean(preds == y)), "latency_ms": t.device_time_s / 4 * 1e3,
        "energy_mj": t.energy_j / 4 * 1e3, "footprint_kb": t.footprint_bytes / 1024, "synops": t.synaptic_ops / 4}


def test_measured_or_modelled_comes_from_the_kinds_capabilities():
    lat, energy, acc, fp = (K.by_name(n) for n in ("latency_p50", "energy", "accuracy", "footprint"))
    for kind in kinds():
        caps = capabilities(kind)
        assert lat.basis_for(kind) == caps.latency
        assert fp.basis_for(kind) == ("modelled" if caps.emulated else "measured")
        assert energy.basis_for(kind) == "modelled" and acc.basis_for(kind) == "measured"
