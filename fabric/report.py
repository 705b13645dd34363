"""The cross-device report (Markdown + PNG bars) built from a stored KPI report; computes nothing new."""

from __future__ import annotations

import io
from typing import Any

from fabric.kpis import KPI, METRICS, fmt_band, objective_kpis, ranking_claims

__all__ = ["render_markdown", "render_kpi_png", "PANELS", "figure_basis", "band_section"]

# (row field, title, unit) per objective KPI; a figure modelled for every kind says so in its title
PANELS = tuple((m.row_field, m.label + (" (modelled)" if m.basis == "modelled" else ""), m.unit)
               for m in objective_kpis())
_WIDE = {m.row_field for m in METRICS if m.wide}  # may need a log axis
_MD = tuple(m for m in METRICS if m.md_header is not None)  # the markdown table's KPI columns
_LATENCY = next(m for m in METRICS if m.name == "latency_p50")
_ENERGY = next(m for m in METRICS if m.name == "energy")


def figure_basis(m: KPI, row: dict[str, Any]) -> str:
    """``"measured"`` or ``"modelled"`` for KPI ``m`` on a stored row: from the kind's declared
    capabilities (``fabric.kpis``), so cpu energy (measured time x declared power) reads modelled; a kind
    no longer registered falls back to the row's own ``emulated`` flag."""
    try:
        return m.basis_for(row["kind"])
    except (KeyError, ImportError):
        if m.basis in ("measured", "modelled"):
            return m.basis
        return "modelled" if row.get("emulated") else "measured"


def render_kpi_png(kpis: list[dict[str, Any]], title: str, compression: dict[str, Any] | None = None) -> bytes:
    """One bar panel per objective KPI (accuracy, latency, energy, footprint) per device kind; emulated
    kinds hatched. With ``compression``, one more panel: accuracy of each variant against its non-zero
    weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in kpis if r["status"] == "ok"]
    variants = (compression or {}).get("variants") or []
    n = len(PANELS) + (1 if variants else 0)
    fig, axes = plt.subplots(1, n, figsize=(3.5 * n, 3.4))
    if variants:
        ax = axes[-1]
        for v in variants:
            ax.scatter(v["nonzero_weights"], v["accuracy"], s=30)
            ax.annotate(v["variant"], (v["nonzero_weights"], v["accuracy"]), fontsize=8, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel("non-zero weights", fontsize=9)
        ax.set_title("compression: accuracy (float, test)", fontsize=10)
    for ax, m, (key, label, unit) in zip(axes[:len(PANELS)], objective_kpis(), PANELS, strict=True):
        kinds = [r["kind"] for r in rows]
        vals = [r.get(key) or 0.0 for r in rows]
        bars = ax.bar(kinds, vals, color="#4c72b0")
        if any(r.get(f"{key}_low") is not None for r in rows):  # the constants' band as error bars
            below = [max(v - (r.get(f"{key}_low") if r.get(f"{key}_low") is not None else v), 0.0)
                     for v, r in zip(vals, rows, strict=True)]
            above = [max((r.get(f"{key}_high") if r.get(f"{key}_high") is not None else v) - v, 0.0)
                     for v, r in zip(vals, rows, strict=True)]
            ax.errorbar(kinds, vals, yerr=[below, above], fmt="none", ecolor="#222", capsize=3, linewidth=1)
        for b, r in zip(bars, rows, strict=True):
            if figure_basis(m, r) == "modelled":  # per figure: cpu energy is modelled, its latency measured
                b.set_hatch("//")
        ax.set_title(label + (f" [{unit}]" if unit else ""), fontsize=10)
        if key in _WIDE and vals and min(v for v in vals if v > 0) > 0 and max(vals) / max(min(v for v in vals if v > 0), 1e-12) > 100:
            ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{title} — hatched: modelled figure (energy: every kind; latency: emulated kinds); "
                 "error bars: constants' band", fontsize=10)
    return fig_png(fig)


def fig_png(fig: Any) -> bytes:
    """A finished matplotlib figure as PNG bytes (the one format every stored plot uses); closes it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _dataset_ref(d: dict[str, Any]) -> str:
    """A spec's dataset for a heading: the built-in name, ``version:<id>`` or ``path:<file or URL>``."""
    if d.get("name"):
        return str(d["name"])
    return f"version:{d['version']}" if d.get("version") else f"path:{d.get('path')}"


def band_section(kpis: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: each ok row's time mode and banded figures ``value [low, high]`` with their basis,
    then the ranking sentences (made only where bands do not overlap). Empty when no row has a band."""
    rows = [r for r in kpis if r.get("status") == "ok" and r.get("energy_mj_low") is not None]
    if not rows:
        return []
    banded = [m for m in METRICS if m.band is not None]
    lines = ["", "## Bands and time modes", "",
             "Each modelled figure is the same model evaluated at its constants' low/high band ends "
             "(protocol: docs/measurement.md).", "",
             "| kind | time mode | " + "".join(f"{m.label} {m.unit} [low, high] | " for m in banded),
             "|" + "---|" * (len(banded) + 2)]
    for r in rows:
        lines.append(f"| {r['kind']} | {r.get('time_mode') or '-'} | "
                     + "".join(f"{fmt_band(r, m.row_field)} ({figure_basis(m, r)}) | " for m in banded))
    claims = []
    for m in METRICS:
        if m.band is not None and m.alias is not None:
            as_alias = [{"kind": r["kind"], "status": "ok", m.alias: r.get(m.row_field),
                         f"{m.alias}_low": r.get(f"{m.row_field}_low"), f"{m.alias}_high": r.get(f"{m.row_field}_high")}
                        for r in rows]
            claims += ranking_claims(as_alias, m.alias)
    if claims:
        lines += ["", "Ranking (only where bands do not overlap):", "", *(f"- {c}" for c in claims)]
    return lines


def render_markdown(report: dict[str, Any], png_id: str | None = None) -> str:
    spec = report["spec"]
    lines = [f"# KPI report — {spec['name']}", "",
             f"spec hash `{report['spec_hash'][:12]}` · dataset `{_dataset_ref(spec['dataset'])}` · encoder "
             f"`{spec['encoder']['name']}` (T={spec['encoder']['timesteps']}) · targets {', '.join(spec['targets'])}", "",
             "| kind | mode | " + "".join(f"{m.md_header} | " for m in _MD) + "gates |",
             "|" + "---|" * (len(_MD) + 3)]
    for r in report["kpis"]:
        if r["status"] != "ok":
            lines.append(f"| {r['kind']} | – | {r['status']}: {r['reason']} |" + " |" * (len(_MD) - 1) + " FAIL |")
            continue
        gates = ", ".join(f"{g} {'✅' if ok else '❌'}" for g, ok in r["gates"].items()) or "none set"
        lat, en = figure_basis(_LATENCY, r), figure_basis(_ENERGY, r)
        lines.append(f"| {r['kind']} | {'emulated' if r['emulated'] else 'host'}: latency {lat}, energy {en} | "
                     + "".join(f"{format(r[m.row_field], m.compact)} | " for m in _MD) + f"{gates} |")
    lines += band_section(report["kpis"])
    dep = report.get("deployments") or {}
    lines += ["", "**Deployed** (all gates pass): " + (", ".join(f"{k} (`{v[:12]}`)" for k, v in dep.items()) or "none")]
    held = [r["kind"] for r in report["kpis"] if r["kind"] not in dep]
    if held:
        lines.append("**Not deployed** (a gate failed or the model does not fit): " + ", ".join(held))
    if png_id:
        lines += ["", f"![KPIs per device](artifact:{png_id})"]
    comp = report.get("compression") or {}
    if comp:
        base = comp["variants"][0]
        lines += ["", f"## Compression (deployed variant: {comp['deploy']})", "",
                  "| variant | accuracy | Δ acc | params | non-zero weights | weight bits | KB at precision | synops | how |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for v in comp["variants"]:
            how = ", ".join(f"{k}={x}" for k, x in v["params"].items())
            lines.append(f"| {v['variant']} | {v['accuracy']:.3f} | {v['accuracy'] - base['accuracy']:+.3f} | "
                         f"{v['parameters']} | {v['nonzero_weights']} | {v['weight_bits'] or 32} | "
                         f"{v['weights_bytes_at_precision'] / 1024:.2f} | {v['synops']:.0f} | {how} |")
        lines += ["", comp.get("note", "")]
    golden = report.get("golden") or {}
    if golden:
        lines += ["", "## Golden equivalence", "", "| kind | status | detail |", "|---|---|---|"]
        for k, g in golden.items():
            lines.append(f"| {k} | {g['status']} | {g['summary']} |")
            lines += [f"| {k} ({name}) | {b.get('status', '-')} | {b.get('summary', '')} |"
                      for name, b in (g.get("extra_reference") or {}).items()]
    lines += ["", "## Sources of modelled figures", ""]
    for r in report["kpis"]:
        for what, src in sorted(r.get("sources", {}).items()):
            lines.append(f"- **{r['kind']} {what}**: {src}")
    lines += ["", "## Stages", "", "| stage | artifact | cached | s |", "|---|---|---|---|"]
    for o in report["stages"]:
        lines.append(f"| {o['stage']} | `{o['artifact'][:12]}` | {o['cached']} | {o['seconds']:.2f} |")
    return "\n".join(lines) + "\n"
