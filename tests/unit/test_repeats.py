"""Repeated-seed statistics (issue #19 item 2, pure part): Student-t intervals on known values and
gates on an interval bound (``on: lower_ci``), one step over and under the limit."""

from __future__ import annotations

import math

import pytest

from fabric import kpis as K


def test_student_t_interval_known_values():
    s = K.repeat_stats([1, 2, 3, 4, 5])
    # t(0.975, df=4) = 2.776445; std = sqrt(2.5) = 1.581139; half = 2.776445 * 1.581139 / sqrt(5) = 1.963243
    assert s["n"] == 5 and s["mean"] == 3.0 and s["std"] == pytest.approx(math.sqrt(2.5))
    assert s["lower_ci"] == pytest.approx(3 - 1.963243, abs=1e-6) and s["upper_ci"] == pytest.approx(3 + 1.963243, abs=1e-6)
    two = K.repeat_stats([0.8, 0.9])  # t(0.975, 1) = 12.706205; std = 0.070711; half = 0.635310
    assert two["lower_ci"] == pytest.approx(0.85 - 0.635310, abs=1e-6)
    assert K.repeat_stats([0.9, 0.9, 0.9])["lower_ci"] == pytest.approx(0.9)  # no spread: no width
    one = K.repeat_stats([0.7])
    assert one["std"] == 0.0 and one["lower_ci"] == one["upper_ci"] == 0.7
    assert K.repeat_stats([1, 2, 3, 4, 5], confidence=0.9)["upper_ci"] < s["upper_ci"]
    with pytest.raises(ValueError):
        K.repeat_stats([])


def _row(**kw):
    return {"status": "ok", **kw}


def test_gate_on_lower_ci_one_step_over_and_under():
    spec = {"min_accuracy": 0.85, "on": "lower_ci"}
    step = 1e-6
    row = _row(accuracy=0.90)  # the point estimate passes either way
    over = {"accuracy": {"mean": 0.90, "lower_ci": 0.85 + step, "upper_ci": 0.95}}
    at = {"accuracy": {"mean": 0.90, "lower_ci": 0.85, "upper_ci": 0.95}}
    under = {"accuracy": {"mean": 0.90, "lower_ci": 0.85 - step, "upper_ci": 0.95}}
    assert K.gates(spec, row, over) == {"accuracy": True}
    assert K.gates(spec, row, at) == {"accuracy": True}  # at the limit passes, as for point estimates
    assert K.gates(spec, row, under) == {"accuracy": False}
    assert K.gates({"min_accuracy": 0.85}, row, under) == {"accuracy": True}  # default on: mean = today's gate
    assert K.gates(spec, row) == {"accuracy": True}  # no repeat stats: the point estimate
    assert K.gates(spec, row, under, on="mean") == {"accuracy": True}


def test_gate_worst_ci_takes_the_conservative_side_per_direction():
    spec = {"min_accuracy": 0.85, "max_energy_mj": 1.0, "on": "worst_ci"}
    row = _row(accuracy=0.9, energy_mj=0.9)
    stats = {"accuracy": K.repeat_stats([0.86, 0.9, 0.94]), "energy_mj": {"lower_ci": 0.8, "upper_ci": 1.0 + 1e-6}}
    assert K.gates(spec, row, stats) == {"accuracy": False, "energy": False}
    with pytest.raises(ValueError, match="kpis.on"):
        K.gates({"on": "median"}, row, stats)


# -- the run summary and the dashboard read the repeats section (issue #19 items 2 and 4) ------------------
def _report(with_repeats: bool = True) -> dict:
    kinds = {"loihi": {"accuracy": K.repeat_stats([0.94, 0.95, 0.952]) | {"values": [0.94, 0.95, 0.952]},
                       "energy_mj": K.repeat_stats([1e-3, 1.2e-3, 1.1e-3]) | {"values": [1e-3, 1.2e-3, 1.1e-3]}}}
    rep = {"kpis": [{"kind": "loihi", "status": "ok", "emulated": True, "accuracy": 0.94, "energy_mj": 1e-3,
                     "passed": True, "gates": {"accuracy": True}},
                    {"kind": "akida", "status": "does not fit", "reason": "too big"}]}
    if with_repeats:
        rep["repeats"] = {"n": 3, "confidence": 0.95, "seeds": [0, 1, 2], "kinds": kinds, "notes": {}}
    return rep


def test_interval_text_and_repeats_section():
    st = K.repeat_stats([0.94, 0.95, 0.952])
    assert K.fmt_interval(st) == f"{st['mean']:.3f} ± {st['std']:.3f} [{st['lower_ci']:.3f}, {st['upper_ci']:.3f}]"
    text = K.format_repeats(_report()["repeats"])
    assert text.startswith("repeats (3 seeds [0, 1, 2], mean ± std [95% Student-t CI], test split):")
    assert f"loihi: accuracy {K.fmt_interval(st)}" in text
    assert K.gates_on_note("lower_ci", False).startswith("gates on: point estimate (kpis.on: lower_ci needs repeats")
    assert K.gates_on_note("lower_ci", True) == "gates on: lower_ci of the repeated-seed interval"
    assert K.gates_on_note("mean", False) == ""


def test_dashboard_intervals_table_and_error_bars():
    from apps._dashboard import _data as D

    rep = _report()
    iv = D.kpi_intervals(rep).set_index(["kind", "metric"])
    acc = rep["repeats"]["kinds"]["loihi"]["accuracy"]
    assert list(iv.index) == [("loihi", "accuracy"), ("loihi", "energy_mj")]
    assert iv.loc[("loihi", "accuracy"), "n"] == 3 and iv.loc[("loihi", "accuracy"), "ci_low"] == acc["lower_ci"]
    assert iv.loc[("loihi", "accuracy"), "interval"] == K.fmt_interval(acc)
    cmp = D.comparison(rep).set_index(["kind", "metric"])
    assert cmp.loc[("loihi", "accuracy"), "value"] == 0.94  # the bar stays the run's own figure
    assert cmp.loc[("loihi", "accuracy"), "ci_high"] == acc["upper_ci"]
    assert cmp.loc[("loihi", "energy_mj"), "mean"] == pytest.approx(1.1e-3)
    kp = D.run_kpis(rep).set_index("kind")
    assert kp.loc["loihi", "accuracy ±CI"] == K.fmt_interval(acc)
    # one seed: no interval columns, NaN error bars, an empty intervals table
    plain = _report(with_repeats=False)
    assert D.kpi_intervals(plain).empty and "accuracy ±CI" not in D.run_kpis(plain)
    assert D.comparison(plain)["ci_low"].isna().all()
