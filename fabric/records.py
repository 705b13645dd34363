"""Typed records that cross room boundaries: programs, telemetry, fit reports.

Keyword-only dataclasses with ``to_dict``/``from_dict`` so that what is stored round-trips exactly.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["FitItem", "FitReport", "FitError", "Program", "Telemetry", "RunResult", "ReferenceCheckError",
           "ReferenceUnavailable", "ReferenceMismatch"]


@dataclass(kw_only=True, frozen=True)
class FitItem:
    """One resource: how much a program uses of a device limit."""

    name: str
    used: float
    limit: float
    unit: str = ""
    scope: str = "chip"  # "chip", "core", "layer:<name>", ...

    @property
    def ok(self) -> bool:
        return self.used <= self.limit

    def describe(self) -> str:
        return f"{self.name} ({self.scope}): {self.used:g} {self.unit} used > {self.limit:g} {self.unit} limit".replace("  ", " ")


@dataclass(kw_only=True)
class FitReport:
    """Usage vs limit of every constrained resource of a kind; ``ok`` only when all fit."""

    kind: str
    items: list[FitItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, used: float, limit: float, unit: str = "", scope: str = "chip") -> None:
        self.items.append(FitItem(name=name, used=float(used), limit=float(limit), unit=unit, scope=scope))

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.items)

    @property
    def violations(self) -> list[FitItem]:
        return [i for i in self.items if not i.ok]

    def table(self) -> str:
        rows = [f"fit report for {self.kind}: {'FITS' if self.ok else 'DOES NOT FIT'}"]
        rows.append(f"  {'resource':<28}{'scope':<18}{'used':>12}{'limit':>12}  status")
        for i in self.items:
            rows.append(
                f"  {i.name:<28}{i.scope:<18}{i.used:>12g}{i.limit:>12g}  {'ok' if i.ok else 'OVER'} {i.unit}"
            )
        rows += [f"  note: {n}" for n in self.notes]
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "items": [asdict(i) for i in self.items], "notes": list(self.notes)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FitReport:
        return cls(kind=d["kind"], items=[FitItem(**i) for i in d["items"]], notes=list(d.get("notes", [])))


class FitError(ValueError):
    """A graph does not fit a device kind; the message names the violated constraint(s)."""

    def __init__(self, report: FitReport) -> None:
        self.report = report
        v = report.violations
        super().__init__(
            f"does not fit {report.kind}: " + "; ".join(i.describe() for i in v) if v else f"does not fit {report.kind}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # rebuilt from its report, not its message: a refusal raised on a board actor crosses Ray intact
        return (type(self), (self.report,))


class ReferenceCheckError(RuntimeError):
    """A kind's reference engine (e.g. Lava for loihi) ran but failed: crash, timeout, bad output."""


class ReferenceUnavailable(ReferenceCheckError):
    """The reference engine cannot be used here; ``reason`` says why. A check never passes by default."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        super().__init__(message or f"reference unavailable: {reason}")


class ReferenceMismatch(AssertionError):
    """The device program and its reference engine disagree on an input they both ran."""


@dataclass(kw_only=True)
class Program:
    """A compiled, device-specific program: named arrays plus JSON-able metadata.

    Stored as one ``.npz`` (arrays + a ``__meta__`` JSON entry) so it is a single content-addressed
    artifact and loadable with plain numpy by anyone.
    """

    kind: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    fit: FitReport

    @cached_property
    def digest(self) -> str:
        """sha256 of :meth:`to_bytes`: the program's content address (computed once)."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        meta = {"kind": self.kind, "meta": self.meta, "fit": self.fit.to_dict()}
        payload = {k: np.asarray(v) for k, v in sorted(self.arrays.items())}
        payload["__meta__"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        np.savez(buf, **payload)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Program:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
        return cls(kind=meta["kind"], arrays=arrays, meta=meta["meta"], fit=FitReport.from_dict(meta["fit"]))


@dataclass(kw_only=True)
class Telemetry:
    """What one run on a device did and cost. Modelled figures are labelled by ``emulated``."""

    kind: str
    emulated: bool
    samples: int
    timesteps: int
    spikes_in: int
    spikes_out: int
    spikes_per_layer: dict[str, int]
    synaptic_ops: float  # NeuroBench-style effective ACs/MACs summed over the batch
    neuron_updates: float
    host_latency_s: float  # measured wall time of the run call on the host
    device_time_s: float  # modelled device time for the whole batch
    energy_j: float  # modelled energy for the whole batch
    footprint_bytes: int
    energy_breakdown_j: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    # [low, high] of modelled figures for the whole batch (device_time_s, energy_j, static_j, dynamic_j):
    # the same model at the constants' band ends (actors.base.energy.banded); empty: no band known
    bands: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Telemetry:
        return cls(**d)


@dataclass(kw_only=True)
class RunResult:
    """Output of a device run: per-sample output spike counts ``[B, n_out]`` (+ raster if asked)."""

    counts: np.ndarray
    telemetry: Telemetry
    raster: np.ndarray | None = None  # [B, T, n_out] output spikes

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.counts, axis=1)
