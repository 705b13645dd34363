"""``spinnaker`` kind: SpiNNaker 1 running sPyNNaker-style fixed-point LIF populations, emulated.

What is modelled, and why:

* **Numbers as on the ARM968 (no FPU):** membrane, synaptic current, threshold, reset, bias and leak are
  ``s16.15`` accums (raw int32, 15 fractional bits); decays are ``u0.32`` fractions applied as
  ``(x * d) >> 32`` (sPyNNaker's ``decay_s1615``).
* **Weights:** stored as unsigned 16-bit per synapse type (excitatory = positive, inhibitory =
  negative) with one left shift per synapse type per population, as sPyNNaker's
  ``ring_buffer_to_input_left_shift``: ``input = w16 << shift`` (raw s16.15). The shift is chosen so the
  worst-case per-step sum of a neuron's weights fits the 16-bit ring buffer (no saturation possible);
  saturating adds are still counted. Weight resolution is ``2^(shift-15)``.
* **Neuron models:** ``LIF``/``IF`` are the voltage-based (delta-synapse) form: weights add to ``v``
  directly; ``CubaLIF`` is current-based (exponential synaptic current, sPyNNaker ``IF_curr_exp``).
  The update is the forward-Euler form of the NIR reference (``v <- beta v + g I + leak``) computed in
  the formats above; spike when ``v > thr``, then ``v = v_reset``.
* **Time:** a 1 ms real-time step; every projection delays spikes by one step (sPyNNaker's minimum
  delay), so a sample of ``T`` steps runs ``T + L - 1`` steps (``L`` layers) to flush the pipeline;
  device time = samples x steps x 1 ms (samples run back to back).
* **Mapping:** ``neurons_per_core`` (256) neurons per application core, populations never share a
  core; the application-core budget is what sPyNNaker's placer leaves (SpiNN-5: 759 of 856 cores, the
  host input's core included; see :func:`actors.spinnaker.fit.app_core_budget`), chips are counted at
  16 application cores against the board (SpiNN-5: 48 chips). Where the toolchain is installed
  (``make setup-spinnaker``), sPyNNaker's own mapper (partitioner, placer, router on a virtual board,
  :mod:`actors.spinnaker.fit`) gives the fit verdict next to these estimates.
* **Recurrence:** supported (a recurrent projection with the same 1-step delay as the reference).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import nir
import numpy as np

from actors.base.common import arrays_to_layers, layers_to_arrays
from actors.base.emulated import DeviceRun, EmulatedRuntime, raise_if_unfit
from actors.base.energy import DeviceConstants, banded, load_constants, modelled_energy
from actors.spinnaker.fit import app_core_budget, spynnaker_fit
from fabric.ir.lowering import (
    DEFAULT_HANDLERS,
    NEURON_HANDLERS,
    SPATIAL_HANDLERS,
    SYNAPSE_HANDLERS,
    Handler,
    Layer,
    merge_handlers,
)
from fabric.ir.recurrent import lower_recurrent
from fabric.kinds import Capabilities
from fabric.records import FitReport, Program

__all__ = ["SpinnakerRuntime", "to_s1615", "decay_u032", "weight_shift"]

FRAC = 15
ONE = 1 << FRAC
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def to_s1615(x: np.ndarray | float) -> np.ndarray:
    """Round to s16.15 raw integers (saturating at the 32-bit accum range)."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float64) * ONE), INT32_MIN, INT32_MAX).astype(np.int64)


def decay_u032(beta: np.ndarray) -> np.ndarray:
    """A decay factor in [0, 1] as an unsigned 0.32 fraction (1.0 saturates to 2^32 - 1)."""
    return np.clip(np.rint(np.asarray(beta, dtype=np.float64) * 2.0**32), 0, 2**32 - 1).astype(np.int64)


def _decay(x: np.ndarray, d: np.ndarray, exact_one: np.ndarray) -> np.ndarray:
    """sPyNNaker ``decay_s1615``: ``(x * d) >> 32``; factors of exactly 1 (IF) leave ``x`` unchanged.

    int64 products cannot overflow: |x| < 2^31 and d < 2^32, so we split ``d`` to stay inside int64.
    """
    hi, lo = d >> 16, d & 0xFFFF
    prod = ((x * hi) + ((x * lo) >> 16)) >> 16
    return np.where(exact_one, x, prod)


def weight_shift(max_row_sum: float, ring_max: int = 65535) -> int:
    """Smallest left shift so that ``max_row_sum`` (float units) fits ``ring_max`` 16-bit weight units."""
    if max_row_sum <= 0:
        return 0
    return max(0, math.ceil(math.log2(max_row_sum * ONE / ring_max)))


HANDLERS = merge_handlers(DEFAULT_HANDLERS, SYNAPSE_HANDLERS, SPATIAL_HANDLERS, NEURON_HANDLERS)


def _coeffs(layer: Layer, dt: float) -> dict[str, np.ndarray]:
    p, ones = layer.params, np.ones(layer.n_out)
    if layer.neuron == "lif":
        return {"beta": 1 - dt / p["tau"], "gain": dt / p["tau"] * p["r"], "leak": dt / p["tau"] * p["v_leak"],
                "alpha": None, "w_in": ones}
    if layer.neuron == "if":
        return {"beta": ones, "gain": p["r"], "leak": 0 * ones, "alpha": None, "w_in": ones}
    return {"beta": 1 - dt / p["tau_mem"], "gain": dt / p["tau_mem"] * p["r"],  # cubalif
            "leak": dt / p["tau_mem"] * p["v_leak"], "alpha": 1 - dt / p["tau_syn"], "w_in": p.get("w_in", ones)}


class SpinnakerRuntime(EmulatedRuntime):
    kind: ClassVar[str] = "spinnaker"
    capabilities: ClassVar[Capabilities] = Capabilities(
        weight_bits=int(load_constants("spinnaker").limits["weight_bits"]),
        weight_bits_source="actors/spinnaker/constants.yaml limits.weight_bits (sPyNNaker synaptic word: 16-bit weight)",
        time_mode="realtime")
    handlers: ClassVar[dict[type, Handler]] = HANDLERS
    options_doc: ClassVar[dict[str, str]] = {
        "neurons_per_core": "neurons per application core (default 256, the LIF DTCM bound)",
        "chips": "chips on the board (default 48 = SpiNN-5; SpiNN-3 has 4)",
    }
    emulation: ClassVar[str] = (
        "bit-level sPyNNaker-style arithmetic: s16.15 state, u0.32 decays, 16-bit weights with a per-population "
        "per-synapse-type shift, 16-bit saturating ring buffers, 1-step delay per projection, 1 ms real-time step; "
        "fit cross-checked by sPyNNaker 1!7.4.1's mapper (partitioner, placer, router on a virtual board) when "
        "its toolchain is installed (make setup-spinnaker)"
    )
    # Capabilities.reference stays None: it names a golden engine that reruns the program's spikes
    # (pipeline golden stage, fabric run --golden), and a virtual board runs none; the mapper is a fit check

    def _compile_device(self, graph: nir.NIRGraph, options: dict[str, Any]) -> Program:
        lim = self.constants.limits
        o = {"neurons_per_core": int(lim["neurons_per_core"]), "chips": int(lim["chips"])}
        o.update({k: int(v) for k, v in options.items() if not k.startswith("_")})
        if o["neurons_per_core"] < 1 or o["chips"] < 1:
            raise ValueError(f"spinnaker: neurons_per_core and chips must be >= 1, got {o}")
        ctx = lower_recurrent(graph, self.kind, HANDLERS)
        layers, dt = ctx.layers, ctx.dt
        fit = FitReport(kind=self.kind, notes=list(ctx.notes))
        npc = o["neurons_per_core"]
        fit.add("neurons per core (DTCM)", npc, lim["neurons_per_core"], "neurons", "core")
        words_limit = lim["sdram_per_chip_bytes"] / lim["app_cores_per_chip"] / self.constants.value("bytes_per_synapse")
        arrays: dict[str, np.ndarray] = {}
        cores, max_words, underflow, footprint, rng_max = 0, 0, 0, 0, 0.0
        for i, lay in enumerate(layers):
            c = _coeffs(lay, dt)
            scale_in = (c["gain"] if lay.neuron != "cubalif" else c["w_in"])[:, None]
            w_ff = lay.weight * scale_in
            w_rec = None if lay.recurrent is None else lay.recurrent * scale_in
            both = w_ff if w_rec is None else np.concatenate([w_ff, w_rec], axis=1)
            shifts = [weight_shift(float(np.clip(both, 0, None).sum(axis=1).max(initial=0.0)), lim["ring_buffer_max"]),
                      weight_shift(float(np.clip(-both, 0, None).sum(axis=1).max(initial=0.0)), lim["ring_buffer_max"])]
            for tag, w in (("ff", w_ff), ("rec", w_rec)):
                if w is None:
                    continue
                for sign, sh, name in ((1, shifts[0], "exc"), (-1, shifts[1], "inh")):
                    q = np.rint(np.clip(sign * w, 0, None) * ONE / 2**sh).astype(np.int64)
                    arrays[f"l{i}.{tag}.{name}"] = q.astype(np.uint16)
                    underflow += int(np.count_nonzero((np.clip(sign * w, 0, None) > 0) & (q == 0)))
            arrays[f"l{i}.shift"] = np.array(shifts, dtype=np.int64)
            bias = lay.bias * (c["gain"] if lay.neuron != "cubalif" else c["w_in"])
            consts = {"thr": lay.params["v_threshold"], "reset": lay.params["v_reset"], "bias": bias, "leak": c["leak"]}
            for k, v in consts.items():
                arrays[f"l{i}.{k}_raw"] = to_s1615(v)
                rng_max = max(rng_max, float(np.max(np.abs(v), initial=0.0)))
            arrays[f"l{i}.decay_u032"] = decay_u032(c["beta"])
            arrays[f"l{i}.decay_one"] = (np.asarray(c["beta"]) >= 1.0)
            if c["alpha"] is not None:
                arrays[f"l{i}.syn_decay_u032"] = decay_u032(c["alpha"])
                arrays[f"l{i}.gain_raw"] = to_s1615(c["gain"])
                rng_max = max(rng_max, float(np.max(np.abs(c["gain"]))))
            n_cores = math.ceil(lay.n_out / npc)
            cores += n_cores
            fan_in = np.count_nonzero(both, axis=1)
            per_core = [int(fan_in[k * npc:(k + 1) * npc].sum()) for k in range(n_cores)]
            max_words = max(max_words, *per_core)
            footprint += int(np.count_nonzero(both)) * int(self.constants.value("bytes_per_synapse")) + lay.n_out * 4 * 6
        chips = math.ceil(cores / lim["app_cores_per_chip"])
        # populations never share a core; the budget is what sPyNNaker's placer leaves on this board
        budget, host_cores, why = app_core_budget(o["chips"], lim)
        fit.add("application cores", cores + host_cores, budget, "cores", "board")
        fit.notes.append(f"application-core budget: {why}")
        fit.add("chips", chips, o["chips"], "chips", "board")
        fit.add("synaptic words per core (SDRAM share)", max_words, words_limit, "words", "core")
        fit.add("s16.15 magnitude (threshold/reset/bias/leak/gain)", rng_max, lim["accum_max"], "")
        if abs(dt - self.constants.value("timestep_s")) > 1e-12:
            fit.notes.append(f"graph dt = {dt:g} s: one model step per 1 ms real-time tick (time scale factor "
                             f"{self.constants.value('timestep_s') / dt:g}); device time counts ticks")
        fit.notes.append(f"{len(layers)} populations on {cores} cores of {chips} chip(s), {npc} neurons per core; "
                         f"1-step delay per projection, a sample runs T + {len(layers) - 1} steps")
        if underflow:
            fit.notes.append(f"{underflow} non-zero weights round to 0 at their population's weight resolution")
        vendor = spynnaker_fit(fit, arrays, [{"n_out": lay.n_out} for lay in layers], layers[0].n_in, npc, o["chips"])
        raise_if_unfit(fit)
        base, meta = layers_to_arrays(layers)
        arrays.update({k: v for k, v in base.items() if not k.endswith(".weight")})
        return Program(kind=self.kind, arrays=arrays, fit=fit, meta={
            "layers": meta, "dt": dt, "n_in": layers[0].n_in, "n_out": layers[-1].n_out, "options": o,
            "footprint_bytes": int(footprint), "cores": cores, "chips": chips,
            "recurrent": [lay.recurrent is not None for lay in layers], "spynnaker": vendor,
        })

    def _load_device(self, program: Program) -> None:
        a, meta = program.arrays, program.meta
        n = len(meta["layers"])
        self._layers = arrays_to_layers({**a, **{f"l{i}.weight": a[f"l{i}.ff.exc"].astype(np.float64) for i in range(n)}},
                                        meta["layers"])
        self._p: list[dict[str, Any]] = []
        for i in range(n):
            p = {k.split(".", 1)[1]: v for k, v in a.items() if k.startswith(f"l{i}.")}
            p = {k: (v.astype(np.int64) if v.dtype == np.uint16 else v) for k, v in p.items()}
            p["nz_ff"] = ((p["ff.exc"] + p["ff.inh"]) != 0).astype(np.float64)
            if meta["recurrent"][i]:
                p["nz_rec"] = ((p["rec.exc"] + p["rec.inh"]) != 0).astype(np.float64)
            self._p.append(p)

    def _run_device(self, x: np.ndarray) -> DeviceRun:
        assert self.program is not None
        meta, c, lim = self.program.meta, self.constants, self.constants.limits
        bsz, steps, _ = x.shape
        n_layers = len(self._layers)
        total = steps + n_layers - 1
        ring_max = int(lim["ring_buffer_max"])
        v = [np.zeros((bsz, lay.n_out), np.int64) for lay in self._layers]
        syn = [np.zeros((bsz, lay.n_out), np.int64) for lay in self._layers]
        out_prev = [np.zeros((bsz, lay.n_out), np.int64) for lay in self._layers]
        stats = {lay.name: {"spikes": 0.0, "synaptic_ops": 0.0, "neuron_updates": 0.0} for lay in self._layers}
        raster = np.zeros((bsz, total, self._layers[-1].n_out), np.float32)
        xin = np.rint(x).astype(np.int64)
        saturated = 0
        for t in range(total):
            new_out = []
            for i, lay in enumerate(self._layers):
                p, st = self._p[i], stats[lay.name]
                if i == 0:
                    pre = xin[:, t] if t < steps else np.zeros_like(xin[:, 0])
                else:
                    pre = out_prev[i - 1]  # one-step projection delay
                exc = pre @ p["ff.exc"].T
                inh = pre @ p["ff.inh"].T
                st["synaptic_ops"] += float(((pre != 0).astype(np.float64) @ p["nz_ff"].T).sum())
                if "nz_rec" in p:
                    exc = exc + out_prev[i] @ p["rec.exc"].T
                    inh = inh + out_prev[i] @ p["rec.inh"].T
                    st["synaptic_ops"] += float(((out_prev[i] != 0).astype(np.float64) @ p["nz_rec"].T).sum())
                saturated += int(np.count_nonzero(exc > ring_max) + np.count_nonzero(inh > ring_max))
                exc, inh = np.minimum(exc, ring_max), np.minimum(inh, ring_max)
                cur = (exc << int(p["shift"][0])) - (inh << int(p["shift"][1]))
                if "syn_decay_u032" in p:  # current-based: exponential synaptic current, then integrate
                    syn[i] = _decay(syn[i], p["syn_decay_u032"], np.zeros_like(p["decay_one"])) + cur + p["bias_raw"]
                    drive = (syn[i] * p["gain_raw"]) >> FRAC
                else:  # voltage-based (delta synapses): weights and bias add to v directly
                    drive = cur + p["bias_raw"]
                v[i] = np.clip(_decay(v[i], p["decay_u032"], p["decay_one"]) + drive + p["leak_raw"], INT32_MIN, INT32_MAX)
                s = v[i] > p["thr_raw"]
                v[i] = np.where(s, p["reset_raw"], v[i])
                st["spikes"] += float(s.sum())
                st["neuron_updates"] += float(bsz * lay.n_out)
                new_out.append(s.astype(np.int64))
            out_prev = new_out
            raster[:, t] = out_prev[-1]
        acs = sum(s["synaptic_ops"] for s in stats.values())
        nupd = sum(s["neuron_updates"] for s in stats.values())
        spikes = sum(s["spikes"] for s in stats.values())

        def cost(k: DeviceConstants) -> tuple[float, dict[str, float]]:
            t_dev = bsz * total * k.value("timestep_s")
            return t_dev, modelled_energy(acs=acs, e_syn_j=k.value("e_syn_j"), neuron_updates=nupd,
                                          e_neuron_j=k.value("e_neuron_j"), spikes=spikes, e_spike_j=k.value("e_spike_j"),
                                          device_time_s=t_dev, p_static_w=k.value("p_chip_w") * meta["chips"])

        device_time, energy, bands = banded(cost, c)
        lag = n_layers - 1
        return DeviceRun(
            counts=raster.sum(axis=1).astype(np.float64), host_raster=raster[:, lag:lag + steps], raster=raster,
            layer_stats=stats, device_time_s=device_time, energy=energy, spikes_out=int(raster.sum()), bands=bands,
            sources={
                "energy": f"synaptic events x e_syn_j + neuron updates (every neuron every 1 ms) x e_neuron_j + "
                          f"{meta['chips']} chip(s) x p_chip_w x device time (all constants 'verify')",
                "device_time": f"real time: samples x (T + {lag}) steps x 1 ms",
                "ring_buffer_saturations": f"{saturated} (16-bit ring buffer adds that saturated; emulated)",
            },
        )
