"""The DeviceRuntime protocol and the one registry of device kinds.

A runtime is plain Python (testable without Ray). ``actors.pool`` is the only place that wraps one in
``ray.remote``. Adding a kind = one module in ``actors/`` + one line in :data:`RUNTIMES`.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

import nir
import numpy as np

from fabric.records import Program, RunResult

__all__ = ["DeviceRuntime", "RUNTIMES", "EMULATED_KINDS", "UnknownKindError", "get_runtime_class", "make_runtime"]


@runtime_checkable
class DeviceRuntime(Protocol):
    """What every device kind (emulated or hardware) provides."""

    kind: str

    def compile(self, graph: nir.NIRGraph, options: dict[str, Any] | None = None) -> Program:
        """Lower a NIR graph to this kind's program; raise FitError naming the violated limit."""

    def load(self, program: Program) -> None:
        """Make ``program`` the one that ``run`` executes."""

    def run(self, spikes: np.ndarray, *, record_raster: bool = False) -> RunResult:
        """Run a batch of spike tensors ``[B, T, n_in]``; return output counts and telemetry."""

    def health(self) -> dict[str, Any]:
        """Liveness and readiness of the device (``{"ok": bool, ...}``)."""

    def info(self) -> dict[str, Any]:
        """Kind, emulated|hardware, limits, energy model constants with their sources."""


# kind -> "module:Class". Strings keep `fabric devices` from importing every runtime's dependencies.
RUNTIMES: dict[str, str] = {
    "cpu": "actors.cpu:CpuRuntime",
    "loihi": "actors.loihi:LoihiRuntime",
    "akida": "actors.akida:AkidaRuntime",
    "spinnaker": "actors.spinnaker:SpinnakerRuntime",
    "fpga": "actors.fpga:FpgaRuntime",
    "dynapse": "actors.dynapse:DynapseRuntime",
}

# The device resources the embedded fabric advertises by default (design.md, "Execution").
EMULATED_KINDS: dict[str, int] = {"loihi": 2, "akida": 1, "spinnaker": 1, "fpga": 1, "dynapse": 1}


class UnknownKindError(KeyError):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"unknown device kind {kind!r}; valid kinds: {sorted(RUNTIMES)}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


def get_runtime_class(kind: str) -> type:
    try:
        target = RUNTIMES[kind]
    except KeyError:
        raise UnknownKindError(kind) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def make_runtime(kind: str, **kwargs: Any) -> DeviceRuntime:
    """Instantiate the runtime for ``kind`` in this process (no Ray)."""
    return get_runtime_class(kind)(**kwargs)
