"""spinnaker fit: the board's application-core budget (one step over), the sPyNNaker verdict wiring
(refusal text, figures, labelled fallback when the toolchain is absent) and the driver's input check.
sPyNNaker itself is not run here (tests/integration/test_spinnaker_map.py runs it)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from actors.spinnaker import fit as fitmod
from actors.spinnaker.reference import (
    MAP_NETWORK,
    NOT_INSTALLED,
    MapResult,
    SpynnakerUnavailable,
    board_for,
    describe,
    map_network,
)
from fabric.kinds import make_runtime
from fabric.records import FitError
from tests.unit.test_devices import dense_graph, lif


@pytest.fixture(autouse=True)
def no_toolchain(monkeypatch, tmp_path):
    monkeypatch.setenv("FABRIC_SPINNAKER_PYTHON", str(tmp_path / "no-such-python"))
    monkeypatch.delenv("FABRIC_SPINNAKER_MAP", raising=False)


def wide(n: int):
    return dense_graph([2, n], weights=[np.full((n, 2), 0.5)], bias=0)


def test_application_cores_limit_one_step_over_the_board():
    rt = make_runtime("spinnaker")
    p = rt.compile(wide(768), {"neurons_per_core": 1})
    item = next(i for i in p.fit.items if i.name == "application cores")
    assert (item.used, item.limit) == (768, 768)
    with pytest.raises(FitError, match=r"application cores \(board\): 769 cores used > 768"):
        rt.compile(wide(769), {"neurons_per_core": 1})


def test_absent_toolchain_is_labelled_and_the_emulator_estimate_is_used():
    p = make_runtime("spinnaker").compile(wide(300), {"neurons_per_core": 64})
    note = next(n for n in p.fit.notes if NOT_INSTALLED in n)
    assert "the emulator's own estimate" in note and "{'l0': 5}" in note
    assert p.meta["spynnaker"] is None and not any("sPyNNaker" in i.name for i in p.fit.items)


def test_unsupported_board_and_switch_are_labelled(monkeypatch):
    p = make_runtime("spinnaker").compile(wide(10), {"chips": 1})
    assert any("not 1 chips" in n and "emulator's own estimate" in n for n in p.fit.notes)
    monkeypatch.setenv("FABRIC_SPINNAKER_MAP", "off")
    p = make_runtime("spinnaker").compile(wide(10))
    assert any("switched off" in n for n in p.fit.notes)


def test_board_for():
    assert board_for(4) == {"version": 3}
    assert board_for(48) == {"version": 5, "boards": 1} and board_for(96) == {"version": 5, "boards": 2}
    assert board_for(47) is None and board_for(49) is None and board_for(1) is None


def test_map_network_without_python_is_unavailable(tmp_path):
    with pytest.raises(SpynnakerUnavailable, match="not installed"):
        map_network({"populations": []}, python=tmp_path / "nope")


def _fake(result: MapResult, seen: list):
    def run(desc, python=None):
        seen.append(desc)
        return result
    return run


def test_spynnaker_refusal_is_the_fit_error_text(monkeypatch):
    reason = "No more chips to start with for l0 Out of 48 0 already full and 48 tried"
    seen: list = []
    monkeypatch.setattr(fitmod, "map_network", _fake(MapResult(ok=False, reason=reason, report={
        "ok": False, "reason": reason, "spynnaker_version": "1!7.4.1"}), seen))
    with pytest.raises(FitError, match="sPyNNaker 1!7.4.1 mapping on a virtual SpiNN-5 .* refused: No more chips"):
        make_runtime("spinnaker").compile(wide(20))
    assert seen[0]["board"] == {"version": 5, "boards": 1}


def test_spynnaker_figures_go_into_the_fit_report(monkeypatch):
    rep = {"ok": True, "spynnaker_version": "1!7.4.1", "board": {"chips": 48, "router_entries_per_chip": 1023,
           "sdram_per_chip": 123469792}, "populations": {"in": {"cores": 1, "sdram_per_core_max": 512},
           "l0": {"cores": 6, "sdram_per_core_max": 36440}}, "app_cores": 7, "system_cores": 49, "chips_used": 1,
           "routing": {"max_entries_per_chip": 2, "total_entries": 2, "tables": 1}, "sdram_per_chip_max": 99,
           "mapping_s": 0.4}
    monkeypatch.setattr(fitmod, "map_network", _fake(MapResult(ok=True, report=rep), []))
    p = make_runtime("spinnaker").compile(wide(300), {"neurons_per_core": 64})
    assert p.fit.ok and p.meta["spynnaker"] == rep
    text = " ".join(p.fit.notes)
    assert "cores per population {'in': 1, 'l0': 6}" in text and "estimate {'l0': 5}" in text
    assert "2 max per chip (router holds 1023)" in text and "'l0': 36440" in text
    assert "disagree on cores per population (sPyNNaker, emulator): {'l0': (6, 5)}" in text


def test_describe_rebuilds_the_program_weights():
    w = np.array([[0.5, -0.25, 0.0], [0.0, 0.125, 1.0]])
    g = dense_graph([3, 2], weights=[w], bias=0, neurons=[lif(2, thr=0.75)])
    p = make_runtime("spinnaker").compile(g, {"neurons_per_core": 16})
    desc = describe(p.arrays, p.meta["layers"], 3, 16, {"version": 5, "boards": 1})
    assert [(q["label"], q["size"], q["model"]) for q in desc["populations"]] == [
        ("in", 3, "SpikeSourceArray"), ("l0", 2, "IF_curr_delta")]
    l0 = desc["populations"][1]
    assert l0["neurons_per_core"] == 16 and l0["params"]["v_thresh"] == pytest.approx(0.75, abs=2**-15)
    got = {pr["receptor"]: np.array(pr["weights"]) for pr in desc["projections"]}
    assert set(got) == {"excitatory", "inhibitory"} and all(pr["delay_ms"] == 1.0 for pr in desc["projections"])
    sh = p.arrays["l0.shift"]
    np.testing.assert_array_equal(got["excitatory"], p.arrays["l0.ff.exc"] * 2.0 ** (int(sh[0]) - 15))
    assert np.array_equal(got["excitatory"] > 0, w > 0)
    assert np.array_equal(got["inhibitory"] > 0, w < 0)


@pytest.mark.parametrize("desc,field", [
    ({"populations": []}, "populations"),
    ({"populations": [{"label": "a", "size": 0, "model": "IF_curr_exp"}]}, "populations[0].size"),
    ({"populations": [{"label": "a", "size": 2, "model": "Izhikevich"}]}, "populations[0].model"),
    ({"populations": [{"label": "a", "size": 2, "model": "IF_curr_exp"}],
      "projections": [{"pre": "a", "post": "b", "weights": [[1]]}]}, "projections[0].post"),
    ({"populations": [{"label": "a", "size": 2, "model": "IF_curr_exp"}], "board": {"version": 4}}, "board.version"),
])
def test_driver_rejects_a_bad_description_naming_the_field(desc, field):
    proc = subprocess.run([sys.executable, str(MAP_NETWORK)], input=json.dumps(desc), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().startswith(f"map_network: {field}") and len(proc.stderr.strip().splitlines()) == 1
