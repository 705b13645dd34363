"""The Loihi emulator's fast paths (int8 GEMM, fused per-step LIF, batch chunks on threads) against a
plain int64 reference of Lava 0.10's bit-accurate Dense + LIF on random programs.

Why: :func:`actors.loihi.fixed.emulate` is optimised for speed (``bench/loihi_vs_lava.py``); this
pins every output of its ``Emulation`` (rasters, spike counts, synaptic ops, neuron updates, input
spikes, clip counts) to the obvious implementation, one step and one statement at a time.
"""

from __future__ import annotations

import numpy as np
import pytest

from actors.loihi.fixed import FixedLayer, _plan, effective_bias, effective_weights, emulate

MAX_UV = 1 << 23


def reference(layers: list[FixedLayer], x: np.ndarray) -> dict[str, list]:
    """Lava's equations in int64 over the batch ``x [B, T, n_in]``, every wrap and clip applied."""
    bsz, steps, _ = x.shape
    s_in = (x != 0).astype(np.int64)
    rasters, ops, clips = [], [], []
    for lay in layers:
        w = effective_weights(lay.weights, lay.num_weight_bits).astype(np.int64)
        bias = effective_bias(lay.bias_mant, lay.bias_exp).astype(np.int64)
        ops.append(float((s_in.sum(axis=(0, 1)) * (w != 0).sum(axis=0)).sum()))
        a_buff = np.zeros((bsz, lay.n_out), np.int64)
        u = np.zeros((bsz, lay.n_out), np.int64)
        v = np.zeros((bsz, lay.n_out), np.int64)
        out = np.zeros((bsz, steps, lay.n_out), np.uint8)
        n_clip = 0
        for t in range(steps):
            a_in = a_buff
            acc = s_in[:, t] @ w.T
            a_buff = acc << lay.weight_exp if lay.weight_exp >= 0 else acc >> -lay.weight_exp
            a_buff = (a_buff + (1 << 31)) % (1 << 32) - (1 << 31)  # the int32 port
            p = u * (4096 - (lay.du + 1))
            u = np.sign(p) * (np.abs(p) >> 12) + (a_in << 6)
            u = (u + (1 << 31)) % (1 << 32) - (1 << 31)  # int32 arithmetic
            u = np.where(u > MAX_UV, u - 2 * MAX_UV, u)
            u = np.where(u <= -MAX_UV, u + 2 * MAX_UV, u)
            q = v * (4096 - lay.dv)
            v = np.sign(q) * (np.abs(q) >> 12) + u + bias
            v = (v + (1 << 31)) % (1 << 32) - (1 << 31)
            n_clip += int((v < -(MAX_UV - 1)).sum())
            v = np.clip(v, -(MAX_UV - 1), MAX_UV - 1)
            s = v > (lay.vth << 6)
            v[s] = 0
            out[:, t] = s
        rasters.append(out)
        clips.append(n_clip)
        s_in = out.astype(np.int64)
    return {"rasters": rasters, "ops": ops, "clips": clips}


def random_layer(rng: np.random.Generator, n_in: int, n_out: int, fast: bool, max_exp: int = 7) -> FixedLayer:
    """A random valid program layer; ``fast`` gives du = 4095 (u is this step's input, the path every
    compiled program takes), otherwise any current decay; ``max_exp`` bounds weight_exp (small: no wrap)."""
    nwb = int(rng.integers(2, 9))
    mode = rng.choice(["mixed", "exc", "inh"])
    w = rng.integers(-256, 256, (n_out, n_in))
    w = np.abs(w) if mode == "exc" else -np.abs(w) if mode == "inh" else w
    wexp = int(rng.integers(-8, max_exp + 1))
    du = 4095 if fast else int(rng.integers(0, 4096))
    dv = int(rng.choice([0, 4095, int(rng.integers(1, 4095))]))
    we = effective_weights(w, nwb).astype(float)
    drive = (np.abs(we).sum(1).mean() * 0.3 + 1.0) * 2.0**wexp
    vth = int(np.clip(drive * rng.uniform(0.05, 1.0), 0, 2**17 - 1))
    bias_on = rng.random() < 0.6
    return FixedLayer(name=f"l{n_in}x{n_out}", weights=w.astype(np.int32), weight_exp=wexp, num_weight_bits=nwb,
                      du=du, dv=dv, vth=vth,
                      bias_mant=(rng.integers(-4096, 4096, n_out) * bias_on).astype(np.int32),
                      bias_exp=rng.integers(0, 8, n_out).astype(np.int32))


def check(layers: list[FixedLayer], x: np.ndarray, **kw: object) -> None:
    em = emulate(layers, x, count_events=True, **kw)
    ref = reference(layers, x)
    for got, want in zip(em.rasters, ref["rasters"], strict=True):
        assert got.dtype == np.uint8 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    assert em.spikes == [int(r.sum()) for r in ref["rasters"]]
    assert em.synaptic_ops == ref["ops"]
    assert em.neuron_updates == [float(x.shape[0] * x.shape[1] * lay.n_out) for lay in layers]
    assert em.spikes_in == int(np.count_nonzero(x))
    assert em.v_clips == ref["clips"]


@pytest.mark.parametrize("seed", range(12))
def test_fast_path_equals_reference_on_random_programs(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    sizes = [int(s) for s in rng.integers(1, 40, int(rng.integers(2, 5)))]
    layers = [random_layer(rng, a, b, fast=bool(rng.random() < 0.75)) for a, b in zip(sizes, sizes[1:], strict=False)]
    bsz, steps = int(rng.integers(1, 7)), int(rng.integers(1, 15))
    x = (rng.random((bsz, steps, sizes[0])) < rng.uniform(0.1, 0.7)).astype(np.uint8)
    check(layers, x)


def test_fast_path_is_the_one_taken_and_input_dtypes_agree() -> None:
    rng = np.random.default_rng(7)
    layers = [random_layer(rng, 24, 32, fast=True, max_exp=-2), random_layer(rng, 32, 5, fast=True, max_exp=-2)]
    assert all(_plan(lay).u_simple for lay in layers)
    x = (rng.random((4, 10, 24)) < 0.4).astype(np.uint8)
    check(layers, x)
    base = emulate(layers, x).rasters
    spikes = x * rng.integers(1, 5, x.shape)  # any non-zero input is a spike
    for variant in (x.astype(bool), x.astype(np.int8), spikes.astype(np.int16), spikes.astype(np.float32), -spikes):
        for got, want in zip(emulate(layers, variant).rasters, base, strict=True):
            np.testing.assert_array_equal(got, want)


def test_threads_chunks_and_blas_path_equal_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    layers = [random_layer(rng, 72, 96, fast=True), random_layer(rng, 96, 40, fast=False), random_layer(rng, 40, 6, fast=True)]
    x = (rng.random((230, 6, 72)) < 0.3).astype(np.uint8)  # 230 x 96 states: split over threads
    check(layers, x, threads=3)
    check(layers, x, threads=1)
    monkeypatch.setattr("actors.loihi.fixed._HAVE_INT_MM", False)  # float BLAS accumulation instead
    check(layers, x[:17])
