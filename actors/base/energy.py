"""Device constants (one ``constants.yaml`` in each kind's folder, each value with source and confidence) and the energy
model, as pure functions.

E = ACs*E_syn + MACs*E_mac + neuron_updates*E_neuron + spikes*E_spike + P_static*T_device
(op counts the NeuroBench way: Yik et al., NeuroBench, arXiv:2304.04640). Every figure computed here is *modelled*; callers label it so.

Every constant carries a ``low``/``high`` band from its source's confidence (docs/measurement.md). The
models are monotone in every constant, so a figure's band is the same model evaluated on
:meth:`DeviceConstants.at` ``"low"`` and ``"high"`` (:data:`BAND_ENDS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import Any

import yaml

from fabric.kinds import kind_package

__all__ = ["DeviceConstants", "Constant", "load_constants", "parse_constants", "modelled_energy", "BAND_ENDS",
           "ConstantsError", "banded", "Cost"]

BAND_ENDS = ("low", "high")
"""The band ends a modelled figure is re-evaluated at (``nominal`` is the constants' ``value``)."""


class ConstantsError(ValueError):
    """A constants.yaml entry that breaks the file's contract (names the file and key)."""


@dataclass(frozen=True, kw_only=True)
class Constant:
    value: float
    unit: str
    source: str
    confidence: str
    low: float
    high: float
    band: str = ""  # why the band is this wide (the source's confidence, written next to it)
    inverse: bool = False  # a rate (op/s, Hz): its high value gives the low end of a figure

    def at(self, end: str) -> float:
        """The value that gives figure end ``end`` (``low``, ``nominal`` or ``high``)."""
        lo, hi = (self.high, self.low) if self.inverse else (self.low, self.high)
        return {"low": lo, "nominal": self.value, "high": hi}[end]


@dataclass(frozen=True, kw_only=True)
class DeviceConstants:
    kind: str
    name: str
    constants: dict[str, Constant]
    limits: dict[str, Any]

    def value(self, key: str) -> float:
        return self.constants[key].value

    def at(self, end: str) -> DeviceConstants:
        """These constants with every value at band end ``end`` (``low``/``nominal``/``high``): the
        same model evaluated on them gives that end of a figure's band (monotone models)."""
        if end not in ("low", "nominal", "high"):
            raise ValueError(f"band end must be 'low', 'nominal' or 'high', got {end!r}")
        if end == "nominal":
            return self
        consts = {k: replace(c, value=c.at(end)) for k, c in self.constants.items()}
        return replace(self, constants=consts)

    def sources(self) -> dict[str, str]:
        return {k: f"{c.value:g} {c.unit} [{c.low:g}, {c.high:g}] — {c.source} [{c.confidence}]"
                for k, c in self.constants.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "constants": {k: vars(c) | {} for k, c in self.constants.items()},
            "limits": self.limits,
        }


@cache
def load_constants(kind: str) -> DeviceConstants:
    """Read ``constants.yaml`` from ``kind``'s device folder (``actors/<kind>/``, packaged data)."""
    pkg = kind_package(kind)
    text = resources.files(pkg).joinpath("constants.yaml").read_text()
    return parse_constants(text, pkg.replace(".", "/") + "/constants.yaml", kind)


def parse_constants(text: str, where: str, kind: str = "") -> DeviceConstants:
    """Parse a constants.yaml text; ``where`` names the file in errors.

    Why strict: a constant without a ``low``/``high`` band would silently print as exact. Each band
    must hold its value (``low <= value <= high``)."""
    raw = yaml.safe_load(text) or {}
    consts = {}
    for k, v in (raw.get("constants") or {}).items():
        missing = [f for f in ("value", "low", "high", "source") if f not in v]
        if missing:
            raise ConstantsError(f"{where}: constant {k!r} has no {' / '.join(missing)} "
                                 f"(every constant needs value, low, high and source)")
        lo, val, hi = float(v["low"]), float(v["value"]), float(v["high"])
        if not lo <= val <= hi:
            raise ConstantsError(f"{where}: constant {k!r} band must satisfy low <= value <= high, "
                                 f"got {lo:g} <= {val:g} <= {hi:g}")
        consts[k] = Constant(value=val, unit=str(v.get("unit", "")), source=str(v["source"]),
                             confidence=str(v.get("confidence", "unknown")), low=lo, high=hi,
                             band=str(v.get("band", "")), inverse=bool(v.get("inverse", False)))
    return DeviceConstants(kind=raw.get("kind", kind), name=raw.get("name", kind), constants=consts,
                           limits=dict(raw.get("limits") or {}))


Cost = Callable[["DeviceConstants"], tuple[float, dict[str, float]]]
"""A kind's cost model: constants -> (device seconds, :func:`modelled_energy` terms)."""


def banded(cost: Cost, constants: DeviceConstants) -> tuple[float, dict[str, float], dict[str, list[float]]]:
    """Evaluate ``cost`` on the nominal constants and at both band ends.

    Returns the nominal device time, the nominal energy terms and the bands ``{"device_time_s": [low,
    high], "energy_j": [low, high], "static_j": ..., "dynamic_j": ...}``. Why one function: the band is
    the same model at the band ends, never a separate formula that could drift from the nominal one."""
    t, e = cost(constants)
    ends = [cost(constants.at(end)) for end in BAND_ENDS]
    bands = {"device_time_s": [float(ends[0][0]), float(ends[1][0])]}
    for name, key in (("energy_j", "total"), ("static_j", "static"), ("dynamic_j", "dynamic")):
        bands[name] = [float(ends[0][1][key]), float(ends[1][1][key])]
    for name, (lo, hi) in bands.items():
        nominal = t if name == "device_time_s" else e[{"energy_j": "total", "static_j": "static",
                                                        "dynamic_j": "dynamic"}[name]]
        tol = 1e-9 * abs(nominal) + 1e-300
        if not (lo - tol <= nominal <= hi + tol):
            raise ValueError(f"{constants.kind}: {name} band [{lo:g}, {hi:g}] does not hold the nominal "
                             f"{nominal:g}: the cost model is not monotone in its constants")
    return float(t), e, bands


def modelled_energy(
    *,
    acs: float = 0.0,
    macs: float = 0.0,
    neuron_updates: float = 0.0,
    spikes: float = 0.0,
    device_time_s: float = 0.0,
    e_syn_j: float = 0.0,
    e_mac_j: float = 0.0,
    e_neuron_j: float = 0.0,
    e_spike_j: float = 0.0,
    p_static_w: float = 0.0,
) -> dict[str, float]:
    """Energy terms in joules; ``total`` is their sum. Static and dynamic are kept apart."""
    terms = {
        "synaptic": acs * e_syn_j + macs * e_mac_j,
        "neuron": neuron_updates * e_neuron_j,
        "spike": spikes * e_spike_j,
        "static": p_static_w * device_time_s,
    }
    terms["dynamic"] = terms["synaptic"] + terms["neuron"] + terms["spike"]
    terms["total"] = terms["dynamic"] + terms["static"]
    return terms
