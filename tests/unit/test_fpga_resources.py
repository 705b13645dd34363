"""fpga honesty (issue #16 item 6): the per-SOP energy is an FPGA measurement, and only the resource
check that can fail (BRAM) is a fit check; LUT and DSP are reported estimates.

Why: a fit check that can never trigger reads like evidence that a network fits; these tests fail if
the constants change so that LUT or DSP could exceed a listed part (then they must be checked again).
"""

from __future__ import annotations

import numpy as np

from actors.fpga.runtime import estimate_resources, max_resources
from fabric.ir.recurrent import build_recurrent_graph
from fabric.kinds import make_runtime


def test_lut_and_dsp_cannot_exceed_any_part_within_reckon_limits() -> None:
    c = make_runtime("fpga").constants
    worst = max_resources(c)
    for part, res in c.limits["parts"].items():
        assert worst["lut"] < res["lut"], part
        assert worst["dsp"] < res["dsp"], part
    # ... while BRAM can: the full 256/256/16 recurrent core needs more than the smallest part has
    smallest = min(r["bram36"] for r in c.limits["parts"].values())
    assert worst["bram36"] > smallest


def test_bram_estimate_one_step_over_a_part() -> None:
    c = make_runtime("fpga").constants
    # 112 * 256 / 4096 = 7 blocks; 113 inputs need an 8th: 25 -> 26 against xc7a15t's 25
    assert estimate_resources(112, 256, 16, True, c)["bram36"] == 25
    assert estimate_resources(113, 256, 16, True, c)["bram36"] == 26
    assert c.limits["parts"]["xc7a15t"]["bram36"] == 25


def test_fit_report_checks_bram_only_and_reports_lut_dsp() -> None:
    rng = np.random.default_rng(0)
    g = build_recurrent_graph(rng.normal(0, 0.5, (32, 24)), rng.normal(0, 0.1, (32, 32)),
                              rng.normal(0, 0.3, (3, 32)), output="li", beta=0.9)
    prog = make_runtime("fpga").compile(g)
    names = [item.name for item in prog.fit.items]
    assert "BRAM36 (estimate)" in names
    assert not any(n.startswith(("LUT", "DSP")) for n in names)
    assert any("LUT/DSP are not checked" in n for n in prog.fit.notes)
    assert set(prog.meta["resources"]) == {"lut", "bram36", "dsp"}


def test_sop_energy_is_an_fpga_measurement_with_a_doi() -> None:
    c = make_runtime("fpga").constants
    src = c.sources()["e_sop_j"]
    assert "10.1109/TVLSI.2013.2294916" in src and "FPGA" in src
    # 1.5 W / 19e6 events/s, the measured Minitaur figure
    assert abs(c.value("e_sop_j") - 1.5 / 19e6) / (1.5 / 19e6) < 0.01
