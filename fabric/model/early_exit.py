"""Top-K cutoff early exit (Wu et al., Front. Neurosci. 19, 2025, DOI 10.3389/fnins.2025.1522788): stop a sample's
inference once its top-K classes by cumulative output spikes have stayed the same for ``patience``
steps. Pure function over output rasters, so any device's raster can be scored."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EarlyExitResult", "topk_cutoff"]


@dataclass(kw_only=True, frozen=True)
class EarlyExitResult:
    exit_step: np.ndarray  # [B] number of steps actually simulated (1..T)
    predictions: np.ndarray  # [B] argmax of counts at exit
    timesteps: int

    @property
    def mean_steps(self) -> float:
        return float(self.exit_step.mean())

    @property
    def saved_fraction(self) -> float:
        return 1.0 - self.mean_steps / self.timesteps


def topk_cutoff(raster: np.ndarray, k: int = 1, patience: int = 3, min_spikes: int = 1) -> EarlyExitResult:
    """raster ``[B, T, C]`` output spikes. A sample exits at the first step t where it has emitted at
    least ``min_spikes`` output spikes and its top-k set (ties broken by class index) equals the set of
    each of the previous ``patience`` steps; otherwise it runs all T steps."""
    if raster.ndim != 3:
        raise ValueError(f"raster must be [batch, timesteps, classes], got shape {list(raster.shape)}")
    b, steps, c = raster.shape
    if not 1 <= k < c:
        raise ValueError(f"k must be in [1, {c - 1}] for {c} classes, got {k}")
    if patience < 1:
        raise ValueError(f"patience must be >= 1, got {patience}")
    cum = np.cumsum(raster, axis=1, dtype=np.int64)  # [B, T, C]
    # stable sort on -counts: ties go to the lower class index, like argmax
    order = np.argsort(-cum, axis=2, kind="stable")[:, :, :k]
    topk = np.sort(order, axis=2)  # as sets
    same = np.all(topk[:, 1:] == topk[:, :-1], axis=2)  # [B, T-1]: step t equals step t-1
    run = np.zeros((b, steps), dtype=np.int64)
    for t in range(1, steps):
        run[:, t] = np.where(same[:, t - 1], run[:, t - 1] + 1, 0)
    enough = cum.sum(axis=2) >= min_spikes
    ok = (run >= patience) & enough
    exit_idx = np.where(ok.any(axis=1), ok.argmax(axis=1), steps - 1)
    preds = np.argmax(cum[np.arange(b), exit_idx], axis=1)
    return EarlyExitResult(exit_step=exit_idx + 1, predictions=preds, timesteps=steps)
