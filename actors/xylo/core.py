"""Bit-accurate integer dynamics of the Xylo Audio 2 (SYNS61201) SNN core, in numpy.

Why our own: the fabric runs every kind on its own emulator and checks it against the vendor's
(``rockpool.devices.xylo.syns61201.XyloSim``, xylosim C++ underneath; :mod:`actors.xylo.reference`).
Semantics (Rockpool's Xylo docs, https://rockpool.ai/devices/xylo-overview.html): 16-bit saturating
synaptic currents and membranes; bit-shift decay ``v -= (v >> dash)``, at least one unit toward 0;
at most 15 input events per channel per step, each adding ``w << weight_shift`` with saturation;
hidden spikes reach the recurrent and readout synapses on the next step; a hidden neuron emits up to
31 spikes per step (subtracting its threshold each time), an output neuron at most one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["XyloSpec", "evolve", "STATE_MIN", "STATE_MAX", "MAX_INPUT_EVENTS", "MAX_HIDDEN_SPIKES"]

STATE_MIN, STATE_MAX = -(2 ** 15), 2 ** 15 - 1
MAX_INPUT_EVENTS = 15
MAX_HIDDEN_SPIKES = 31


@dataclass(kw_only=True)
class XyloSpec:
    """Integer network: ``w_in [n_in, n_hid]``, ``w_rec [n_hid, n_hid]``, ``w_out [n_hid, n_out]``."""

    w_in: np.ndarray
    w_rec: np.ndarray
    w_out: np.ndarray
    dash_mem: np.ndarray
    dash_syn: np.ndarray
    dash_mem_out: np.ndarray
    dash_syn_out: np.ndarray
    threshold: np.ndarray
    threshold_out: np.ndarray
    weight_shift_in: int = 0
    weight_shift_rec: int = 0
    weight_shift_out: int = 0


def _decay(v: np.ndarray, dash: np.ndarray) -> np.ndarray:
    dv = v >> dash
    return np.where(dv == 0, np.sign(v), dv)


def _accumulate(acc: np.ndarray, counts: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``acc`` [B, N] + events ``counts`` [B, P] x weights ``w`` [P, N], saturating after every event
    in source order. Same-sign repeats of one weight saturate like one clipped sum, so a source is one
    step; when no partial sum can reach a rail the whole matrix product is exact."""
    if not counts.any():
        return acc
    bound = np.abs(acc) + counts @ np.abs(w)
    if bound.max() <= STATE_MAX:
        return acc + counts @ w
    for p in np.flatnonzero(counts.any(axis=0)):
        acc = np.clip(acc + counts[:, p, None] * w[p][None, :], STATE_MIN, STATE_MAX)
    return acc


def evolve(spec: XyloSpec, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run input events ``x`` [B, T, n_in] from rest; returns (output spikes [B, T, n_out], hidden
    spikes [B, T, n_hid]) as int64."""
    x = np.minimum(np.asarray(x).astype(np.int64), MAX_INPUT_EVENTS)
    x = np.maximum(x, 0)
    bsz, steps, _ = x.shape
    w_in = spec.w_in.astype(np.int64) << int(spec.weight_shift_in)
    w_rec = spec.w_rec.astype(np.int64) << int(spec.weight_shift_rec)
    w_out = spec.w_out.astype(np.int64) << int(spec.weight_shift_out)
    n_hid, n_out = w_out.shape
    dm, ds = spec.dash_mem.astype(np.int64), spec.dash_syn.astype(np.int64)
    dmo, dso = spec.dash_mem_out.astype(np.int64), spec.dash_syn_out.astype(np.int64)
    thr, thr_o = spec.threshold.astype(np.int64), spec.threshold_out.astype(np.int64)
    isyn = np.zeros((bsz, n_hid), np.int64)
    vmem = np.zeros((bsz, n_hid), np.int64)
    isyn_o = np.zeros((bsz, n_out), np.int64)
    vmem_o = np.zeros((bsz, n_out), np.int64)
    spk = np.zeros((bsz, n_hid), np.int64)
    out = np.zeros((bsz, steps, n_out), np.int64)
    hid = np.zeros((bsz, steps, n_hid), np.int64)
    for t in range(steps):
        isyn = _accumulate(isyn, x[:, t], w_in)
        isyn = _accumulate(isyn, spk, w_rec)
        isyn_o = _accumulate(isyn_o, spk, w_out)
        isyn = isyn - _decay(isyn, ds)
        dv = np.clip(isyn - _decay(vmem, dm), STATE_MIN, STATE_MAX)
        vmem = np.clip(vmem + dv, STATE_MIN, STATE_MAX)
        spk = np.where(vmem >= thr, np.minimum(vmem // np.maximum(thr, 1), MAX_HIDDEN_SPIKES), 0)
        vmem = vmem - spk * thr
        isyn_o = isyn_o - _decay(isyn_o, dso)
        dvo = np.clip(isyn_o - _decay(vmem_o, dmo), STATE_MIN, STATE_MAX)
        vmem_o = np.clip(vmem_o + dvo, STATE_MIN, STATE_MAX)
        o = (vmem_o >= thr_o).astype(np.int64)
        vmem_o = vmem_o - o * thr_o
        out[:, t], hid[:, t] = o, spk
    return out, hid
