"""The one weight quantizer (fabric.model.quantize): its edge cases, and QAT and Tune sharing its grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fabric.model.compress import fake_quant, quantize_weights
from fabric.model.quantize import check_bits, quantize_symmetric, symmetric_levels
from fabric.model.snn import LifMLP
from tune import compress


@pytest.mark.parametrize("bits", [2, 3, 4, 8, 16])
def test_grid_is_symmetric_and_max_is_a_level(bits):
    w = torch.randn(40, 30, generator=torch.Generator().manual_seed(0))
    q, scale = symmetric_levels(w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert float(q.min()) >= -qmax and float(q.max()) <= qmax and torch.equal(q, torch.round(q))
    assert scale == pytest.approx(float(w.abs().max()) / qmax)
    wq = quantize_symmetric(w, bits)
    assert float(wq.abs().max()) == pytest.approx(float(w.abs().max()))  # max|w| sits exactly on the grid
    assert torch.unique(wq).numel() <= 2**bits - 1


def test_one_bit_is_sign_times_mean_magnitude_and_zeros_stay_zero():
    w = torch.tensor([[0.5, -1.5, 0.0], [2.0, 0.0, -0.25]])
    wq = quantize_symmetric(w, 1)
    a = (0.5 + 1.5 + 2.0 + 0.25) / 4  # mean magnitude of the non-zero weights
    torch.testing.assert_close(wq, torch.tensor([[a, -a, 0.0], [a, 0.0, -a]]))
    q, scale = symmetric_levels(w, 1)
    assert set(q.flatten().tolist()) == {-1.0, 0.0, 1.0} and scale == pytest.approx(a)


def test_ties_round_half_to_even():
    w = np.array([3.0, 0.5, 1.5, -0.5, -1.5, 2.5, -2.5])  # bits 3: qmax 3, scale exactly 1
    q, scale = symmetric_levels(w, 3)
    assert scale == 1.0
    np.testing.assert_array_equal(q, [3.0, 0.0, 2.0, -0.0, -2.0, 2.0, -2.0])
    assert np.array_equal(quantize_symmetric(-w, 3), -quantize_symmetric(w, 3))  # symmetric in sign


@pytest.mark.parametrize("bits", [1, 2, 8])
def test_all_zero_weights_stay_zero_without_nan(bits):
    for w in (torch.zeros(4, 3), np.zeros((4, 3), np.float32), torch.zeros(0)):
        out = quantize_symmetric(w, bits)
        assert type(out) is type(w) and out.shape == w.shape and not np.any(np.asarray(out) != 0)
    assert symmetric_levels(torch.zeros(3), bits)[1] == 1.0


@pytest.mark.parametrize("bits", [0, -1, 17, 32, 2.5, True, "4", None])
def test_bits_out_of_range_is_an_error_naming_the_field(bits):
    with pytest.raises(ValueError) as e:
        quantize_symmetric(torch.ones(3), bits, field="search_space.weight_bits")  # type: ignore[arg-type]
    assert str(e.value).startswith("search_space.weight_bits must be an integer in 1..16") and "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"^compress\.qat_bits must"):
        fake_quant(torch.ones(3), bits)  # type: ignore[arg-type]


def test_integral_float_bits_are_accepted():
    assert check_bits(4.0) == 4 and check_bits(np.int64(8)) == 8


def test_numpy_and_torch_give_the_same_grid():
    w = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    for bits in (1, 3, 8):
        out = quantize_symmetric(w, bits)
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, quantize_symmetric(torch.from_numpy(w), bits).numpy())


def test_fake_quant_passes_the_gradient_straight_through():
    w = torch.randn(5, 4, requires_grad=True)
    fake_quant(w, 3).sum().backward()
    torch.testing.assert_close(w.grad, torch.ones(5, 4))


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_qat_grid_and_tune_weight_bits_mean_the_same(bits):
    torch.manual_seed(0)
    m = LifMLP(20, [30], 5, 0.9, 1.0)
    qat = quantize_weights(m, bits)
    tuned = compress(m, weight_bits=bits)  # in place
    for a, b in zip(qat.fcs, tuned.fcs, strict=True):
        assert torch.equal(a.weight, b.weight)
