"""The cross-device report (Markdown + PNG bars) built from a stored KPI report; computes nothing new."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["render_markdown", "render_kpi_png"]

PANELS = (("accuracy", "accuracy", ""), ("latency_p50_ms", "latency p50", "ms"),
          ("energy_mj", "energy / inference (modelled)", "mJ"), ("footprint_kb", "footprint", "KB"))


def render_kpi_png(kpis: list[dict[str, Any]], title: str) -> bytes:
    """Four bar panels (accuracy, latency, energy, footprint) per device kind; emulated kinds hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in kpis if r["status"] == "ok"]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4))
    for ax, (key, label, unit) in zip(axes, PANELS, strict=True):
        kinds = [r["kind"] for r in rows]
        vals = [r.get(key) or 0.0 for r in rows]
        bars = ax.bar(kinds, vals, color="#4c72b0")
        for b, r in zip(bars, rows, strict=True):
            if r.get("emulated"):
                b.set_hatch("//")
        ax.set_title(label + (f" [{unit}]" if unit else ""), fontsize=10)
        if key in ("latency_p50_ms", "energy_mj") and vals and min(v for v in vals if v > 0) > 0 and max(vals) / max(min(v for v in vals if v > 0), 1e-12) > 100:
            ax.set_yscale("log")
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{title} — hatched: emulated device (modelled latency/energy)", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def render_markdown(report: dict[str, Any], png_id: str | None = None) -> str:
    spec = report["spec"]
    lines = [f"# KPI report — {spec['name']}", "",
             f"spec hash `{report['spec_hash'][:12]}` · dataset `{spec['dataset']['name']}` · encoder "
             f"`{spec['encoder']['name']}` (T={spec['encoder']['timesteps']}) · targets {', '.join(spec['targets'])}", "",
             "| kind | mode | accuracy | latency p50 ms | latency p99 ms | energy mJ (modelled) | spikes/inf | KB | gates |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["kpis"]:
        if r["status"] != "ok":
            lines.append(f"| {r['kind']} | – | {r['status']}: {r['reason']} | | | | | | FAIL |")
            continue
        gates = ", ".join(f"{g} {'✅' if ok else '❌'}" for g, ok in r["gates"].items()) or "none set"
        lines.append(f"| {r['kind']} | {'emulated' if r['emulated'] else 'measured'} | {r['accuracy']:.3f} | "
                     f"{r['latency_p50_ms']:.4g} | {r['latency_p99_ms']:.4g} | {r['energy_mj']:.4g} | "
                     f"{r['spikes_per_inference']:.1f} | {r['footprint_kb']:.1f} | {gates} |")
    if png_id:
        lines += ["", f"![KPIs per device](artifact:{png_id})"]
    lines += ["", "## Sources of modelled figures", ""]
    for r in report["kpis"]:
        for what, src in sorted(r.get("sources", {}).items()):
            lines.append(f"- **{r['kind']} {what}**: {src}")
    lines += ["", "## Stages", "", "| stage | artifact | cached | s |", "|---|---|---|---|"]
    for o in report["stages"]:
        lines.append(f"| {o['stage']} | `{o['artifact'][:12]}` | {o['cached']} | {o['seconds']:.2f} |")
    return "\n".join(lines) + "\n"
