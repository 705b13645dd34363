"""spinnaker fit: the board's application-core budget (one step over), the sPyNNaker verdict wiring
(refusal text, figures, labelled fallback when the toolchain is absent) and the driver's input check.
sPyNNaker itself is not run here (tests/integration/test_spinnaker_map.py runs it)."""

from __future__ import annotations

import json
import subprocess
import sys

import nir
import numpy as np
import pytest

from actors.spinnaker import fit as fitmod
from actors.spinnaker import reference as refmod
from actors.spinnaker.reference import (
    MAP_NETWORK,
    NOT_INSTALLED,
    TAU_M_MAX,
    MapResult,
    SpynnakerUnavailable,
    board_for,
    describe,
    map_network,
)
from fabric.kinds import make_runtime
from fabric.records import FitError
from tests.unit.test_devices import dense_graph, lif

pytestmark = pytest.mark.spynnaker_map  # these tests are about the sPyNNaker mapping (conftest turns it off)


@pytest.fixture(autouse=True)
def no_toolchain(monkeypatch, tmp_path):
    monkeypatch.setenv("FABRIC_SPINNAKER_PYTHON", str(tmp_path / "no-such-python"))
    monkeypatch.delenv("FABRIC_SPINNAKER_MAP", raising=False)


def wide(n: int):
    return dense_graph([2, n], weights=[np.full((n, 2), 0.5)], bias=0)


@pytest.mark.parametrize("chips,budget", [(48, 759), (4, 63), (96, 1518)])
def test_application_cores_limit_one_step_over_the_board(chips, budget):
    """sPyNNaker's budget (SpiNN-5: 856 cores - 2 monitors x 48 chips - 1 gatherer = 759), the host
    input's core counted: budget - 1 one-neuron-per-core neurons fit, one more is refused."""
    rt = make_runtime("spinnaker")
    p = rt.compile(wide(budget - 1), {"neurons_per_core": 1, "chips": chips})
    item = next(i for i in p.fit.items if i.name == "application cores")
    assert (item.used, item.limit) == (budget, budget)
    assert any(f"= {budget} application cores" in n for n in p.fit.notes)
    with pytest.raises(FitError, match=rf"application cores \(board\): {budget + 1} cores used > {budget}"):
        rt.compile(wide(budget), {"neurons_per_core": 1, "chips": chips})


def test_app_core_budget_derivation_and_other_chip_counts():
    lim = make_runtime("spinnaker").constants.limits
    assert fitmod.app_core_budget(48, lim)[:2] == (48 * 18 - 8 - 2 * 48 - 1, 1)
    assert fitmod.app_core_budget(4, lim)[:2] == (4 * 18 - 2 * 4 - 1, 1)
    assert fitmod.app_core_budget(10, lim)[:2] == (160, 0)  # no sPyNNaker board: 16 per chip, as before


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


def test_if_maps_to_the_longest_tau_m_spynnaker_accepts():
    """A plain IF (no leak) has no sPyNNaker model; it maps with the largest s16.15 tau_m, not one that
    fails sPyNNaker's conversion (1e6 did); a very slow LIF is clamped the same."""
    g = dense_graph([3, 2], weights=[np.ones((2, 3))], bias=0,
                    neurons=[nir.IF(r=np.ones(2), v_threshold=np.ones(2))])
    p = make_runtime("spinnaker").compile(g)
    tau = describe(p.arrays, p.meta["layers"], 3, 256, {"version": 5, "boards": 1})["populations"][1]["params"]["tau_m"]
    assert tau == TAU_M_MAX and TAU_M_MAX < 2**16 - 2**-15
    p = make_runtime("spinnaker").compile(dense_graph([3, 2], neurons=[lif(2, beta=1 - 1e-7)]))
    tau = describe(p.arrays, p.meta["layers"], 3, 256, {"version": 5, "boards": 1})["populations"][1]["params"]["tau_m"]
    assert tau == TAU_M_MAX


def _fake_toolchain(tmp_path, monkeypatch, reports: list) -> list:
    """An executable 'python' and a driver stand-in that counts its runs and returns ``reports[0]``."""
    py = tmp_path / "python"
    py.write_text("#!/bin/sh\nexit 0\n")
    py.chmod(0o755)
    runs: list = []

    def run(desc, python, timeout_s):
        runs.append(desc)
        return dict(reports[0])
    monkeypatch.setattr(refmod, "_run_driver", run)
    monkeypatch.setenv("FABRIC_SPINNAKER_PYTHON", str(py))
    return runs


def test_report_cache_is_keyed_by_the_description(tmp_path, monkeypatch):
    monkeypatch.setenv("FABRIC_SPINNAKER_CACHE", str(tmp_path / "cache"))
    runs = _fake_toolchain(tmp_path, monkeypatch, [{"ok": False, "reason": "no room", "spynnaker_version": "x"}])
    desc = {"populations": [{"label": "in", "size": 2, "model": "SpikeSourceArray"}], "board": {"version": 3}}
    first = map_network(desc)
    again = map_network(json.loads(json.dumps(desc)))
    assert len(runs) == 1 and (first.report["cached"], again.report["cached"]) == (False, True)
    assert (again.ok, again.reason) == (False, "no room")
    map_network({**desc, "board": {"version": 5, "boards": 1}})
    assert len(runs) == 2 and len(list((tmp_path / "cache").glob("*.json"))) == 2
    monkeypatch.setenv("FABRIC_SPINNAKER_CACHE", "off")
    map_network(desc)
    assert len(runs) == 3


def test_a_torn_cache_entry_maps_afresh(tmp_path, monkeypatch):
    monkeypatch.setenv("FABRIC_SPINNAKER_CACHE", str(tmp_path / "cache"))
    runs = _fake_toolchain(tmp_path, monkeypatch, [{"ok": True, "spynnaker_version": "x"}])
    desc = {"populations": [{"label": "in", "size": 2, "model": "SpikeSourceArray"}]}
    map_network(desc)
    (entry,) = (tmp_path / "cache").glob("*.json")
    entry.write_text("{tor")
    assert map_network(desc).ok and len(runs) == 2 and json.loads(entry.read_text())["ok"] is True


def test_the_mapper_is_named_but_is_no_golden_reference():
    """sPyNNaker's virtual board runs no spikes: no golden stage for spinnaker (it stays 'no reference')."""
    from fabric.kinds import capabilities
    rt = make_runtime("spinnaker")
    assert capabilities("spinnaker").reference is None and "sPyNNaker 1!7.4.1's mapper" in rt.emulation
