"""Stateful stepping of the Loihi fixed-point model, for streaming sessions.

Why a stepper of its own: :func:`actors.loihi.fixed.emulate` starts every run at rest and is layer-major
(one matmul per layer over all steps), which cannot hand a state to the next chunk. This one is
time-major over the same Lava 0.10 ``PyDenseModelBitAcc``/``PyLifModelBitAcc`` arithmetic, applying every
int32/24-bit wrap and the voltage clip unconditionally (where ``emulate`` proves by bounds that they
cannot occur, they are identities), so chunk after chunk is bit-exact with one ``emulate`` run over the
concatenated input (``tests/unit/test_stream.py`` checks it spike for spike). The state is per layer: the
input spikes of the last step (each Dense delivers one step late), ``u``, ``v`` and, for a recurrent
Dense, the layer's own last spikes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from actors.loihi.fixed import (
    ACT_SHIFT,
    DECAY_UNITY,
    DM_OFFSET,
    DS_OFFSET,
    MAX_UV,
    V_LIMIT,
    VTH_SHIFT,
    Emulation,
    FixedLayer,
    effective_bias,
    effective_weights,
)

__all__ = ["step_layers", "rest_state"]


def rest_state(layers: Sequence[FixedLayer], bsz: int) -> list[dict[str, np.ndarray]]:
    """Every layer at rest (what ``emulate`` starts from)."""
    return [{"last_in": np.zeros((bsz, fl.n_in)), "u": np.zeros((bsz, fl.n_out)), "v": np.zeros((bsz, fl.n_out)),
             "s": np.zeros((bsz, fl.n_out))} for fl in layers]


def _shift(acc: np.ndarray, exp: int) -> np.ndarray:
    """Dense's ``weight_exp`` shift of an exact integer sum, then ``<< ACT_SHIFT`` onto the LIF's port."""
    if exp >= 0:
        return acc * float(1 << (exp + ACT_SHIFT))
    return np.floor(acc / float(1 << -exp)) * float(1 << ACT_SHIFT)


def _wrap(x: np.ndarray) -> np.ndarray:
    return x - 4294967296.0 * np.floor((x + 2147483648.0) / 4294967296.0)


class _Consts:
    def __init__(self, fl: FixedLayer) -> None:
        self.w = effective_weights(fl.weights, fl.num_weight_bits).astype(np.float64).T  # [n_in, n_out]
        self.exp = int(fl.weight_exp)
        self.nnz = (self.w != 0).sum(axis=1).astype(np.float64)
        self.rec = None if fl.rec_weights is None else effective_weights(
            fl.rec_weights, fl.num_weight_bits).astype(np.float64).T
        self.rec_exp = int(fl.rec_weight_exp)
        self.nnz_rec = None if self.rec is None else (self.rec != 0).sum(axis=1).astype(np.float64)
        self.cu = (DECAY_UNITY - fl.du - DS_OFFSET) / DECAY_UNITY
        self.cv = (DECAY_UNITY - fl.dv - DM_OFFSET) / DECAY_UNITY
        self.bias = effective_bias(fl.bias_mant, fl.bias_exp).astype(np.float64)
        self.vth = float(fl.vth << VTH_SHIFT)


def _advance(consts: list[_Consts], st: list[dict[str, np.ndarray]], h: np.ndarray,
             ops: list[float], spikes: list[int]) -> np.ndarray:
    """One device step of every layer, in place on ``st``; returns the last layer's spikes."""
    for k, c in enumerate(consts):
        s = st[k]
        a = _shift(s["last_in"] @ c.w, c.exp)
        ops[k] += float(s["last_in"].sum(axis=0) @ c.nnz)
        s["last_in"] = h
        if c.rec is not None:
            a = a + _shift(s["s"] @ c.rec, c.rec_exp)
            ops[k] += float(s["s"].sum(axis=0) @ c.nnz_rec)
        u = _wrap(np.trunc(s["u"] * c.cu) + a)
        u = np.where(u > MAX_UV, u - 2 * MAX_UV, u)
        u = np.where(u <= -MAX_UV, u + 2 * MAX_UV, u)
        vt = np.maximum(_wrap(np.trunc(s["v"] * c.cv) + u + c.bias), -V_LIMIT)
        out = vt > c.vth
        s["u"], s["v"], s["s"] = u, np.where(out, 0.0, vt), out.astype(np.float64)
        spikes[k] += int(out.sum())
        h = s["s"]
    return h


def step_layers(layers: Sequence[FixedLayer], x: np.ndarray, state: list[dict[str, np.ndarray]] | None
                ) -> tuple[np.ndarray, Emulation, list[dict[str, Any]]]:
    """Run ``x [B, T, n_in]`` from ``state`` (None: at rest). Returns the output spikes aligned with the
    input ``[B, T, n_out]`` (uint8; the last L steps are read after L zero flush steps run on a copy of
    the state, as ``LoihiRuntime`` flushes a run), the chunk's event counts, and the end state (before the
    flush: the next chunk's first steps deliver what this one left in the pipeline)."""
    xb = (np.asarray(x) != 0).astype(np.float64)
    bsz, steps, _ = xb.shape
    consts = [_Consts(fl) for fl in layers]
    st = [dict(s) for s in (state or rest_state(layers, bsz))]
    if st and st[0]["u"].shape[0] != bsz:
        raise ValueError(f"loihi: stream state is for a batch of {st[0]['u'].shape[0]}, chunk has {bsz}")
    n = len(layers)
    ops, spikes = [0.0] * n, [0] * n
    outs = []
    for t in range(steps):
        outs.append(_advance(consts, st, xb[:, t], ops, spikes))
    end = [dict(s) for s in st]
    flush = [dict(s) for s in st]
    zero = np.zeros_like(xb[:, 0])
    f_ops, f_spk = [0.0] * n, [0] * n
    for _ in range(n):  # L zero steps drain the one-step delays; their state is thrown away
        outs.append(_advance(consts, flush, zero, f_ops, f_spk))
    aligned = np.stack(outs[-steps:], axis=1).astype(np.uint8) if steps else np.zeros((bsz, 0, layers[-1].n_out),
                                                                                       dtype=np.uint8)
    em = Emulation(rasters=[aligned], spikes=[a + b for a, b in zip(spikes, f_spk, strict=True)],
                   synaptic_ops=[a + b for a, b in zip(ops, f_ops, strict=True)],
                   neuron_updates=[float(bsz * (steps + n) * fl.n_out) for fl in layers],
                   spikes_in=int(np.count_nonzero(xb)))
    return aligned, em, end
