"""Connecting to the fabric: an embedded local Ray that advertises emulated device resources, or an
existing cluster (``RAY_ADDRESS`` / ``address=``) whose nodes advertise the boards they host."""

from __future__ import annotations

import os
from typing import Any

import ray

from fabric.kinds import embedded_resources, kinds

__all__ = ["connect", "parse_device_counts", "device_resources"]


def parse_device_counts(text: str) -> dict[str, int]:
    """``"loihi=2,akida=1"`` -> ``{"loihi": 2, "akida": 1}`` (counts >= 0)."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise ValueError(f"FABRIC_DEVICES entry {part!r} is not KIND=COUNT")
        k, v = (s.strip() for s in part.split("=", 1))
        if not v.isdigit():
            raise ValueError(f"FABRIC_DEVICES count for {k!r} must be a non-negative integer, got {v!r}")
        out[k] = int(v)
    return out


def device_resources(counts: dict[str, int] | None = None) -> dict[str, int]:
    res = dict(embedded_resources())
    env = os.environ.get("FABRIC_DEVICES")
    if env:
        res.update(parse_device_counts(env))
    res.update(counts or {})
    return {k: v for k, v in res.items() if v > 0}


def connect(address: str | None = None, devices: dict[str, int] | None = None, num_cpus: int | None = None,
            **init_kwargs: Any) -> dict[str, Any]:
    """Join ``address``/``RAY_ADDRESS`` if given, else start local Ray advertising emulated devices.

    Returns the cluster's resources. Idempotent: an already-initialised Ray is reused.
    """
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        kw: dict[str, Any] = {"namespace": "fabric", "log_to_driver": False, "configure_logging": False}
        kw.update(init_kwargs)
        if address:
            ray.init(address=address, **kw)
        else:
            kw.setdefault("include_dashboard", False)
            # "local" always starts a fresh instance, never silently joins another local cluster
            ray.init(address="local", resources=device_resources(devices), num_cpus=num_cpus, **kw)
    res = ray.cluster_resources()
    return {k: v for k, v in res.items() if k in kinds() or k in ("CPU", "GPU", "memory")}
