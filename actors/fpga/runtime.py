"""``fpga`` kind: a ReckOn-style spiking RNN core on an FPGA, emulated bit-level.

What is modelled (ReckOn doc v1.0, ChFrenkel/ReckOn; Frenkel & Indiveri, ISSCC 2022), and why:

* **Fixed topology** ``(<=256 inputs) -> <=256 recurrent LIF -> <=16 outputs``. A graph must be
  ``Input -> Affine -> LIF [self-loop via Affine/Linear] -> Affine -> LIF|LI -> Output``. A one-layer
  graph is mapped through a *relay* hidden layer (hidden neuron ``i`` fires exactly when input ``i``
  does), since ReckOn's outputs only listen to the recurrent layer.
* **Numbers:** 8-bit signed weights, sign-extended and left-shifted by one 3-bit shift per matrix
  (``SPI_FP_LOC_WINP/WREC/WOUT``); 16-bit saturating membranes and thresholds; hidden leak ``alpha``
  is u1.15 restricted to ``[0.875, 1.125)`` and shared by each neuron pair together with the
  threshold; the output leak ``kappa`` is u1.7, one value for all outputs. Update per tick:
  ``v <- sat16(((alpha * v) >> 15) + sum(w << shift))``; spike when ``v > thr``; reset to zero
  (``SPI_RST_MODE = 1``). Hidden spikes reach the recurrent layer one tick later and the outputs in
  the same tick (the reference semantics; an assumption about the tick's internal order). The tick is
  :mod:`actors.fpga.datapath`, shared with on-device learning.
* **Outputs:** ReckOn's outputs are leaky integrators. A NIR ``LI`` output is read as ReckOn does for
  classification (highest output averaged over the ticks); a NIR ``LIF`` output is emulated as that
  integrator plus a threshold comparator and reset in the FPGA readout logic (our addition to ReckOn),
  read as spike counts. The output hard-sigmoid (``SPI_NO_OUT_ACT = 0``) is not modelled.
* **Biases:** ReckOn neurons have none. A hidden bias becomes the weights of an always-on virtual
  input (costs one input); an output bias becomes the output weights of an always-on hidden neuron
  (costs one hidden neuron, two when the hidden count is odd, because parameters are shared per pair).
* **Resources** (estimate, no synthesis): the core is sized to the mapped network (ReckOn's ``N``
  parameter); RAMB36 in 4K x 9 mode per weight matrix ``ceil(n_pre * n_post / 4096)`` plus one for the
  neuron state (capacity from AMD/Xilinx UG473; 8-bit weights as in ReckOn); ``LUT = lut_base +
  lut_per_output * n_out`` and ``DSP = dsp_base`` (declared estimates: no synthesis, no published FPGA
  build of ReckOn). Only BRAM is checked against the chosen Xilinx 7-series part (DS180): within
  ReckOn's 256/256/16 limits the LUT and DSP estimates cannot exceed even the smallest listed part, so a
  check on them could never fail (:func:`max_resources` proves it; the fpga tests pin it).
* **Time:** one tick per step, ``max(tick_s, cycles / clock_hz)`` with a time-multiplexed datapath:
  ``cycles = events * ceil(n_hid/16) + hidden spikes * (ceil(n_hid/16) + 1) + ceil(n_hid/2) + n_out``
  (16 weights per 128-bit SRAM word, 2 neurons per neuron-SRAM word); ticks that overrun are counted.
* **On-device learning:** :meth:`FpgaRuntime.learn` runs e-prop (ReckOn's rule; :mod:`actors.fpga.eprop`)
  on the loaded program's own 8-bit weights and 16-bit states, with stochastic rounding of the weight
  updates, and loads the learnt program (a new artifact: programs are immutable). Traces are float
  in the emulation (ReckOn: 12/12/10-bit). Not modelled: neuron noise.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import nir
import numpy as np

from actors.base.common import check_input
from actors.base.emulated import DeviceRun, EmulatedRuntime, raise_if_unfit
from actors.base.energy import DeviceConstants, banded, modelled_energy
from actors.fpga.datapath import ALPHA_FRAC_BITS, V_MAX, W_MAX, WEIGHT_BITS, device_inputs, ticks
from fabric.ir.lowering import (
    DEFAULT_HANDLERS,
    NEURON_HANDLERS,
    SPATIAL_HANDLERS,
    SYNAPSE_HANDLERS,
    Handler,
    Layer,
    merge_handlers,
)
from fabric.ir.recurrent import LI_HANDLERS, lower_recurrent
from fabric.kinds import Capabilities
from fabric.records import FitReport, Program

__all__ = ["FpgaRuntime", "estimate_resources", "max_resources"]

HANDLERS = merge_handlers(DEFAULT_HANDLERS, SYNAPSE_HANDLERS, SPATIAL_HANDLERS,
                          {nir.LIF: NEURON_HANDLERS[nir.LIF], nir.IF: NEURON_HANDLERS[nir.IF]}, LI_HANDLERS)
THR_TARGET = 4096  # integer threshold the largest float threshold maps to (3 bits of headroom in 16)


def estimate_resources(n_in: int, n_hid: int, n_out: int, recurrent: bool, constants: Any) -> dict[str, int]:
    """LUT/BRAM36/DSP estimate of a ReckOn-style core sized to the network (formula in the module doc)."""
    word = int(constants.value("bram_word_bytes"))
    bram = math.ceil(n_in * n_hid / word) + math.ceil(n_hid * n_out / word) + 1
    if recurrent:
        bram += math.ceil(n_hid * n_hid / word)
    lut = int(constants.value("lut_base") + constants.value("lut_per_output") * n_out)
    return {"lut": lut, "bram36": bram, "dsp": int(constants.value("dsp_base"))}


def max_resources(constants: Any) -> dict[str, int]:
    """The largest estimate any network within ReckOn's limits can need (256 inputs, 256 recurrent, 16
    outputs): why only BRAM is a fit check (LUT and DSP at this maximum stay below the smallest part)."""
    lim = constants.limits
    return estimate_resources(int(lim["max_inputs"]), int(lim["max_recurrent"]), int(lim["max_outputs"]), True,
                              constants)


def _coeffs(layer: Layer, dt: float) -> dict[str, np.ndarray]:
    p = layer.params
    if layer.neuron == "if":
        return {"beta": np.ones(layer.n_out), "gain": p["r"], "leak": np.zeros(layer.n_out)}
    return {"beta": 1 - dt / p["tau"], "gain": dt / p["tau"] * p["r"], "leak": dt / p["tau"] * p["v_leak"]}


def _shift_for(max_abs: float, scale: float, max_shift: int) -> int:
    for sh in range(max_shift + 1):
        if max_abs * scale / 2**sh <= W_MAX:
            return sh
    return max_shift


def _q8(w: np.ndarray, scale: float, shift: int) -> np.ndarray:
    return np.clip(np.rint(w * scale / 2**shift), -W_MAX, W_MAX).astype(np.int64)


class FpgaRuntime(EmulatedRuntime):
    kind: ClassVar[str] = "fpga"
    capabilities: ClassVar[Capabilities] = Capabilities(
        weight_bits=WEIGHT_BITS,
        weight_bits_source=f"actors/fpga/constants.yaml weight_bits {WEIGHT_BITS} (ReckOn-style {WEIGHT_BITS}-bit signed weights)",
        time_mode="realtime")
    handlers: ClassVar[dict[type, Handler]] = HANDLERS
    options_doc: ClassVar[dict[str, str]] = {
        "part": "Xilinx 7-series part whose LUT/BRAM36/DSP bound the mapping (default xc7a35t; "
                "also xc7a15t, xc7a100t)",
    }
    emulation: ClassVar[str] = (
        "bit-level ReckOn-style core: 8-bit weights with per-matrix shifts, 16-bit saturating membranes, "
        "u1.15 pair-shared alpha, u1.7 shared output kappa, reset to zero, recurrent input one tick late; "
        "optional on-device e-prop learning (learn(); LI outputs)"
    )

    def _compile_device(self, graph: nir.NIRGraph, options: dict[str, Any]) -> Program:
        lim, c = self.constants.limits, self.constants
        part = options.get("part", lim["default_part"])
        if part not in lim["parts"]:
            raise ValueError(f"fpga: unknown part {part!r}; known parts: {sorted(lim['parts'])}")
        ctx = lower_recurrent(graph, self.kind, HANDLERS)
        layers, dt = ctx.layers, ctx.dt
        fit = FitReport(kind=self.kind, notes=list(ctx.notes))
        fit.add("neuron layers (recurrent hidden + output)", len(layers), 2, "layers")
        raise_if_unfit(fit)
        relay = len(layers) == 1
        out = layers[-1]
        hid = None if relay else layers[0]
        bad_model = int(hid is not None and hid.neuron == "li")
        fit.add("hidden layer of non-spiking LI units (ReckOn hidden units are LIF)", bad_model, 0, "layers")
        fit.add("recurrent output layer (ReckOn outputs are feed-forward)", int(out.recurrent is not None), 0, "layers")
        raise_if_unfit(fit)
        arrays: dict[str, np.ndarray] = {}
        n_in = out.n_in if relay else hid.n_in  # type: ignore[union-attr]
        co = _coeffs(out, dt)
        b_out = co["gain"] * out.bias
        need_out_bias = bool(np.any(b_out != 0))
        if relay:
            n_real = n_in
            w_in_q = np.eye(n_in, dtype=np.int64) * W_MAX
            sh_in, w_rec_q, sh_rec = 0, None, 0
            thr_h = np.zeros(n_in, np.int64)
            alpha = np.full(n_in, 2**ALPHA_FRAC_BITS, np.int64)
            need_in_bias = need_out_bias
            b_in_q = np.zeros(n_in, np.int64)
            fit.notes.append("one-layer graph mapped through a relay hidden layer (hidden i fires when input i does)")
        else:
            assert hid is not None
            ch = _coeffs(hid, dt)
            n_real = hid.n_out
            thr = hid.params["v_threshold"]
            fit.add("hidden v_leak != 0 (ReckOn leaks toward 0)", int(np.count_nonzero(ch["leak"])), 0, "neurons")
            fit.add("hidden v_reset != 0 (ReckOn resets to 0)", int(np.count_nonzero(hid.params["v_reset"])), 0, "neurons")
            w_in = ch["gain"][:, None] * hid.weight
            b_in = ch["gain"] * hid.bias
            w_rec = None if hid.recurrent is None else ch["gain"][:, None] * hid.recurrent
            need_in_bias = bool(np.any(b_in != 0)) or need_out_bias
            s_h = THR_TARGET / max(float(np.max(np.abs(thr))), 1e-12)
            wmax = max(float(np.max(np.abs(w_in), initial=0)), float(np.max(np.abs(b_in), initial=0)),
                       0.0 if w_rec is None else float(np.max(np.abs(w_rec), initial=0)))
            s_h = min(s_h, W_MAX * 2 ** lim["max_weight_shift"] / max(wmax, 1e-12))
            sh_in = _shift_for(max(float(np.max(np.abs(w_in), initial=0)), float(np.max(np.abs(b_in), initial=0))),
                               s_h, lim["max_weight_shift"])
            w_in_q, b_in_q = _q8(w_in, s_h, sh_in), _q8(b_in, s_h, sh_in)
            sh_rec = 0 if w_rec is None else _shift_for(float(np.max(np.abs(w_rec))), s_h, lim["max_weight_shift"])
            w_rec_q = None if w_rec is None else _q8(w_rec, s_h, sh_rec)
            thr_h = np.clip(np.rint(thr * s_h), 0, V_MAX).astype(np.int64)
            alpha_f = ch["beta"]
            n_bad = int(np.count_nonzero((alpha_f < lim["alpha_min"]) | (alpha_f >= lim["alpha_max"])))
            fit.add(f"hidden alpha outside [{lim['alpha_min']}, {lim['alpha_max']}) (u1.15, 4 MSBs 1.000|0.111)",
                    n_bad, 0, "neurons")
            alpha = np.rint(alpha_f * 2**ALPHA_FRAC_BITS).astype(np.int64)
            pairs = np.arange(0, n_real - 1, 2)
            mism = int(np.count_nonzero((alpha[pairs] != alpha[pairs + 1]) | (thr_h[pairs] != thr_h[pairs + 1])))
            fit.add("neuron pairs with different alpha/threshold (shared per pair)", mism, 0, "pairs")
        # hidden array: real neurons [+ pad] [+ always-on bias neuron]
        extra = 0 if not need_out_bias else (2 if n_real % 2 else 1)
        n_hid = n_real + extra
        n_in_used = n_in + int(need_in_bias)
        w_in_full = np.zeros((n_hid, n_in_used), np.int64)
        w_in_full[:n_real, :n_in] = w_in_q
        if need_in_bias:
            w_in_full[:n_real, n_in] = b_in_q
        thr_full = np.concatenate([thr_h, np.zeros(extra, np.int64)])
        alpha_full = np.concatenate([alpha, np.full(extra, 2**ALPHA_FRAC_BITS, np.int64)])
        if need_out_bias:
            w_in_full[n_hid - 1, n_in] = 1  # fires every tick (threshold 0)
            if extra == 2:  # the pad neuron shares its partner's parameters and is silent (no weights)
                thr_full[n_real], alpha_full[n_real] = thr_full[n_real - 1], alpha_full[n_real - 1]
        w_rec_full = None
        if w_rec_q is not None:
            w_rec_full = np.zeros((n_hid, n_hid), np.int64)
            w_rec_full[:n_real, :n_real] = w_rec_q
        # output layer
        is_li = out.neuron == "li"
        w_out = co["gain"][:, None] * out.weight
        fit.add("output v_leak != 0 (ReckOn leaks toward 0)", int(np.count_nonzero(co["leak"])), 0, "neurons")
        if not is_li:
            fit.add("output v_reset != 0 (reset to 0)", int(np.count_nonzero(out.params["v_reset"])), 0, "neurons")
        kappa = np.rint(co["beta"] * 2 ** lim["kappa_frac_bits"]).astype(np.int64)
        fit.add("output kappa values (u1.7, one shared by all outputs)", len(np.unique(kappa)), 1, "values")
        wmax_o = max(float(np.max(np.abs(w_out), initial=0)), float(np.max(np.abs(b_out), initial=0)))
        if is_li:
            s_o = W_MAX * 8 / max(wmax_o, 1e-12)
        else:
            s_o = THR_TARGET / max(float(np.max(np.abs(out.params["v_threshold"]))), 1e-12)
            s_o = min(s_o, W_MAX * 2 ** lim["max_weight_shift"] / max(wmax_o, 1e-12))
        sh_out = _shift_for(wmax_o, s_o, lim["max_weight_shift"])
        w_out_full = np.zeros((out.n_out, n_hid), np.int64)
        w_out_full[:, :n_real] = _q8(w_out, s_o, sh_out)
        if need_out_bias:
            w_out_full[:, n_hid - 1] = _q8(b_out, s_o, sh_out)
        thr_o = (np.zeros(out.n_out, np.int64) if is_li
                 else np.clip(np.rint(out.params["v_threshold"] * s_o), 0, V_MAX).astype(np.int64))
        # limits and resources
        fit.add("input channels (virtual input neurons)", n_in_used, lim["max_inputs"], "inputs")
        fit.add("recurrent LIF neurons", n_hid, lim["max_recurrent"], "neurons")
        fit.add("output neurons", out.n_out, lim["max_outputs"], "neurons")
        res = estimate_resources(n_in_used, n_hid, out.n_out, w_rec_full is not None, c)
        pl = lim["parts"][part]
        # BRAM is the only resource that can run out within ReckOn's limits (256/256/16): the LUT and DSP
        # estimates stay below the smallest listed part for every network that passes the checks above
        # (LUT <= lut_base + 16 lut_per_output; DSP = dsp_base), so they are reported, not checked.
        fit.add("BRAM36 (estimate)", res["bram36"], pl["bram36"], "RAMB36", f"part:{part}")
        fit.notes.append(f"resources (estimate, no synthesis; formula in actors/fpga/runtime.py): {res} on {part} {pl}; "
                         "LUT/DSP are not checked: they cannot exceed any listed part within ReckOn's limits")
        if need_in_bias or need_out_bias:
            fit.notes.append(f"biases mapped onto an always-on input ({int(need_in_bias)}) and an always-on hidden "
                             f"neuron ({int(need_out_bias)}), +{extra} hidden slot(s)")
        fit.notes.append("on-chip e-prop learning: FpgaRuntime.learn (needs LI outputs, ReckOn's readout)")
        if abs(dt - c.value("tick_s")) > 1e-12:
            fit.notes.append(f"graph dt = {dt:g} s: one model step per tick of {c.value('tick_s'):g} s")
        raise_if_unfit(fit)
        arrays.update({"w_in": w_in_full.astype(np.int8), "w_out": w_out_full.astype(np.int8),
                       "thr_h": thr_full, "alpha": alpha_full, "thr_o": thr_o, "kappa": kappa,
                       "shifts": np.array([sh_in, sh_rec, sh_out], np.int64), "s_o": np.array([s_o])})
        if w_rec_full is not None:
            arrays["w_rec"] = w_rec_full.astype(np.int8)
        footprint = int(w_in_full.size + w_out_full.size + (0 if w_rec_full is None else w_rec_full.size)
                        + 16 * math.ceil(n_hid / 2) + 2 * out.n_out)
        names = ["relay" if relay else hid.name, out.name]  # type: ignore[union-attr]
        return Program(kind=self.kind, arrays=arrays, fit=fit, meta={
            "layers": names, "dt": dt, "n_in": n_in, "n_out": out.n_out, "n_hid": n_hid, "n_in_used": n_in_used,
            "bias_input": need_in_bias, "output": "li" if is_li else "lif", "part": part, "resources": res,
            "footprint_bytes": footprint, "recurrent": w_rec_full is not None,
        })

    def learn(self, spikes: np.ndarray, labels: np.ndarray, epochs: int = 5, lr: float = 0.05, *,
              batch_size: int = 32, seed: int = 0, feedback: str = "symmetric", progress: bool = False) -> Program:
        """On-device e-prop learning (ReckOn's rule, :mod:`actors.fpga.eprop`) on the loaded program.

        Updates the 8-bit input, recurrent and output weights from ``spikes [N, T, n_in]`` and integer
        ``labels`` over ``epochs`` passes, loads the learnt program and returns it (a new Program: the
        old artifact is untouched). ``meta["eprop"]`` records the settings and the per-epoch history.
        Needs LI outputs (ReckOn's leaky-integrator readout): a LIF-output program is refused.
        """
        from tqdm.auto import tqdm

        from actors.fpga.eprop import EpropState, eprop_epoch

        if self.program is None:
            raise RuntimeError("fpga: no program loaded; call load(program) before learn()")
        meta, a = self.program.meta, self.program.arrays
        if meta.get("output") != "li":
            raise ValueError("fpga: learn() needs leaky-integrator (LI) outputs, ReckOn's readout; this program's "
                             f"outputs are {meta.get('output')!r} (export the graph with an LI output layer)")
        if "fallback" in meta:
            raise ValueError("fpga: learn() runs on the device part only; this program has a hybrid cpu fallback")
        if feedback not in ("symmetric", "random"):
            raise ValueError(f"fpga: feedback must be 'symmetric' or 'random', got {feedback!r}")
        if int(epochs) < 1 or float(lr) <= 0 or int(batch_size) < 1:
            raise ValueError(f"fpga: learn() needs epochs >= 1, lr > 0, batch_size >= 1; got {epochs}, {lr}, {batch_size}")
        x = check_input(spikes, int(meta["n_in"]), self.kind)
        y = np.asarray(labels)
        n_out = len(a["kappa"])
        if y.shape != (x.shape[0],) or y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= n_out:
            raise ValueError(f"fpga: labels must be {x.shape[0]} integers in [0, {n_out}), got shape {list(y.shape)}")
        kappa = np.unique(a["kappa"])
        state = EpropState(
            w_in=a["w_in"].astype(np.int64), w_rec=a["w_rec"].astype(np.int64) if "w_rec" in a else None,
            w_out=a["w_out"].astype(np.int64), thr_h=a["thr_h"].astype(np.int64), alpha=a["alpha"].astype(np.int64),
            kappa=int(kappa[0]), kappa_frac=int(self.constants.limits["kappa_frac_bits"]),
            shifts=tuple(int(v) for v in a["shifts"]), s_o=float(a["s_o"][0]), bias_input=bool(meta["bias_input"]),
        )
        rng = np.random.default_rng(seed)
        b_random = rng.normal(0, 1 / np.sqrt(n_out), (state.w_in.shape[0], n_out)) if feedback == "random" else None
        bar = tqdm(range(int(epochs)), desc="fpga e-prop", unit="epoch", disable=not progress, leave=False)
        for _ in bar:
            rec = eprop_epoch(state, x, y, lr=float(lr), batch_size=int(batch_size), rng=rng, feedback=feedback,
                              b_random=b_random)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['train_accuracy']:.3f}")
        arrays = dict(a)
        arrays["w_in"] = state.w_in.astype(np.int8)
        arrays["w_out"] = state.w_out.astype(np.int8)
        if state.w_rec is not None:
            arrays["w_rec"] = state.w_rec.astype(np.int8)
        new_meta = dict(meta)
        new_meta["eprop"] = {"parent": self.program.digest, "epochs": int(epochs), "lr": float(lr),
                             "batch_size": int(batch_size), "seed": int(seed), "feedback": feedback,
                             "samples": int(x.shape[0]), "history": state.history,
                             "rule": "e-prop (Bellec et al. 2020) on 8-bit weights with stochastic rounding, "
                                     "16-bit states; float traces (emulation)"}
        fit = FitReport(kind=self.kind, items=list(self.program.fit.items),
                        notes=[*self.program.fit.notes, f"weights learnt on device with e-prop ({epochs} epochs)"])
        prog = Program(kind=self.kind, arrays=arrays, meta=new_meta, fit=fit)
        self.load(prog)
        return prog

    def _load_device(self, program: Program) -> None:
        a = program.arrays
        self._w = {k: a[k].astype(np.int64) for k in ("w_in", "w_out", "w_rec") if k in a}
        self._nz = {k: (v != 0).astype(np.float64) for k, v in self._w.items()}

    def _run_device(self, x: np.ndarray) -> DeviceRun:
        assert self.program is not None
        a, meta, c, lim = self.program.arrays, self.program.meta, self.constants, self.constants.limits
        bsz, steps, _ = x.shape
        xin = device_inputs(x, bool(meta["bias_input"]))
        n_hid, n_out = meta["n_hid"], len(a["kappa"])  # meta n_out is the fallback tail's in hybrid mode
        raster = np.zeros((bsz, steps, n_out), np.float32)
        vsum = np.zeros((bsz, n_out))
        hname, oname = meta["layers"]
        stats = {hname: {"spikes": 0.0, "synaptic_ops": 0.0, "neuron_updates": 0.0},
                 oname: {"spikes": 0.0, "synaptic_ops": 0.0, "neuron_updates": 0.0}}
        words = math.ceil(n_hid / 16)
        cycles = np.zeros(steps)
        core = ticks(xin, w_in=self._w["w_in"], w_rec=self._w.get("w_rec"), w_out=self._w["w_out"], thr_h=a["thr_h"],
                     alpha=a["alpha"], kappa=a["kappa"], shifts=tuple(int(s) for s in a["shifts"]),
                     kappa_frac=int(lim["kappa_frac_bits"]), thr_o=a["thr_o"] if meta["output"] == "lif" else None)
        for t, tick in enumerate(core):
            xt, s_h = tick.x, tick.s_h
            stats[hname]["synaptic_ops"] += float(((xt != 0) @ self._nz["w_in"].T).sum())
            if "w_rec" in self._w:
                stats[hname]["synaptic_ops"] += float(((tick.s_prev != 0) @ self._nz["w_rec"].T).sum())
            stats[oname]["synaptic_ops"] += float(((s_h != 0) @ self._nz["w_out"].T).sum())
            if tick.s_o is not None:
                raster[:, t] = tick.s_o
                stats[oname]["spikes"] += float(tick.s_o.sum())
            vsum += tick.v_o
            stats[hname]["spikes"] += float(s_h.sum())
            stats[hname]["neuron_updates"] += float(bsz * n_hid)
            stats[oname]["neuron_updates"] += float(bsz * n_out)
            cycles[t] = (np.count_nonzero(xt) * words + s_h.sum() * (words + 1)) / bsz + math.ceil(n_hid / 2) + n_out
        overruns = int(np.count_nonzero(cycles / c.value("clock_hz") > c.value("tick_s")))
        sops = sum(s["synaptic_ops"] for s in stats.values())

        def cost(k: DeviceConstants) -> tuple[float, dict[str, float]]:
            t_dev = float(bsz * np.maximum(k.value("tick_s"), cycles / k.value("clock_hz")).sum())
            return t_dev, modelled_energy(acs=sops, e_syn_j=k.value("e_sop_j"), device_time_s=t_dev,
                                          p_static_w=k.value("p_board_w"))

        device_time, energy, bands = banded(cost, c)
        counts = raster.sum(axis=1).astype(np.float64) if meta["output"] == "lif" else vsum / steps / float(a["s_o"][0])
        return DeviceRun(
            counts=counts, host_raster=raster, raster=raster, layer_stats=stats, device_time_s=device_time,
            energy=energy, spikes_out=int(raster.sum()), bands=bands,
            sources={
                "energy": "SOPs x e_sop_j (measured FPGA energy per synaptic event, Minitaur, DOI 10.1109/TVLSI.2013.2294916) as dynamic; board power "
                          "x device time as static, reported apart",
                "device_time": "samples x sum over ticks of max(tick_s, cycles/clock_hz), time-multiplexed datapath "
                               "(mean cycles per sample)",
                "tick_overruns": f"{overruns} tick(s) where the modelled cycles exceeded the 1 ms tick (emulated)",
                "resources": f"estimate {meta['resources']} on {meta['part']} (formula, no synthesis)",
                "readout": "spike counts of the output LIF" if meta["output"] == "lif"
                           else "output LI membrane averaged over ticks (ReckOn classification readout)",
            },
        )
