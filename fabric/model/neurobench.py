"""Evaluation with NeuroBench (NMLOps stage 4): static and workload metrics on the trained model.

NeuroBench is the reference for how ops are counted; the device runtimes count synaptic ops the same
way (non-zero input x non-zero weight), and a test holds them to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fabric.model.snn import LifMLP

__all__ = ["neurobench_metrics", "STATIC_METRICS", "WORKLOAD_METRICS"]

STATIC_METRICS = ("ParameterCount", "Footprint", "ConnectionSparsity")
WORKLOAD_METRICS = ("ClassificationAccuracy", "ActivationSparsity", "SynapticOperations", "MembraneUpdates")


class _BatchFirst(nn.Module):
    """NeuroBench feeds ``[B, T, F]`` and expects ``[T, B, out]`` back from a custom forward."""

    def __init__(self, model: LifMLP) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.transpose(0, 1))[0]


def neurobench_metrics(model: LifMLP, spikes: np.ndarray, labels: np.ndarray, batch_size: int = 128) -> dict[str, Any]:
    """Run NeuroBench's Benchmark on ``spikes`` ``[N, T, F]``; returns its result dict (per-sample means)."""
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics import static as S
    from neurobench.metrics import workload as W
    from neurobench.models import SNNTorchModel
    from neurobench.processors.postprocessors import ChooseMaxCount

    data = TensorDataset(torch.as_tensor(spikes, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long))
    bench = Benchmark(
        SNNTorchModel(_BatchFirst(model.eval()), custom_forward=True), DataLoader(data, batch_size=batch_size),
        [], [ChooseMaxCount()],
        [[getattr(S, m) for m in STATIC_METRICS], [getattr(W, m) for m in WORKLOAD_METRICS]],
    )
    with torch.no_grad():
        res = bench.run(quiet=True)
    return {k: (dict(v) if isinstance(v, dict) else float(v)) for k, v in res.items()}
