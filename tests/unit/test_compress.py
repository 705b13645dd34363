"""Compression: pruning keeps its zeros, structured pruning shrinks and still exports, QAT stays on its
grid, state quantization is a fixed-point membrane, and every variant gets a measured row."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fabric.flow.pipeline import nir_from_bytes, nir_to_bytes
from fabric.model.compress import (
    StateQuantized,
    compress_variants,
    distinct_weight_values,
    finetune,
    magnitude_prune,
    measure,
    quantize_state,
    structured_prune,
    target_weight_bits,
)
from fabric.model.snn import LifMLP, export_nir
from fabric.spec import CompressSpec, SpecError, parse_spec


def _task(n: int = 96, t: int = 8, f: int = 12, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class c fires input group c at rate 0.6, the rest at 0.05: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    p = np.full((n, 1, f), 0.05)
    g = f // classes
    for i, c in enumerate(y):
        p[i, 0, c * g:(c + 1) * g] = 0.6
    return (rng.random((n, t, f)) < p).astype(np.uint8), y.astype(np.int64)


@pytest.fixture(scope="module")
def trained() -> tuple[LifMLP, np.ndarray, np.ndarray]:
    x, y = _task()
    torch.manual_seed(0)
    m = LifMLP(12, [16], 3, 0.9, 1.0)
    m, _ = finetune(m, x, y, epochs=3, lr=1e-2, seed=0, batch_size=32)
    return m, x, y


def _acc(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        spk, _ = model(torch.as_tensor(x, dtype=torch.float32).transpose(0, 1))
    return float((spk.sum(0).argmax(1).numpy() == y).mean())


def test_magnitude_pruning_hits_sparsity_and_zeros_survive_finetuning(trained):
    model, x, y = trained
    pruned, masks = magnitude_prune(model, 0.5)
    for fc in pruned.fcs:
        assert abs(float((fc.weight == 0).float().mean()) - 0.5) < 0.02
    before = [fc.weight.detach().clone() for fc in pruned.fcs]
    tuned, _ = finetune(pruned, x, y, epochs=2, lr=1e-2, seed=1, batch_size=32, masks=masks)
    for i, fc in enumerate(tuned.fcs):
        w = fc.weight.detach()
        assert torch.all(w[masks[i] == 0] == 0), "a pruned weight came back during fine-tuning"
        assert not torch.equal(w[masks[i] == 1], before[i][masks[i] == 1]), "kept weights must still train"
    # the pruned magnitudes are the smallest ones of the original
    w0 = model.fcs[0].weight.detach().abs()
    assert w0[masks[0] == 0].max() <= w0[masks[0] == 1].min()


def test_structured_pruning_shrinks_the_layer_and_still_exports(trained):
    model, x, y = trained
    small = structured_prune(model, 0.25)
    assert [fc.out_features for fc in small.fcs] == [12, 3]
    assert small.fcs[1].in_features == 12
    # it keeps the 12 neurons with the largest incoming L1 norm, weights unchanged
    norms = model.fcs[0].weight.detach().abs().sum(1)
    keep = torch.sort(torch.argsort(norms, descending=True)[:12]).values
    assert torch.equal(small.fcs[0].weight, model.fcs[0].weight[keep])
    assert torch.equal(small.fcs[1].weight, model.fcs[1].weight[:, keep])
    g = nir_from_bytes(nir_to_bytes(export_nir(small)))
    assert g.nodes["fc0"].weight.shape == (12, 12) and g.nodes["fc1"].weight.shape == (3, 12)
    assert _acc(small, x, y) > 0.5  # chance is 1/3


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_qat_weights_take_at_most_2_pow_bits_values(trained, bits):
    model, x, y = trained
    tuned, hist = finetune(_copy(model), x, y, epochs=1, lr=5e-3, seed=0, batch_size=32, qat_bits=bits)
    assert hist and all(n <= 2**bits for n in distinct_weight_values(tuned))
    assert max(distinct_weight_values(model)) > 2**bits  # the float model was not already on a grid


def _copy(m: LifMLP) -> LifMLP:
    from fabric.model.compress import clone

    return clone(m)


def test_state_quantization_is_a_saturating_fixed_point_grid():
    v = torch.linspace(-10, 10, 1001)
    q = quantize_state(v, 4, threshold=1.0)
    assert len(torch.unique(q)) <= 16 and float(q.max()) < 4.0 and float(q.min()) >= -4.0
    assert float((q - v)[(v > -4) & (v < 3.5)].abs().max()) <= 0.25 + 1e-6  # half an LSB (8/16)


def test_variants_in_order_each_measured_against_baseline(trained):
    model, x, y = trained
    cfg = CompressSpec(structured=0.25, prune=0.5, qat_bits="auto", state_bits=8, finetune_epochs=1)
    variants = compress_variants(model, x, y, cfg, ["cpu", "loihi", "akida"], seed=0, batch_size=32)
    assert [v.name for v in variants] == ["structured", "pruned", "qat", "state"]
    assert variants[2].params["weight_bits"] == 4  # akida's 4-bit weights are the lowest among the targets
    assert isinstance(variants[3].model, StateQuantized)
    rows = [measure(model, x, y)] + [measure(v.model, x, y, weight_bits=v.params.get("weight_bits")) for v in variants]
    assert [r["hidden"] for r in rows] == [[16], [12], [12], [12], [12]]
    assert rows[2]["nonzero_weights"] <= 0.5 * rows[1]["parameters"]
    assert rows[3]["weights_bytes_at_precision"] < rows[2]["weights_bytes_at_precision"]  # 4-bit vs float
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["synops"] > 0 and r["footprint_bytes"] > 0
    # the original model is untouched by the driver
    assert model.fcs[0].out_features == 16


def test_target_weight_bits_auto():
    assert target_weight_bits(["loihi", "fpga"])[0] == 8
    assert target_weight_bits(["cpu", "dynapse"])[0] == 8  # nobody declares one: 8-bit default, said so
    assert "akida" in target_weight_bits(["loihi", "akida"])[1]


@pytest.mark.parametrize("patch, path", [
    ({"prune": 1.0}, "compress.prune"),
    ({"qat_bits": 1}, "compress.qat_bits"),
    ({"deploy": "pruned"}, "compress"),
    ({"sparsity": 0.5}, "compress.sparsity"),
])
def test_compress_spec_errors_name_the_field(patch, path):
    with pytest.raises(SpecError) as e:
        parse_spec({"name": "x", "dataset": {"name": "digits"}, "compress": patch})
    assert f"{path}:" in str(e.value) and "\n" not in str(e.value)
