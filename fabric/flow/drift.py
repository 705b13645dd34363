"""Input drift of served spike traffic against the training set (NMLOps stage 9, monitoring).

Why: a deployed SNN sees event streams, and the first thing that moves when a sensor, its bias or its
environment changes is the event statistics -- how many events a sample carries and how they are spaced
in time. Two features are compared, both over spike arrays ``[N, T, C]`` (samples, timesteps, channels):

* per-sample **event rate**: events per channel per timestep of each sample;
* **inter-event intervals**: timesteps between consecutive events of the same channel in the same
  sample, pooled over samples and channels.

Each feature's served distribution is compared with the training one by a two-sample
Kolmogorov-Smirnov test (``scipy.stats.ks_2samp``). A :class:`DriftPolicy` turns the result into a
retrain trigger: drift is declared when a feature's p-value is below ``alpha`` *and* its KS statistic
is at least ``min_statistic`` (with thousands of samples a negligible shift is "significant"; the effect
size floor keeps such shifts from retraining a model). Everything here is pure functions over arrays;
:mod:`fabric.cli.drift` stores the result as a ``drift`` artifact that the dashboard reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["DriftPolicy", "event_rates", "inter_event_intervals", "ks_test", "histogram", "drift_report",
           "FEATURES", "DriftInputError"]

FEATURES = ("event_rate", "inter_event_interval")


class DriftInputError(ValueError):
    """A spike array has the wrong shape or the two arrays cannot be compared."""


@dataclass(kw_only=True)
class DriftPolicy:
    """When drift triggers a retrain: p-value below ``alpha`` and KS statistic >= ``min_statistic``
    on any of ``features``."""

    alpha: float = 0.01
    min_statistic: float = 0.1
    features: tuple[str, ...] = FEATURES

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")
        if not 0.0 <= self.min_statistic <= 1.0:
            raise ValueError(f"min_statistic must be in [0, 1], got {self.min_statistic}")
        unknown = sorted(set(self.features) - set(FEATURES))
        if unknown or not self.features:
            raise ValueError(f"features must be a non-empty subset of {list(FEATURES)}, got {list(self.features)}")
        self.features = tuple(self.features)


def _check(spikes: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(spikes)
    if a.ndim != 3:
        raise DriftInputError(f"{what} spikes must be [N, T, C] (samples, timesteps, channels), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0 or a.shape[2] == 0:
        raise DriftInputError(f"{what} spikes are empty (shape {a.shape})")
    return a


def event_rates(spikes: np.ndarray) -> np.ndarray:
    """Events per channel per timestep of each sample, shape ``[N]`` (counts > 1 count as that many)."""
    a = _check(spikes, "input")
    return a.reshape(a.shape[0], -1).astype(np.float64).sum(axis=1) / (a.shape[1] * a.shape[2])


def inter_event_intervals(spikes: np.ndarray) -> np.ndarray:
    """Timesteps between consecutive events of one channel within one sample, pooled, shape ``[M]``."""
    a = _check(spikes, "input")
    n, c, t = np.nonzero(np.transpose(a, (0, 2, 1)) != 0)  # sorted by (sample, channel, time)
    if len(t) < 2:
        return np.zeros(0, dtype=np.int64)
    same = (n[1:] == n[:-1]) & (c[1:] == c[:-1])
    return np.diff(t)[same].astype(np.int64)


def ks_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample KS statistic and p-value; ``(nan, nan)`` when either sample is empty."""
    from scipy.stats import ks_2samp

    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan")
    res = ks_2samp(a, b)
    return float(res.statistic), float(res.pvalue)


def histogram(train: np.ndarray, served: np.ndarray, bins: int = 30, integer: bool = False) -> dict[str, Any]:
    """Both distributions on shared bin edges, as densities (what the dashboard plots)."""
    both = np.concatenate([train, served]) if len(train) + len(served) else np.zeros(1)
    lo, hi = float(both.min()), float(both.max())
    if integer:
        edges = np.arange(lo - 0.5, hi + 1.5, max(1.0, np.ceil((hi - lo + 1) / bins)))
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-9, bins + 1)

    def dens(x: np.ndarray) -> list[float]:
        if len(x) == 0:
            return [0.0] * (len(edges) - 1)
        h, _ = np.histogram(x, bins=edges)
        return (h / len(x)).tolist()

    return {"edges": edges.tolist(), "train": dens(train), "served": dens(served)}


def _summary(x: np.ndarray) -> dict[str, float | int]:
    if len(x) == 0:
        return {"n": 0, "mean": float("nan"), "std": float("nan"), "median": float("nan")}
    return {"n": int(len(x)), "mean": float(x.mean()), "std": float(x.std()), "median": float(np.median(x))}


def drift_report(train_spikes: np.ndarray, served_spikes: np.ndarray, policy: DriftPolicy | None = None,
                 bins: int = 30) -> dict[str, Any]:
    """Compare served spikes with training spikes; the JSON-ready report, with ``retrain`` decided by ``policy``."""
    policy = policy or DriftPolicy()
    tr, sv = _check(train_spikes, "training"), _check(served_spikes, "served")
    if tr.shape[2] != sv.shape[2]:
        raise DriftInputError(f"channel count differs: training has {tr.shape[2]}, served has {sv.shape[2]} "
                              "(is the served traffic encoded for this model?)")
    feats = {"event_rate": (event_rates(tr), event_rates(sv), False),
             "inter_event_interval": (inter_event_intervals(tr), inter_event_intervals(sv), True)}
    out: dict[str, Any] = {}
    reasons = []
    for name, (a, b, integer) in feats.items():
        stat, p = ks_test(a, b)
        drifted = bool(name in policy.features and np.isfinite(stat) and p < policy.alpha
                       and stat >= policy.min_statistic)
        if drifted:
            reasons.append(f"{name}: KS {stat:.3f} >= {policy.min_statistic} and p {p:.2g} < {policy.alpha}")
        out[name] = {"statistic": stat, "p_value": p, "drifted": drifted, "train": _summary(a), "served": _summary(b),
                     "histogram": histogram(a, b, bins, integer)}
    return {
        "test": "two-sample Kolmogorov-Smirnov (scipy.stats.ks_2samp)",
        "policy": asdict(policy) | {"features": list(policy.features)},
        "samples": {"training": int(tr.shape[0]), "served": int(sv.shape[0])},
        "shape": {"timesteps": [int(tr.shape[1]), int(sv.shape[1])], "channels": int(tr.shape[2])},
        "features": out,
        "retrain": bool(reasons),
        "reason": "; ".join(reasons) if reasons else "no feature drifted beyond the policy",
    }
