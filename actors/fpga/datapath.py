"""The integer datapath of the ReckOn-style ``fpga`` core, once, as pure functions over arrays.

Why one module: inference (:meth:`actors.fpga.runtime.FpgaRuntime.run`) and on-device e-prop
learning (:mod:`actors.fpga.eprop`) must run the *same* numbers, or learning would optimise a
different machine from the one that is measured. Per tick (ReckOn doc v1.0; Frenkel & Indiveri 2022):

* hidden: ``v_h <- sat(((alpha v_h) >> 15) + ((x W_in^T) << sh_in) + ((s_prev W_rec^T) << sh_rec))``,
  spike ``s_h = v_h > thr_h``, reset to zero; ``alpha`` is u1.15, ``s_prev`` the hidden spikes of
  the previous tick (recurrent input one tick late);
* output: ``v_o <- sat(((kappa v_o) >> kappa_frac) + ((s_h W_out^T) << sh_out))`` (hidden spikes
  reach the outputs in the same tick); LIF outputs add a comparator ``v_o > thr_o`` and reset to
  zero (the readout logic's addition), LI outputs are read as membranes.

``sat`` saturates to a signed ``membrane_bits`` word; weights are signed ``weight_bits`` words.
Both widths and the kappa format are read once from ``actors/fpga/constants.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from actors.base.energy import load_constants

__all__ = ["WEIGHT_BITS", "W_MAX", "MEMBRANE_BITS", "V_MIN", "V_MAX", "ALPHA_FRAC_BITS", "KAPPA_FRAC_BITS",
           "Tick", "device_inputs", "ticks"]

_LIMITS = load_constants("fpga").limits
WEIGHT_BITS: int = int(_LIMITS["weight_bits"])
W_MAX: int = 2 ** (WEIGHT_BITS - 1) - 1  # symmetric signed weights: -127..127 at 8 bits
MEMBRANE_BITS: int = int(_LIMITS["membrane_bits"])
V_MIN: int = -(2 ** (MEMBRANE_BITS - 1))
V_MAX: int = 2 ** (MEMBRANE_BITS - 1) - 1
ALPHA_FRAC_BITS = 15  # hidden leak alpha is u1.15 (ReckOn SPI_ALPHA); not a tunable of the part
KAPPA_FRAC_BITS: int = int(_LIMITS["kappa_frac_bits"])


class Tick(NamedTuple):
    """What one tick of the core computed, for a batch ``B`` (int64 arrays; ``s_o`` is boolean)."""

    x: np.ndarray  # input events of this tick [B, n_in_used]
    s_prev: np.ndarray  # hidden spikes of the previous tick, the recurrent input [B, n_hid]
    v_h_pre: np.ndarray  # hidden membranes before the reset [B, n_hid]
    s_h: np.ndarray  # hidden spikes [B, n_hid]
    v_o: np.ndarray  # output membranes at the end of the tick (after the reset for LIF outputs) [B, n_out]
    s_o: np.ndarray | None  # output spikes [B, n_out] (LIF outputs; None for LI outputs)


def device_inputs(x: np.ndarray, bias_input: bool) -> np.ndarray:
    """Input events as the core's integers ``[B, T, n_in (+1)]``: rounded spike counts, plus the
    always-on virtual input carrying the hidden biases when ``bias_input``."""
    xin = np.rint(np.asarray(x)).astype(np.int64)
    if bias_input:
        xin = np.concatenate([xin, np.ones((*xin.shape[:2], 1), np.int64)], axis=2)
    return xin


def ticks(xin: np.ndarray, *, w_in: np.ndarray, w_rec: np.ndarray | None, w_out: np.ndarray, thr_h: np.ndarray,
          alpha: np.ndarray, kappa: np.ndarray | int, shifts: tuple[int, int, int],
          kappa_frac: int = KAPPA_FRAC_BITS, thr_o: np.ndarray | None = None) -> Iterator[Tick]:
    """Run the core on device inputs ``xin [B, T, n_in_used]`` (:func:`device_inputs`), one
    :class:`Tick` per step. Weights are int64 ``[n_post, n_pre]``; ``thr_o`` given = LIF outputs."""
    sh_in, sh_rec, sh_out = (int(s) for s in shifts)
    bsz, steps, _ = xin.shape
    v_h = np.zeros((bsz, len(thr_h)), np.int64)
    s_h = np.zeros_like(v_h)
    v_o = np.zeros((bsz, w_out.shape[0]), np.int64)
    for t in range(steps):
        xt, s_prev = xin[:, t], s_h
        cur = (xt @ w_in.T) << sh_in
        if w_rec is not None:
            cur = cur + ((s_prev @ w_rec.T) << sh_rec)
        v_pre = np.clip(((alpha * v_h) >> ALPHA_FRAC_BITS) + cur, V_MIN, V_MAX)
        s_h = (v_pre > thr_h).astype(np.int64)
        v_h = np.where(s_h > 0, 0, v_pre)
        v_o = np.clip(((kappa * v_o) >> kappa_frac) + ((s_h @ w_out.T) << sh_out), V_MIN, V_MAX)
        s_o = None
        if thr_o is not None:
            s_o = v_o > thr_o
            v_o = np.where(s_o, 0, v_o)
        yield Tick(x=xt, s_prev=s_prev, v_h_pre=v_pre, s_h=s_h, v_o=v_o, s_o=s_o)
