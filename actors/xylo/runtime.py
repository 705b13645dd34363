"""``xylo`` kind: SynSense Xylo Audio 2 (SYNS61201) SNN core, emulated bit-accurately.

Compile: NIR ``Input -> Affine/Linear -> LIF|CubaLIF (+ recurrent) -> Affine/Linear -> LIF|CubaLIF ->
Output`` becomes a Rockpool graph (``LinearTorch``/``LIFTorch`` with per-neuron tau and threshold),
mapped by Rockpool's ``syns61201.mapper`` (its DRC errors become the FitError text) and quantised by
``rockpool.transform.quantize_methods.channel_quantize`` (8-bit weights, 16-bit thresholds). Xylo's
limits (16 inputs, 1000 hidden, 8 outputs: rockpool/devices/xylo/syns61201/xylo_mapper.py) are
enforced before the mapper, which only warns about the input and output counts.

Approximations (fit notes say so): NIR LIF has no synaptic state, so its Xylo synapse gets
``tau_syn = 2 dt`` (dash 1, the charge of one event spread over a few steps); Affine biases are not
transferred (the mapper's rule ``weight_nodes_have_no_biases``); Xylo resets by subtraction.
Run: :func:`actors.xylo.core.evolve`; device time is real time (``samples x T x dt``); energy is the
published inference power x device time (modelled).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import nir
import numpy as np

from actors.base.emulated import DeviceRun, EmulatedRuntime, raise_if_unfit
from actors.base.energy import banded, load_constants, modelled_energy
from actors.xylo.core import XyloSpec, evolve
from fabric.ir.lowering import (
    DEFAULT_HANDLERS,
    NEURON_HANDLERS,
    SYNAPSE_HANDLERS,
    Handler,
    Layer,
    merge_handlers,
)
from fabric.ir.recurrent import lower_recurrent
from fabric.kinds import Capabilities
from fabric.records import FitError, FitReport, Program

__all__ = ["XyloRuntime", "SPEC_KEYS"]

HANDLERS = merge_handlers(DEFAULT_HANDLERS, SYNAPSE_HANDLERS,
                          {nir.LIF: NEURON_HANDLERS[nir.LIF], nir.CubaLIF: NEURON_HANDLERS[nir.CubaLIF]})
SPEC_KEYS = ("w_in", "w_rec", "w_out", "dash_mem", "dash_syn", "dash_mem_out", "dash_syn_out", "threshold",
             "threshold_out")


def _neuron_float(lay: Layer, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(weight gain, tau_mem, tau_syn, threshold) per neuron of a lowered LIF/CubaLIF layer."""
    p = lay.params
    if lay.neuron == "lif":
        tau = p["tau"]
        return dt / tau * p["r"], tau, np.full(lay.n_out, 2 * dt), p["v_threshold"]
    tau = p["tau_mem"]
    w_in = p.get("w_in", np.ones(lay.n_out))
    return dt / tau * p["r"] * w_in * dt / p["tau_syn"], tau, p["tau_syn"], p["v_threshold"]


class XyloRuntime(EmulatedRuntime):
    kind: ClassVar[str] = "xylo"
    capabilities: ClassVar[Capabilities] = Capabilities(
        weight_bits=int(load_constants("xylo").limits["weight_bits"]),
        weight_bits_source="rockpool 3.1.0 rockpool/transform/quantize_methods.py channel_quantize(bits_per_weight=8)",
        reference="rockpool 3.1.0 syns61201.XyloSim / xylosim 0.1.3 (bit-exact)", time_mode="realtime")
    handlers: ClassVar[dict[type, Handler]] = HANDLERS
    options_doc: ClassVar[dict[str, str]] = {}
    maps_recurrence: ClassVar[bool] = True
    emulation: ClassVar[str] = (
        "actors.xylo.core: Xylo Audio 2 integer LIF (16-bit saturating state, bit-shift decay, 15 input events "
        "per channel per step, up to 31 hidden spikes per step), checked against rockpool XyloSim"
    )

    def _compile_device(self, graph: nir.NIRGraph, options: dict[str, Any]) -> Program:
        lim = self.constants.limits
        ctx = lower_recurrent(graph, self.kind, HANDLERS)
        layers, dt = ctx.layers, ctx.dt
        fit = FitReport(kind=self.kind, notes=list(ctx.notes))
        fit.add(f"neuron layers = {len(layers)} (Xylo maps exactly one hidden and one output population)",
                int(len(layers) != 2), 0, "")
        if len(layers) != 2:
            raise FitError(fit)
        hid, out = layers
        fit.add("input channels", hid.n_in, lim["input_channels"], "channels")
        fit.add("hidden neurons", hid.n_out, lim["hidden_neurons"], "neurons")
        fit.add("output neurons", out.n_out, lim["output_neurons"], "neurons")
        fit.add("recurrent output neurons (Xylo output neurons cannot be recurrent)",
                int(out.recurrent is not None) * out.n_out, 0, "neurons")
        raise_if_unfit(fit)
        spec = self._map(hid, out, dt, fit)
        for name, key in (("input", "w_in"), ("recurrent", "w_rec"), ("output", "w_out")):
            w = spec[key]
            need = int(np.ceil(np.log2(np.abs(w).max() + 1))) + 1 if w.size and np.abs(w).max() > 0 else 1
            fit.add(f"{name} weight bits", need, lim["weight_bits"], "bit")
        thr = np.concatenate([spec["threshold"], spec["threshold_out"]])
        fit.add("threshold bits (16-bit state)", int(np.ceil(np.log2(np.abs(thr).max() + 1))) + 1, lim["state_bits"], "bit")
        fit.add("thresholds below 1", int(np.count_nonzero(thr < 1)), 0, "neurons")
        if np.any(hid.bias != 0) or np.any(out.bias != 0):
            fit.notes.append("Affine biases are not transferred (rockpool mapper rule weight_nodes_have_no_biases)")
        fit.notes.append("NIR LIF has no synaptic current: its Xylo synapse uses tau_syn = 2 dt (dash 1); Xylo "
                         "resets by subtracting the threshold")
        raise_if_unfit(fit)
        arrays = {k: np.asarray(spec[k], dtype=np.int64) for k in SPEC_KEYS}
        shifts = {k: int(spec[k]) for k in ("weight_shift_in", "weight_shift_rec", "weight_shift_out")}
        footprint = int(sum(arrays[k].size for k in ("w_in", "w_rec", "w_out")) + 2 * 4 * thr.size)
        return Program(kind=self.kind, arrays=arrays, fit=fit, meta={
            "dt": dt, "n_in": hid.n_in, "n_out": out.n_out, "n_hidden": hid.n_out, "shifts": shifts,
            "layers": [hid.name, out.name], "footprint_bytes": footprint,
            "mapper": "rockpool 3.1.0 syns61201.mapper + channel_quantize"})

    def _map(self, hid: Layer, out: Layer, dt: float, fit: FitReport) -> dict[str, Any]:
        """Rockpool graph -> ``mapper`` -> ``channel_quantize``; a DRCError becomes a FitError item."""
        import torch

        from actors.xylo.reference import import_xylo

        xa2 = import_xylo()
        from rockpool.nn.combinators import Sequential
        from rockpool.nn.modules import LIFTorch, LinearTorch
        from rockpool.transform.quantize_methods import channel_quantize

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float32))

        g_h, tm_h, ts_h, th_h = _neuron_float(hid, dt)
        g_o, tm_o, ts_o, th_o = _neuron_float(out, dt)
        lin_h = LinearTorch((hid.n_in, hid.n_out), weight=t((hid.weight * g_h[:, None]).T), has_bias=False)
        rec = {} if hid.recurrent is None else {"has_rec": True, "w_rec": t((hid.recurrent * g_h[:, None]).T)}
        lif_h = LIFTorch(hid.n_out, tau_mem=t(tm_h), tau_syn=t(ts_h), threshold=t(th_h), dt=dt, **rec)
        lin_o = LinearTorch((out.n_in, out.n_out), weight=t((out.weight * g_o[:, None]).T), has_bias=False)
        lif_o = LIFTorch(out.n_out, tau_mem=t(tm_o), tau_syn=t(ts_o), threshold=t(th_o), dt=dt)
        net = Sequential(lin_h, lif_h, lin_o, lif_o)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                spec = xa2.mapper(net.as_graph(), weight_dtype="float", threshold_dtype="float", dash_dtype="float")
            except xa2.DRCError as exc:
                fit.add(f"rockpool syns61201 mapper refused: {' '.join(str(exc).split())}", 1, 0, "")
                raise FitError(fit) from None
            spec.update(channel_quantize(**spec))
        n = hid.n_out
        return {"w_in": np.asarray(spec["weights_in"]).reshape(hid.n_in, n), "w_rec": np.asarray(spec["weights_rec"]).reshape(n, n),
                "w_out": np.asarray(spec["weights_out"]).reshape(n, out.n_out), "dash_mem": spec["dash_mem"],
                "dash_syn": spec["dash_syn"], "dash_mem_out": spec["dash_mem_out"], "dash_syn_out": spec["dash_syn_out"],
                "threshold": np.asarray(spec["threshold"]), "threshold_out": np.asarray(spec["threshold_out"]),
                "weight_shift_in": spec["weight_shift_in"], "weight_shift_rec": spec["weight_shift_rec"],
                "weight_shift_out": spec["weight_shift_out"]}

    def spec(self, program: Program) -> XyloSpec:
        """The program's integer network as the core's :class:`XyloSpec`."""
        sh = program.meta["shifts"]
        return XyloSpec(**{k: np.asarray(program.arrays[k]) for k in SPEC_KEYS}, **sh)

    def _load_device(self, program: Program) -> None:
        self._spec = self.spec(program)

    def _run_device(self, x: np.ndarray) -> DeviceRun:
        assert self.program is not None
        c, dt = self.constants, float(self.program.meta["dt"])
        out, hid = evolve(self._spec, x)
        bsz, steps, _ = x.shape
        device_time = bsz * steps * dt
        events_in = np.minimum(np.clip(np.asarray(x), 0, None), 15)
        fan_out = (self._spec.w_rec != 0).sum(axis=1) + (self._spec.w_out != 0).sum(axis=1)  # per hidden neuron
        syn = float((events_in.astype(np.int64) @ (self._spec.w_in != 0)).sum() + (hid @ fan_out).sum())
        device_time, energy, bands = banded(
            lambda k: (device_time, modelled_energy(acs=syn, e_syn_j=k.value("e_syn_j"), device_time_s=device_time,
                                                    p_static_w=k.value("p_inference_w"))), c)
        stats = {self.program.meta["layers"][0]: {"spikes": float(hid.sum()), "synaptic_ops": syn,
                                                 "neuron_updates": float(bsz * steps * hid.shape[2])},
                 self.program.meta["layers"][1]: {"spikes": float(out.sum()), "synaptic_ops": 0.0,
                                                 "neuron_updates": float(bsz * steps * out.shape[2])}}
        raster = out.astype(np.float32)
        return DeviceRun(counts=out.sum(axis=1), host_raster=raster, raster=raster, layer_stats=stats,
                         device_time_s=device_time, energy=energy, spikes_out=int(out.sum()), bands=bands,
                         sources={"energy": "published Xylo Audio 2 inference power x device time (arXiv:2406.15112)",
                                  "device_time": "real time, clocked: samples x T x dt"})

    def reference_fingerprint(self) -> list[Any]:
        from actors.xylo.reference import xylosim_version

        return ["xylosim", xylosim_version()]

    def reference_check(self, program: Program, spikes: np.ndarray) -> dict[str, Any]:
        """Emulator vs rockpool XyloSim on ``spikes`` (device-only programs)."""
        from actors.xylo.reference import check_program

        if program.meta.get("fallback") is not None:
            return {"status": "unavailable", "summary": "hybrid program: cpu parts have no Xylo reference",
                    "samples": 0, "reason": "hybrid"}
        return check_program(self.spec(program), np.asarray(spikes), float(program.meta["dt"]))

    def _info_extra(self) -> dict[str, Any]:
        return {"time_model": "real time, clocked: T x dt per sample",
                "bit_exact_reference": "rockpool 3.1.0 syns61201.XyloSim (xylosim 0.1.3)"}
