"""On-device e-prop learning for the ReckOn-style ``fpga`` kind, as pure functions over arrays.

Why: ReckOn learns on chip with e-prop (Bellec et al., Nat. Commun. 2020; Frenkel & Indiveri, ISSCC
2022): every synapse keeps an eligibility trace computed forward in time from local quantities, and a
learning signal (the output error sent back to the hidden neurons) turns traces into weight updates,
with no backpropagation through time. This module runs that rule on the *device's own numbers*:

* forward pass = the emulator's integer datapath (:mod:`actors.fpga.datapath`, shared with inference): 8-bit signed weights with one
  left shift per matrix, 16-bit saturating membranes, u1.15 hidden leak ``alpha``, u1.7 output leak
  ``kappa``, reset to zero, recurrent spikes one tick late;
* eligibility (per synapse ``j <- i``): presynaptic trace ``xbar_i <- alpha xbar_i + x_i`` (inputs, or
  hidden spikes of the previous tick for recurrent synapses; ``alpha`` = the median hidden leak, one
  trace per presynaptic neuron as on ReckOn rather than one per synapse), pseudo-derivative
  ``psi_j = gamma max(0, 1 - |v_j / thr_j - 1|)`` of the membrane before reset, ``e_ji = psi_j xbar_i``,
  low-pass filtered with the output leak: ``ebar_ji <- kappa ebar_ji + e_ji``;
* learning signal ``L_j = sum_k B_jk (softmax(y)_k - onehot_k)`` at every tick, with symmetric feedback
  ``B = W_out^T`` (``feedback="symmetric"``) or a fixed random matrix (``"random"``, seeded);
* updates, in threshold-normalised units so one ``lr`` serves all matrices, accumulated over the sample
  and averaged over the batch: ``dW_in/rec = -lr sum_t L_j ebar_ji``, ``dW_out = -lr sum_t err_k zbar_j``
  (``zbar`` = hidden spikes low-passed with ``kappa``); converted to weight LSBs and applied with
  stochastic rounding (seeded), saturating at +-127: the weights stay 8-bit throughout.

Simplifications (stated, not hidden): traces are float64 here (ReckOn keeps 12/12/10-bit traces); the
learning signal uses the output at every tick (ReckOn can gate it with a target window); the reset's
contribution to the eligibility is ignored (standard e-prop for LIF). Rows of always-on bias neurons
(threshold 0) are not learnt.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from actors.fpga.datapath import ALPHA_FRAC_BITS, W_MAX, Tick, device_inputs, ticks

__all__ = ["EpropState", "eprop_epoch", "forward_int"]



@dataclass(kw_only=True)
class EpropState:
    """The learnable integer program of an fpga core plus its fixed parameters."""

    w_in: np.ndarray  # int64 [n_hid, n_in_used]
    w_rec: np.ndarray | None  # int64 [n_hid, n_hid]
    w_out: np.ndarray  # int64 [n_out, n_hid]
    thr_h: np.ndarray  # int64 [n_hid]
    alpha: np.ndarray  # int64 [n_hid], u1.15
    kappa: int  # u1.(kappa_frac)
    kappa_frac: int
    shifts: tuple[int, int, int]  # in, rec, out
    s_o: float  # output integer units per float membrane unit
    bias_input: bool
    history: list[dict[str, float]] = field(default_factory=list)


def _ticks(state: EpropState, xin: np.ndarray) -> Iterator[Tick]:
    """The core's datapath (:func:`actors.fpga.datapath.ticks`, LI outputs) on ``state``'s numbers."""
    return ticks(xin, w_in=state.w_in, w_rec=state.w_rec, w_out=state.w_out, thr_h=state.thr_h, alpha=state.alpha,
                 kappa=state.kappa, shifts=state.shifts, kappa_frac=state.kappa_frac)


def forward_int(state: EpropState, x: np.ndarray) -> np.ndarray:
    """Integer forward pass (the emulator's datapath); returns the output membranes ``[B, T, n_out]``."""
    xin = device_inputs(x, state.bias_input)
    out = np.zeros((xin.shape[0], xin.shape[1], state.w_out.shape[0]), np.int64)
    for t, tick in enumerate(_ticks(state, xin)):
        out[:, t] = tick.v_o
    return out


def _stochastic_round(w: np.ndarray, delta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(np.floor(w + delta + rng.random(w.shape)), -W_MAX, W_MAX).astype(np.int64)


def eprop_epoch(state: EpropState, x: np.ndarray, labels: np.ndarray, *, lr: float, batch_size: int,
                rng: np.random.Generator, feedback: str = "symmetric", gamma: float = 0.3,
                b_random: np.ndarray | None = None) -> dict[str, float]:
    """One pass over ``(x [N, T, n_in], labels [N])`` in shuffled batches; updates ``state`` in place."""
    xin_all = device_inputs(x, state.bias_input)
    y_all = np.asarray(labels, dtype=np.int64)
    n_out, n_hid = state.w_out.shape
    sh_in, sh_rec, sh_out = state.shifts
    thr = np.maximum(state.thr_h.astype(np.float64), 1.0)
    learn_rows = (state.thr_h > 0).astype(np.float64)[:, None]  # not the always-on bias neuron
    alpha_f = float(np.median(state.alpha)) / 2.0**ALPHA_FRAC_BITS  # presynaptic traces use the core's typical leak
    kappa_f = state.kappa / 2.0**state.kappa_frac
    order = rng.permutation(len(y_all))
    correct, loss_sum = 0, 0.0
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        xin, y = xin_all[idx], y_all[idx]
        bsz, steps, n_in = xin.shape
        onehot = np.eye(n_out)[y]
        xbar = np.zeros((bsz, n_in))
        zbar_rec = np.zeros((bsz, n_hid))
        ebar_in = np.zeros((bsz, n_hid, n_in))
        ebar_rec = np.zeros((bsz, n_hid, n_hid)) if state.w_rec is not None else None
        zbar_out = np.zeros((bsz, n_hid))
        g_in = np.zeros((n_hid, n_in))
        g_rec = np.zeros((n_hid, n_hid))
        g_out = np.zeros((n_out, n_hid))
        w_out_n = state.w_out * 2.0**sh_out / state.s_o  # normalised output weights
        feedback_m = w_out_n.T if feedback == "symmetric" else b_random
        logit_sum = np.zeros((bsz, n_out))
        for tick in _ticks(state, xin):  # forward pass = the emulator's integer datapath
            xt, s_prev, s_h, v_o = tick.x, tick.s_prev, tick.s_h, tick.v_o
            psi = gamma * np.maximum(0.0, 1.0 - np.abs(tick.v_h_pre / thr - 1.0))  # before reset
            # traces (forward in time, local)
            xbar = alpha_f * xbar + xt
            ebar_in = kappa_f * ebar_in + psi[:, :, None] * xbar[:, None, :]
            if ebar_rec is not None:
                zbar_rec = alpha_f * zbar_rec + s_prev
                ebar_rec = kappa_f * ebar_rec + psi[:, :, None] * zbar_rec[:, None, :]
            zbar_out = kappa_f * zbar_out + s_h
            logits = v_o / state.s_o
            logit_sum += logits
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            err = p - onehot  # [B, n_out]
            loss_sum += float(-np.log(np.maximum(p[np.arange(bsz), y], 1e-12)).sum()) / steps
            sig = err @ feedback_m.T  # learning signal [B, n_hid]
            g_in += np.einsum("bj,bji->ji", sig, ebar_in)
            if ebar_rec is not None:
                g_rec += np.einsum("bj,bji->ji", sig, ebar_rec)
            g_out += err.T @ zbar_out
        correct += int(np.sum(logit_sum.argmax(axis=1) == y))
        scale = lr / (bsz * steps)
        d_in = -scale * g_in * learn_rows * thr[:, None] / 2.0**sh_in
        state.w_in = _stochastic_round(state.w_in, d_in, rng)
        if state.w_rec is not None:
            d_rec = -scale * g_rec * learn_rows * thr[:, None] / 2.0**sh_rec
            state.w_rec = _stochastic_round(state.w_rec, d_rec, rng)
        d_out = -scale * g_out * state.s_o / 2.0**sh_out
        state.w_out = _stochastic_round(state.w_out, d_out, rng)
    rec = {"loss": loss_sum / len(order), "train_accuracy": correct / len(order)}
    state.history.append(rec)
    return rec
