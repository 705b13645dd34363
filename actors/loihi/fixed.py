"""Loihi fixed-point maths as pure functions: quantization, resource mapping, bit-accurate emulation.

The authority is Lava 0.10's bit-accurate process models (``lava/proc/lif/models.py``
``PyLifModelBitAcc`` and ``lava/proc/dense/models.py`` ``PyDenseModelBitAcc``, selected with
``Loihi2SimCfg(select_tag="fixed_pt")``). :func:`emulate` reproduces them for a whole batch and all
timesteps at once; ``actors.loihi.golden`` checks that claim against Lava itself. What Lava does, per
timestep ``t`` and layer (Dense -> LIF), in the order it does it:

* Dense sends ``a_buff`` (the accumulation of step ``t-1``; 0 at the first step), then computes
  ``a_buff = (sum_j W[:, j] [s_j != 0]) << weight_exp`` (``>> -weight_exp``, a floor, when
  negative). ``W`` is the int32 weight matrix after ``clip_weights(W, sign_mode, 8)`` and
  ``truncate_weights(W, sign_mode, num_weight_bits)``; ``sign_mode`` is found from ``W``'s signs.
  The port is int32, so ``a`` wraps modulo 2^32 on the way.
* LIF: ``u = sign(u*(4096-(du+1))) * (|u*(4096-(du+1))| >> 12) + (a << 6)`` in int32, then one
  24-bit wrap (``> 2^23`` -> ``- 2^24``; ``<= -2^23`` -> ``+ 2^24``);
  ``v = clip(sign(v*(4096-dv)) * (|..| >> 12) + u + (bias_mant << bias_exp), +-(2^23-1))``;
  spike where ``v > vth << 6``; ``v = 0`` where spiked.

The emulator accumulates with an exact int8 GEMM (int32 sums) or exact float BLAS, works in float64
afterwards, which holds every intermediate exactly (all stay below 2^53), and applies the 32-bit and
24-bit wraps only when a static bound says they can happen; the common layer (du = 4095, no wrap
possible) runs a fused per-step loop (:func:`_lif_fast`).

Quantization (:func:`quantize_layer`) maps the float LIF of ``fabric.model.snn`` (``v <- beta v + g (W x +
b) + leak``, spike if ``v > thr``, reset to 0) onto those registers: the per-neuron threshold is
folded into the weight rows so one ``vth`` serves the layer, weights become signed mantissas of
``num_weight_bits`` bits times a shared ``2^weight_exp``, ``dv = round(4096 dt/tau)``, and ``du = 4095``
(the current decays fully each step, so ``u`` is exactly this step's input, as in the float LIF).

Recurrence (a LIF whose spikes feed back through a weight matrix, :mod:`fabric.ir.recurrent`): a second
Lava ``Dense`` from the LIF's ``s_out`` back to its own ``a_in``, with its own ``weight_exp``. Lava's
Dense sends the accumulation of step ``t-1`` at step ``t``, so the recurrent input at step ``t`` is
``W_rec s[t-1]``, which is the float reference's semantics; its ``a`` adds to the feed-forward ``a`` at
the LIF's input port. A recurrent layer runs on its own per-step loop (:func:`_lif_recurrent`) that
applies every int32/24-bit wrap and clip unconditionally (each is the identity when not triggered),
so the feed-forward path above is untouched and stays bit-exact against Lava. The recurrent path is
NOT checked against Lava here (toolchains/lava/run_lava.py builds feed-forward chains only).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from fabric.ir.lowering import Layer
from fabric.records import FitReport, Program

__all__ = [
    "LIMITS",
    "CONSTANTS_FILE",
    "FixedLayer",
    "QuantReport",
    "Check",
    "CoreMap",
    "Emulation",
    "ProgramRangeError",
    "sign_mode",
    "effective_weights",
    "effective_bias",
    "bias_to_manexp",
    "quantize_layer",
    "synapse_bits_per_axon",
    "map_cores",
    "emulate",
    "layers_to_arrays",
    "layers_from_arrays",
    "fixed_program",
    "program_layers",
    "PROGRAM_FORMAT",
]

PROGRAM_FORMAT = "loihi-fixed/1"


def _limits_from_constants(path: Path) -> tuple[dict[str, int], int]:
    """``LIMITS`` and the u/v register width from ``constants.yaml`` (its ``limits`` section, which
    carries the public sources): one source of truth for the fit checks and the emulator's maths."""
    lim = {k: v["value"] for k, v in (yaml.safe_load(path.read_text())["limits"] or {}).items()}
    wexp_min, wexp_max = (int(e) for e in yaml.safe_load(str(lim["weight_exp_range"])))
    du_dv_max = (1 << int(lim["du_dv_bits"])) - 1
    bias_bits = int(lim["bias_mantissa_bits"])
    limits = {
        "cores_per_chip": int(lim["cores_per_chip"]),
        "compartments_per_core": int(lim["compartments_per_core"]),
        "input_axons_per_core": int(lim["input_axons_per_core"]),
        "output_axons_per_core": int(lim["output_axons_per_core"]),
        "synapse_bits_per_core": int(lim["synapse_memory_per_core_kb"]) * 1024 * 8,
        "weight_bits": int(lim["weight_bits"]),
        "du_max": du_dv_max,
        "dv_max": du_dv_max,
        "vth_max": (1 << int(lim["vth_mantissa_bits"])) - 1,
        "bias_mant_max": (1 << (bias_bits - 1)) - 1,
        "bias_mant_min": -(1 << (bias_bits - 1)),
        "bias_exp_max": (1 << int(lim["bias_exponent_bits"])) - 1,
        "weight_exp_min": wexp_min,
        "weight_exp_max": wexp_max,
    }
    return limits, int(lim["u_v_bits"])


CONSTANTS_FILE = Path(__file__).with_name("constants.yaml")

# Loihi 1 limits (nengo-loihi package: nengo_loihi/validate.py, nengo_loihi/block.py; Lava docstrings), read once
# from this kind's constants file, where each one is listed with its source.
LIMITS, UV_BITS = _limits_from_constants(CONSTANTS_FILE)

# Register widths and shifts, as named in lava/proc/lif/models.py (AbstractPyLifModelFixed).
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT
DS_OFFSET = 1  # added to du: decay_const_u = du + 1
DM_OFFSET = 0  # added to dv
VTH_SHIFT = 6
ACT_SHIFT = 6
MAX_UV = 1 << (UV_BITS - 1)
V_LIMIT = MAX_UV - 1

# Lava SignMode values (lava/utils/weightutils.py).
SIGN_MIXED, SIGN_EXCITATORY, SIGN_INHIBITORY = 1, 2, 3


class ProgramRangeError(ValueError):
    """A fixed-point parameter lies outside the register range Lava and Loihi give it."""


@dataclass(frozen=True, kw_only=True)
class FixedLayer:
    """One Dense -> LIF pair exactly as handed to Lava's ``Dense`` and ``LIF`` processes."""

    name: str
    weights: np.ndarray  # int32 [n_out, n_in], passed as Dense(weights=...)
    weight_exp: int
    num_weight_bits: int
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray  # int32 [n_out]
    bias_exp: np.ndarray  # int32 [n_out]
    rec_weights: np.ndarray | None = None  # int32 [n_out, n_out]: a recurrent Dense s_out -> a_in
    rec_weight_exp: int = 0

    @property
    def n_in(self) -> int:
        return int(self.weights.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weights.shape[0])

    def validate(self) -> None:
        """Refuse values outside the registers (so the emulator never has to mimic overflowing
        a Lava Var's storage dtype, which Lava does silently)."""
        w = np.asarray(self.weights)
        if w.ndim != 2 or w.dtype.kind not in "iu":
            raise ProgramRangeError(f"{self.name}: weights must be a 2-D integer array")
        if w.size and (w.min() < -(1 << 15) or w.max() >= (1 << 15)):
            raise ProgramRangeError(f"{self.name}: weights must fit int16 before Lava clips them to 8 bits")
        if self.rec_weights is not None:
            r = np.asarray(self.rec_weights)
            if r.shape != (self.n_out, self.n_out) or r.dtype.kind not in "iu":
                raise ProgramRangeError(f"{self.name}: rec_weights must be an integer [{self.n_out}, {self.n_out}] array")
            if r.size and (r.min() < -(1 << 15) or r.max() >= (1 << 15)):
                raise ProgramRangeError(f"{self.name}: rec_weights must fit int16 before Lava clips them to 8 bits")
            if not LIMITS["weight_exp_min"] <= int(self.rec_weight_exp) <= LIMITS["weight_exp_max"]:
                raise ProgramRangeError(f"{self.name}: rec_weight_exp={self.rec_weight_exp} outside "
                                        f"[{LIMITS['weight_exp_min']}, {LIMITS['weight_exp_max']}]")
        checks = [
            ("du", self.du, 0, LIMITS["du_max"]),
            ("dv", self.dv, 0, LIMITS["dv_max"]),
            ("vth", self.vth, 0, LIMITS["vth_max"]),
            ("num_weight_bits", self.num_weight_bits, 1, LIMITS["weight_bits"]),
            ("weight_exp", self.weight_exp, LIMITS["weight_exp_min"], LIMITS["weight_exp_max"]),
        ]
        for key, val, lo, hi in checks:
            if not lo <= int(val) <= hi:
                raise ProgramRangeError(f"{self.name}: {key}={val} outside [{lo}, {hi}]")
        bm, be = np.asarray(self.bias_mant), np.asarray(self.bias_exp)
        if bm.shape != (self.n_out,) or be.shape != (self.n_out,):
            raise ProgramRangeError(f"{self.name}: bias_mant/bias_exp must have shape [{self.n_out}]")
        if bm.size and (bm.min() < LIMITS["bias_mant_min"] or bm.max() > LIMITS["bias_mant_max"]):
            raise ProgramRangeError(f"{self.name}: bias_mant outside 13-bit signed range")
        if be.size and (be.min() < 0 or be.max() > LIMITS["bias_exp_max"]):
            raise ProgramRangeError(f"{self.name}: bias_exp outside [0, {LIMITS['bias_exp_max']}]")


# --------------------------------------------------------------------------- Lava's weight handling


def sign_mode(weights: np.ndarray) -> int:
    """``determine_sign_mode`` from lava/utils/weightutils.py (all-zero counts as excitatory)."""
    w = np.asarray(weights)
    if w.size == 0 or w.min() >= 0:
        return SIGN_EXCITATORY
    if w.max() <= 0:
        return SIGN_INHIBITORY
    return SIGN_MIXED


def effective_weights(weights: np.ndarray, num_weight_bits: int) -> np.ndarray:
    """The weights ``PyDenseModelBitAcc`` actually accumulates: ``clip_weights(.., 8)`` then
    ``truncate_weights(.., num_weight_bits)`` with the sign mode found from the weights."""
    w = np.asarray(weights).astype(np.int32).astype(np.int64)
    mode = sign_mode(w)
    mixed = int(mode == SIGN_MIXED)
    if mode == SIGN_INHIBITORY:
        w = -w
    w = np.clip(w, -(1 << 8) * mixed, (1 << 8) - 1)  # clip_weights, num_bits=8
    shift = 8 - int(num_weight_bits) + mixed  # truncate_weights
    w = (w >> shift) << shift
    if mode == SIGN_INHIBITORY:
        w = -w
    return w


def effective_bias(bias_mant: np.ndarray, bias_exp: np.ndarray) -> np.ndarray:
    """``scale_bias`` of ``AbstractPyLifModelFixed``: ``bias_mant << bias_exp`` (``>>`` if negative)."""
    m = np.asarray(bias_mant).astype(np.int64)
    e = np.asarray(bias_exp).astype(np.int64)
    return np.where(e >= 0, m << np.maximum(e, 0), m >> np.maximum(-e, 0))


def bias_to_manexp(bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer bias -> (13-bit mantissa, exponent >= 0), smallest exponent that fits (the
    nengo-loihi ``bias_to_manexp`` rule). Exponents above 7 are returned for the caller to refuse."""
    b = np.asarray(bias, dtype=np.float64)
    r = np.maximum(np.abs(b) / LIMITS["bias_mant_max"], 1.0)
    exp = np.ceil(np.log2(r)).astype(np.int64)
    man = np.round(b / 2.0**exp).astype(np.int64)
    over = np.abs(man) > LIMITS["bias_mant_max"]  # rounding can push one step over
    exp = np.where(over, exp + 1, exp)
    man = np.where(over, np.round(b / 2.0**exp), man).astype(np.int64)
    return man, exp


# --------------------------------------------------------------------------- quantization


@dataclass(kw_only=True)
class Check:
    """One constraint evaluated while quantizing (becomes a FitReport item)."""

    name: str
    used: float
    limit: float
    unit: str = ""


@dataclass(kw_only=True)
class QuantReport:
    """How far the fixed-point layer is from its float source, in units of the float threshold."""

    weight_rel_error: float  # ||G - G_q||_F / ||G||_F over the threshold-normalised weights
    weight_max_abs_error: float  # max |G - G_q| (threshold units)
    vth_rel_error: float  # |vth*64 - S| / S
    bias_max_abs_error: float  # threshold units
    decay_v_error: float  # |(4096 - dv)/4096 - beta|
    decay_u_error: float
    v_scale: float  # integer v units per float threshold
    wrap_free: bool  # static bound proves u never wraps
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("weight_rel_error", "weight_max_abs_error", "vth_rel_error",
                                           "bias_max_abs_error", "decay_v_error", "decay_u_error",
                                           "v_scale", "wrap_free")}
        return {k: (bool(v) if isinstance(v, bool | np.bool_) else float(v)) for k, v in d.items()} | {
            "notes": list(self.notes)}


def _float_dynamics(layer: Layer, dt: float) -> dict[str, np.ndarray]:
    """Per-neuron float coefficients of ``fabric.model.snn.simulate_layers`` for this layer."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in layer.params.items()}
    n = layer.n_out
    ones = np.ones(n)
    if layer.neuron == "lif":
        a = dt / p["tau"]
        return {"beta": 1 - a, "gain": a * p["r"], "leak": a * p.get("v_leak", 0 * ones), "alpha": 0 * ones,
                "w_in": ones, "thr": p["v_threshold"], "reset": p.get("v_reset", 0 * ones)}
    if layer.neuron == "cubalif":
        a = dt / p["tau_mem"]
        return {"beta": 1 - a, "gain": a * p["r"], "leak": a * p.get("v_leak", 0 * ones),
                "alpha": 1 - dt / p["tau_syn"], "w_in": p.get("w_in", ones), "thr": p["v_threshold"],
                "reset": p.get("v_reset", 0 * ones)}
    if layer.neuron == "if":
        return {"beta": ones, "gain": p["r"], "leak": 0 * ones, "alpha": 0 * ones, "w_in": ones,
                "thr": p["v_threshold"], "reset": p.get("v_reset", 0 * ones)}
    raise ValueError(f"loihi has no fixed-point mapping for neuron type {layer.neuron!r}")


def _distinct(x: np.ndarray) -> int:
    return int(np.unique(x).size)


def quantize_layer(layer: Layer, dt: float, *, num_weight_bits: int = 8, vth_target: int = 1 << 13) -> tuple[FixedLayer, QuantReport]:
    """Float layer -> Lava fixed-point layer, plus the constraint checks and the quantization error.

    Mixed-sign encoding for every matrix: mantissa ``m`` with ``|m| <= 2^(n-1)-1`` stored as Lava
    weight ``m << (9-n)`` (``n = num_weight_bits``), which Lava's clip and truncation keep unchanged
    in every sign mode. One mantissa step adds ``q = 2^(15-n+weight_exp)`` to ``v`` (<< 6 at the
    neuron). ``weight_exp`` is the largest in [-8, 7] that keeps ``vth`` at or below ``vth_target``
    (2^13 leaves 16 thresholds of headroom below v's -2^23 clip), the bias within mant<<exp, and
    ``u`` provably free of 24-bit wraps; failing that, the largest with ``vth`` and bias in range.
    """
    n_bits = int(num_weight_bits)
    if n_bits < 2:
        raise ValueError("num_weight_bits must be at least 2 (1 bit leaves only the sign in mixed mode)")
    f = _float_dynamics(layer, dt)
    checks: list[Check] = []
    notes: list[str] = []
    thr = f["thr"]
    checks.append(Check(name="thresholds <= 0", used=int((thr <= 0).sum()), limit=0, unit="neurons"))
    checks.append(Check(name="nonzero v_reset", used=int((f["reset"] != 0).sum()), limit=0,
                        unit="neurons"))
    thr_safe = np.where(thr > 0, thr, 1.0)

    # decays: one du and one dv per Lava LIF process
    dv_all = np.clip(np.round(DECAY_UNITY * (1 - f["beta"])), 0, LIMITS["dv_max"]).astype(np.int64)
    if np.any(DECAY_UNITY * (1 - f["beta"]) > LIMITS["dv_max"] + 0.5):
        notes.append(f"{layer.name}: dt/tau >= 1 needs dv=4096; clipped to 4095")
    if layer.neuron == "cubalif":
        du_all = np.clip(np.round(DECAY_UNITY * (1 - f["alpha"])) - DS_OFFSET, 0, LIMITS["du_max"]).astype(np.int64)
    else:
        du_all = np.full(layer.n_out, LIMITS["du_max"], dtype=np.int64)
    checks.append(Check(name="distinct dv per layer", used=_distinct(dv_all), limit=1, unit="values"))
    checks.append(Check(name="distinct du per layer", used=_distinct(du_all), limit=1, unit="values"))
    dv, du = int(np.round(np.median(dv_all))), int(np.round(np.median(du_all)))
    beta_q = (DECAY_UNITY - dv - DM_OFFSET) / DECAY_UNITY
    alpha_q = (DECAY_UNITY - du - DS_OFFSET) / DECAY_UNITY

    # threshold-normalised float drive: v/thr <- beta v/thr + G x + B, spike if > 1
    syn_gain = f["gain"] * f["w_in"]
    g = (syn_gain / thr_safe)[:, None] * np.asarray(layer.weight, dtype=np.float64)
    if layer.neuron == "cubalif":
        # bias enters the synaptic filter in float; Loihi adds it to v: use its steady-state drive
        bias_drive = syn_gain * layer.bias / np.maximum(1 - f["alpha"], 1e-12) + f["leak"]
        if np.any(layer.bias != 0):
            notes.append(f"{layer.name}: CubaLIF bias mapped to its steady-state voltage drive (transient differs)")
    else:
        bias_drive = syn_gain * layer.bias + f["leak"]
    b = bias_drive / thr_safe

    m_max = (1 << (n_bits - 1)) - 1
    gmax = float(np.abs(g).max()) if g.size else 0.0
    delta = gmax / m_max if gmax > 0 else 0.0
    mant = np.round(g / delta).astype(np.int64) if delta > 0 else np.zeros(g.shape, dtype=np.int64)
    lava_w = mant << (9 - n_bits)
    row_abs = np.abs(lava_w).sum(axis=1).max() if lava_w.size else 0

    def candidate(wexp: int) -> tuple[int, np.ndarray, np.ndarray, float, bool, bool]:
        if delta > 0:
            v_scale = 2.0 ** (15 - n_bits + wexp) / delta
        else:  # no weights: scale so vth lands on the target
            v_scale = 64.0 * vth_target
        vth_i = int(np.round(v_scale / (1 << VTH_SHIFT)))
        bm, be = bias_to_manexp(np.round(b * v_scale))
        bias_ok = bool(np.all(be <= LIMITS["bias_exp_max"]))
        a_bound = math.ldexp(float(row_abs), wexp) if wexp >= 0 else math.ceil(math.ldexp(float(row_abs), wexp))
        u_bound = (a_bound * (1 << ACT_SHIFT)) * DECAY_UNITY / (du + DS_OFFSET)
        return vth_i, bm, be, v_scale, bias_ok, u_bound < MAX_UV

    wexps = list(range(LIMITS["weight_exp_max"], LIMITS["weight_exp_min"] - 1, -1))
    cands = {w: candidate(w) for w in wexps}
    chosen = next((w for w in wexps if cands[w][0] <= vth_target and cands[w][4] and cands[w][5]), None)
    if chosen is None:
        chosen = next((w for w in wexps if cands[w][0] <= LIMITS["vth_max"] and cands[w][4]), None)
        if chosen is not None and not cands[chosen][5]:
            notes.append(f"{layer.name}: worst-case input could wrap the 24-bit current u (all inputs at max weight)")
    if chosen is None:
        chosen = LIMITS["weight_exp_min"]
    if delta == 0:
        chosen = 0
    vth, bm, be, v_scale, bias_ok, wrap_free = cands.get(chosen, candidate(chosen))
    if chosen < n_bits - 9:
        notes.append(f"{layer.name}: weight_exp={chosen} floors the accumulated input (lossy right shift)")
    checks.append(Check(name="vth mantissa (17-bit)", used=vth, limit=LIMITS["vth_max"]))
    checks.append(Check(name="bias exponent (3-bit)", used=int(be.max()) if be.size else 0, limit=LIMITS["bias_exp_max"]))
    checks.append(Check(name="weight precision", used=n_bits, limit=LIMITS["weight_bits"], unit="bits"))

    rec_w, rec_exp, rec_err = None, 0, 0.0
    if layer.recurrent is not None:
        # the recurrent Dense gets its own weight_exp: the finest whose mantissas fit n bits, but not
        # below n-9 (a smaller exponent floors the accumulated sum, coarser than one mantissa step)
        g_rec = (syn_gain / thr_safe)[:, None] * np.asarray(layer.recurrent, dtype=np.float64)
        target = g_rec * v_scale  # v units per recurrent spike
        rec_exp = LIMITS["weight_exp_max"] + 1
        for wexp in range(max(LIMITS["weight_exp_min"], n_bits - 9), LIMITS["weight_exp_max"] + 1):
            if np.abs(np.round(target / 2.0 ** (15 - n_bits + wexp))).max(initial=0) <= m_max:
                rec_exp = wexp
                break
        checks.append(Check(name="recurrent weight exponent (weights too large for 8-bit x 2^7)",
                            used=rec_exp, limit=LIMITS["weight_exp_max"]))
        rec_exp = min(rec_exp, LIMITS["weight_exp_max"])
        step = 2.0 ** (15 - n_bits + rec_exp)
        m_rec = np.clip(np.round(target / step), -m_max, m_max).astype(np.int64)
        rec_w = (m_rec << (9 - n_bits)).astype(np.int32)
        rn = float(np.linalg.norm(g_rec))
        rec_err = float(np.linalg.norm(g_rec - m_rec * step / v_scale) / rn) if rn > 0 else 0.0
        notes.append(f"{layer.name}: recurrent Dense, weight_exp {rec_exp}, relative weight error {100 * rec_err:.2f} %")
    fixed = FixedLayer(
        name=layer.name, weights=lava_w.astype(np.int32), weight_exp=int(chosen), num_weight_bits=n_bits,
        du=du, dv=dv, vth=int(np.clip(vth, 0, LIMITS["vth_max"])),
        bias_mant=np.clip(bm, LIMITS["bias_mant_min"], LIMITS["bias_mant_max"]).astype(np.int32),
        bias_exp=np.clip(be, 0, LIMITS["bias_exp_max"]).astype(np.int32),
        rec_weights=rec_w, rec_weight_exp=int(rec_exp),
    )
    g_q = mant * delta
    gnorm = float(np.linalg.norm(g))
    b_q = effective_bias(fixed.bias_mant, fixed.bias_exp) / v_scale
    report = QuantReport(
        weight_rel_error=float(np.linalg.norm(g - g_q) / gnorm) if gnorm > 0 else 0.0,
        weight_max_abs_error=float(np.abs(g - g_q).max()) if g.size else 0.0,
        vth_rel_error=abs(fixed.vth * 64 - v_scale) / v_scale,
        bias_max_abs_error=float(np.abs(b - b_q).max()) if b.size else 0.0,
        decay_v_error=float(np.abs(beta_q - f["beta"]).max()),
        decay_u_error=float(np.abs(alpha_q - f["alpha"]).max()) if layer.neuron == "cubalif" else 0.0,
        v_scale=float(v_scale), wrap_free=bool(wrap_free), checks=checks, notes=notes,
    )
    return fixed, report


# --------------------------------------------------------------------------- resource mapping


def synapse_bits_per_axon(n_targets: int, weight_bits: int = 8) -> int:
    """Synapse-memory bits one input axon uses for ``n_targets`` dense synapses on a core.

    nengo-loihi ``SynapseConfig.bits_per_axon`` with dense compression: blocks of up to 64
    synapses, each ``n * weight_bits`` plus a 10-bit header (4 index + 6 count bits), rounded up to
    64-bit memory words. A full block is 576 bits, i.e. 9 bits per 8-bit synapse.
    """
    bits = 0
    for i in range(0, int(n_targets), 64):
        n = min(int(n_targets) - i, 64)
        bits += -64 * (-(n * weight_bits + 10) // 64)
    return bits


@dataclass(frozen=True, kw_only=True)
class CoreMap:
    """Placement of one layer: ``cores`` cores of at most ``per_core`` neurons each."""

    name: str
    n_in: int
    n_out: int
    per_core: int
    cores: int
    out_targets: int  # cores each neuron's axon must reach (next layer's cores; 1 for the output)

    @property
    def synapse_bits(self) -> int:  # fullest core
        return self.n_in * synapse_bits_per_axon(self.per_core)

    @property
    def out_axons(self) -> int:  # fullest core
        return self.per_core * self.out_targets

    @property
    def total_synapse_bits(self) -> int:
        full, rest = divmod(self.n_out, self.per_core)
        return self.n_in * (full * synapse_bits_per_axon(self.per_core) + synapse_bits_per_axon(rest))


def map_cores(shapes: Sequence[tuple[str, int, int]], neurons_per_core: int | Sequence[int] | None = None,
              recurrent: Sequence[bool] | None = None) -> list[CoreMap]:
    """Split each layer ``(name, n_in, n_out)`` over cores, output layer first (a layer's output
    axons depend on how many cores the next layer uses).

    Automatic: the most neurons per core (<= 1024) whose synapse memory and output axons fit.
    ``neurons_per_core`` forces the split (an int for all layers or one per layer), as nengo-loihi's
    block shapes do; the fit report then shows any limit it breaks. A ``recurrent`` layer's cores also
    take its own ``n_out`` spikes as input axons (and synapse memory), and its neurons' axons also
    reach its own cores.
    """
    n = len(shapes)
    forced: list[int | None]
    if neurons_per_core is None:
        forced = [None] * n
    elif isinstance(neurons_per_core, int):
        forced = [int(neurons_per_core)] * n
    else:
        forced = [int(x) for x in neurons_per_core]
        if len(forced) != n:
            raise ValueError(f"neurons_per_core has {len(forced)} entries for {n} layers")
    out: list[CoreMap] = []
    targets = 1
    rec = [False] * n if recurrent is None else [bool(r) for r in recurrent]
    for (name, n_in, n_out), force, is_rec in zip(reversed(shapes), reversed(forced), reversed(rec), strict=True):
        axons_in = n_in + (n_out if is_rec else 0)
        if force is not None:
            per = max(1, min(force, n_out))
        else:
            per = 1
            for cand in range(min(LIMITS["compartments_per_core"], n_out), 0, -1):
                reach = targets + (-(-n_out // cand) if is_rec else 0)
                if (axons_in * synapse_bits_per_axon(cand) <= LIMITS["synapse_bits_per_core"]
                        and cand * reach <= LIMITS["output_axons_per_core"]):
                    per = cand
                    break
        own = -(-n_out // per)
        cm = CoreMap(name=name, n_in=axons_in, n_out=n_out, per_core=per, cores=own,
                     out_targets=targets + (own if is_rec else 0))
        out.append(cm)
        targets = own
    return out[::-1]


# --------------------------------------------------------------------------- emulation


@dataclass(kw_only=True)
class Emulation:
    """Rasters of every layer ``[B, T, n_l]`` (uint8) and per-layer event counts over the batch."""

    rasters: list[np.ndarray]
    spikes: list[int]
    synaptic_ops: list[float]  # NeuroBench effective ACs: non-zero input x non-zero weight
    neuron_updates: list[float]
    spikes_in: int
    u_wraps: list[int] | None = None  # 24-bit current wraps per layer (count_events=True only)
    v_clips: list[int] | None = None  # voltage clips at -(2^23-1) per layer (count_events=True only)


@dataclass(frozen=True, kw_only=True)
class _Plan:
    """Per-layer constants and static bounds that decide which of Lava's overflow paths can occur."""

    w_t: np.ndarray  # effective weights / w_scale, transposed [n_in, n_out]: int8, float32 or float64
    w_scale: int  # 2 when every effective weight is even (always so for compiled programs), else 1
    weight_exp: int
    u_simple: bool  # du = 4095 and no u wrap: u is exactly this step's input
    u_wrap: bool  # u can leave (-2^23, 2^23] and wrap
    v_clip: bool  # v can reach -2^23 and clip
    cu: float  # (4096 - du - 1) / 4096
    cv: float  # (4096 - dv) / 4096
    bias: np.ndarray  # float64 [n_out]
    vth64: float
    nnz_col: np.ndarray  # non-zero effective weights per input (synaptic-op counting)
    rec_t: np.ndarray | None = None  # effective recurrent weights, transposed [n_out, n_out], float64
    rec_weight_exp: int = 0
    nnz_col_rec: np.ndarray | None = None


def _plan(layer: FixedLayer) -> _Plan:
    """Static bounds on |a|, |u| and min v from the weights: the emulator only pays for the int32 and
    24-bit wraps of u and the clip of v where a worst-case input could trigger them."""
    layer.validate()
    w_eff = effective_weights(layer.weights, layer.num_weight_bits)
    pos = np.clip(w_eff, 0, None).sum(axis=1).astype(np.float64) if w_eff.size else np.zeros(layer.n_out)
    neg = np.clip(-w_eff, 0, None).sum(axis=1).astype(np.float64) if w_eff.size else np.zeros(layer.n_out)

    def shifted(x: np.ndarray) -> np.ndarray:  # |a| bound after the weight_exp shift (floor rounds away)
        return np.ceil(np.ldexp(x, layer.weight_exp))

    a_max = float(np.maximum(shifted(pos), shifted(neg)).max()) if layer.n_out else 0.0
    gain_u = DECAY_UNITY / (layer.du + DS_OFFSET)  # geometric sum of the current decay
    u_max = a_max * (1 << ACT_SHIFT) * gain_u
    u_wrap = u_max >= MAX_UV  # also covers a_buff leaving int32 on the port (u_max >= 64 a_max)
    bias = effective_bias(layer.bias_mant, layer.bias_exp).astype(np.float64)
    u_neg = shifted(neg) * (1 << ACT_SHIFT) * gain_u + np.clip(-bias, 0, None)
    d_neg = float(u_neg.max()) if layer.n_out else 0.0  # most negative drive of one step
    # v >= trunc(v * (4096-dv)/4096) - d_neg, so v stays above -d_neg * 4096/dv when dv > 0
    v_clip = u_wrap or (d_neg > 0 and (layer.dv == 0 or d_neg * DECAY_UNITY / layer.dv >= V_LIMIT))
    row_abs = float((pos + neg).max()) if layer.n_out else 0.0
    w_scale = 2 if not np.any(w_eff & 1) else 1
    w_small = w_eff // w_scale
    if _HAVE_INT_MM and (w_small.size == 0 or np.abs(w_small).max() <= 127):
        w_t = np.ascontiguousarray(w_small.T, dtype=np.int8)  # exact int8 x int8 -> int32 matmul
    else:
        w_scale = 1
        dtype = np.float32 if row_abs < (1 << 24) else np.float64  # integer sums stay exact either way
        w_t = np.ascontiguousarray(w_eff.T, dtype=dtype)
    rec_t = nnz_rec = None
    if layer.rec_weights is not None:
        r_eff = effective_weights(layer.rec_weights, layer.num_weight_bits)
        rec_t = np.ascontiguousarray(r_eff.T, dtype=np.float64)
        nnz_rec = (r_eff != 0).sum(axis=0).astype(np.float64)
    return _Plan(
        rec_t=rec_t, rec_weight_exp=int(layer.rec_weight_exp), nnz_col_rec=nnz_rec,
        w_t=w_t, w_scale=w_scale, weight_exp=layer.weight_exp,
        u_simple=layer.du + DS_OFFSET == DECAY_UNITY and not u_wrap, u_wrap=u_wrap,
        v_clip=v_clip,
        cu=(DECAY_UNITY - layer.du - DS_OFFSET) / DECAY_UNITY, cv=(DECAY_UNITY - layer.dv - DM_OFFSET) / DECAY_UNITY,
        bias=bias, vth64=float(layer.vth << VTH_SHIFT), nnz_col=(w_eff != 0).sum(axis=0).astype(np.float64),
    )


def _wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement int32 wrap of integer-valued float64 (exact below 2^53), in place."""
    x -= 4294967296.0 * np.floor((x + 2147483648.0) / 4294967296.0)
    return x


def _accumulate(rows: np.ndarray, plan: _Plan) -> np.ndarray:
    """``[R, n_out]`` exact integer sums ``rows @ w_t`` of 0/1 rows ``[R, n_in]`` (int8 view).

    Exactness: the int8 GEMM sums ``|w| <= 127`` terms in int32, so it is exact while
    ``127 * n_in < 2^31`` (any n_in below 16 million); the BLAS path is float32 only when every row's
    ``sum |w|`` is below 2^24 (``_plan``), so all its partial sums are integers float32 holds exactly,
    and float64 (exact below 2^53) otherwise."""
    if plan.w_t.dtype == np.int8:
        return torch._int_mm(torch.from_numpy(rows), torch.from_numpy(plan.w_t)).numpy()
    return rows.astype(plan.w_t.dtype) @ plan.w_t


def _scale(acc: np.ndarray, plan: _Plan, out: np.ndarray) -> np.ndarray:
    """``a << 6`` from the accumulated sums, into float64 ``out``: ``(w_scale acc) << weight_exp``, or
    ``>> -weight_exp`` (a floor) when negative. Every value is an integer below 2^53, exact in float64.
    Lava's int32 port and ``a << 6`` wrap modulo 2^32; that is folded into u's int32 wrap
    (wrap32(c + 64 wrap32(a)) == wrap32(c + 64 a)), which runs whenever the bounds allow any wrap."""
    if plan.weight_exp >= 0:
        return np.multiply(acc, float(plan.w_scale << (plan.weight_exp + ACT_SHIFT)), out=out)
    np.multiply(acc, plan.w_scale / float(1 << -plan.weight_exp), out=out)
    np.floor(out, out=out)  # right shift of the accumulated sum: a floor
    out *= float(1 << ACT_SHIFT)
    return out


def _drive(acc: np.ndarray, plan: _Plan) -> np.ndarray:
    """``[T, B, n_out]`` float64 from the sums ``acc [B, T, n_out]`` of every step: what the LIF
    receives at each step, ``a_in << 6``. Dense sends the accumulation of step t-1 at step t (0 at
    the first step); the last step's is never delivered."""
    bsz, steps, n_out = acc.shape
    out = np.empty((steps, bsz, n_out), dtype=np.float64)
    out[:1] = 0.0
    if steps > 1:
        _scale(acc[:, :-1].transpose(1, 0, 2), plan, out[1:])
    return out


def _clip_reachable(drive: np.ndarray, plan: _Plan, steps: int) -> bool:
    """Whether ``v`` can reach the -(2^23-1) clip on *these* drives (not only on the worst-case input
    :func:`_plan` assumes). With ``m`` the most negative drive of any step (the bias alone at step 0)
    and ``c = (4096-dv)/4096``, induction gives ``v_t >= -|m| (1 + c + ... + c^t)``: ``trunc`` moves a
    negative ``v c`` towards zero and the reset sets 0, so neither lowers the bound. The geometric sum
    is below ``min(steps, 1/(1-c))``; the clip cannot trigger while ``|m|`` times that stays under the
    limit (a margin of 1e-9 covers the float rounding of the bound itself)."""
    lo = min(0.0, float(drive.min()) if drive.size else 0.0, float(plan.bias.min()) if plan.bias.size else 0.0)
    span = float(steps) if plan.cv >= 1.0 else min(float(steps), 1.0 / (1.0 - plan.cv))
    return -lo * span >= V_LIMIT * (1.0 - 1e-9)


def _lif_fast(acc: np.ndarray, plan: _Plan, spikes: np.ndarray, events: dict[str, int] | None) -> None:
    """``PyLifModelBitAcc`` for a feed-forward layer whose ``u`` is exactly this step's input
    (``plan.u_simple``: du = 4095 and no wrap possible), writing ``spikes [B, T, n]`` (bool) in place.

    Why a path of its own: it is the layer every compiled program has, and here the per-step work is
    all of the cost. The drive of every step (``a << 6`` plus the bias) is made in place in the int32
    sums by two integer passes, so each step is five cache-resident passes over ``v``: decay, trunc,
    add the drive, spike compare (straight into the raster), reset by the negated spike mask. The v
    clip runs only if :func:`_clip_reachable` says these drives can reach it (one min over the
    drives instead of a maximum pass per step). Exactness: ``u_simple`` means ``|a << 6| < 2^23`` and
    ``|bias| < 2^19``, so the int32 drive cannot overflow; ``v`` stays an integer of at most 24 bits
    and ``v * (4096-dv)/4096`` needs at most 36, so every float64 op is exact and the order of the
    additions does not matter (same values as :func:`_lif`)."""
    bsz, steps, n = acc.shape
    v = np.zeros((bsz, n))
    keep = np.empty((bsz, n), dtype=bool)
    drive = acc if acc.dtype == np.int32 else acc.astype(np.int32)  # BLAS sums are exact integers
    if plan.weight_exp >= 0:
        drive *= np.int32(plan.w_scale << (plan.weight_exp + ACT_SHIFT))
    else:  # right shift of the accumulated sum: a floor
        if plan.w_scale != 1:
            drive *= np.int32(plan.w_scale)
        drive >>= -plan.weight_exp
        drive <<= ACT_SHIFT
    drive += plan.bias.astype(np.int32)
    clip = plan.v_clip and _clip_reachable(drive[:, :-1], plan, steps)
    decay = plan.cv not in (0.0, 1.0)
    for t in range(steps):
        if plan.cv == 0.0:
            v.fill(0.0)
        elif decay:
            np.multiply(v, plan.cv, out=v)
            np.trunc(v, out=v)  # sign(v*c) * (|v*c| >> 12)
        if t > 0:
            v += drive[:, t - 1]
        else:
            v += plan.bias  # step 0 gets no Dense input, only the bias
        if clip:
            if events is not None:
                events["v_clips"] += int(np.count_nonzero(v < -V_LIMIT))
            np.maximum(v, -V_LIMIT, out=v)
        # the +(2^23-1) clip never matters: vth << 6 < 2^23-1, so a clipped v spikes and resets to 0
        fired = spikes[:, t]
        np.greater(v, plan.vth64, out=fired)
        np.logical_not(fired, out=keep)  # a pass over bools, not another compare of float64 v
        np.multiply(v, keep, out=v)


def _lif(act: np.ndarray, plan: _Plan, events: dict[str, int] | None) -> np.ndarray:
    """Run ``PyLifModelBitAcc`` over all steps of ``act [T, B, n]`` (``a_in << 6``), in place:
    ``act[t]`` ends as step t's voltage before the spike reset. Returns spikes ``[T, B, n]`` bool."""
    steps, bsz, n = act.shape
    v = np.zeros((bsz, n))
    keep = np.empty((bsz, n), dtype=bool)
    tmp = np.empty((bsz, n))
    if plan.u_simple:
        act += plan.bias  # u is this step's input: fold the constant bias in once
    else:
        u = np.zeros((bsz, n))
    for t in range(steps):
        vt = act[t]
        if not plan.u_simple:
            if plan.cu != 0.0:
                np.multiply(u, plan.cu, out=u)
                np.trunc(u, out=u)  # sign(u*c) * (|u*c| >> 12): exact in float64
                u += vt
            else:
                np.copyto(u, vt)
            if plan.u_wrap:
                _wrap32(u)  # decayed_curr += a << 6 is int32 arithmetic
                hi, lo = u > MAX_UV, u <= -MAX_UV
                if events is not None:
                    events["u_wraps"] += int(hi.sum() + lo.sum())
                u[hi] -= 2 * MAX_UV
                u[lo] += 2 * MAX_UV
            np.add(u, plan.bias, out=vt)
        if plan.cv != 1.0:
            np.multiply(v, plan.cv, out=tmp)
            np.trunc(tmp, out=tmp)
            vt += tmp
        else:
            vt += v
        if plan.u_wrap:
            _wrap32(vt)  # decayed_volt + u + bias in int32
        if plan.v_clip:
            if events is not None:
                events["v_clips"] += int((vt < -V_LIMIT).sum())
            np.maximum(vt, -V_LIMIT, out=vt)
        # the +(2^23-1) clip never matters: vth << 6 < 2^23-1, so a clipped v spikes and resets to 0
        np.less_equal(vt, plan.vth64, out=keep)
        np.multiply(vt, keep, out=v)
    return act > plan.vth64


def _lif_recurrent(act: np.ndarray, plan: _Plan, events: dict[str, int] | None) -> np.ndarray:
    """``PyLifModelBitAcc`` with a recurrent ``Dense`` from its own ``s_out`` (one step late, like every
    Dense). Per step: ``a = a_ff[t] + shift(W_rec s[t-1])``, then the LIF update with every int32 and
    24-bit wrap and the v clip applied unconditionally. Returns spikes ``[T, B, n]`` bool."""
    assert plan.rec_t is not None
    steps, bsz, n = act.shape
    u, v = np.zeros((bsz, n)), np.zeros((bsz, n))
    s_prev = np.zeros((bsz, n))
    out = np.zeros((steps, bsz, n), dtype=bool)
    for t in range(steps):
        acc = s_prev @ plan.rec_t  # exact integer sums in float64
        if plan.rec_weight_exp >= 0:
            rec = acc * float(1 << (plan.rec_weight_exp + ACT_SHIFT))
        else:
            rec = np.floor(acc / float(1 << -plan.rec_weight_exp)) * float(1 << ACT_SHIFT)
        u = np.trunc(u * plan.cu) + act[t] + rec
        _wrap32(u)
        hi, lo = u > MAX_UV, u <= -MAX_UV
        if events is not None:
            events["u_wraps"] += int(hi.sum() + lo.sum())
        u[hi] -= 2 * MAX_UV
        u[lo] += 2 * MAX_UV
        vt = np.trunc(v * plan.cv) + u + plan.bias
        _wrap32(vt)
        if events is not None:
            events["v_clips"] += int((vt < -V_LIMIT).sum())
        np.maximum(vt, -V_LIMIT, out=vt)
        s = vt > plan.vth64
        v = np.where(s, 0.0, vt)
        out[t] = s
        s_prev = s.astype(np.float64)
    return out


def _column_counts(h: np.ndarray) -> np.ndarray:
    """Spikes per neuron of ``h [b, T, n]`` (bool) over the chunk, int64. Blocks of 255 rows are
    summed in uint8 (a 0/1 sum of 255 rows cannot overflow it), which is several times faster than
    widening every element."""
    rows = h.reshape(-1, h.shape[-1]).view(np.uint8)
    full = rows.shape[0] // 255
    counts = rows[full * 255:].sum(axis=0, dtype=np.int64)
    if full:
        counts += rows[:full * 255].reshape(full, 255, -1).sum(axis=1, dtype=np.uint8).sum(axis=0, dtype=np.int64)
    return counts


def _run_chunk(plans: Sequence[_Plan], h: np.ndarray, outs: Sequence[np.ndarray],
               count_events: bool) -> tuple[int, list[float], list[int], list[dict[str, int]]]:
    """All layers over all steps for one batch chunk ``h [b, T, n_in]`` (bool, batch-major); layer
    k's spikes go into ``outs[k] [b, T, n_k]``. Returns the input spike count and, per layer, the
    synaptic ops, the output spike count and the event counts."""
    bsz, steps, _ = h.shape
    counts = _column_counts(h)
    spikes_in = int(counts.sum())
    ops: list[float] = []
    spikes: list[int] = []
    events: list[dict[str, int]] = []
    for plan, out in zip(plans, outs, strict=True):
        ops.append(float(counts.astype(np.float64) @ plan.nnz_col))
        ev = {"u_wraps": 0, "v_clips": 0}
        # every step's sum, the last one's too (never delivered; 1/T extra work buys a copy-free view)
        acc = _accumulate(h.reshape(bsz * steps, -1).view(np.int8), plan).reshape(bsz, steps, -1)
        if plan.rec_t is None and plan.u_simple:
            _lif_fast(acc, plan, out, ev if count_events else None)
        else:
            act = _drive(acc, plan)
            del acc
            if plan.rec_t is None:
                s = _lif(act, plan, ev if count_events else None)
            else:
                s = _lif_recurrent(act, plan, ev if count_events else None)
                # the spikes of the last step are never delivered back (Dense sends them one step later)
                ops[-1] += float(s[:-1].sum(axis=(0, 1), dtype=np.float64) @ plan.nnz_col_rec)
            out[...] = s.transpose(1, 0, 2)
        h = out
        counts = _column_counts(h)
        spikes.append(int(counts.sum()))
        events.append(ev)
    return spikes_in, ops, spikes, events


def _int_mm_works() -> bool:
    """``torch._int_mm`` (int8 GEMM, exact int32 sums) is private API: use it only if it is there
    and right on this build; otherwise the float32/float64 BLAS path (also exact) is used."""
    try:
        a = torch.tensor([[1, 0, 1]], dtype=torch.int8)
        b = torch.tensor([[127], [5], [-128]], dtype=torch.int8)
        return torch._int_mm(a, b).tolist() == [[-1]]
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


_HAVE_INT_MM = _int_mm_works()


def _as_spikes(x: np.ndarray) -> np.ndarray:
    """``x != 0`` as a C-contiguous bool array, without a pass when ``x`` already holds only 0/1."""
    if x.dtype == np.bool_:
        return np.ascontiguousarray(x)
    if x.dtype in (np.uint8, np.int8) and (x.size == 0 or (x.min() >= 0 and x.max() <= 1)):
        return np.ascontiguousarray(x).view(np.bool_)
    return x != 0


def emulate(layers: Sequence[FixedLayer], spikes: np.ndarray | torch.Tensor, *, count_events: bool = False,
            threads: int | None = None) -> Emulation:
    """Bit-accurate Lava fixed-point run of a Dense->LIF chain on ``spikes [B, T, n_in]``.

    Identical to Lava running ``RingBuffer(source) -> Dense -> LIF -> ...`` for T steps with one
    sample: non-zero inputs are spikes, each Dense delays by one step, state starts at zero.
    Layer-major: each layer's synaptic input for all steps is one matmul; only the LIF recurrence
    loops over time, on the whole batch. Batch chunks run on ``threads`` threads (numpy releases the
    GIL); ``count_events`` also counts 24-bit current wraps and voltage clips (diagnostics).
    """
    x = np.asarray(spikes.detach().cpu() if isinstance(spikes, torch.Tensor) else spikes)
    if x.ndim != 3:
        raise ValueError(f"spikes must be [batch, timesteps, n_in], got {list(x.shape)}")
    bsz, steps, n_in = x.shape
    plans = [_plan(layer) for layer in layers]
    n_prev = n_in
    for layer in layers:
        if layer.n_in != n_prev:
            raise ValueError(f"layer {layer.name!r} expects {layer.n_in} inputs, got {n_prev}")
        n_prev = layer.n_out
    h = _as_spikes(x)
    rasters = [np.empty((bsz, steps, layer.n_out), dtype=np.bool_) for layer in layers]
    widest = max([n_in, *(layer.n_out for layer in layers)])
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n_threads = max(1, min(threads or usable, 8))
    by_work = n_threads if bsz * widest >= 1 << 14 else 1  # threads pay off above ~16k states
    by_memory = -(-steps * bsz * widest * 8 // (256 << 20))  # keep each chunk's float64 buffer small
    n_chunks = max(1, min(bsz, max(by_work, by_memory)))
    bounds = np.linspace(0, bsz, n_chunks + 1).astype(int)

    def chunk(ab: tuple[int, int]) -> tuple[int, list[float], list[int], list[dict[str, int]]]:
        a, b = ab
        return _run_chunk(plans, h[a:b], [r[a:b] for r in rasters], count_events)

    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    if len(spans) > 1 and n_threads > 1:
        with ThreadPoolExecutor(max_workers=min(n_threads, len(spans))) as pool:
            parts = list(pool.map(chunk, spans))
    else:
        parts = [chunk(s) for s in spans]
    n_layers = len(layers)
    return Emulation(
        rasters=[r.view(np.uint8) for r in rasters],
        spikes=[sum(p[2][k] for p in parts) for k in range(n_layers)],
        synaptic_ops=[float(sum(p[1][k] for p in parts)) for k in range(n_layers)],
        neuron_updates=[float(bsz * steps * layer.n_out) for layer in layers],
        spikes_in=sum(p[0] for p in parts),
        u_wraps=[sum(p[3][k]["u_wraps"] for p in parts) for k in range(n_layers)] if count_events else None,
        v_clips=[sum(p[3][k]["v_clips"] for p in parts) for k in range(n_layers)] if count_events else None,
    )


# --------------------------------------------------------------------------- program (de)serialisation


def layers_to_arrays(layers: Sequence[FixedLayer]) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Fixed layers -> Program arrays (``l{i}.weights``, ``l{i}.bias_mant``, ``l{i}.bias_exp``) and
    per-layer scalar metadata (docs/loihi_program_format.md)."""
    arrays: dict[str, np.ndarray] = {}
    meta: list[dict[str, Any]] = []
    for i, layer in enumerate(layers):
        arrays[f"l{i}.weights"] = np.asarray(layer.weights, dtype=np.int32)
        arrays[f"l{i}.bias_mant"] = np.asarray(layer.bias_mant, dtype=np.int32)
        arrays[f"l{i}.bias_exp"] = np.asarray(layer.bias_exp, dtype=np.int32)
        meta.append({"name": layer.name, "n_in": layer.n_in, "n_out": layer.n_out, "weight_exp": int(layer.weight_exp),
                     "num_weight_bits": int(layer.num_weight_bits), "du": int(layer.du), "dv": int(layer.dv),
                     "vth": int(layer.vth)})
        if layer.rec_weights is not None:
            arrays[f"l{i}.rec_weights"] = np.asarray(layer.rec_weights, dtype=np.int32)
            meta[-1]["rec_weight_exp"] = int(layer.rec_weight_exp)
    return arrays, meta


def layers_from_arrays(arrays: dict[str, np.ndarray], meta: Sequence[dict[str, Any]]) -> list[FixedLayer]:
    return [
        FixedLayer(name=m["name"], weights=np.asarray(arrays[f"l{i}.weights"]).astype(np.int32),
                   weight_exp=int(m["weight_exp"]), num_weight_bits=int(m["num_weight_bits"]), du=int(m["du"]),
                   dv=int(m["dv"]), vth=int(m["vth"]), bias_mant=np.asarray(arrays[f"l{i}.bias_mant"]).astype(np.int32),
                   bias_exp=np.asarray(arrays[f"l{i}.bias_exp"]).astype(np.int32),
                   rec_weights=(np.asarray(arrays[f"l{i}.rec_weights"]).astype(np.int32)
                                if f"l{i}.rec_weights" in arrays else None),
                   rec_weight_exp=int(m.get("rec_weight_exp", 0)))
        for i, m in enumerate(meta)
    ]


def fixed_program(layers: Sequence[FixedLayer], *, dt: float = 1e-3, fit: FitReport | None = None,
                  meta: dict[str, Any] | None = None) -> Program:
    """Wrap fixed layers as a ``loihi`` Program (what the compiler emits; tests build random ones)."""
    for layer in layers:
        layer.validate()
    arrays, lmeta = layers_to_arrays(layers)
    full = {"format": PROGRAM_FORMAT, "dt": float(dt), "n_in": layers[0].n_in, "n_out": layers[-1].n_out,
            "pipeline_delay": len(layers), "layers": lmeta}
    full.update(meta or {})
    return Program(kind="loihi", arrays=arrays, meta=full, fit=fit or FitReport(kind="loihi"))


def program_layers(program: Program) -> list[FixedLayer]:
    """The fixed layers of a ``loihi`` Program (validated)."""
    if program.kind != "loihi":
        raise ValueError(f"program was compiled for {program.kind!r}, not 'loihi'")
    if program.meta.get("format") != PROGRAM_FORMAT:
        raise ValueError(f"unknown loihi program format {program.meta.get('format')!r}; expected {PROGRAM_FORMAT!r}")
    layers = layers_from_arrays(program.arrays, program.meta["layers"])
    for layer in layers:
        layer.validate()
    return layers
