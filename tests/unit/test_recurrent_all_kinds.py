"""One trained recurrent model (a LIF layer fed back through W_rec) runs on every kind: cpu (float
reference), loihi (fixed point with a recurrent Dense), spinnaker, fpga, dynapse, and akida through the
hybrid fallback (the recurrent layer on cpu, the feed-forward readout on Akida). No Ray."""

from __future__ import annotations

import nir
import numpy as np
import pytest
from sklearn.datasets import load_digits

from actors.loihi.fixed import FixedLayer, emulate, quantize_layer
from fabric.ir.lowering import Layer
from fabric.ir.recurrent import build_recurrent_graph, train_recurrent
from fabric.kinds import make_runtime
from fabric.records import FitError, Program

T = 10
DEVICE_OPTIONS = {"akida": {"fallback": "hybrid"}, "dynapse": {"mismatch_cv": 0.0}}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    d = load_digits()
    rng = np.random.default_rng(0)
    x = (rng.random((400, T, 64)) < 0.6 * (d.data[:400] / 16.0)[:, None, :]).astype(np.float32)
    return x[:300], d.target[:300], x[300:], d.target[300:400]


@pytest.fixture(scope="module")
def trained(data) -> nir.NIRGraph:
    x, y, _, _ = data
    return train_recurrent(x, y, n_hidden=32, epochs=8, lr=0.01, seed=0)


@pytest.fixture(scope="module")
def cpu_result(trained, data):
    rt = make_runtime("cpu")
    rt.load(rt.compile(trained))
    return rt.run(data[2])


def test_cpu_runs_the_recurrent_model_well_above_chance(cpu_result, data):
    acc = float(np.mean(cpu_result.predictions == data[3]))
    assert acc >= 0.5  # 10 classes: chance is 0.1
    assert cpu_result.telemetry.synaptic_ops > 0


@pytest.mark.parametrize("kind,max_drop,min_agree", [
    ("loihi", 0.08, 0.80), ("spinnaker", 0.05, 0.90), ("fpga", 0.08, 0.80), ("dynapse", 0.10, 0.70),
    ("akida", 0.10, 0.70),
])
def test_every_kind_runs_the_recurrent_model(kind, max_drop, min_agree, trained, cpu_result, data):
    _, _, xt, yt = data
    rt = make_runtime(kind)
    prog = rt.compile(trained, DEVICE_OPTIONS.get(kind, {}))
    rt.load(Program.from_bytes(prog.to_bytes()))
    res = rt.run(xt)
    ref_acc = float(np.mean(cpu_result.predictions == yt))
    acc = float(np.mean(res.predictions == yt))
    agree = float(np.mean(res.predictions == cpu_result.predictions))
    assert acc >= ref_acc - max_drop, f"{kind}: accuracy {acc:.2f} vs float reference {ref_acc:.2f}"
    assert agree >= min_agree, f"{kind}: agreement with the float reference {agree:.2f}"
    assert res.telemetry.synaptic_ops > 0 and res.telemetry.energy_j > 0


def test_akida_refuses_recurrence_and_names_the_hybrid_fallback(trained, data):
    with pytest.raises(FitError, match="recurrent layers.*fallback='hybrid'"):
        make_runtime("akida").compile(trained)
    rt = make_runtime("akida")
    prog = rt.compile(trained, {"fallback": "hybrid"})
    fb = prog.meta["fallback"]
    assert fb["kind"] == "cpu" and fb["unsupported"] == ["rlif"] and "rlif" in fb["prefix_nodes"]
    assert "maps no recurrence" in fb["reasons"]["rlif"]
    assert any(n.startswith("hybrid fallback") for n in prog.fit.notes)
    rt.load(prog)
    tel = rt.run(data[2][:20]).telemetry
    assert rt.health()["fallback"] == "cpu"
    assert tel.energy_breakdown_j["fallback_cpu"] > 0 and "leading layers ran on kind 'cpu'" in tel.sources["fallback"]
    assert any(k.startswith("cpu:") for k in tel.spikes_per_layer)


def _rec_graph(w_rec: np.ndarray, seed: int = 1) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    return build_recurrent_graph(rng.normal(0, 0.4, (16, 24)), w_rec, rng.normal(0, 0.5, (6, 16)),
                                 b_in=rng.normal(0, 0.05, 16))


def test_loihi_zero_recurrent_weights_reproduce_the_feed_forward_path_bit_for_bit():
    """The recurrent loop adds nothing when W_rec = 0: its raster equals the Lava-verified chain's."""
    rng = np.random.default_rng(2)
    x = (rng.random((8, 15, 24)) < 0.3).astype(np.float32)
    rt = make_runtime("loihi")
    prog = rt.compile(_rec_graph(np.zeros((16, 16))))
    rt.load(prog)
    a = rt.run(x, record_raster=True)
    assert "l0.rec_weights" in prog.arrays
    ff = {k: v for k, v in prog.arrays.items() if "rec_weights" not in k}
    meta = {**prog.meta, "layers": [{k: v for k, v in m.items() if k != "rec_weight_exp"} for m in prog.meta["layers"]]}
    rt2 = make_runtime("loihi")
    rt2.load(Program(kind="loihi", arrays=ff, meta=meta, fit=prog.fit))
    b = rt2.run(x, record_raster=True)
    np.testing.assert_array_equal(a.raster, b.raster)


def _reference_lif_rec(fl: FixedLayer, x: np.ndarray) -> np.ndarray:
    """Step-by-step integer transcription of Lava's Dense (ff and recurrent) + PyLifModelBitAcc."""
    from actors.loihi.fixed import effective_bias, effective_weights

    w = effective_weights(fl.weights, fl.num_weight_bits)
    wr = effective_weights(fl.rec_weights, fl.num_weight_bits)
    bias = effective_bias(fl.bias_mant, fl.bias_exp)

    def shift(a: np.ndarray, e: int) -> np.ndarray:
        return a << e if e >= 0 else a >> -e

    def wrap32(a: np.ndarray) -> np.ndarray:
        return (a + 2**31) % 2**32 - 2**31

    def decay(a: np.ndarray, c: int) -> np.ndarray:
        return np.sign(a * c) * (np.abs(a * c) >> 12)

    bsz, steps, _ = x.shape
    u = np.zeros((bsz, fl.n_out), np.int64)
    v = np.zeros((bsz, fl.n_out), np.int64)
    a_ff = np.zeros((bsz, fl.n_out), np.int64)
    s = np.zeros((bsz, fl.n_out), np.int64)
    out = np.zeros((bsz, steps, fl.n_out), np.uint8)
    for t in range(steps):
        a_in = a_ff + shift(s @ wr.T, fl.rec_weight_exp)  # both Dense send last step's accumulation
        a_ff = shift(x[:, t].astype(np.int64) @ w.T, fl.weight_exp)
        u = wrap32(decay(u, 4096 - (fl.du + 1)) + (a_in << 6))
        u = np.where(u > 2**23, u - 2**24, np.where(u <= -(2**23), u + 2**24, u))
        v = np.clip(wrap32(decay(v, 4096 - fl.dv) + u + bias), -(2**23 - 1), 2**23 - 1)
        s = (v > fl.vth << 6).astype(np.int64)
        v = np.where(s > 0, 0, v)
        out[:, t] = s
    return out


def test_loihi_recurrent_emulation_matches_an_integer_transcription_of_lava():
    rng = np.random.default_rng(4)
    layer = Layer(name="fc->rlif", weight=rng.normal(0, 0.5, (12, 20)), bias=rng.normal(0, 0.05, 12), neuron="lif",
                  params={"tau": np.full(12, 0.01), "r": np.full(12, 10.0), "v_leak": np.zeros(12),
                          "v_threshold": np.ones(12), "v_reset": np.zeros(12)},
                  recurrent=rng.normal(0, 0.4, (12, 12)))
    fl, rep = quantize_layer(layer, 1e-3)
    assert fl.rec_weights is not None and any("recurrent Dense" in n for n in rep.notes)
    x = (rng.random((6, 30, 20)) < 0.4).astype(np.uint8)
    em = emulate([fl], x)
    ref = _reference_lif_rec(fl, x)
    assert ref.sum() > 0
    np.testing.assert_array_equal(em.rasters[0], ref)


def test_golden_refuses_recurrent_loihi_program_with_reason():
    """The Lava runner builds feed-forward chains only: a recurrent program must be refused, not mis-compared."""
    from actors.loihi.golden import GoldenUnavailable, run_lava

    rng = np.random.default_rng(0)
    graph = build_recurrent_graph(rng.normal(0, 0.4, (8, 16)), rng.normal(0, 0.1, (8, 8)), rng.normal(0, 0.5, (3, 8)))
    prog = make_runtime("loihi").compile(graph)
    x = np.zeros((1, 4, 16), dtype=np.uint8)
    with pytest.raises(GoldenUnavailable, match="recurrent Dense"):
        run_lava([(prog, x)], python="/nonexistent/python")
