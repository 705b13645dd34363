"""Cross-device comparison (issue 4): one model, every kind, one table and one bar plot.

Pure parts, testable without Ray: :func:`measure_graph` compiles and runs a NIR graph on each kind's
runtime in this process and turns the telemetry into rows; :func:`rows_from_kpis` turns a pipeline KPI
report into the same rows; :func:`format_table` and :func:`render_png` present them. ``fabric compare``
(fabric/cli/compare.py) stores the table and the plot as registry artifacts.

A row is a dict: ``kind``, ``status`` (``ok`` | ``hybrid`` | ``does not fit`` | ``unsupported`` |
``error``), ``mode`` (``measured`` for cpu, ``modelled`` for emulated kinds: their latency and energy
come from the constants in actors/<kind>/constants.yaml, printed with sources by ``fabric devices``),
``accuracy``, ``latency_ms`` (device time per inference), ``energy_mj`` (per inference, modelled for
every kind), ``footprint_kb``, ``synops`` (per inference), ``reason`` (why a kind did not fit or what
ran on the host) and ``latency_basis`` (how latency was taken). Modelled figures carry their band:
``latency_ms_low``/``_high`` and ``energy_mj_low``/``_high`` (the same model at the constants' band
ends), with ``time_mode`` (what the kind's latency means) and ``basis`` (each KPI measured or
modelled); docs/measurement.md is the protocol. A ranking sentence is printed only where two kinds'
bands do not overlap.
"""

from __future__ import annotations

from typing import Any

import nir
import numpy as np

from fabric.kpis import (
    alias_metrics,
    aliased,
    by_name,
    fmt_band,
    objective_kpis,
    per_inference,
    per_inference_bands,
    ranking_claims,
)

__all__ = ["parse_kinds", "measure_graph", "rows_from_kpis", "format_table", "render_png", "PANELS", "RANKED"]

# (row key, title, unit) per objective KPI, under the per-inference alias compare rows use
PANELS = tuple((m.alias, m.alias_label or m.label, m.unit) for m in objective_kpis())
_COLUMNS = alias_metrics()  # the table's figures, in column order
_WIDE = {m.alias for m in _COLUMNS if m.wide}  # may need a log axis
_MODELLED = {m.alias for m in _COLUMNS if m.basis != "measured"}  # hatched/labelled on a modelled kind
_BANDED = tuple(m.alias for m in _COLUMNS if m.band is not None)  # figures shown with [low, high]
RANKED = ("energy_mj", "latency_ms")
"""The figures a ranking sentence is printed for (only where bands do not overlap)."""


def parse_kinds(text: str) -> list[str]:
    """``all`` or a comma-separated list of known kinds (a clear error names an unknown one)."""
    from fabric.kinds import kinds as registered

    if text.strip() == "all":
        return registered()
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    if not kinds:
        raise ValueError("--kinds: give 'all' or a comma-separated list of kinds")
    bad = [k for k in kinds if k not in registered()]
    if bad:
        raise ValueError(f"--kinds: unknown device kind(s) {bad}; valid kinds: {registered()} or 'all'")
    return list(dict.fromkeys(kinds))


def _row_from_run(kind: str, program: Any, result: Any, labels: np.ndarray) -> dict[str, Any]:
    tel = result.telemetry
    fb = program.meta.get("fallback")
    row = {
        "kind": kind, "status": "hybrid" if fb else "ok", "mode": "modelled" if tel.emulated else "measured",
        **per_inference(tel, result.predictions, labels), **per_inference_bands(tel),
        "latency_basis": "device time / inference, batch mean",
        "reason": "", "sources": {k: v for k, v in tel.sources.items() if not k.startswith("const.")},
    }
    if fb:
        row["reason"] = ("hybrid: " + "; ".join(f"{k}: {v}" for k, v in fb.get("reasons", {}).items())
                         + " -> those layers ran on cpu")
    return row


def measure_graph(graph: nir.NIRGraph, spikes: np.ndarray, labels: np.ndarray, kinds: list[str], *,
                  fallback: str | None = None, options: dict[str, dict[str, Any]] | None = None,
                  progress: bool = False) -> list[dict[str, Any]]:
    """Compile ``graph`` for every kind and run ``spikes [N, T, n_in]`` on it, in this process.

    A kind that refuses the graph gets a row with its status and the exact reason; with
    ``fallback="hybrid"`` kinds that lack a node type (or recurrence) run the rest on cpu.
    """
    from tqdm.auto import tqdm

    from fabric.ir.lowering import GraphStructureError, UnsupportedNodeError
    from fabric.kinds import capabilities, make_runtime
    from fabric.records import FitError

    rows = []
    for kind in tqdm(kinds, desc="compare", unit="kind", disable=not progress, leave=False):
        rt = make_runtime(kind)
        opts = dict((options or {}).get(kind, {}))
        if fallback == "hybrid" and capabilities(kind).hybrid_fallback:
            opts["fallback"] = "hybrid"
        try:
            prog = rt.compile(graph, opts)
        except FitError as exc:
            rows.append({"kind": kind, "status": "does not fit", "reason": str(exc)})
            continue
        except (UnsupportedNodeError, GraphStructureError) as exc:
            rows.append({"kind": kind, "status": "unsupported", "reason": str(exc)})
            continue
        except ValueError as exc:  # a parameter the kind cannot represent, named by the runtime
            rows.append({"kind": kind, "status": "error", "reason": str(exc)})
            continue
        rt.load(prog)
        try:
            res = rt.run(spikes)
        except ValueError as exc:
            rows.append({"kind": kind, "status": "error", "reason": str(exc)})
            continue
        rows.append(_row_from_run(kind, prog, res, labels))
    return rows


def rows_from_kpis(kpis: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows from a pipeline KPI report's ``kpis`` list (``fabric run`` / ``run_pipeline``)."""
    rows = []
    for k in kpis:
        if k.get("status") != "ok":
            rows.append({"kind": k["kind"], "status": k.get("status", "error"), "reason": k.get("reason", "")})
            continue
        bands = {}
        for alias in _BANDED:
            field_name = by_name(alias).row_field
            if k.get(f"{field_name}_low") is not None:
                bands[f"{alias}_low"], bands[f"{alias}_high"] = k[f"{field_name}_low"], k[f"{field_name}_high"]
        facts = {f: k[f] for f in ("time_mode", "basis") if k.get(f)}
        rows.append({"kind": k["kind"], "status": "ok", "mode": "modelled" if k.get("emulated") else "measured",
                     **aliased(k), **bands, **facts, "latency_basis": "device time, batch-1 p50",
                     "reason": "", "sources": dict(k.get("sources") or {})})
    return rows


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width table; rows that did not run show their status, reasons are listed below it."""
    head = (f"{'kind':<10}{'status':<14}{'mode':<10}"
            + "".join(f"{m.alias_header or m.header:>{m.width}}" for m in _COLUMNS))
    lines = [head, "-" * len(head)]
    notes = []
    for r in rows:
        lines.append(f"{r['kind']:<10}{r['status']:<14}{r.get('mode', '-'):<10}"
                     + "".join(f"{_fmt(r.get(m.alias), m.compact):>{m.width}}" for m in _COLUMNS))
        if r.get("reason"):
            notes.append(f"  {r['kind']}: {r['reason']}")
    lines.append("modelled = emulated device: latency and energy from actors/<kind>/constants.yaml constants "
                 "(sources: fabric devices --json); measured = host wall time (energy still modelled)")
    banded = [r for r in rows if any(r.get(f"{a}_low") is not None for a in _BANDED)]
    if banded:
        lines.append("bands [low, high] (the same model at its constants' band ends; protocol: docs/measurement.md):")
        for r in banded:
            basis = r.get("basis") or {}
            cells = [f"{by_name(a).alias_header or a} {fmt_band(r, a)} ({basis.get(by_name(a).name, '?')})"
                     for a in _BANDED if r.get(a) is not None]
            lines.append(f"  {r['kind']:<10} time mode {r.get('time_mode', '?'):<20} " + "; ".join(cells))
        claims = [c for a in RANKED for c in ranking_claims(banded, a)]
        if claims:
            lines += ["ranking (only where bands do not overlap):", *("  " + c for c in claims)]
    if notes:
        lines += ["reasons:", *notes]
    return "\n".join(lines)


def _is_modelled(row: dict[str, Any], key: str) -> bool:
    """Whether ``row``'s figure ``key`` is modelled: its declared basis (cpu energy is modelled too), else
    the row's mode for a figure that is not always measured."""
    basis = (row.get("basis") or {}).get(by_name(key).name)
    if basis is not None:
        return basis == "modelled"
    return key in _MODELLED and (row.get("mode") == "modelled" or by_name(key).basis == "modelled")


def _error_bars(rows: list[dict[str, Any]], key: str, vals: list[float]) -> list[list[float]] | None:
    """Matplotlib ``yerr`` (distances below/above each bar) from the rows' ``<key>_low``/``_high``;
    None when no row has a band for ``key``."""
    lo = [r.get(f"{key}_low") for r in rows]
    hi = [r.get(f"{key}_high") for r in rows]
    if all(v is None for v in lo):
        return None
    below = [max(v - (lv if lv is not None else v), 0.0) for v, lv in zip(vals, lo, strict=True)]
    above = [max((hv if hv is not None else v) - v, 0.0) for v, hv in zip(vals, hi, strict=True)]
    return [below, above]


def render_png(rows: list[dict[str, Any]], title: str) -> bytes:
    """One bar panel per objective KPI (accuracy, latency, energy, footprint); modelled bars hatched
    and labelled, kinds that did not run shown as 'n/a' with their status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [r["kind"] for r in rows]
    fig, axes = plt.subplots(1, len(PANELS), figsize=(3.75 * len(PANELS), 3.8))
    for ax, (key, label, unit) in zip(axes, PANELS, strict=True):
        vals = [float(r[key]) if r.get(key) is not None else 0.0 for r in rows]
        bars = ax.bar(kinds, vals, color=["#dd8452" if r.get("status") == "hybrid" else "#4c72b0" for r in rows])
        err = _error_bars(rows, key, vals)
        if err is not None:
            ax.errorbar(kinds, vals, yerr=err, fmt="none", ecolor="#222", capsize=3, linewidth=1)
        for b, r, v in zip(bars, rows, vals, strict=True):
            if _is_modelled(r, key):
                b.set_hatch("//")
            if r.get(key) is None:
                ax.annotate("n/a\n" + r.get("status", ""), (b.get_x() + b.get_width() / 2, 0.02),
                            xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=7, color="#a00")
            elif _is_modelled(r, key):
                ax.annotate("modelled", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=6)
        pos = [v for v in vals if v > 0]
        if key in _WIDE and pos and max(pos) / min(pos) > 100:
            ax.set_yscale("log")
        ax.set_title(label + (f" [{unit}]" if unit else ""), fontsize=10)
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{title} - hatched: modelled (emulated device); orange: hybrid (part on cpu); "
                 "error bars: constants' band [low, high]", fontsize=10)
    from fabric.report import fig_png

    return fig_png(fig)
