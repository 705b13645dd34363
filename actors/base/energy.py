"""Device constants (one ``constants.yaml`` in each kind's folder, each value with source and confidence) and the energy
model, as pure functions.

E = ACs*E_syn + MACs*E_mac + neuron_updates*E_neuron + spikes*E_spike + P_static*T_device
(op counts the NeuroBench way: Yik et al., NeuroBench, arXiv:2304.04640). Every figure computed here is *modelled*; callers label it so.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from fabric.kinds import kind_package

__all__ = ["DeviceConstants", "Constant", "load_constants", "modelled_energy"]


@dataclass(frozen=True, kw_only=True)
class Constant:
    value: float
    unit: str
    source: str
    confidence: str


@dataclass(frozen=True, kw_only=True)
class DeviceConstants:
    kind: str
    name: str
    constants: dict[str, Constant]
    limits: dict[str, Any]

    def value(self, key: str) -> float:
        return self.constants[key].value

    def sources(self) -> dict[str, str]:
        return {k: f"{c.value:g} {c.unit} — {c.source} [{c.confidence}]" for k, c in self.constants.items()}

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
    text = resources.files(kind_package(kind)).joinpath("constants.yaml").read_text()
    raw = yaml.safe_load(text)
    consts = {
        k: Constant(value=float(v["value"]), unit=str(v.get("unit", "")), source=str(v["source"]),
                    confidence=str(v.get("confidence", "unknown")))
        for k, v in (raw.get("constants") or {}).items()
    }
    return DeviceConstants(kind=raw["kind"], name=raw.get("name", kind), constants=consts,
                           limits=dict(raw.get("limits") or {}))


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
