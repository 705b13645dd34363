"""Device telemetry counts ops the NeuroBench way: held to NeuroBench itself on the same model."""

import numpy as np
import pytest
import torch

from actors.cpu.runtime import CpuRuntime
from fabric.model.neurobench import neurobench_metrics
from fabric.model.snn import LifMLP, export_nir


def test_cpu_runtime_synops_and_accuracy_match_neurobench():
    torch.manual_seed(0)
    m = LifMLP(32, [24], 5, 0.9, 1.0)
    with torch.no_grad():
        for fc in m.fcs:
            fc.weight.mul_(2.5)
    rng = np.random.default_rng(0)
    x = (rng.random((40, 15, 32)) < 0.25).astype(np.uint8)
    y = rng.integers(0, 5, 40)
    nb = neurobench_metrics(m, x, y, batch_size=20)
    rt = CpuRuntime()
    rt.load(rt.compile(export_nir(m)))
    out = rt.run(x)
    assert out.telemetry.spikes_out > 0
    assert out.telemetry.synaptic_ops / len(x) == pytest.approx(nb["SynapticOperations"]["Effective_ACs"], rel=1e-6)
    # ChooseMaxCount and our argmax agree on the readout
    assert float((out.predictions == y).mean()) == pytest.approx(nb["ClassificationAccuracy"], abs=1e-6)
    assert nb["ParameterCount"] == sum(p.numel() for p in m.parameters())
