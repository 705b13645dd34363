"""The DeviceRuntime protocol every kind implements.

A runtime is plain Python (testable without Ray). ``actors.cluster.pool`` is the only place that wraps one in
``ray.remote``. Adding a kind = one folder in ``actors/`` + one line in ``actors/registry.toml``
(read by :mod:`fabric.kinds`); the kind declares its :class:`fabric.kinds.Capabilities`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import nir
import numpy as np

from fabric.kinds import Capabilities
from fabric.records import Program, RunResult

__all__ = ["DeviceRuntime"]


@runtime_checkable
class DeviceRuntime(Protocol):
    """What every device kind (emulated or hardware) provides."""

    kind: str
    capabilities: Capabilities

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
