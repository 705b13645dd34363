"""cpu energy is modelled (measured time x declared power), its latency measured; emulated kinds model
both. Serve, the dashboard legend and the PNG/Markdown report take that from ``fabric.kpis`` (issue #16
item 10), never from a kind's name."""

from __future__ import annotations

from fabric.kinds import capabilities
from fabric.kpis import METRICS, by_name
from fabric.report import figure_basis, render_markdown

ENERGY, LATENCY = by_name("energy"), by_name("latency_p50")


def _row(kind: str, emulated: bool) -> dict:
    return {"kind": kind, "status": "ok", "emulated": emulated, "passed": True, "gates": {},
            **{m.row_field: 1.0 for m in METRICS}}


def test_serve_labels_cpu_energy_modelled_and_emulated_kinds_unchanged():
    from serve._private.kpi import figure_labels

    cpu = figure_labels("cpu", emulated=False)
    assert cpu["energy_is"] == "modelled" and cpu["latency_is"] == capabilities("cpu").latency == "measured"
    assert cpu["figures"] == "latency measured, energy modelled" and "measured\"" not in repr(cpu["figures"])
    loihi = figure_labels("loihi", emulated=True)
    assert loihi == {"figures": "modelled (emulated device)", "latency_is": "modelled", "energy_is": "modelled"}


def test_dashboard_legend_marks_cpu_energy_modelled():
    from apps._dashboard import _data as D

    report = {"kpis": [_row("cpu", False), _row("loihi", True)]}
    cmp = D.comparison(report).set_index(["kind", "metric"])["mode"]
    assert cmp["cpu", "energy_mj"] == "modelled" and cmp["cpu", "latency_p50_ms"] == "measured"
    assert cmp["loihi", "energy_mj"] == "emulated (modelled)"
    assert set(cmp) <= set(D.FIGURE_MODES)


def test_report_hatches_and_labels_cpu_energy_as_modelled(monkeypatch):
    assert figure_basis(ENERGY, _row("cpu", False)) == "modelled"
    assert figure_basis(LATENCY, _row("cpu", False)) == "measured"
    assert figure_basis(LATENCY, _row("loihi", True)) == "modelled"
    # a kind no longer registered: the row's own emulated flag decides latency; energy stays modelled
    assert figure_basis(LATENCY, _row("gone", False)) == "measured" and figure_basis(ENERGY, _row("gone", False)) == "modelled"

    import matplotlib.axes

    hatched: list[tuple[str, str]] = []
    real_bar = matplotlib.axes.Axes.bar

    def bar(self, x, h, **kw):
        bars = real_bar(self, x, h, **kw)
        orig = [b.set_hatch for b in bars]
        for b, k, f in zip(bars, x, orig, strict=True):
            b.set_hatch = (lambda hatch, k=k, f=f, ax=self: (hatched.append((ax, k)), f(hatch)))
        return bars

    monkeypatch.setattr(matplotlib.axes.Axes, "bar", bar)
    from fabric.report import render_kpi_png

    png = render_kpi_png([_row("cpu", False), _row("loihi", True)], "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    by_panel: dict[str, set[str]] = {}
    for ax, k in hatched:
        by_panel.setdefault(ax.get_title(), set()).add(k)
    energy = next(t for t in by_panel if t.startswith("energy"))
    assert by_panel[energy] == {"cpu", "loihi"}  # cpu energy bar hatched: modelled
    latency = next(t for t in by_panel if t.startswith("latency"))
    assert by_panel[latency] == {"loihi"}  # cpu latency is measured


def test_markdown_mode_column_says_cpu_energy_is_modelled():
    report = {"spec": {"name": "t", "dataset": {"name": "digits"}, "encoder": {"name": "rate", "timesteps": 8},
                       "targets": ["cpu", "loihi"]}, "spec_hash": "0" * 64, "stages": [],
              "kpis": [_row("cpu", False), _row("loihi", True)]}
    md = render_markdown(report)
    assert "| cpu | host: latency measured, energy modelled |" in md
    assert "| loihi | emulated: latency modelled, energy modelled |" in md
