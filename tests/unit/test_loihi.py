"""The loihi kind without Ray or Lava: fit limits, quantization, telemetry, emulator semantics.

The emulator is checked here against a line-by-line numpy transcription of Lava 0.10's bit-accurate
process models (and in tests/integration/test_loihi_golden.py against Lava itself).
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from actors.base.energy import load_constants
from actors.loihi.fixed import (
    FixedLayer,
    effective_weights,
    emulate,
    fixed_program,
    quantize_layer,
    synapse_bits_per_axon,
)
from actors.loihi.golden import GoldenUnavailable, golden_check
from actors.loihi.runtime import HANDLERS, LoihiRuntime
from fabric.cli.program import compile_cmd, simulate_cmd
from fabric.ir.lowering import UnsupportedNodeError, lower
from fabric.kinds import make_runtime, registry
from fabric.model.snn import LifMLP, export_nir, simulate_layers
from fabric.records import FitError, Program

# --------------------------------------------------------------------------- helpers


def chain(layers: list[tuple[np.ndarray, np.ndarray, nir.NIRNode]], dt: float = 1e-3) -> nir.NIRGraph:
    """Input -> (Affine -> neuron)* -> Output from explicit weights and neuron nodes."""
    n_in = layers[0][0].shape[1]
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    edges, prev = [], "input"
    for i, (w, b, neuron) in enumerate(layers):
        nodes[f"fc{i}"] = nir.Affine(weight=np.asarray(w, dtype=np.float32), bias=np.asarray(b, dtype=np.float32))
        nodes[f"n{i}"] = neuron
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"n{i}")]
        prev = f"n{i}"
    nodes["output"] = nir.Output(output_type={"output": np.array([layers[-1][0].shape[0]])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt})


def if_node(n: int, thr: float = 1.0) -> nir.IF:
    return nir.IF(r=np.ones(n), v_threshold=np.full(n, thr))


def lif_node(n: int, tau: float | np.ndarray = 0.01, thr: float = 1.0, v_reset: float = 0.0) -> nir.LIF:
    return nir.LIF(tau=np.broadcast_to(np.asarray(tau, dtype=np.float64), (n,)).copy(), r=np.full(n, 10.0),
                   v_leak=np.zeros(n), v_threshold=np.full(n, thr), v_reset=np.full(n, v_reset))


def dense_if(n_in: int, n_out: int, thr: float = 1.0) -> nir.NIRGraph:
    rng = np.random.default_rng(n_in * 7 + n_out)
    return chain([(rng.uniform(-1, 1, (n_out, n_in)), np.zeros(n_out), if_node(n_out, thr))])


def fit_error(graph: nir.NIRGraph, **options: object) -> FitError:
    with pytest.raises(FitError) as info:
        LoihiRuntime().compile(graph, options or None)
    return info.value


def transcript(layers: list[FixedLayer], x: np.ndarray) -> tuple[list[np.ndarray], dict[str, int]]:
    """Lava 0.10 PyDenseModelBitAcc + PyLifModelBitAcc transcribed statement by statement for one
    sample ``x [T, n_in]`` with Lava's dtypes; also counts u wraps and v clips."""
    steps, max_uv = x.shape[0], 2**23
    events = {"u_wraps": 0, "v_clips": 0}
    w_eff = [effective_weights(lay.weights, lay.num_weight_bits).astype(np.int32) for lay in layers]
    a_buff = [np.zeros(lay.n_out, dtype=np.int32) for lay in layers]  # the int32 port buffer
    u = [np.zeros(lay.n_out, dtype=np.int32) for lay in layers]
    v = [np.zeros(lay.n_out, dtype=np.int32) for lay in layers]
    out = [np.zeros((steps, lay.n_out), dtype=np.uint8) for lay in layers]
    for t in range(steps):
        s_in = x[t] != 0
        for k, lay in enumerate(layers):
            a_in = np.zeros(lay.n_out, dtype=np.int16) + a_buff[k]  # PyInPort.recv: int16 zeros + int32
            a_accum = w_eff[k][:, s_in].sum(axis=1)
            a_buff[k][:] = (np.left_shift(a_accum, lay.weight_exp) if lay.weight_exp > 0
                            else np.right_shift(a_accum, -lay.weight_exp))
            bias = np.where(lay.bias_exp >= 0, np.left_shift(lay.bias_mant.astype(np.int32), lay.bias_exp),
                            np.right_shift(lay.bias_mant.astype(np.int32), -lay.bias_exp))
            dc = np.int64(u[k]) * (4096 - (lay.du + 1))
            dc = np.int32(np.sign(dc) * np.right_shift(np.abs(dc), 12))
            dc += np.left_shift(a_in, 6)
            wrapped = np.where(dc > max_uv, dc - 2 * max_uv, dc)
            wrapped = np.where(wrapped <= -max_uv, dc + 2 * max_uv, wrapped)
            events["u_wraps"] += int((wrapped != dc).sum())
            u[k][:] = wrapped
            dvv = np.int64(v[k]) * (4096 - lay.dv)
            dvv = np.int32(np.sign(dvv) * np.right_shift(np.abs(dvv), 12))
            updated = dvv + u[k] + bias
            clipped = np.clip(updated, -np.int32(max_uv) + 1, np.int32(max_uv) - 1)
            events["v_clips"] += int((clipped != updated).sum())
            v[k][:] = clipped
            s = v[k] > (lay.vth << 6)
            v[k][s] = 0
            out[k][t] = s
            s_in = s
    return out, events


def random_fixed_layer(rng: np.random.Generator, n_in: int, n_out: int, stress: str = "") -> FixedLayer:
    w = rng.integers(-256, 256, (n_out, n_in))
    if stress == "wrap":
        w = np.abs(w)  # excitatory, big exponent, slow current decay: u overflows 24 bits
    elif stress == "clip":
        w = -np.abs(w)  # inhibitory into a non-leaky v: v saturates at -(2^23-1)
    wexp = int(rng.integers(5, 8)) if stress else int(rng.integers(-8, 4))
    du = int(rng.integers(0, 64)) if stress else int(rng.choice([4095, int(rng.integers(0, 4096))]))
    dv = 0 if stress else int(rng.choice([0, 4095, int(rng.integers(0, 4096))]))
    nwb = 8 if stress else int(rng.integers(1, 9))
    we = effective_weights(w, nwb).astype(float)
    drive = (np.sqrt((we**2).sum(1).mean() * 0.4) + abs(we.sum(1)).mean() * 0.4) * 2.0**wexp * 64
    vth = int(np.clip(max(drive, 1.0) * rng.uniform(0.05, 1.0) / 64, 0, 2**17 - 1))
    return FixedLayer(name=f"r{n_in}x{n_out}", weights=w.astype(np.int32), weight_exp=wexp, num_weight_bits=nwb,
                      du=du, dv=dv, vth=vth, bias_mant=(rng.integers(-4096, 4096, n_out) * (rng.random() < 0.5)).astype(np.int32),
                      bias_exp=rng.integers(0, 8, n_out).astype(np.int32))


# --------------------------------------------------------------------------- registry / info


def test_registered_and_info_names_sources() -> None:
    assert registry()["loihi"] == "actors.loihi.runtime:LoihiRuntime"
    rt = make_runtime("loihi")
    info = rt.info()
    assert info["emulated"] is True and info["mode"] == "emulated"
    assert info["limits"]["compartments_per_core"]["value"] == 1024
    assert "SANA-FE" in info["constants"]["e_syn_j"] and "[2nd]" in info["constants"]["e_syn_j"]
    consts = load_constants("loihi")
    assert consts.value("e_syn_j") == pytest.approx(35.5e-12)
    assert all(c.source and c.confidence for c in consts.constants.values())
    assert rt.health()["ok"] is True


# --------------------------------------------------------------------------- fit limits (one step over each)


def test_cores_limit() -> None:
    ok = chain([(np.ones((128 * 1024, 1)), np.zeros(128 * 1024), if_node(128 * 1024))])
    prog = LoihiRuntime().compile(ok)
    assert next(i for i in prog.fit.items if i.name == "cores").used == 128
    err = fit_error(chain([(np.ones((128 * 1024 + 1, 1)), np.zeros(128 * 1024 + 1), if_node(128 * 1024 + 1))]))
    assert "cores (chip): 129" in str(err) and "128" in str(err)


def test_compartments_per_core_limit() -> None:
    LoihiRuntime().compile(dense_if(2, 1024), {"neurons_per_core": 1024})
    err = fit_error(dense_if(2, 1025), neurons_per_core=1025)
    assert "compartments/core" in str(err) and "1025" in str(err)


def test_input_axons_limit() -> None:
    LoihiRuntime().compile(dense_if(4096, 2))
    err = fit_error(dense_if(4097, 2))
    assert "input axons/core" in str(err) and "4097" in str(err)


def test_output_axons_limit() -> None:
    def net(n0: int) -> nir.NIRGraph:
        rng = np.random.default_rng(0)
        return chain([(rng.uniform(-1, 1, (n0, 2)), np.zeros(n0), if_node(n0)),
                      (rng.uniform(-1, 1, (5, n0)), np.zeros(5), if_node(5))])

    LoihiRuntime().compile(net(819), {"neurons_per_core": [819, 1]})  # 819 x 5 target cores = 4095
    err = fit_error(net(820), neurons_per_core=[820, 1])  # 4100
    assert "output axons/core" in str(err) and "4100" in str(err)


def test_synapse_memory_limit() -> None:
    # 64 neurons/core: one full 64-synapse block per input axon = 576 bits; 1820 axons fit in 1 Mbit
    assert synapse_bits_per_axon(64) == 576 and synapse_bits_per_axon(1) == 64 and synapse_bits_per_axon(65) == 640
    LoihiRuntime().compile(dense_if(1820, 64), {"neurons_per_core": 64})
    err = fit_error(dense_if(1821, 64), neurons_per_core=64)
    assert "synapse memory/core" in str(err) and "KB" in str(err)
    # the automatic split avoids it by using fewer neurons per core
    prog = LoihiRuntime().compile(dense_if(1821, 64))
    assert prog.meta["cores"][0]["per_core"] < 64


def test_recurrent_layer_input_axons_limit() -> None:
    """A recurrent layer's own spikes are input axons too: n_in + n_hidden <= 4096 per core."""
    from fabric.ir.recurrent import build_recurrent_graph

    def net(n_in: int) -> nir.NIRGraph:
        rng = np.random.default_rng(0)
        return build_recurrent_graph(rng.uniform(-1, 1, (8, n_in)), rng.uniform(-0.2, 0.2, (8, 8)),
                                     rng.uniform(-1, 1, (2, 8)))

    prog = LoihiRuntime().compile(net(4088))
    assert "l0.rec_weights" in prog.arrays
    err = fit_error(net(4089))
    assert "input axons/core" in str(err) and "4097" in str(err)


def test_recurrent_weight_exponent_limit() -> None:
    """Recurrent weights get their own weight_exp; weights beyond 127 x 2^7 mantissa steps are refused."""
    from fabric.ir.recurrent import build_recurrent_graph

    def net(rec: float) -> nir.NIRGraph:
        return build_recurrent_graph(np.full((2, 2), 0.01), np.full((2, 2), rec), np.ones((1, 2)))

    LoihiRuntime().compile(net(1.0))
    err = fit_error(net(1e6))
    assert "recurrent weight exponent" in str(err)


def test_weight_precision_limit() -> None:
    LoihiRuntime().compile(dense_if(4, 3), {"weight_bits": 8})
    err = fit_error(dense_if(4, 3), weight_bits=9)
    assert "weight precision" in str(err) and "9" in str(err)


def test_vth_mantissa_limit() -> None:
    # IF, r=1, max |w| = 1: at weight_exp=-8 vth = round(127 * thr / 128); 17 bits hold 131071
    def net(thr: float) -> nir.NIRGraph:
        return chain([(np.array([[1.0, -0.5]]), np.zeros(1), if_node(1, thr))])

    prog = LoihiRuntime().compile(net(132100.0))
    assert prog.meta["layers"][0]["vth"] == 131068
    err = fit_error(net(132104.0))
    assert "vth mantissa (17-bit)" in str(err) and "131072" in str(err)


def test_shared_decay_and_reset_constraints() -> None:
    w = np.random.default_rng(0).uniform(-1, 1, (4, 3))
    err = fit_error(chain([(w, np.zeros(4), lif_node(4, tau=np.array([0.01, 0.01, 0.02, 0.01])))]))
    assert "distinct dv per layer" in str(err)
    err = fit_error(chain([(w, np.zeros(4), lif_node(4, v_reset=0.1))]))
    assert "nonzero v_reset" in str(err)


def test_unsupported_node_names_kind() -> None:
    g = chain([(np.ones((2, 2)), np.zeros(2), nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)))])
    with pytest.raises(UnsupportedNodeError, match="kind 'loihi'"):
        LoihiRuntime().compile(g)


# --------------------------------------------------------------------------- quantization


def test_effective_weights_follow_lava_clip_and_truncate() -> None:
    # mixed: clip to [-256, 255], then drop 8 - bits + 1 LSBs (floor)
    assert effective_weights(np.array([[3, -3, 255, -300, 300]]), 8).tolist() == [[2, -4, 254, -256, 254]]
    # excitatory: clip [0, 255], no truncation at 8 bits; 6 bits drops 2 LSBs
    assert effective_weights(np.array([[3, 255, 300]]), 8).tolist() == [[3, 255, 255]]
    assert effective_weights(np.array([[7, 255]]), 6).tolist() == [[4, 252]]
    # inhibitory: mirrored
    assert effective_weights(np.array([[-3, -300]]), 8).tolist() == [[-3, -255]]


def test_quantize_layer_error_and_registers() -> None:
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.3, (20, 30))
    g = chain([(w, rng.normal(0, 0.05, 20), lif_node(20, tau=0.02))])
    layer = lower(g, "loihi", HANDLERS).layers[0]
    fl8, q8 = quantize_layer(layer, 1e-3, num_weight_bits=8)
    fl4, q4 = quantize_layer(layer, 1e-3, num_weight_bits=4)
    assert q8.weight_rel_error < 0.01 < q4.weight_rel_error  # 8-bit mantissas ~0.5 %; 4-bit much worse
    assert q8.vth_rel_error < 1e-3 and q8.decay_v_error < 1 / 4096
    assert fl8.dv == round(4096 * 1e-3 / 0.02) and fl8.du == 4095  # current is instantaneous
    assert 0 < fl8.vth <= 1 << 13 and q8.wrap_free
    # the compiled weights are a fixed point of Lava's own clipping and truncation
    for fl in (fl8, fl4):
        np.testing.assert_array_equal(effective_weights(fl.weights, fl.num_weight_bits), fl.weights)
    # the float threshold-normalised weights are recovered from mantissa, exponent and vth
    v_scale = fl8.vth * 64
    w_float = effective_weights(fl8.weights, 8) * 2.0**fl8.weight_exp * 64 / v_scale
    expected = (1e-3 / 0.02 * 10.0) * w  # dt/tau * r * W / thr
    assert np.abs(w_float - expected).max() < 0.01 * np.abs(expected).max()


# --------------------------------------------------------------------------- emulator semantics


def test_single_synapse_one_step_dense_delay() -> None:
    # w = 2, weight_exp 0: u = 2 << 6 = 128 > vth << 6 = 64 -> spike one step after the input spike
    layer = FixedLayer(name="one", weights=np.array([[2]], dtype=np.int32), weight_exp=0, num_weight_bits=8, du=4095,
                       dv=0, vth=1, bias_mant=np.zeros(1, np.int32), bias_exp=np.zeros(1, np.int32))
    em = emulate([layer], np.array([[[1], [0], [0], [1]]]))
    assert em.rasters[0][0, :, 0].tolist() == [0, 1, 0, 0]  # the step-3 input is still in the Dense buffer
    two = emulate([layer, layer], np.array([[[1], [0], [0], [0]]]))
    assert two.rasters[1][0, :, 0].tolist() == [0, 0, 1, 0]


def _one_neuron(weights: list[int], weight_exp: int, vth: int) -> FixedLayer:
    return FixedLayer(name="edge", weights=np.array([weights], dtype=np.int32), weight_exp=weight_exp,
                      num_weight_bits=8, du=4095, dv=0, vth=vth, bias_mant=np.zeros(1, np.int32),
                      bias_exp=np.zeros(1, np.int32))


def test_register_boundaries() -> None:
    """Exact edges of Lava's 24-bit wrap (``u > 2^23`` wraps, ``u == 2^23`` does not) and of the
    voltage clip at -(2^23-1); each expectation is derived by hand and also checked on the transcript."""
    x = np.zeros((1, 2, 8), dtype=np.uint8)
    x[0, 0] = 1
    # 8 x 128 << 7 << 6 = 2^23 exactly: no wrap, v clips to 2^23-1 > 131071 << 6 -> spike
    at = _one_neuron([128] * 8, 7, 131071)
    # one weight 129: u = 2^23 + 2^13 wraps to a large negative value -> no spike
    over = _one_neuron([128] * 7 + [129], 7, 131071)
    # 8 x -128: u = -2^23 exactly, which Lava wraps (``<= -2^23``) to +2^23 -> spike
    neg = _one_neuron([-128] * 8, 7, 131071)
    for layer, want in ((at, [0, 1]), (over, [0, 0]), (neg, [0, 1])):
        em = emulate([layer], x, count_events=True)
        assert em.rasters[0][0, :, 0].tolist() == want
        assert transcript([layer], x[0])[0][0][:, 0].tolist() == want
    # 8 inhibitory (-128) and 8 excitatory (126) inputs, weight_exp 5: -2^21 per step drives v to
    # the clip at -(2^23-1) (steps 4, 5); five excitatory steps of +2064384 then end at exactly
    # -8388607 + 5 * 2064384 = 1933313 > 30208 << 6 = 1933312: one spike, at the last step only
    clip = _one_neuron([-128] * 8 + [126] * 8, 5, 30208)
    xc = np.zeros((1, 11, 16), dtype=np.uint8)
    xc[0, :5, :8] = 1
    xc[0, 5:10, 8:] = 1
    em = emulate([clip], xc, count_events=True)
    assert em.rasters[0][0, :, 0].tolist() == [0] * 10 + [1]
    assert em.v_clips == [2]
    assert transcript([clip], xc[0])[0][0][:, 0].tolist() == [0] * 10 + [1]


def test_emulator_matches_lava_transcript_incl_wraps_and_clips() -> None:
    rng = np.random.default_rng(11)
    events = {"u_wraps": 0, "v_clips": 0}
    for k in range(40):
        stress = ["", "", "wrap", "clip"][k % 4]
        sizes = [int(s) for s in rng.integers(1, 16, int(rng.integers(2, 4)))]
        if stress:
            sizes[0] = max(sizes[0], 12)
        layers = [random_fixed_layer(rng, a, b, stress if i == 0 else "") for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False))]
        x = (rng.random((3, 12, sizes[0])) < 0.5).astype(np.uint8)
        em = emulate(layers, x, count_events=True)
        for b in range(x.shape[0]):
            ref, ev = transcript(layers, x[b])
            for got, want in zip(em.rasters, ref, strict=True):
                np.testing.assert_array_equal(got[b], want)
            events = {key: events[key] + ev[key] for key in events}
        assert sum(em.u_wraps) + sum(em.v_clips) >= 0
    assert events["u_wraps"] > 0 and events["v_clips"] > 0  # the overflow paths were exercised


def test_batch_chunks_threads_and_matmul_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    layers = [random_fixed_layer(rng, 64, 80), random_fixed_layer(rng, 80, 7)]
    x = (rng.random((300, 9, 64)) < 0.3).astype(np.uint8)  # 300 x 80 states: split over threads
    one = emulate(layers, x, threads=1)
    many = emulate(layers, x, threads=3)
    for a, b in zip(one.rasters, many.rasters, strict=True):
        np.testing.assert_array_equal(a, b)
    assert one.synaptic_ops == many.synaptic_ops and sum(one.spikes) > 0
    monkeypatch.setattr("actors.loihi.fixed._HAVE_INT_MM", False)  # BLAS path instead of int8 GEMM
    blas = emulate(layers, x[:20])
    for a, b in zip(one.rasters, blas.rasters, strict=True):
        np.testing.assert_array_equal(a[:20], b)
    for b in range(3):
        for got, want in zip(one.rasters, transcript(layers, x[b])[0], strict=True):
            np.testing.assert_array_equal(got[b], want)


def test_emulator_float_agreement_on_trained_like_net() -> None:
    torch.manual_seed(0)
    model = LifMLP(64, [48], 10, beta=0.9, threshold=1.0)
    with torch.no_grad():
        for fc in model.fcs:
            fc.weight.mul_(2.0)  # hidden rates ~10 %, output counts well separated
    graph = export_nir(model)
    rt = LoihiRuntime()
    rt.load(rt.compile(graph))
    rng = np.random.default_rng(0)
    x = (rng.random((200, 40, 64)) < rng.uniform(0.05, 0.5, (200, 1, 64))).astype(np.float32)
    res = rt.run(x, record_raster=True)
    ctx = lower(graph, "cpu", HANDLERS)
    raster, _, _ = simulate_layers(ctx.layers, x, ctx.dt)
    ref = raster.sum(axis=1)
    assert ref.sum() > 200 and res.counts.sum() > 200
    agree = float((ref.argmax(1) == res.counts.argmax(1)).mean())
    assert agree >= 0.9, agree
    assert float((raster == res.raster).mean()) > 0.9  # aligned spike-by-spike agreement too


# --------------------------------------------------------------------------- telemetry


def test_telemetry_counts_match_hand_count() -> None:
    # layer 0: IF, thr 0.5, W0 rows [1,0],[1,1],[0,1]: neuron fires one step after any input it sees.
    # layer 1: W1 = [1,1,0]: fires one step after n0 or n1 fires.
    g = chain([(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), np.zeros(3), if_node(3, 0.5)),
               (np.array([[1.0, 1.0, 0.0]]), np.zeros(1), if_node(1, 0.5))])
    rt = LoihiRuntime()
    rt.load(rt.compile(g))
    x = np.array([[[1, 0], [0, 1], [0, 0], [1, 1]]])
    res = rt.run(x, record_raster=True)
    tel = res.telemetry
    # layer-0 spikes: step1 {n0,n1}, step2 {n1,n2}, step4 {n0,n1,n2} -> 7; layer 1: steps 2,3,5 -> 3
    assert tel.spikes_per_layer == {"fc0->n0": 7, "fc1->n1": 3}
    assert res.raster[0, :, 0].tolist() == [1, 1, 0, 1] and res.counts.tolist() == [[3]]
    # ops: inputs 2+2 spikes x 2 non-zero weights each = 8; layer 1: n0 2 + n1 3 spikes x 1 = 5
    assert tel.synaptic_ops == 13
    assert tel.timesteps == 6 and tel.neuron_updates == 6 * 4
    assert tel.spikes_in == 4 and tel.spikes_out == 3 and tel.emulated
    c = load_constants("loihi")
    static = c.value("p_static_w") * tel.device_time_s  # cited chip idle power (Blouw et al. 2019) x device time
    e = 13 * c.value("e_syn_j") + 24 * c.value("e_neuron_j") + 10 * c.value("e_spike_j") + static
    assert c.value("p_static_w") > 0
    assert tel.energy_j == pytest.approx(e) and tel.energy_breakdown_j["static"] == pytest.approx(static)
    # per step: 1-tile sync + busiest layer (one core each): layer 0 = 8 ops, 18 updates, 7 spikes, 4 in
    busy0 = (8 * 3.8e-9 + 18 * 3.7e-9 + 7 * 30e-9 + 4 * 16e-9) / 6
    busy1 = (5 * 3.8e-9 + 6 * 3.7e-9 + 3 * 30e-9 + 7 * 16e-9) / 6
    assert tel.device_time_s == pytest.approx(6 * (0.6e-6 + max(busy0, busy1)))
    assert "emulated" in tel.sources["mode"] and "modelled" in tel.sources["energy"]
    assert "SANA-FE" in tel.sources["energy"] and "modelled" in tel.sources["device_time"]
    assert tel.footprint_bytes == (2 * 64 + 3 * 64 + 4 * 48) // 8  # synapse words + 48-bit u,v state


def test_program_round_trip_and_input_checks() -> None:
    rt = LoihiRuntime()
    prog = rt.compile(dense_if(6, 4, thr=0.3))
    again = Program.from_bytes(prog.to_bytes())
    x = (np.random.default_rng(0).random((5, 10, 6)) < 0.5).astype(np.uint8)
    rt.load(prog)
    a = rt.run(x).counts
    rt2 = LoihiRuntime()
    rt2.load(again)
    np.testing.assert_array_equal(a, rt2.run(x).counts)
    with pytest.raises(ValueError, match="last dimension must be 6"):
        rt.run(np.zeros((1, 3, 5)))
    with pytest.raises(RuntimeError, match="no program loaded"):
        LoihiRuntime().run(x)


def test_golden_unavailable_without_lava_python(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-python"
    monkeypatch.setenv("FABRIC_LAVA_PYTHON", str(missing))
    layer = FixedLayer(name="l", weights=np.ones((1, 1), np.int32), weight_exp=0, num_weight_bits=8, du=4095, dv=0,
                       vth=1, bias_mant=np.zeros(1, np.int32), bias_exp=np.zeros(1, np.int32))
    with pytest.raises(GoldenUnavailable, match="no Lava python at") as info:
        golden_check(fixed_program([layer]), np.ones((1, 3, 1)))
    assert str(missing) in info.value.reason and "FABRIC_LAVA_PYTHON" in info.value.reason
    rt = LoihiRuntime(golden=True)
    rt.load(fixed_program([layer]))
    with pytest.raises(GoldenUnavailable):
        rt.run(np.ones((1, 3, 1)))


# --------------------------------------------------------------------------- CLI functions


def test_cli_compile_and_simulate(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    graph_path = tmp_path / "g.nir"
    nir.write(str(graph_path), dense_if(6, 4, thr=0.3))
    prog_path, x_path, out_path = tmp_path / "p.npz", tmp_path / "x.npy", tmp_path / "out.npy"
    assert compile_cmd(graph_path, "loihi", prog_path) == 0
    assert "FITS" in capsys.readouterr().out
    np.save(x_path, (np.random.default_rng(0).random((3, 8, 6)) < 0.5).astype(np.uint8))
    assert simulate_cmd(prog_path, x_path, out_path, golden=False) == 0
    assert np.load(out_path).shape == (3, 8, 4)
    # the same functions drive any registered kind
    assert compile_cmd(graph_path, "cpu", tmp_path / "c.npz") == 0
    assert simulate_cmd(tmp_path / "c.npz", x_path, tmp_path / "c_out.npy", golden=False) == 0
    # a graph that does not fit: exit 2 and the violated constraint on stderr
    nir.write(str(tmp_path / "big.nir"), dense_if(4097, 2))
    capsys.readouterr()
    assert compile_cmd(tmp_path / "big.nir", "loihi", tmp_path / "big.npz") == 2
    assert "input axons/core" in capsys.readouterr().err
    assert not (tmp_path / "big.npz").exists()
    assert compile_cmd(graph_path, "no-such-kind", tmp_path / "n.npz") == 1
    # golden requested but no Lava: exit 3 with the reason
    monkeypatch.setenv("FABRIC_LAVA_PYTHON", str(tmp_path / "missing-python"))
    assert simulate_cmd(prog_path, x_path, out_path, golden=True) == 3
    assert "no Lava python" in capsys.readouterr().err


# --------------------------------------------------------------------------- limits from the constants file


def test_limits_are_read_from_the_constants_file() -> None:
    """fixed.LIMITS comes from actors/loihi/constants.yaml (one source of truth), with the same values
    the emulator was written against."""
    import yaml

    from actors.loihi import fixed

    assert fixed.LIMITS == {
        "cores_per_chip": 128, "compartments_per_core": 1024, "input_axons_per_core": 4096,
        "output_axons_per_core": 4096, "synapse_bits_per_core": 128 * 1024 * 8, "weight_bits": 8,
        "du_max": 4095, "dv_max": 4095, "vth_max": (1 << 17) - 1, "bias_mant_max": 4095, "bias_mant_min": -4096,
        "bias_exp_max": 7, "weight_exp_min": -8, "weight_exp_max": 7,
    }
    assert fixed.UV_BITS == 24 and fixed.MAX_UV == 1 << 23 and fixed.V_LIMIT == (1 << 23) - 1
    doc = yaml.safe_load(fixed.CONSTANTS_FILE.read_text())["limits"]
    lim = {k: v["value"] for k, v in doc.items()}
    assert fixed.LIMITS["cores_per_chip"] == lim["cores_per_chip"]
    assert fixed.LIMITS["synapse_bits_per_core"] == lim["synapse_memory_per_core_kb"] * 8192
    assert fixed.LIMITS["vth_max"] == 2 ** lim["vth_mantissa_bits"] - 1
    assert fixed.LIMITS["bias_mant_min"] == -(2 ** (lim["bias_mantissa_bits"] - 1))
    assert [fixed.LIMITS["weight_exp_min"], fixed.LIMITS["weight_exp_max"]] == yaml.safe_load(lim["weight_exp_range"])
    assert fixed.UV_BITS == lim["u_v_bits"]
    assert LoihiRuntime().info()["limits"] == doc  # what info() shows is the same file


# --------------------------------------------------------------------------- shared emulated base, hybrid fallback


def li_tail_graph(seed: int = 3) -> nir.NIRGraph:
    """LIF on the device, then an LI readout (not in loihi's node map; the cpu kind has it)."""
    rng = np.random.default_rng(seed)
    f = np.ones(5)
    return chain([(rng.normal(0, 0.6, (12, 8)), np.zeros(12), lif_node(12, tau=0.005)),
                  (rng.normal(0, 0.5, (5, 12)), np.zeros(5), nir.LI(tau=f * 0.01, r=f, v_leak=0 * f))])


def test_runtime_is_on_the_emulated_base_with_its_own_fields() -> None:
    from actors.base.emulated import EmulatedRuntime

    rt = LoihiRuntime(golden=True)
    assert isinstance(rt, EmulatedRuntime)
    health, info = rt.health(), rt.info()
    assert health["golden"] is True and {"lava_python", "lava_python_present"} <= set(health)
    assert health["fallback"] is None and health["loaded"] is False
    assert info["golden_on_every_run"] is True and "Lava 0.10" in info["bit_exact_reference"]
    assert "barrier sync" in info["time_model"] and info["energy_model"].startswith("modelled: E = ACs*e_syn")
    assert {"fallback", "weight_bits", "neurons_per_core", "vth_target"} <= set(info["options"])
    with pytest.raises(ValueError, match="unknown compile option"):
        rt.compile(dense_if(4, 3), {"no_such_option": 1})
    rt.load(rt.compile(dense_if(4, 3), {"fallback": "hybrid"}))  # nothing unsupported: a device-only program
    assert "fallback" not in rt.program.meta and rt.health()["fallback"] is None


def test_hybrid_fallback_runs_the_unsupported_tail_on_cpu() -> None:
    g = li_tail_graph()
    with pytest.raises(UnsupportedNodeError, match="kind 'loihi'"):
        LoihiRuntime().compile(g)
    from fabric.kinds import capabilities

    assert capabilities("loihi").hybrid_fallback  # so `fabric compare --fallback hybrid` passes it on
    rt = LoihiRuntime()
    prog = rt.compile(g, {"fallback": "hybrid"})
    fb = prog.meta["fallback"]
    assert fb["kind"] == "cpu" and fb["tail_nodes"] == ["fc1", "n1", "output"] and fb["device_n_out"] == 12
    assert prog.meta["n_in"] == 8 and prog.meta["n_out"] == 5
    assert any("hybrid fallback" in n and "'cpu'" in n for n in prog.fit.notes)
    assert any(i.scope.startswith("fallback:cpu") for i in prog.fit.items)
    rt.load(Program.from_bytes(prog.to_bytes()))
    x = (np.random.default_rng(0).random((6, 20, 8)) < 0.4).astype(np.uint8)
    res = rt.run(x, record_raster=True)
    tel = res.telemetry
    assert res.counts.shape == (6, 5) and rt.health()["fallback"] == "cpu"
    assert tel.timesteps == 20 + 1  # the device part's T + L steps
    assert tel.spikes_per_layer["fc0->n0"] > 0 and "cpu:fc1->n1" in tel.spikes_per_layer
    assert tel.energy_breakdown_j["fallback_cpu"] > 0 and "fallback" in tel.sources
    assert tel.energy_breakdown_j["total"] == pytest.approx(tel.energy_breakdown_j["static"] + tel.energy_breakdown_j["dynamic"])
    # the device part alone gives the same spikes as a device-only run of that part
    head = LoihiRuntime()
    from actors.loihi.runtime import device_part

    part = device_part(prog)
    assert "fallback" not in part.meta and part.meta["n_out"] == 12
    assert not any(k.startswith("fallback.") for k in part.arrays)
    head.load(part)
    assert head.run(x).telemetry.spikes_per_layer["fc0->n0"] == tel.spikes_per_layer["fc0->n0"]


def test_golden_on_a_hybrid_program_checks_the_device_part(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import time as _time

    import actors.loihi.runtime as loihi_runtime
    from actors.loihi.golden import GoldenResult

    prog = LoihiRuntime().compile(li_tail_graph(), {"fallback": "hybrid"})
    x = (np.random.default_rng(1).random((3, 10, 8)) < 0.4).astype(np.uint8)
    # without Lava: refused with the reason, as for a device-only program
    monkeypatch.setenv("FABRIC_LAVA_PYTHON", str(tmp_path / "no-such-python"))
    rt = LoihiRuntime(golden=True)
    rt.load(prog)
    with pytest.raises(GoldenUnavailable, match="no Lava python"):
        rt.run(x)
    ref = LoihiRuntime().reference_check(prog, x)
    assert ref["status"] == "unavailable" and "device part only" in ref["summary"] and "'cpu'" in ref["summary"]
    # with a (stand-in) reference: Lava sees the device part on the padded device input, and the
    # telemetry says the cpu tail was not checked; the check's time is not the emulator's latency
    seen: list[tuple[Program, np.ndarray]] = []

    def fake_check(program: Program, spikes: np.ndarray, **_: object) -> GoldenResult:
        seen.append((program, spikes))
        _time.sleep(0.3)
        return GoldenResult(bit_exact=True, mismatches=0, per_layer=[0], first_mismatch=None, samples=3, steps=11,
                            layers=1, lava_version="stand-in", lava_python="-", lava_wall_s=0.3)

    monkeypatch.setattr(loihi_runtime, "golden_check", fake_check)
    res = rt.run(x)
    program, spikes = seen[-1]
    assert "fallback" not in program.meta and program.meta["n_out"] == 12 and spikes.shape == (3, 11, 8)
    assert "bit-exact" in res.telemetry.sources["golden"] and "device part only" in res.telemetry.sources["golden"]
    assert rt.last_golden is not None and rt.last_golden.bit_exact
    assert res.telemetry.host_latency_s < 0.3 and res.counts.shape == (3, 5)


def test_golden_still_refuses_recurrent_programs() -> None:
    from fabric.ir.recurrent import build_recurrent_graph

    rng = np.random.default_rng(0)
    g = build_recurrent_graph(rng.uniform(-1, 1, (8, 6)), rng.uniform(-0.2, 0.2, (8, 8)), rng.uniform(-1, 1, (2, 8)))
    rt = LoihiRuntime(golden=True)
    rt.load(rt.compile(g))
    with pytest.raises(ValueError, match="feed-forward programs only"):
        rt.run(np.ones((1, 4, 6)))
