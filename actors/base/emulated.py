"""Shared skeleton of the emulated device runtimes (loihi, akida, spinnaker, fpga, dynapse).

Why: every emulated kind needs the same outer behaviour — option checking, the ``fallback="hybrid"``
partition onto the ``cpu`` kind (Urgese et al., IEEE IoT J. 2026, DOI 10.1109/JIOT.2026.3663902, §III.6), telemetry assembly with modelled figures labelled
and their constants' sources attached, ``health``/``info``. A kind only writes its device model:
``_compile_device`` (lower, quantize, fit-check), ``_load_device`` and ``_run_device``; optional
hooks ``_health_extra``/``_info_extra`` add kind-specific fields, and a :class:`DeviceRun` may carry its
own ``sources``, device ``timesteps`` and ``untimed_s`` (host time that is not the emulator's).
"""

from __future__ import annotations

import os
import platform
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import nir
import numpy as np

from actors.base.common import check_input
from actors.base.energy import DeviceConstants, load_constants
from fabric.ir.fallback import FALLBACK_MODES, split_for_fallback
from fabric.ir.lowering import Handler, UnsupportedNodeError
from fabric.ir.recurrent import has_recurrence
from fabric.kinds import kind_package
from fabric.records import FitError, FitReport, Program, RunResult, Telemetry

__all__ = ["DeviceRun", "EmulatedRuntime", "raise_if_unfit", "rate_to_raster"]


@dataclass(kw_only=True)
class DeviceRun:
    """What a kind's device model returns for one batch, before telemetry assembly."""

    counts: np.ndarray  # [B, n_out] readout scores (spike counts unless the kind says otherwise)
    host_raster: np.ndarray  # [B, T, n_out] output spikes on the input's time base (fallback input)
    raster: np.ndarray | None  # [B, T', n_out] output spikes on the device's time base, if it has one
    layer_stats: dict[str, dict[str, float]]
    device_time_s: float
    energy: dict[str, float]  # actors.base.energy.modelled_energy terms (static and dynamic apart)
    spikes_out: int
    sources: dict[str, str] = field(default_factory=dict)
    # device steps when the model runs more than the input's (e.g. pipeline-flush padding); None: T
    timesteps: int | None = None
    # host seconds inside _run_device spent on something other than the emulator (e.g. a reference
    # check), left out of host_latency_s so that figure stays the emulator's own wall time
    untimed_s: float = 0.0
    # [low, high] of device_time_s / energy_j / static_j / dynamic_j (actors.base.energy.banded)
    bands: dict[str, list[float]] = field(default_factory=dict)


def raise_if_unfit(fit: FitReport) -> None:
    """The contract: a program that does not fit is never returned; the error names the limit."""
    if not fit.ok:
        raise FitError(fit)


def rate_to_raster(counts: np.ndarray, steps: int) -> np.ndarray:
    """Spread per-sample counts ``[B, n]`` (0..steps) evenly over ``steps`` as a binary raster.

    Used to hand a frame-based kind's output to a spiking fallback tail (deterministic rate code).
    """
    c = np.clip(np.asarray(counts, dtype=np.float64), 0, steps)
    t = np.arange(1, steps + 1, dtype=np.float64)[None, :, None]
    return (np.floor(t * c[:, None, :] / steps) - np.floor((t - 1) * c[:, None, :] / steps) > 0).astype(np.float32)


class EmulatedRuntime(ABC):
    """Base of the emulated kinds. Subclasses set the class attributes and the three device hooks."""

    kind: ClassVar[str] = ""
    handlers: ClassVar[Mapping[type, Handler]] = {}
    options_doc: ClassVar[dict[str, str]] = {}
    emulation: ClassVar[str] = ""
    maps_recurrence: ClassVar[bool] = True  # False: recurrent layers go to cpu under fallback="hybrid"

    def __init__(self, device_id: str | None = None) -> None:
        self.device_id = device_id or f"{self.kind}-emulated:{platform.node()}:{os.getpid()}"
        self.constants: DeviceConstants = load_constants(self.kind)
        self.program: Program | None = None
        self.runs = 0
        self._fallback: Any = None
        self._prefix: Any = None

    # -- hooks ---------------------------------------------------------------------------------
    @abstractmethod
    def _compile_device(self, graph: nir.NIRGraph, options: dict[str, Any]) -> Program:
        """Lower, quantize and fit-check; raise UnsupportedNodeError / FitError naming the problem."""

    @abstractmethod
    def _load_device(self, program: Program) -> None:
        """Prepare the loaded program's arrays for :meth:`_run_device`."""

    @abstractmethod
    def _run_device(self, x: np.ndarray) -> DeviceRun:
        """Run a validated batch ``[B, T, n_in]`` on the device model."""

    def _step_device(self, x: np.ndarray, state: Any) -> tuple[DeviceRun, Any]:
        """Streaming hook: run ``x`` from the device state ``state`` (None: at rest) and return the run
        and the end state. Kinds that keep state override it and declare ``stateful_stream=True``."""
        raise NotImplementedError(f"{self.kind}: this kind cannot keep network state between runs "
                                  "(capabilities.stateful_stream is False); every run starts at rest")

    # -- protocol ------------------------------------------------------------------------------
    def compile(self, graph: nir.NIRGraph, options: dict[str, Any] | None = None) -> Program:
        """Lower, quantize and fit-check ``graph``; ``fallback="hybrid"`` runs unsupported layers on cpu."""
        opts = dict(options or {})
        valid = {"fallback", *self.options_doc}
        unknown = sorted(set(opts) - valid)
        if unknown:
            raise ValueError(f"{self.kind}: unknown compile option(s) {unknown}; valid options: {sorted(valid)}")
        fallback = opts.pop("fallback", None)
        if fallback not in FALLBACK_MODES:
            raise ValueError(f"{self.kind}: fallback must be one of {FALLBACK_MODES}, got {fallback!r}")
        if fallback == "hybrid" and not self.maps_recurrence and has_recurrence(graph):
            return self._compile_hybrid(graph, opts, None)
        try:
            return self._compile_device(graph, opts)
        except UnsupportedNodeError as err:
            if fallback != "hybrid":
                raise
            return self._compile_hybrid(graph, opts, err)

    def _compile_hybrid(self, graph: nir.NIRGraph, opts: dict[str, Any], err: UnsupportedNodeError | None) -> Program:
        from actors.cpu.runtime import (
            CpuRuntime,  # the fallback kind; imported only when a part needs it
        )

        part = split_for_fallback(graph, set(self.handlers), self.kind, recurrence=self.maps_recurrence)
        if part.tail is None and part.prefix is None:  # the error came from a node the splitter considers supported
            if err is not None:
                raise err
            return self._compile_device(graph, opts)
        prog = self._compile_device(part.head, {**opts, "_hybrid_head": part.tail is not None})
        fb: dict[str, Any] = {"kind": "cpu", "cut_node": part.cut_node, "tail_nodes": part.tail_nodes,
                              "prefix_nodes": part.prefix_nodes, "unsupported": part.unsupported,
                              "reasons": part.reasons, "device_n_in": prog.meta["n_in"],
                              "device_n_out": prog.meta["n_out"]}
        for name, sub in (("prefix", part.prefix), ("tail", part.tail)):
            if sub is None:
                continue
            cpu_prog = CpuRuntime().compile(sub)
            prog.arrays[f"fallback.cpu_{name}_program"] = np.frombuffer(cpu_prog.to_bytes(), dtype=np.uint8).copy()
            if name == "prefix":
                prog.meta["n_in"] = cpu_prog.meta["n_in"]
            else:
                prog.meta["n_out"] = cpu_prog.meta["n_out"]
            prog.meta["footprint_bytes"] = int(prog.meta["footprint_bytes"]) + int(cpu_prog.meta["footprint_bytes"])
            for item in cpu_prog.fit.items:
                prog.fit.add(item.name, item.used, item.limit, item.unit, scope=f"fallback:cpu/{name}/{item.scope}")
        prog.meta["fallback"] = fb
        why = "; ".join(f"{k}: {v}" for k, v in part.reasons.items())
        where = []
        if part.prefix is not None:
            where.append(f"nodes {part.prefix_nodes} (before the device part) run on kind 'cpu' and hand their "
                         f"output spikes to the device")
        if part.tail is not None:
            where.append(f"nodes {part.tail_nodes} (from {part.cut_node!r} on) run on kind 'cpu' and take the "
                         f"device's output spikes each timestep")
        prog.fit.notes.append(f"hybrid fallback ({why}): " + "; ".join(where)
                              + " (host float forward); host transfer time is not modelled")
        return prog

    def load(self, program: Program) -> None:
        if program.kind != self.kind:
            raise ValueError(f"program was compiled for {program.kind!r}, this runtime is {self.kind!r}")
        self._load_device(program)
        self._fallback = None
        self._prefix = None
        if "fallback" in program.meta:
            from actors.cpu.runtime import CpuRuntime

            for name in ("prefix", "tail"):
                key = f"fallback.cpu_{name}_program"
                if name == "tail" and key not in program.arrays:
                    key = "fallback.cpu_program"  # programs stored before the prefix segment existed
                if key in program.arrays:
                    rt = CpuRuntime(device_id=f"{self.device_id}/fallback-cpu-{name}")
                    rt.load(Program.from_bytes(program.arrays[key].tobytes()))
                    if name == "prefix":
                        self._prefix = rt
                    else:
                        self._fallback = rt
        self.program = program

    def run(self, spikes: np.ndarray, *, record_raster: bool = False) -> RunResult:
        return self._execute(spikes, record_raster, None)

    def step(self, spikes: np.ndarray, state: dict[str, Any] | None = None, *,
             record_raster: bool = False) -> tuple[RunResult, dict[str, Any]]:
        """One chunk of a stream: start from ``state`` (None: at rest), return the result and the end
        state (device part and any cpu fallback segment); chunk after chunk equals one :meth:`run`
        over the concatenated input. Only kinds whose ``capabilities.stateful_stream`` is True."""
        end: dict[str, Any] = dict(state or {})
        return self._execute(spikes, record_raster, end), end

    def _execute(self, spikes: np.ndarray, record_raster: bool, state: dict[str, Any] | None) -> RunResult:
        """``run`` (``state`` None) or ``step`` (``state`` a dict, replaced in place by the end state)."""
        if self.program is None:
            raise RuntimeError(f"{self.kind}: no program loaded; call load(program) first")
        x = check_input(spikes, int(self.program.meta["n_in"]), self.kind)
        t0 = time.perf_counter()
        pre = None
        if self._prefix is not None:
            if state is None:
                pre = self._prefix.run(x, record_raster=True)
            else:
                pre, state["prefix"] = self._prefix.step(x, state.get("prefix"), record_raster=True)
            x_dev = pre.raster.astype(np.float32)
        else:
            x_dev = x
        if state is None:
            dev = self._run_device(x_dev)
        else:
            dev, state["device"] = self._step_device(x_dev, state.get("device"))
        host = time.perf_counter() - t0 - dev.untimed_s
        self.runs += 1
        c = self.constants
        sources = {
            "emulation": f"emulated {c.name}: {self.emulation}",
            "energy": "modelled: " + dev.sources.pop("energy", "per-event costs x counted events + static power x device time"),
            "device_time": "modelled: " + dev.sources.pop("device_time", "see the kind's timing model"),
            "latency": "host_latency_s is measured wall time of the emulator on this host",
            "constants": kind_package(self.kind).replace(".", "/") + "/constants.yaml",
            **dev.sources,
            **{f"const.{k}": v for k, v in c.sources().items()},
        }
        tel = Telemetry(
            kind=self.kind, emulated=True, samples=int(x.shape[0]),
            timesteps=int(x.shape[1] if dev.timesteps is None else dev.timesteps),
            spikes_in=int(np.count_nonzero(x_dev)), spikes_out=int(dev.spikes_out),
            spikes_per_layer={k: int(v["spikes"]) for k, v in dev.layer_stats.items()},
            synaptic_ops=float(sum(v["synaptic_ops"] for v in dev.layer_stats.values())),
            neuron_updates=float(sum(v["neuron_updates"] for v in dev.layer_stats.values())),
            host_latency_s=host, device_time_s=float(dev.device_time_s), energy_j=float(dev.energy["total"]),
            footprint_bytes=int(self.program.meta.get("footprint_bytes", 0)),
            energy_breakdown_j={k: float(v) for k, v in dev.energy.items()}, sources=sources,
            bands=_bands(dev),
        )
        counts, raster = dev.counts, dev.raster
        if pre is not None:
            tel = _merge_fallback(tel, pre.telemetry, "prefix")
            tel.spikes_in = int(np.count_nonzero(x))
        if self._fallback is not None:
            if state is None:
                res = self._fallback.run(dev.host_raster, record_raster=record_raster)
            else:
                res, state["tail"] = self._fallback.step(dev.host_raster, state.get("tail"),
                                                         record_raster=record_raster)
            counts, raster = res.counts, res.raster
            tel = _merge_fallback(tel, res.telemetry, "tail")
        if pre is not None or self._fallback is not None:
            tel.host_latency_s = time.perf_counter() - t0 - dev.untimed_s
        return RunResult(counts=counts, telemetry=tel, raster=raster if record_raster else None)

    def _health_extra(self) -> dict[str, Any]:
        """Kind-specific health fields (e.g. whether a reference toolchain is present); merged last."""
        return {}

    def _info_extra(self) -> dict[str, Any]:
        """Kind-specific info fields (e.g. the time model, a bit-exact reference); merged last."""
        return {}

    def health(self) -> dict[str, Any]:
        return {"ok": True, "kind": self.kind, "emulated": True, "device_id": self.device_id,
                "loaded": self.program is not None, "runs": self.runs,
                "fallback": None if self.program is None else self.program.meta.get("fallback", {}).get("kind"),
                **self._health_extra()}

    def info(self) -> dict[str, Any]:
        c = self.constants
        info = {
            "kind": self.kind, "mode": "emulated", "emulated": True, "device_id": self.device_id,
            "description": c.name, "emulation": self.emulation, "limits": c.limits,
            "energy_model": "modelled: E = synaptic events x E_syn + neuron updates x E_neuron + spikes x "
                            "E_spike (dynamic) + P_static x device time (static); see constants",
            "constants": c.sources(), "constants_detail": c.to_dict()["constants"],
            "node_types": sorted(t.__name__ for t in self.handlers),
            "options": {"fallback": "None|'hybrid': run the graph from the first unsupported node on on "
                                    "kind 'cpu' (Urgese et al. 2026, DOI 10.1109/JIOT.2026.3663902, §III.6)", **self.options_doc},
        }
        return {**info, **self._info_extra()}


def _bands(dev: DeviceRun) -> dict[str, list[float]]:
    """The run's bands; a kind that gives none gets its point values (a zero-width band)."""
    point = {"device_time_s": dev.device_time_s, "energy_j": dev.energy["total"],
             "static_j": dev.energy.get("static", 0.0), "dynamic_j": dev.energy.get("dynamic", 0.0)}
    return {k: [float(v) for v in dev.bands.get(k, (p, p))] for k, p in point.items()}


def _merge_fallback(dev: Telemetry, cpu: Telemetry, part: str = "tail") -> Telemetry:
    """Device part + a host part (``prefix`` before it or ``tail`` after it) in one record; the host
    part keeps its own (measured-time) energy."""
    brk = dict(dev.energy_breakdown_j)
    cb = cpu.energy_breakdown_j
    brk["fallback_cpu"] = brk.get("fallback_cpu", 0.0) + float(cb.get("total", cpu.energy_j))
    brk["static"] = brk.get("static", 0.0) + float(cb.get("static", 0.0))
    brk["dynamic"] = brk.get("dynamic", 0.0) + float(cb.get("dynamic", 0.0))
    brk["total"] = brk["static"] + brk["dynamic"]
    layers = dict(dev.spikes_per_layer)
    layers.update({f"cpu:{k}": v for k, v in cpu.spikes_per_layer.items()})
    sources = dict(dev.sources)
    what = "leading" if part == "prefix" else "tail"
    note = (f"{what} layers ran on kind 'cpu' (hybrid partition); its time is measured host time added to "
            f"device time, its energy " + cpu.sources.get("energy", "modelled"))
    sources["fallback"] = f"{sources['fallback']}; {note}" if "fallback" in sources else note
    return Telemetry(
        kind=dev.kind, emulated=True, samples=dev.samples, timesteps=dev.timesteps, spikes_in=dev.spikes_in,
        spikes_out=cpu.spikes_out if part == "tail" else dev.spikes_out, spikes_per_layer=layers,
        synaptic_ops=dev.synaptic_ops + cpu.synaptic_ops,
        neuron_updates=dev.neuron_updates + cpu.neuron_updates, host_latency_s=dev.host_latency_s,
        device_time_s=dev.device_time_s + cpu.device_time_s, energy_j=brk["total"],
        footprint_bytes=dev.footprint_bytes, energy_breakdown_j=brk, sources=sources,
        bands={k: [lo + cpu.bands.get(k, [0.0, 0.0])[0], hi + cpu.bands.get(k, [0.0, 0.0])[1]]
               for k, (lo, hi) in dev.bands.items()},
    )
