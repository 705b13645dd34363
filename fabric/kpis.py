"""The KPI definitions: one record per measured figure, and the lists every surface iterates over.

Why: a KPI used to be spelt out in about eleven places (the spec's thresholds, the gates, the KPI
table, the report and compare plots, Tune's objectives, Serve's breaches, the dashboard), and one
measurement had three names (``latency_p50_ms`` in stored evaluation rows, ``latency_ms`` in Tune and
compare rows, ``p50_ms`` in Serve's live window). A :class:`KPI` says once what it is called in each
row shape, which way is better, which spec field bounds it, how it is computed from telemetry, whether
it is measured or modelled, and how it is printed.

:data:`METRICS` is every figure a stored evaluation row reports, in the KPI table's column order;
:data:`KPIS` is the gated ones (those with a ``bound``). Adding a KPI = one entry in ``METRICS`` with
``bound`` set + that field on :class:`fabric.spec.KPISpec` (tests/unit/test_kpis.py checks they agree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fabric.records import Telemetry

__all__ = [
    "KPI", "Measurements", "METRICS", "KPIS", "by_name", "objective_kpis", "alias_metrics", "objectives",
    "thresholds", "gates", "fmt_value", "row_from_telemetry", "per_inference", "objective_metrics", "aliased",
    "format_kpi_table", "GATE_ON", "repeat_stats", "fmt_interval", "format_repeats", "gates_on_note",
    "row_bands", "per_inference_bands", "ranking_claims", "fmt_band", "band_lines",
]


@dataclass(frozen=True, kw_only=True)
class Measurements:
    """What one evaluation observed, the input of every KPI's ``compute`` (pure functions of this)."""

    telemetry: Sequence[Telemetry]  # one per evaluation batch
    samples: int  # inferences in those batches (energy, spikes and synops are per inference)
    predictions: np.ndarray
    labels: np.ndarray
    device_ms: Sequence[float]  # per-inference device times: the latency distribution
    host_ms: Sequence[float]  # per-inference host compute times
    probe: Sequence[Telemetry] = ()  # the batch-1 latency probe runs (one sample each), if any


@dataclass(frozen=True, kw_only=True)
class KPI:
    """One figure: its names in every row shape, its direction, its bound, its computation, its format."""

    name: str  # the gate it produces (accuracy, latency_p50, ...) and its id here
    label: str  # plots and the dashboard
    unit: str
    better: Literal["higher", "lower"]
    row_field: str  # field in stored evaluation rows (KPIRow, the KPI report's ``kpis``)
    compute: Callable[[Measurements], float]
    bound: str | None = None  # the KPISpec field that bounds it; None: reported, never gated
    alias: str | None = None  # name in the per-inference rows of Tune (``metrics``) and compare
    alias_label: str = ""  # label under that alias, when it differs (a per-inference mean, not a percentile)
    alias_header: str = ""
    live: str | None = None  # key in Serve's live KpiWindow snapshot
    live_from: Literal["requests", "feedback"] = "requests"  # the evidence the live figure needs
    basis: Literal["measured", "modelled", "latency", "device"] = "measured"  # see basis_for
    wide: bool = False  # spans orders of magnitude across kinds: plots may use a log scale
    header: str  # fixed-width tables
    width: int
    fmt: str
    compact: str  # markdown and the compare table
    md_header: str | None = None  # markdown report column; None: not in that table
    # the [low, high] band of a modelled figure: band(m, 0) / band(m, 1) evaluate the same figure on the
    # telemetry's band ends (actors.base.energy.banded); None: the figure has no band
    band: Callable[[Measurements, int], float] | None = None

    @property
    def mode(self) -> Literal["max", "min"]:
        """The optimisation mode (Tune, Pareto) for this direction."""
        return "max" if self.better == "higher" else "min"

    @property
    def constraint(self) -> str:
        """The keyword a constraint on the alias takes (``min_accuracy``, ``max_latency_ms``): a floor
        for a higher-is-better figure, a ceiling otherwise (as the spec's ``bound``)."""
        return f"{'min' if self.better == 'higher' else 'max'}_{self.alias or self.row_field}"

    def passes(self, limit: float, value: float) -> bool:
        """The gate: at the limit passes (a NaN value fails, as it always has)."""
        return bool(value >= limit) if self.better == "higher" else bool(value <= limit)

    def breaks(self, limit: float, value: float) -> bool:
        """The live breach rule: strictly past the limit (a NaN value never breaches)."""
        return bool(value < limit) if self.better == "higher" else bool(value > limit)

    @property
    def breach_op(self) -> str:
        return "<" if self.better == "higher" else ">"

    def limit(self, kpi_spec: Any) -> float | None:
        """This KPI's threshold in a KPISpec or its ``model_dump()`` dict (None: not set or not gated)."""
        if self.bound is None or kpi_spec is None:
            return None
        return kpi_spec.get(self.bound) if isinstance(kpi_spec, Mapping) else getattr(kpi_spec, self.bound, None)

    def basis_for(self, kind: str) -> Literal["measured", "modelled"]:
        """Whether this figure is measured or modelled on ``kind`` (from its declared capabilities)."""
        if self.basis in ("measured", "modelled"):
            return self.basis  # type: ignore[return-value]
        from fabric.kinds import capabilities

        caps = capabilities(kind)
        if self.basis == "latency":
            return "measured" if caps.latency == "measured" else "modelled"
        return "modelled" if caps.emulated else "measured"

    def cell(self, row: Any) -> str:
        """This KPI's right-aligned cell of the fixed-width KPI table."""
        return f"{fmt_value(_get(row, self.row_field), self.fmt):>{self.width}}"


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if len(values) else float("nan")


def _accuracy(m: Measurements) -> float:
    return float(np.mean(m.predictions == m.labels))


def _band_end(t: Telemetry, key: str, point: float, end: int) -> float:
    b = (getattr(t, "bands", None) or {}).get(key)
    return float(b[end]) if b else float(point)


def _energy_regime(m: Measurements) -> tuple[Sequence[Telemetry], int]:
    """The runs energy per inference is taken from: for a host-timed kind (not emulated: its time is
    measured wall time) the batch-1 latency probe, so energy and latency share one regime (no batch-1
    latency beside batch-amortised energy); for emulated kinds the evaluation batches (their modelled
    per-sample cost does not depend on the batch)."""
    if m.probe and not m.telemetry[0].emulated:
        return m.probe, sum(max(int(t.samples), 1) for t in m.probe)
    return m.telemetry, m.samples


def _energy(m: Measurements) -> float:
    tel, n = _energy_regime(m)
    return sum(t.energy_j for t in tel) / n * 1e3


def _energy_band(m: Measurements, end: int) -> float:
    tel, n = _energy_regime(m)
    return sum(_band_end(t, "energy_j", t.energy_j, end) for t in tel) / n * 1e3


def _latency_band(q: float) -> Callable[[Measurements, int], float]:
    def band(m: Measurements, end: int) -> float:
        return _percentile([_band_end(t, "device_time_s", t.device_time_s, end) / max(int(t.samples), 1) * 1e3
                            for t in m.probe], q)
    return band


def _spikes(m: Measurements) -> float:
    return sum(sum(t.spikes_per_layer.values()) for t in m.telemetry) / m.samples


def _synops(m: Measurements) -> float:
    return sum(t.synaptic_ops for t in m.telemetry) / m.samples


def _footprint(m: Measurements) -> float:
    return m.telemetry[0].footprint_bytes / 1024


METRICS: tuple[KPI, ...] = (
    KPI(name="accuracy", label="accuracy", unit="", better="higher", row_field="accuracy", compute=_accuracy,
        bound="min_accuracy", alias="accuracy", live="accuracy_feedback", live_from="feedback",
        header="accuracy", width=9, fmt=".3f", compact=".3f", md_header="accuracy"),
    KPI(name="latency_p50", label="latency p50", unit="ms", better="lower", row_field="latency_p50_ms",
        compute=lambda m: _percentile(m.device_ms, 50), band=_latency_band(50), bound="max_latency_p50_ms", alias="latency_ms",
        alias_label="latency / inference", alias_header="latency ms", live="p50_ms", basis="latency", wide=True,
        header="lat p50 ms", width=12, fmt=".4f", compact=".4g", md_header="latency p50 ms"),
    KPI(name="latency_p99", label="latency p99", unit="ms", better="lower", row_field="latency_p99_ms",
        compute=lambda m: _percentile(m.device_ms, 99), band=_latency_band(99), bound="max_latency_p99_ms", live="p99_ms", basis="latency",
        wide=True, header="lat p99 ms", width=12, fmt=".4f", compact=".4g", md_header="latency p99 ms"),
    KPI(name="host_p50", label="host compute p50", unit="ms", better="lower", row_field="host_p50_ms",
        compute=lambda m: _percentile(m.host_ms, 50), header="host p50 ms", width=12, fmt=".3f", compact=".3f"),
    KPI(name="energy", label="energy / inference", unit="mJ", better="lower", row_field="energy_mj", compute=_energy, band=_energy_band,
        bound="max_energy_mj", alias="energy_mj", live="energy_mj_per_inference", basis="modelled", wide=True,
        header="energy mJ", width=12, fmt=".5f", compact=".4g", md_header="energy mJ (modelled)"),
    KPI(name="spikes", label="spikes / inference", unit="", better="lower", row_field="spikes_per_inference",
        compute=_spikes, header="spikes/inf", width=11, fmt=".1f", compact=".1f",
        md_header="spikes/inf"),
    KPI(name="synops", label="synaptic ops / inference", unit="", better="lower", row_field="synops_per_inference",
        compute=_synops, alias="synops", header="synops/inf", width=12, fmt=".0f", compact=".0f"),
    KPI(name="footprint", label="footprint", unit="KB", better="lower", row_field="footprint_kb", compute=_footprint,
        bound="max_footprint_kb", alias="footprint_kb", basis="device", header="KB", width=9, fmt=".1f",
        compact=".1f", md_header="KB"),
)
"""Every figure of a stored evaluation row, in the KPI table's column order."""

KPIS: tuple[KPI, ...] = tuple(m for m in METRICS if m.bound is not None)
"""The gated KPIs: each has a KPISpec threshold field and produces the gate named ``name``."""


def by_name(name: str) -> KPI:
    """The metric called ``name`` in any row shape: its gate name, row field or alias."""
    for m in METRICS:
        if name in (m.name, m.row_field, m.alias):
            return m
    raise KeyError(f"unknown KPI {name!r}; valid: {[m.name for m in METRICS]}")


def objective_kpis() -> tuple[KPI, ...]:
    """The gated KPIs with a per-inference alias: Tune's objectives and the plots' panels, in order."""
    return tuple(m for m in KPIS if m.alias is not None)


def alias_metrics() -> tuple[KPI, ...]:
    """Every metric with an alias, objectives first: the figures of a compare row, in column order."""
    return objective_kpis() + tuple(m for m in METRICS if m.alias is not None and m.bound is None)


def objectives() -> dict[str, str]:
    """Objective alias -> ``"max"`` / ``"min"``; the order is the tie-break order of a ranking."""
    return {m.alias: m.mode for m in objective_kpis() if m.alias is not None}


def thresholds(kpi_spec: Any) -> dict[str, float]:
    """Gate name -> limit, for each KPI whose threshold the spec sets."""
    out = {}
    for m in KPIS:
        lim = m.limit(kpi_spec)
        if lim is not None:
            out[m.name] = lim
    return out


def _get(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, Mapping) else getattr(row, name, None)


GATE_ON = ("mean", "lower_ci", "upper_ci", "worst_ci")
"""What a gate compares with its limit when repeat statistics are given: the point estimate (``mean``,
today's behaviour), one bound of the confidence interval, or ``worst_ci`` (the lower bound of a
higher-is-better figure, the upper bound of a lower-is-better one: the conservative side)."""


def repeat_stats(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean, sample std (ddof 1) and a Student-t confidence interval of repeated measurements.

    Why Student t: a handful of seeds (N = 3..10) is far too few for a normal interval. With one value
    the std is 0 and the interval is the value itself (nothing is known about the spread)."""
    from scipy import stats

    v = np.asarray([float(x) for x in values], dtype=float)
    if v.size == 0:
        raise ValueError("repeat_stats: no values")
    mean = float(v.mean())
    std = float(v.std(ddof=1)) if v.size > 1 else 0.0
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * std / np.sqrt(v.size)) if v.size > 1 else 0.0
    return {"n": int(v.size), "mean": mean, "std": std, "lower_ci": mean - half, "upper_ci": mean + half,
            "confidence": float(confidence)}


def _gated_value(m: KPI, row: Any, stats: Mapping[str, Mapping[str, float]] | None, on: str) -> Any:
    if on == "mean" or not stats:
        return _get(row, m.row_field)
    st = stats.get(m.row_field) or (stats.get(m.alias) if m.alias else None)
    if not st:
        return _get(row, m.row_field)  # no repeats of this figure: the point estimate
    side = ("lower_ci" if m.better == "higher" else "upper_ci") if on == "worst_ci" else on
    return st[side]


def gates(kpi_spec: Any, row: Any, stats: Mapping[str, Mapping[str, float]] | None = None,
          on: str | None = None) -> dict[str, bool]:
    """Gate name -> passed, for each KPI whose threshold is set and whose value was measured.

    A row whose status is not ``ok`` gets ``{"fits": False}``. The golden gate is the caller's: add
    ``{"golden": ...}`` after these (it comes last in the stored dict). With ``stats`` (figure ->
    :func:`repeat_stats`, keyed by row field or alias), ``on`` (one of :data:`GATE_ON`; default the
    spec's ``on`` if it has one, else ``mean``) picks the interval bound compared with the limit;
    without ``stats`` the row's point estimate is gated as always.
    """
    if _get(row, "status") != "ok":
        return {"fits": False}
    on = on or (kpi_spec.get("on") if isinstance(kpi_spec, Mapping) else getattr(kpi_spec, "on", None)) or "mean"
    if on not in GATE_ON:
        raise ValueError(f"kpis.on: {on!r} is not one of {list(GATE_ON)}")
    out = {}
    for m in KPIS:
        lim, v = m.limit(kpi_spec), _gated_value(m, row, stats, on)
        if lim is not None and v is not None:
            out[m.name] = m.passes(lim, v)
    return out


def fmt_band(row: Any, field_name: str, fmt: str = ".4g") -> str:
    """``value [low, high]`` of a banded field of ``row`` (just the value when it has no band)."""
    v, lo, hi = _get(row, field_name), _get(row, f"{field_name}_low"), _get(row, f"{field_name}_high")
    if v is None:
        return "-"
    if lo is None or hi is None:
        return format(v, fmt)
    return f"{format(v, fmt)} [{format(lo, fmt)}, {format(hi, fmt)}]"


def band_lines(rows: Sequence[Any], field_of: str = "row_field") -> list[str]:
    """One line per ok row: each banded KPI as ``value [low, high]`` with its basis, and the kind's
    time mode (what its latency means: docs/measurement.md)."""
    lines = []
    for r in rows:
        if _get(r, "status") not in (None, "ok"):
            continue
        basis = _get(r, "basis") or {}
        cells = []
        for k in METRICS:
            name = k.row_field if field_of == "row_field" else k.alias
            if k.band is None or name is None or _get(r, name) is None or _get(r, f"{name}_low") is None:
                continue
            cells.append(f"{k.label} {fmt_band(r, name)} {k.unit} ({basis.get(k.name, k.basis)})")
        if cells:
            lines.append(f"  {_get(r, 'kind')} [time mode {_get(r, 'time_mode') or '?'}]: " + "; ".join(cells))
    return lines


def fmt_value(v: float | None, fmt: str) -> str:
    """A value in ``fmt``, ``-`` when it was not measured."""
    return "-" if v is None else format(v, fmt)


def row_from_telemetry(telemetry: Sequence[Telemetry], probe: Sequence[Telemetry], predictions: np.ndarray,
                       labels: np.ndarray) -> dict[str, Any]:
    """The measured fields of a stored evaluation row (KPIRow): ``emulated``, every metric's
    ``row_field`` and ``sources``. ``telemetry`` is one per evaluation batch, ``probe`` one per batch-1
    latency probe; early exit and the row's kind and status are the caller's."""
    m = Measurements(telemetry=telemetry, samples=len(labels), predictions=predictions, labels=labels,
                     device_ms=[t.device_time_s * 1e3 for t in probe], host_ms=[t.host_latency_s * 1e3 for t in probe],
                     probe=probe)
    return ({"emulated": telemetry[0].emulated} | {k.row_field: k.compute(m) for k in METRICS}
            | {"sources": dict(telemetry[0].sources)})


def _kind_facts(telemetry: Telemetry) -> tuple[str, dict[str, str]]:
    """The kind's declared time mode and each KPI's measured/modelled basis (capabilities; a kind the
    registry does not know gets the telemetry's ``emulated`` flag)."""
    from fabric.kinds import UnknownKindError, capabilities

    try:
        mode = capabilities(telemetry.kind).time_mode
        basis = {k.name: k.basis_for(telemetry.kind) for k in METRICS}
    except UnknownKindError:
        mode = "host" if not telemetry.emulated else "unknown"
        basis = {k.name: k.basis if k.basis in ("measured", "modelled")
                 else ("modelled" if telemetry.emulated else "measured") for k in METRICS}
    return mode, basis


def row_bands(telemetry: Sequence[Telemetry], probe: Sequence[Telemetry]) -> dict[str, Any]:
    """The band fields of a stored evaluation row: ``<row_field>_low``/``_high`` of each banded KPI
    (same regime as the point figure), the kind's ``time_mode`` and each KPI's ``basis``
    (``measured``/``modelled``)."""
    m = Measurements(telemetry=telemetry, samples=sum(max(int(t.samples), 1) for t in telemetry),
                     predictions=np.zeros(0), labels=np.zeros(0), device_ms=[], host_ms=[], probe=probe)
    out: dict[str, Any] = {}
    for k in METRICS:
        if k.band is not None:
            out[f"{k.row_field}_low"], out[f"{k.row_field}_high"] = k.band(m, 0), k.band(m, 1)
    mode, basis = _kind_facts(telemetry[0])
    return out | {"time_mode": mode, "basis": basis}


def per_inference_bands(telemetry: Telemetry) -> dict[str, Any]:
    """``<alias>_low``/``_high`` of each banded KPI for one run's batch (compare rows; the batch is the
    regime of both latency and energy there), plus ``time_mode`` and ``basis``."""
    one = Telemetry.from_dict(telemetry.to_dict() | {"samples": max(int(telemetry.samples), 1)})
    out = {}
    m = Measurements(telemetry=[one], samples=one.samples, predictions=np.zeros(0), labels=np.zeros(0),
                     device_ms=[], host_ms=[], probe=[one])
    for k in METRICS:
        if k.band is not None and k.alias is not None:
            if k.name == "energy":
                lo, hi = (sum(_band_end(t, "energy_j", t.energy_j, e) for t in [one]) / one.samples * 1e3
                          for e in (0, 1))
            else:
                lo, hi = k.band(m, 0), k.band(m, 1)
            out[f"{k.alias}_low"], out[f"{k.alias}_high"] = lo, hi
    mode, basis = _kind_facts(telemetry)
    return out | {"time_mode": mode, "basis": basis}


def ranking_claims(rows: Sequence[Any], alias: str) -> list[str]:
    """The ranking sentences for one KPI: kinds ordered by their point figure, and for each neighbour
    pair "X beats Y on <kpi>" only where their bands do not overlap, else "overlapping bands: no
    ranking". Why: a modelled figure is only as good as its constants; a gap inside the band is noise.
    Rows are dicts or objects with ``kind``, ``<alias>`` and optionally ``<alias>_low``/``_high``."""
    k = by_name(alias)
    have = [r for r in rows if _get(r, alias) is not None and _get(r, "status") in (None, "ok")]
    if len(have) < 2:
        return []

    def band(r: Any) -> tuple[float, float]:
        v = float(_get(r, alias))
        lo, hi = _get(r, f"{alias}_low"), _get(r, f"{alias}_high")
        return (v if lo is None else float(lo)), (v if hi is None else float(hi))

    order = sorted(have, key=lambda r: float(_get(r, alias)), reverse=k.better == "higher")
    what = k.alias_label or k.label
    lines = []
    for a, b in zip(order, order[1:], strict=False):
        (alo, ahi), (blo, bhi) = band(a), band(b)
        apart = ahi < blo if k.better == "lower" else alo > bhi
        if apart:
            lines.append(f"{_get(a, 'kind')} beats {_get(b, 'kind')} on {what} "
                         f"([{alo:.4g}, {ahi:.4g}] vs [{blo:.4g}, {bhi:.4g}] {k.unit})")
        else:
            lines.append(f"{_get(a, 'kind')} vs {_get(b, 'kind')} on {what}: overlapping bands: no ranking "
                         f"([{alo:.4g}, {ahi:.4g}] vs [{blo:.4g}, {bhi:.4g}] {k.unit})")
    return lines


def per_inference(telemetry: Telemetry, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Alias -> value for one run's batch (compare rows): latency is the batch's mean device time per
    inference, since no batch-1 probe was run."""
    n = max(int(telemetry.samples), 1)
    m = Measurements(telemetry=[telemetry], samples=n, predictions=predictions, labels=labels,
                     device_ms=[telemetry.device_time_s / n * 1e3], host_ms=[telemetry.host_latency_s / n * 1e3])
    return {k.alias: k.compute(m) for k in alias_metrics() if k.alias is not None}


def objective_metrics(row: Any) -> dict[str, Any]:
    """A stored evaluation row's objectives under their aliases (a Tune row's ``metrics``)."""
    return {m.alias: _get(row, m.row_field) for m in objective_kpis() if m.alias is not None}


def aliased(row: Any) -> dict[str, Any]:
    """A stored evaluation row's aliased figures (a compare row's metric fields), in column order."""
    return {m.alias: _get(row, m.row_field) for m in alias_metrics() if m.alias is not None}


def format_kpi_table(rows: Sequence[Any]) -> str:
    """The KPI table ``fabric run`` prints: one column per metric, the gates, early exit and sources.
    Rows are KPIRow objects or their dicts."""
    head = f"{'kind':<10}{'mode':<10}" + "".join(f"{m.header:>{m.width}}" for m in METRICS) + "  gates"
    lines = [head, "-" * len(head)]
    for r in rows:
        kind = _get(r, "kind")
        if _get(r, "status") != "ok":
            lines.append(f"{kind:<10}{'-':<10}  {_get(r, 'status')}: {_get(r, 'reason')}")
            continue
        gate = " ".join(f"{g}:{'PASS' if ok else 'FAIL'}" for g, ok in (_get(r, "gates") or {}).items()) or "(none set)"
        mode = "emulated" if _get(r, "emulated") else "measured"
        lines.append(f"{kind:<10}{mode:<10}" + "".join(m.cell(r) for m in METRICS) + f"  {gate}")
    for r in rows:
        if _get(r, "early_exit_accuracy") is not None:
            lines.append(f"early exit ({_get(r, 'kind')}, Top-K cutoff): {_get(r, 'early_exit_steps_saved'):.0%} of "
                         f"timesteps saved, accuracy {_get(r, 'accuracy'):.3f} -> {_get(r, 'early_exit_accuracy'):.3f}")
    lines.append("latency = device time per inference (modelled for emulated kinds, measured for cpu); "
                 "energy is modelled for every kind.")
    bands = band_lines(rows)
    if bands:
        lines.append("bands [low, high] (the same model at its constants' band ends; docs/measurement.md):")
        lines.extend(bands)
        for alias in ("energy_mj", "latency_ms"):
            field_name = by_name(alias).row_field
            lines.extend("  " + c for c in ranking_claims([_as_alias(r, field_name, alias) for r in rows], alias))
    for r in rows:  # per-constant sources stay in the report artifact and `fabric devices --json`
        for what, src in sorted((_get(r, "sources") or {}).items()):
            if not what.startswith("const."):
                lines.append(f"  {_get(r, 'kind')} {what}: {src[:160]}")
    return "\n".join(lines)


def _as_alias(row: Any, field_name: str, alias: str) -> dict[str, Any]:
    """A stored row's banded field under its alias (what :func:`ranking_claims` reads)."""
    return {"kind": _get(row, "kind"), "status": _get(row, "status"), alias: _get(row, field_name),
            f"{alias}_low": _get(row, f"{field_name}_low"), f"{alias}_high": _get(row, f"{field_name}_high")}


def fmt_interval(st: Mapping[str, Any], fmt: str = ".3f") -> str:
    """``mean ± std [lower_ci, upper_ci]`` of one :func:`repeat_stats` entry (``0.947 ± 0.006 [0.930, 0.964]``)."""
    return (f"{format(st['mean'], fmt)} ± {format(st['std'], fmt)} "
            f"[{format(st['lower_ci'], fmt)}, {format(st['upper_ci'], fmt)}]")


def gates_on_note(on: str, repeated: bool) -> str:
    """The line saying what the gates compared: said whenever ``kpis.on`` is set, and when it asks for
    an interval bound but the run has no repeats (then the point estimate was gated)."""
    if on == "mean":
        return ""
    if not repeated:
        return (f"gates on: point estimate (kpis.on: {on} needs repeats; set repeats.n > 1 or --repeats N)")
    return f"gates on: {on} of the repeated-seed interval"


def format_repeats(doc: Mapping[str, Any]) -> str:
    """The repeats section of the run summary: per kind, each KPI's mean ± std [CI] over the seeds."""
    conf = float(doc["confidence"])
    lines = [f"repeats ({doc['n']} seeds {doc['seeds']}, mean ± std [{conf:.0%} Student-t CI], test split):"]
    for kind, per in doc["kinds"].items():
        cells = []
        for m in METRICS:
            st = per.get(m.row_field)
            if st:
                unit = f" {m.unit}" if m.unit else ""
                cells.append(f"{m.label}{unit} {fmt_interval(st, m.compact if m.compact != '.0f' else '.1f')}")
        lines.append(f"  {kind}: " + "; ".join(cells))
    for kind, notes in (doc.get("notes") or {}).items():
        for note in notes:
            lines.append(f"  {kind}: {note}")
    return "\n".join(lines)
