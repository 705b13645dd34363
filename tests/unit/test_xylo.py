"""xylo kind: Xylo Audio 2 limits one step over, compile via rockpool's mapper, bit-exact vs XyloSim."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from actors.xylo.runtime import XyloRuntime
from fabric.kinds import capabilities, kinds
from fabric.records import FitError


def _graph(n_in: int, n_hid: int, n_out: int, seed: int = 0, rec: bool = False) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)

    def lif(n: int) -> nir.LIF:
        tau = rng.uniform(4e-3, 3e-2, n)
        return nir.LIF(tau=tau, r=tau / 1e-3, v_leak=np.zeros(n), v_threshold=rng.uniform(0.5, 2.0, n),
                       v_reset=np.zeros(n))

    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])}),
             "fc0": nir.Linear(weight=rng.normal(0, 0.6, (n_hid, n_in))), "lif0": lif(n_hid),
             "fc1": nir.Linear(weight=rng.normal(0, 0.6, (n_out, n_hid))), "lif1": lif(n_out),
             "output": nir.Output(output_type={"output": np.array([n_out])})}
    edges = [("input", "fc0"), ("fc0", "lif0"), ("lif0", "fc1"), ("fc1", "lif1"), ("lif1", "output")]
    if rec:
        nodes["rec"] = nir.Linear(weight=rng.normal(0, 0.3, (n_hid, n_hid)) * (rng.random((n_hid, n_hid)) < 0.3))
        edges += [("lif0", "rec"), ("rec", "lif0")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def test_registered_with_capabilities():
    assert "xylo" in kinds()
    caps = capabilities("xylo")
    assert caps.weight_bits == 8 and caps.reference and caps.time_mode == "realtime" and caps.needs_resource


@pytest.mark.parametrize(("shape", "limit"), [((17, 10, 4), "input channels"), ((16, 1001, 4), "hidden neurons"),
                                              ((16, 10, 9), "output neurons")])
def test_one_over_each_limit_is_refused_naming_it(shape, limit):
    with pytest.raises(FitError, match=limit):
        XyloRuntime().compile(_graph(*shape))


def test_at_the_limits_compiles():
    prog = XyloRuntime().compile(_graph(16, 1000, 8))
    assert prog.meta["n_in"] == 16 and prog.meta["n_hidden"] == 1000 and prog.meta["n_out"] == 8
    assert np.abs(prog.arrays["w_in"]).max() <= 127


def test_three_layers_refused():
    g = _graph(4, 6, 2)
    nodes = dict(g.nodes)
    nodes["fc2"], nodes["lif2"] = nir.Linear(weight=np.ones((2, 2))), nir.LIF(
        tau=np.full(2, 0.01), r=np.full(2, 10.0), v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2))
    edges = [e for e in g.edges if e != ("lif1", "output")] + [("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    with pytest.raises(FitError, match="neuron layers = 3"):
        XyloRuntime().compile(nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3}))


def test_random_networks_bit_exact_vs_xylosim():
    rt = XyloRuntime()
    statuses, spikes = [], 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        shape = (int(rng.integers(1, 17)), int(rng.integers(2, 40)), int(rng.integers(1, 9)))
        prog = rt.compile(_graph(*shape, seed=seed, rec=bool(seed % 2)))
        x = rng.poisson(0.8, (2, 40, shape[0]))
        rep = rt.reference_check(prog, x)
        statuses.append(rep["status"])
        rt.load(prog)
        spikes += int(rt.run(x).counts.sum())
    assert statuses == ["bit-exact"] * 20
    assert spikes > 0  # the comparison is not between silent networks


def test_mismatch_is_reported(monkeypatch):
    import actors.xylo.reference as ref

    rt = XyloRuntime()
    prog = rt.compile(_graph(8, 12, 3, seed=3))
    x = np.random.default_rng(0).poisson(1.0, (1, 40, 8))
    real = ref.evolve

    def off_by_one(spec, xs):  # an emulator that fires one extra output spike
        out, hid = real(spec, xs)
        out = out.copy()
        out[0, 5, 0] ^= 1
        return out, hid

    monkeypatch.setattr(ref, "evolve", off_by_one)
    rep = rt.reference_check(prog, x)
    assert rep["status"] == "mismatch" and rep["mismatches"] == 1
    assert rep["first_mismatch"]["step"] == 5 and rep["first_mismatch"]["output"] == 0


def test_trained_like_lif_mlp_round_trip_and_energy_label():
    import torch

    from fabric.model.snn import LifMLP, export_nir

    torch.manual_seed(0)
    model = LifMLP(16, [24], 4, beta=0.9, threshold=1.0)
    rt = XyloRuntime()
    prog = rt.compile(export_nir(model))
    assert any("biases are not transferred" in n for n in prog.fit.notes)
    rt.load(prog)
    x = (np.random.default_rng(1).random((3, 30, 16)) < 0.3).astype(np.float32)
    res = rt.run(x)
    assert res.counts.shape == (3, 4)
    tel = res.telemetry
    assert tel.device_time_s == pytest.approx(3 * 30 * 1e-3)
    assert tel.energy_j == pytest.approx(2.91e-4 * 3 * 30 * 1e-3)
    assert tel.sources["energy"].startswith("modelled")
    assert rt.reference_check(prog, x)["status"] == "bit-exact"
