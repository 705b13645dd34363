"""Spike encoders (NMLOps stage 2) as pure functions over arrays, in one registry.

Each encoder maps samples in [0, 1] ``[N, ...features]`` to spikes ``[N, T, features]`` (uint8) and is
fully determined by its parameters and seed, which are stored with the encoded artifact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["ENCODERS", "encode", "rate_encode", "latency_encode"]


def rate_encode(x: np.ndarray, timesteps: int, *, seed: int = 0, gain: float = 1.0) -> np.ndarray:
    """Poisson/Bernoulli rate code: P(spike at t) = clip(gain * x, 0, 1), independent per step."""
    flat = np.clip(np.asarray(x, dtype=np.float32).reshape(len(x), -1) * gain, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    return (rng.random((flat.shape[0], timesteps, flat.shape[1]), dtype=np.float32) < flat[:, None, :]).astype(np.uint8)


def latency_encode(x: np.ndarray, timesteps: int, *, seed: int = 0, threshold: float = 0.01) -> np.ndarray:
    """Time-to-first-spike: one spike at t = round((1 - x) * (T - 1)); inputs <= threshold stay silent."""
    flat = np.clip(np.asarray(x, dtype=np.float32).reshape(len(x), -1), 0.0, 1.0)
    t = np.rint((1.0 - flat) * (timesteps - 1)).astype(np.int64)
    out = np.zeros((flat.shape[0], timesteps, flat.shape[1]), dtype=np.uint8)
    n, f = np.nonzero(flat > threshold)
    out[n, t[n, f], f] = 1
    return out


ENCODERS: dict[str, Callable[..., np.ndarray]] = {"rate": rate_encode, "latency": latency_encode}


def encode(name: str, x: np.ndarray, timesteps: int, seed: int, params: dict[str, Any] | None = None) -> np.ndarray:
    try:
        fn = ENCODERS[name]
    except KeyError:
        raise KeyError(f"unknown encoder {name!r}; valid: {sorted(ENCODERS)}") from None
    try:
        return fn(x, timesteps, seed=seed, **(params or {}))
    except TypeError as exc:
        raise ValueError(f"encoder.params: {exc}") from None
