"""``cpu`` kind: the model as a dense float forward on the host (the baseline every device is
compared with). Latency is measured; energy is modelled from a declared power figure.

Recurrent graphs (a LIF self-loop, as snntorch's RLeaky exports it) and leaky-integrator (``LI``)
readouts are run with the float reference of :mod:`fabric.ir.recurrent`, so the host is the baseline
for every model the device kinds map; a feed-forward LIF chain runs :func:`fabric.model.snn.simulate_layers`
exactly as before.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import nir
import numpy as np

from actors.base.common import arrays_to_layers, check_input, layers_to_arrays
from actors.base.energy import load_constants
from fabric.ir.lowering import (
    DEFAULT_HANDLERS,
    NEURON_HANDLERS,
    SPATIAL_HANDLERS,
    SYNAPSE_HANDLERS,
    merge_handlers,
)
from fabric.ir.recurrent import LI_HANDLERS, lower_recurrent, readout_counts, simulate_recurrent
from fabric.kinds import Capabilities
from fabric.model.snn import simulate_layers
from fabric.records import FitReport, Program, RunResult, Telemetry

__all__ = ["CpuRuntime"]

HANDLERS = merge_handlers(DEFAULT_HANDLERS, SYNAPSE_HANDLERS, SPATIAL_HANDLERS, NEURON_HANDLERS, LI_HANDLERS)


class CpuRuntime:
    kind = "cpu"
    capabilities = Capabilities(
        needs_resource=False, embedded_boards=0, hybrid_fallback=False, weight_bits=None,
        weight_bits_source="float32 host baseline", time_mode="host", latency="measured", emulated=False,
        stateful_stream=True)

    def __init__(self, device_id: str | None = None) -> None:
        self.device_id = device_id or f"cpu:{platform.node()}:{os.getpid()}"
        self.constants = load_constants("cpu")
        self.program: Program | None = None
        self._layers = None
        self.runs = 0

    def compile(self, graph: nir.NIRGraph, options: dict[str, Any] | None = None) -> Program:
        ctx = lower_recurrent(graph, self.kind, HANDLERS)
        arrays, meta = layers_to_arrays(ctx.layers)
        for i, layer in enumerate(ctx.layers):
            if layer.recurrent is not None:
                arrays[f"l{i}.recurrent"] = layer.recurrent.astype(np.float32)
        fit = FitReport(kind=self.kind, notes=ctx.notes + ["host memory is not a binding limit"])
        nbytes = sum(a.size for k, a in arrays.items() if k.endswith((".weight", ".bias", ".recurrent"))) * 4
        fit.add("weights", nbytes / 1024, float("inf"), "KB")
        simple = all(lay.recurrent is None and lay.neuron != "li" for lay in ctx.layers)
        return Program(kind=self.kind, arrays=arrays, fit=fit,
                       meta={"layers": meta, "dt": ctx.dt, "n_in": ctx.layers[0].n_in,
                             "n_out": ctx.layers[-1].n_out, "footprint_bytes": int(nbytes),
                             "simulator": "fabric.model.snn.simulate_layers" if simple
                             else "fabric.ir.recurrent.simulate_recurrent"})

    def load(self, program: Program) -> None:
        if program.kind != self.kind:
            raise ValueError(f"program was compiled for {program.kind!r}, this runtime is {self.kind!r}")
        self.program = program
        self._layers = arrays_to_layers(program.arrays, program.meta["layers"])
        for i, layer in enumerate(self._layers):
            rec = program.arrays.get(f"l{i}.recurrent")
            layer.recurrent = None if rec is None else rec.astype(np.float64)
        self._simple = all(lay.recurrent is None and lay.neuron != "li" for lay in self._layers)

    def run(self, spikes: np.ndarray, *, record_raster: bool = False) -> RunResult:
        return self._run(spikes, record_raster, None)

    def step(self, spikes: np.ndarray, state: dict[str, Any] | None = None, *,
             record_raster: bool = False) -> tuple[RunResult, dict[str, Any]]:
        """One chunk of a stream: start from ``state`` (None: at rest), return the result and the end
        state; chunk after chunk is spike-for-spike one :meth:`run` over the concatenated input."""
        end: dict[str, Any] = {k: list(v) for k, v in (state or {}).items()}
        if end and len(end["v"][0]) != np.shape(spikes)[0]:
            raise ValueError(f"cpu: state is for a batch of {len(end['v'][0])}, chunk has {np.shape(spikes)[0]}")
        return self._run(spikes, record_raster, end), end

    def _run(self, spikes: np.ndarray, record_raster: bool, state: dict[str, Any] | None) -> RunResult:
        if self.program is None:
            raise RuntimeError("cpu: no program loaded; call load(program) first")
        x = check_input(spikes, self.program.meta["n_in"], self.kind)
        t0 = time.perf_counter()
        if self._simple:
            raster, mem, stats = simulate_layers(self._layers, x, self.program.meta["dt"], state=state)
        else:
            raster, mem, stats = simulate_recurrent(self._layers, x, self.program.meta["dt"], state=state)
        host = time.perf_counter() - t0
        self.runs += 1
        power = self.constants.value("power_w")
        pw = self.constants.constants["power_w"]  # its band: the energy band (the time is measured)
        tel = Telemetry(
            kind=self.kind, emulated=False, samples=int(x.shape[0]), timesteps=int(x.shape[1]),
            spikes_in=int(np.count_nonzero(x)), spikes_out=int(raster.sum()),
            spikes_per_layer={k: int(v["spikes"]) for k, v in stats.items()},
            synaptic_ops=sum(v["synaptic_ops"] for v in stats.values()),
            neuron_updates=sum(v["neuron_updates"] for v in stats.values()),
            host_latency_s=host, device_time_s=host, energy_j=power * host,
            energy_breakdown_j={"static": power * host, "dynamic": 0.0, "total": power * host},
            footprint_bytes=int(self.program.meta["footprint_bytes"]),
            bands={"device_time_s": [host, host], "static_j": [pw.low * host, pw.high * host],
                   "energy_j": [pw.low * host, pw.high * host], "dynamic_j": [0.0, 0.0]},
            sources={"energy": f"modelled: measured host time x declared {power:g} W "
                               f"({self.constants.constants['power_w'].source})",
                     "latency": "measured host wall time",
                     "readout": "output LI membrane averaged over steps" if self._layers[-1].neuron == "li"
                                else "output spike counts"},
        )
        counts = readout_counts(self._layers[-1], raster, mem)
        return RunResult(counts=counts, telemetry=tel, raster=raster if record_raster else None)

    def health(self) -> dict[str, Any]:
        return {"ok": True, "kind": self.kind, "device_id": self.device_id, "loaded": self.program is not None,
                "runs": self.runs}

    def info(self) -> dict[str, Any]:
        return {"kind": self.kind, "mode": "hardware", "emulated": False, "device_id": self.device_id,
                "description": self.constants.name, "limits": {},
                "energy_model": "modelled: measured time x declared power",
                "constants": self.constants.sources()}
