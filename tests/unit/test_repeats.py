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
