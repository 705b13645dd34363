"""``loihi`` kind: EMULATED Intel Loihi. NIR -> Lava fixed-point program with a fit report; runs on
the bit-accurate emulator in ``actors.loihi.fixed`` (optionally checked against Lava on every run);
energy and device time are modelled from the per-event constants in ``actors/loihi/constants.yaml``.

Each Dense delivers its input one step late (Lava's ``PyDenseModelBitAcc``), so an L-layer program
needs L extra steps for the last input to reach the output. ``run`` appends those L zero steps (the
device runs ``T + L`` steps) and returns the output aligned with the input: steps ``L .. T+L-1``.

Recurrent LIF layers (a self-loop, :mod:`fabric.ir.recurrent`) map onto a second Dense from the layer's
spikes back to its input, with its own ``weight_exp``; it counts against the layer's input axons and
synapse memory. That path is emulated bit-level by ``actors.loihi.fixed`` but not checked against Lava
(the golden runner builds feed-forward chains only), so ``golden=True`` refuses recurrent programs.

The outer behaviour (option checking, ``fallback="hybrid"`` onto kind ``cpu``, telemetry assembly,
health/info) is :class:`actors.base.emulated.EmulatedRuntime`'s; this module writes the device model.
A hybrid program's golden check covers its device part only (:func:`device_part`): the cpu segments
have no Lava reference, and the check's summary says so.

Conv layers run on the emulator as their dense (Toeplitz) expansion, like any layer; a layer made of
exactly one Conv2d also keeps its integer kernel (``l<k>.conv_weight``) and geometry (``conv`` in its
layer entry), proven to re-expand to the dense mantissas, so the golden check runs it as Lava's own
``Conv`` process. A pool folds into the next layer's matrix (:mod:`fabric.ir.lowering`): an unpadded
pool followed by a conv is kept as one conv with the composed kernel when that re-expands exactly
(sum/avg pooling is a conv with a constant kernel); pool + linear, and any layer whose matrix is not
one kernel slid over the input, is checked as Lava ``Dense``.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any, ClassVar

import nir
import numpy as np

from actors.base.emulated import DeviceRun, EmulatedRuntime
from actors.base.energy import DeviceConstants, banded, modelled_energy
from actors.loihi.fixed import (
    LIMITS,
    CoreMap,
    Emulation,
    FixedLayer,
    emulate,
    fixed_program,
    map_cores,
    program_layers,
    quantize_layer,
)
from actors.loihi.golden import (
    GoldenMismatch,
    GoldenResult,
    GoldenUnavailable,
    golden_check,
    lava_python,
)
from actors.loihi.stream import step_layers
from fabric.ir.lowering import (
    DEFAULT_HANDLERS,
    NEURON_HANDLERS,
    SPATIAL_HANDLERS,
    SYNAPSE_HANDLERS,
    Handler,
    LoweringContext,
    conv2d_matrix,
    merge_handlers,
)
from fabric.ir.recurrent import lower_recurrent
from fabric.kinds import Capabilities
from fabric.records import FitError, FitReport, Program

__all__ = ["LoihiRuntime", "HANDLERS", "modelled_step_time", "device_part", "conv_kernel"]

# Affine/Linear + LIF/CubaLIF/IF over the structural defaults (Input, Output, Flatten).
HANDLERS = merge_handlers(DEFAULT_HANDLERS, SYNAPSE_HANDLERS, SPATIAL_HANDLERS, NEURON_HANDLERS)


def _sync_time(constants: DeviceConstants, cores: int) -> float:
    """Barrier sync per step from SANA-FE's table, keyed by tiles of 4 cores (next entry up)."""
    tiles = -(-cores // int(constants.value("cores_per_tile")))
    for bound, key in ((1, "t_sync_1tile_s"), (2, "t_sync_2tile_s"), (4, "t_sync_4tile_s")):
        if tiles <= bound:
            return constants.value(key)
    return constants.value("t_sync_29tile_s")


def modelled_step_time(constants: DeviceConstants, cores: list[CoreMap], em: Emulation, device_steps: int,
                       samples: int) -> float:
    """Seconds per timestep per sample: barrier sync + the busiest layer's mean per-core work.

    Cores run in parallel within a step; a layer's events are spread evenly over its cores; every
    core of a layer receives every input spike of that layer (dense fan-in).
    """
    per = max(1, samples * device_steps)
    busiest = 0.0
    spikes_into = [em.spikes_in, *em.spikes[:-1]]
    for k, cm in enumerate(cores):
        work = (em.synaptic_ops[k] * constants.value("t_syn_s") + em.neuron_updates[k] * constants.value("t_neuron_s")
                + em.spikes[k] * constants.value("t_spike_s")) / cm.cores
        work += spikes_into[k] * constants.value("t_message_in_s")
        busiest = max(busiest, work / per)
    return _sync_time(constants, sum(c.cores for c in cores)) + busiest


class LoihiRuntime(EmulatedRuntime):
    """Emulated Loihi: compile to Lava fixed point, run bit-accurately, model energy and time."""

    kind: ClassVar[str] = "loihi"
    capabilities: ClassVar[Capabilities] = Capabilities(
        embedded_boards=2, hybrid_fallback=True, weight_bits=int(LIMITS["weight_bits"]),
        weight_bits_source="actors/loihi/constants.yaml weight_bits (Lava PyDenseModelBitAcc clip_weights num_bits=8)",
        reference="lava-nc 0.10 fixed_pt (bit-exact)", time_mode="as-fast-as-possible", stateful_stream=True)
    handlers: ClassVar[dict[type, Handler]] = HANDLERS
    options_doc: ClassVar[dict[str, str]] = {
        "weight_bits": f"weight mantissa bits, 2..{LIMITS['weight_bits']} (default {LIMITS['weight_bits']})",
        "neurons_per_core": "int or per-layer list (default: automatic split that fits the per-core limits)",
        "vth_target": "largest vth mantissa the weight-exponent search aims for (default 2^13)",
    }
    emulation: ClassVar[str] = (
        "actors.loihi.fixed, a bit-accurate copy of Lava 0.10 PyDenseModelBitAcc/PyLifModelBitAcc (one Dense "
        "delay per layer); device time from SANA-FE per-event latencies"
    )

    def __init__(self, device_id: str | None = None, golden: bool = False) -> None:
        super().__init__(device_id or f"loihi-emu:{platform.node()}:{os.getpid()}")
        self.golden = bool(golden)
        self._layers: list[FixedLayer] | None = None
        self._cores: list[CoreMap] | None = None
        self.last_golden: GoldenResult | None = None

    # ------------------------------------------------------------------ compile
    def _compile_device(self, graph: nir.NIRGraph, options: dict[str, Any]) -> Program:
        """NIR -> Lava fixed-point program. Options: ``weight_bits`` (2..8, default 8),
        ``neurons_per_core`` (int or per-layer list; default: automatic split), ``vth_target``."""
        opts = {k: v for k, v in options.items() if not k.startswith("_")}  # "_hybrid_head": nothing to do
        convs: dict[str, dict[str, Any]] = {}
        ctx = lower_recurrent(graph, self.kind, {**HANDLERS, nir.Conv2d: _recording_conv(convs),
                                                 nir.AvgPool2d: _recording_pool(convs, nir.AvgPool2d),
                                                 nir.SumPool2d: _recording_pool(convs, nir.SumPool2d)})
        fit = FitReport(kind=self.kind, notes=list(ctx.notes))
        n_bits = int(opts.get("weight_bits", LIMITS["weight_bits"]))
        fit.add("weight precision", n_bits, LIMITS["weight_bits"], "bits")
        if n_bits > LIMITS["weight_bits"]:
            raise FitError(fit)
        fixed: list[FixedLayer] = []
        quant: list[dict[str, Any]] = []
        for layer in ctx.layers:
            fl, rep = quantize_layer(layer, ctx.dt, num_weight_bits=n_bits,
                                     vth_target=int(opts.get("vth_target", 1 << 13)))
            fixed.append(fl)
            quant.append(rep.to_dict())
            for c in rep.checks:
                if c.name != "weight precision":
                    fit.add(c.name, c.used, c.limit, c.unit, scope=f"layer:{layer.name}")
            fit.notes.extend(rep.notes)
            fit.notes.append(f"{layer.name}: quantization error: weights {100 * rep.weight_rel_error:.2f} % (relative), "
                             f"vth {100 * rep.vth_rel_error:.3f} %, decay {rep.decay_v_error:.1e}; "
                             f"weight_exp {fl.weight_exp}, vth {fl.vth}, dv {fl.dv}, du {fl.du}")
        cores = map_cores([(fl.name, fl.n_in, fl.n_out) for fl in fixed], opts.get("neurons_per_core"),
                          [fl.rec_weights is not None for fl in fixed])
        for cm in cores:
            scope = f"layer:{cm.name}"
            fit.add("compartments/core", cm.per_core, LIMITS["compartments_per_core"], "", scope)
            fit.add("input axons/core", cm.n_in, LIMITS["input_axons_per_core"], "", scope)
            fit.add("output axons/core", cm.out_axons, LIMITS["output_axons_per_core"], "", scope)
            fit.add("synapse memory/core", cm.synapse_bits / 8192, LIMITS["synapse_bits_per_core"] / 8192, "KB", scope)
        n_cores = sum(c.cores for c in cores)
        fit.add("cores", n_cores, LIMITS["cores_per_chip"], "", "chip")
        fit.add("neurons", sum(fl.n_out for fl in fixed), LIMITS["cores_per_chip"] * LIMITS["compartments_per_core"],
                "", "chip")
        fit.notes.append("synapse memory model: nengo-loihi bits_per_axon, dense, 64-synapse blocks of 8-bit "
                         "weights + 10-bit header in 64-bit words (9 bits/synapse when full)")
        if not fit.ok:
            raise FitError(fit)
        syn_bits = sum(c.total_synapse_bits for c in cores)
        state_bits = sum(fl.n_out for fl in fixed) * self.constants.value("state_bits_per_compartment")
        meta = {
            "quantization": quant,
            "cores": [{"name": c.name, "cores": c.cores, "per_core": c.per_core} for c in cores],
            "footprint_bytes": int((syn_bits + state_bits) // 8),
            "synapse_bits": int(syn_bits),
            "source_neurons": [lay.neuron for lay in ctx.layers],
            "reference": "lava-nc 0.10 PyDenseModelBitAcc + PyLifModelBitAcc (Loihi2SimCfg select_tag='fixed_pt')",
        }
        program = fixed_program(fixed, dt=ctx.dt, fit=fit, meta=meta)
        for i, (layer, fl) in enumerate(zip(ctx.layers, fixed, strict=True)):
            geo = _layer_conv(layer.name.split("->")[0], convs) if fl.rec_weights is None else None
            kernel = conv_kernel(fl.weights, geo) if geo is not None else None
            if kernel is not None:  # keys only for conv layers: other programs keep their bytes and digest
                program.arrays[f"l{i}.conv_weight"] = kernel
                program.meta["layers"][i]["conv"] = {k: v for k, v in geo.items() if k != "kernel_shape"}
                program.meta["reference"] = meta["reference"] + " + PyConvModelFixed (conv layers)"
        return program

    # ------------------------------------------------------------------ run
    def _load_device(self, program: Program) -> None:
        layers = program_layers(program)
        self._layers = layers
        self._cores = map_cores([(fl.name, fl.n_in, fl.n_out) for fl in layers],
                                [c["per_core"] for c in program.meta["cores"]] if "cores" in program.meta else None,
                                [fl.rec_weights is not None for fl in layers])

    def _run_device(self, x: np.ndarray) -> DeviceRun:
        """Run ``T + L`` device steps (L zero steps flush the one-step Dense delays); the output is
        steps ``L .. T+L-1``, aligned with the input. ``golden=True`` checks the run against Lava."""
        assert self.program is not None and self._layers is not None and self._cores is not None
        if self.golden and any(fl.rec_weights is not None for fl in self._layers):
            raise ValueError("loihi: golden=True checks feed-forward programs only; this program has a recurrent "
                             "Dense, which toolchains/lava/run_lava.py does not build (run without golden)")
        xb = x != 0
        bsz, steps, n_in = xb.shape
        delay = len(self._layers)
        xp = np.concatenate([xb, np.zeros((bsz, delay, n_in), dtype=bool)], axis=1)
        em = emulate(self._layers, xp)
        return self._device_run(em, em.rasters[-1][:, delay:], xp)

    def _step_device(self, x: np.ndarray, state: Any) -> tuple[DeviceRun, Any]:
        """Streaming: :func:`actors.loihi.stream.step_layers` from ``state``; telemetry as a run's (the
        L flush steps that read the chunk's last outputs are counted as device steps). No golden check."""
        assert self._layers is not None
        out, em, end = step_layers(self._layers, x, state)
        return self._device_run(em, out, None), end

    def _device_run(self, em: Any, out: np.ndarray, xp: np.ndarray | None) -> DeviceRun:
        """Telemetry of an emulation whose aligned output is ``out``; ``xp`` (the padded input) is what a
        golden check replays (None: none)."""
        assert self.program is not None and self._layers is not None and self._cores is not None
        bsz, steps = out.shape[0], out.shape[1]
        delay = len(self._layers)
        c = self.constants
        dev_steps = steps + delay
        step_s = modelled_step_time(c, self._cores, em, dev_steps, bsz)

        def cost(k: DeviceConstants) -> tuple[float, dict[str, float]]:
            t_dev = bsz * dev_steps * modelled_step_time(k, self._cores, em, dev_steps, bsz)
            return t_dev, modelled_energy(acs=sum(em.synaptic_ops), neuron_updates=sum(em.neuron_updates),
                                          spikes=sum(em.spikes), device_time_s=t_dev, e_syn_j=k.value("e_syn_j"),
                                          e_neuron_j=k.value("e_neuron_j"), e_spike_j=k.value("e_spike_j"),
                                          p_static_w=k.value("p_static_w"))

        device_time, energy, bands = banded(cost, c)
        src = c.constants
        sources = {  # "energy" and "device_time" get the base's "modelled: " label
            "mode": "emulated: actors.loihi.fixed, bit-accurate copy of Lava 0.10 PyDenseModelBitAcc/PyLifModelBitAcc",
            "energy": (f"ACs x {src['e_syn_j'].value:g} J + neuron updates x {src['e_neuron_j'].value:g} J + "
                       f"spikes x {src['e_spike_j'].value:g} J + {src['p_static_w'].value:g} W static "
                       f"({src['e_syn_j'].source} [{src['e_syn_j'].confidence}])"),
            "device_time": (f"{bsz} samples x {dev_steps} steps x {step_s:.3g} s/step (barrier sync for "
                            f"{sum(k.cores for k in self._cores)} cores + busiest layer's per-core work at SANA-FE "
                            f"per-event latencies [{src['t_syn_s'].confidence}])"),
            "latency": "host_latency_s: measured wall time of the emulator on this host",
            "synaptic_ops": "NeuroBench effective ACs: non-zero input spike x non-zero weight, all layers",
            "timesteps": f"device steps = {steps} input steps + {delay} pipeline steps (one Dense delay per layer)",
        }
        untimed = 0.0
        if self.golden and xp is not None:
            t0 = time.perf_counter()
            res = golden_check(device_part(self.program), xp, emulation=em)
            untimed = time.perf_counter() - t0
            self.last_golden = res
            sources["golden"] = res.summary() + _hybrid_note(self.program)
            if not res.bit_exact:
                raise GoldenMismatch(res)
        stats: dict[str, dict[str, float]] = {}
        for k, fl in enumerate(self._layers):  # summed, should two layers share a name
            st = stats.setdefault(fl.name, {"spikes": 0.0, "synaptic_ops": 0.0, "neuron_updates": 0.0})
            st["spikes"] += em.spikes[k]
            st["synaptic_ops"] += em.synaptic_ops[k]
            st["neuron_updates"] += em.neuron_updates[k]
        return DeviceRun(
            counts=out.sum(axis=1, dtype=np.int64), host_raster=out, raster=out, layer_stats=stats,
            device_time_s=float(device_time), energy=energy, spikes_out=int(out.sum()), sources=sources,
            timesteps=dev_steps, untimed_s=untimed, bands=bands,
        )

    # ------------------------------------------------------------------ reference
    def reference_fingerprint(self) -> list[Any]:
        """What the reference check depends on outside the program: the Lava interpreter and whether it
        exists, and the SANA-FE version the ``sanafe`` block comes from."""
        from actors.loihi.sanafe import sanafe_version

        py = lava_python()
        return [str(py), py.exists(), "sanafe", sanafe_version()]

    def reference_check(self, program: Program, spikes: np.ndarray) -> dict[str, Any]:
        """Program vs Lava on ``spikes``: ``status`` bit-exact | mismatch | unavailable, with a summary.

        A hybrid program is checked on its device part only (Lava has nothing to say about the cpu
        segments); a cpu prefix is run first to give the device part the input it would get.
        """
        note = _hybrid_note(program)
        x = np.asarray(spikes)
        prefix = program.arrays.get("fallback.cpu_prefix_program")
        if prefix is not None:
            from actors.cpu.runtime import CpuRuntime

            cpu = CpuRuntime(device_id=f"{self.device_id}/reference-prefix")
            cpu.load(Program.from_bytes(prefix.tobytes()))
            x = cpu.run(x, record_raster=True).raster
        extra = {"sanafe": self.sanafe_check(device_part(program), x)}
        try:
            res = golden_check(device_part(program), x)
        except GoldenUnavailable as exc:
            return {"status": "unavailable", "summary": str(exc) + note, "samples": 0, "reason": exc.reason,
                    "extra_reference": extra}
        return {"status": "bit-exact" if res.bit_exact else "mismatch", "summary": res.summary() + note,
                "samples": res.samples, "max_error": 0 if res.bit_exact else 1, "result": res.to_dict(),
                "extra_reference": extra}

    def sanafe_check(self, program: Program, spikes: np.ndarray, max_samples: int = 4) -> dict[str, Any]:
        """The ``sanafe`` block (:func:`actors.loihi.sanafe.compare`): SANA-FE's energy and time per
        inference beside the fabric's full-term model on the emulator's own raster of ``spikes``
        (device program, padded with the L flush steps as ``run`` does). A network SANA-FE cannot
        map is reported ``unavailable`` with SANA-FE's reason, never a pass."""
        from actors.loihi import sanafe

        layers = program_layers(program)
        cores = map_cores([(fl.name, fl.n_in, fl.n_out) for fl in layers],
                          [c["per_core"] for c in program.meta["cores"]] if "cores" in program.meta else None,
                          [fl.rec_weights is not None for fl in layers])
        xb = np.asarray(spikes) != 0
        bsz, steps, n_in = xb.shape
        xp = np.concatenate([xb, np.zeros((bsz, len(layers), n_in), dtype=bool)], axis=1)
        em = emulate(layers, xp)
        dev_steps = steps + len(layers)
        per_inference = dev_steps * modelled_step_time(self.constants, cores, em, dev_steps, bsz)
        try:
            return sanafe.compare(layers, cores, xp.astype(np.uint8), em.rasters, per_inference, self.constants,
                                  max_samples=max_samples)
        except (ValueError, RuntimeError, *sanafe.engine_errors()) as exc:  # a refusal to map is the reason
            return {"status": "unavailable", "summary": f"SANA-FE could not run the program: {type(exc).__name__}: {exc}"}

    # ------------------------------------------------------------------ status
    def _health_extra(self) -> dict[str, Any]:
        py = lava_python()
        return {"golden": self.golden, "lava_python": str(py), "lava_python_present": py.exists()}

    def _info_extra(self) -> dict[str, Any]:
        return {
            "bit_exact_reference": "Lava 0.10 fixed_pt (PyDenseModelBitAcc, PyLifModelBitAcc); checked by actors.loihi.golden",
            "golden_on_every_run": self.golden,
            "energy_model": "modelled: E = ACs*e_syn + neuron_updates*e_neuron + spikes*e_spike + p_static*T_device",
            "time_model": "modelled: per step = barrier sync(tiles) + busiest layer's per-core event latency",
        }


def _recording_conv(convs: dict[str, dict[str, Any]]) -> Handler:
    """The shared Conv2d handler (dense expansion, unchanged), also noting each conv's geometry in
    ``convs`` by node name, so a layer made of one conv can keep it for Lava's ``Conv`` process."""
    base = SPATIAL_HANDLERS[nir.Conv2d]

    def handler(name: str, node: nir.Conv2d, ctx: LoweringContext) -> None:
        before = ctx.shape
        base(name, node, ctx)
        w = np.asarray(node.weight)
        co, cig, kh, kw = (int(s) for s in w.shape)
        groups = int(node.groups)
        if before is not None and len(before) == 3:
            in_shape = [int(s) for s in before]
        elif node.input_shape is not None:
            in_shape = [cig * groups, *(int(s) for s in np.asarray(node.input_shape).reshape(-1))]
        else:
            return
        (sh, sw), (dh, dw) = _pair(node.stride), _pair(node.dilation)
        if isinstance(node.padding, str):
            pad = (0, 0) if node.padding == "valid" else (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
        else:
            pad = _pair(node.padding)
        convs[name] = {"in_shape": in_shape, "out_shape": [int(s) for s in ctx.shape or ()],
                       "kernel_shape": [co, cig, kh, kw], "stride": [sh, sw], "padding": list(pad),
                       "dilation": [dh, dw], "groups": groups}

    return handler


def _recording_pool(convs: dict[str, dict[str, Any]], node_type: type) -> Handler:
    """The shared pooling handler (unchanged), also noting the pool's geometry in ``convs``."""
    base = SPATIAL_HANDLERS[node_type]

    def handler(name: str, node: Any, ctx: LoweringContext) -> None:
        before = ctx.shape
        base(name, node, ctx)
        if before is not None and len(before) == 3:
            convs[name] = {"pool": True, "in_shape": [int(s) for s in before], "kernel": list(_pair(node.kernel_size)),
                           "stride": list(_pair(node.stride)), "padding": list(_pair(node.padding))}

    return handler


def _layer_conv(synapse: str, convs: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Conv geometry of a layer's synapse: one conv as it is; an unpadded pool folded into the conv
    after it as one conv on the pool's input (kernel ``d (k-1) s_p + k_p``, stride ``s s_p``, padding
    ``p s_p``, dilation 1). Only a candidate: :func:`conv_kernel` proves it against the matrix."""
    one = convs.get(synapse)
    if one is not None:
        return None if one.get("pool") else one
    pool, conv = convs.get(synapse.split("+")[0]), convs.get(synapse.split("+")[-1])
    if (synapse.count("+") != 1 or pool is None or conv is None or not pool.get("pool") or conv.get("pool")
            or pool["padding"] != [0, 0] or conv["groups"] != 1):
        return None
    co, ci, kh, kw = conv["kernel_shape"]
    sp, kp = pool["stride"], pool["kernel"]
    k = [d * (n - 1) * s + q for d, n, s, q in zip(conv["dilation"], (kh, kw), sp, kp, strict=True)]
    return {"in_shape": pool["in_shape"], "out_shape": conv["out_shape"], "kernel_shape": [co, ci, *k],
            "stride": [a * b for a, b in zip(conv["stride"], sp, strict=True)],
            "padding": [a * b for a, b in zip(conv["padding"], sp, strict=True)], "dilation": [1, 1], "groups": 1}


def _pair(v: Any) -> tuple[int, int]:
    a = np.asarray(v, dtype=int).reshape(-1)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def conv_kernel(weights: np.ndarray, geo: dict[str, Any]) -> np.ndarray | None:
    """The integer kernel ``[C_out, C_in/groups, kh, kw]`` the layer's dense mantissa matrix was
    expanded from, or None when the matrix is not one kernel slid over the input (a pool folded
    in, per-neuron weight scales, a tap that never lands): then Lava checks the layer as Dense.
    Proven by re-expanding the kernel with :func:`conv2d_matrix` and comparing every entry."""
    shape = tuple(int(s) for s in geo["kernel_shape"])
    in_shape = tuple(int(s) for s in geo["in_shape"])
    w = np.asarray(weights)
    if len(in_shape) != 3 or w.shape[1] != int(np.prod(in_shape)):
        return None
    args = (in_shape, geo["stride"], geo["padding"], geo["dilation"], int(geo["groups"]))
    ids, out_shape = conv2d_matrix(np.arange(1, int(np.prod(shape)) + 1, dtype=np.float64).reshape(shape), *args)
    if w.shape[0] != ids.shape[0] or list(out_shape) != list(geo["out_shape"]):
        return None
    taps = ids > 0
    kernel = np.zeros(int(np.prod(shape)), dtype=np.int64)
    kernel[ids[taps].astype(np.int64) - 1] = w[taps]
    kernel = kernel.reshape(shape)
    if not np.array_equal(conv2d_matrix(kernel.astype(np.float64), *args)[0], w.astype(np.float64)):
        return None
    return kernel.astype(np.int32)


def device_part(program: Program) -> Program:
    """The part of a (possibly hybrid) loihi program that runs on the device, as a plain loihi
    program: what Lava can check. A program without a fallback is returned as it is."""
    fb = program.meta.get("fallback")
    if fb is None:
        return program
    meta = {k: v for k, v in program.meta.items() if k != "fallback"}
    meta["n_in"], meta["n_out"] = int(fb["device_n_in"]), int(fb["device_n_out"])
    arrays = {k: v for k, v in program.arrays.items() if not k.startswith("fallback.")}
    fit = FitReport(kind=program.fit.kind, items=[i for i in program.fit.items if not i.scope.startswith("fallback:")],
                    notes=list(program.fit.notes))
    return Program(kind=program.kind, arrays=arrays, meta=meta, fit=fit)


def _hybrid_note(program: Program) -> str:
    """What a golden check of a hybrid program leaves out (empty for a device-only program)."""
    fb = program.meta.get("fallback")
    if fb is None:
        return ""
    nodes = [*fb.get("prefix_nodes", []), *fb.get("tail_nodes", [])]
    return (f"; hybrid program: the device part only (nodes {nodes} run on kind 'cpu', which has no Lava "
            f"reference)")
