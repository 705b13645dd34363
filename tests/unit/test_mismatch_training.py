"""train.mismatch_cv: mismatch-aware training perturbs the weights the forward pass sees (per neuron and
synapse sign, fresh each batch), restores them for the optimizer step, and is off by default."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fabric.model.train as train_mod
from fabric.model.mismatch import lognormal_factors, weight_mismatch
from fabric.spec import SpecError, parse_spec

BUILD_MODEL = train_mod.build_model


def test_lognormal_factors_have_mean_one_and_the_requested_cv():
    f = lognormal_factors((200_000,), 0.2, torch.Generator().manual_seed(0)).double()
    assert float(f.mean()) == pytest.approx(1.0, abs=0.005)
    assert float(f.std() / f.mean()) == pytest.approx(0.2, abs=0.005)


def test_weight_mismatch_scales_rows_per_sign_and_restores():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    clean = lin.weight.detach().clone()
    gen = torch.Generator().manual_seed(1)
    with weight_mismatch(lin, 0.2, gen):
        seen = lin.weight.detach().clone()
    np.testing.assert_array_equal(lin.weight.detach().numpy(), clean.numpy())  # restored exactly
    ratio = (seen / clean).numpy()
    pos = clean.numpy() >= 0
    for r in range(4):  # one factor per neuron (row) and sign
        assert np.ptp(ratio[r][pos[r]]) < 1e-6 and np.ptp(ratio[r][~pos[r]]) < 1e-6
    assert not np.allclose(ratio, 1.0)
    with weight_mismatch(lin, 0.0, gen):
        np.testing.assert_array_equal(lin.weight.detach().numpy(), clean.numpy())


def _tiny_spec(cv: float):
    return parse_spec({"name": "mm", "dataset": {"name": "digits"}, "encoder": {"name": "rate", "timesteps": 5},
                       "model": {"hidden": [8]}, "train": {"epochs": 1, "batch_size": 10, "lr": 0.01,
                                                           "device": "cpu", "mismatch_cv": cv}, "seed": 3})


def _seen_weights(monkeypatch, cv: float) -> tuple[list[torch.Tensor], nn.Module]:
    seen: list[torch.Tensor] = []
    def build(spec, n_in, n_out):
        model = BUILD_MODEL(spec, n_in, n_out)
        model.fcs[0].register_forward_pre_hook(lambda mod, _: seen.append(mod.weight.detach().clone()))
        return model

    monkeypatch.setattr(train_mod, "build_model", build)
    rng = np.random.default_rng(0)
    x = (rng.random((30, 5, 12)) < 0.3).astype(np.uint8)
    y = rng.integers(0, 3, 30)
    res = train_mod.train_model(_tiny_spec(cv), x, y, 3, progress=False)
    return seen, res.model


def test_forward_pass_sees_perturbed_weights_only_when_enabled(monkeypatch):
    plain, m_plain = _seen_weights(monkeypatch, 0.0)
    init = BUILD_MODEL(_tiny_spec(0.0), 12, 3).fcs[0].weight.detach()
    torch.testing.assert_close(plain[0], init)  # off: the first batch sees the initial weights
    aware, m_aware = _seen_weights(monkeypatch, 0.2)
    assert len(aware) == len(plain) == 3 * 5  # 3 batches x 5 timesteps
    for b in range(3):  # one draw per batch: every timestep of a batch sees the same weights
        assert all(torch.equal(aware[b * 5], aware[b * 5 + t]) for t in range(5))
    assert not torch.equal(aware[0] / plain[0], aware[5] / plain[5])  # fresh draw per batch
    ratio = (aware[0] / init).numpy()
    assert not np.allclose(ratio, 1.0) and np.all(ratio > 0)  # a gain, never a sign flip
    assert not torch.equal(m_plain.fcs[0].weight, m_aware.fcs[0].weight)
    again, _ = _seen_weights(monkeypatch, 0.2)  # seeded: the same draws again
    torch.testing.assert_close(again[7], aware[7])


@pytest.mark.parametrize("cv", [-0.1, 1.0])
def test_bad_mismatch_cv_names_the_field(cv):
    with pytest.raises(SpecError, match="train.mismatch_cv"):
        _tiny_spec(cv)


def test_mismatch_schedule_ramps_over_the_first_half():
    from fabric.model.mismatch import mismatch_schedule

    assert [round(mismatch_schedule(0.2, e, 10), 3) for e in range(10)] == [0.04, 0.08, 0.12, 0.16] + [0.2] * 6
    assert mismatch_schedule(0.2, 0, 1) == 0.2 and mismatch_schedule(0.0, 3, 10) == 0.0


def test_emulator_chips_and_training_draw_from_one_law():
    from actors.dynapse.dpi import CoreBiases, apply_mismatch
    from fabric.model.mismatch import lognormal_params

    chip = apply_mismatch(CoreBiases(i_tau=1.0, i_g=1.0, i_dc=1.0, i_spkthr=1.0, i_reset=1.0), 6, 0.2,
                          np.random.default_rng(7))
    np.testing.assert_array_equal(chip.i_tau, lognormal_factors(6, 0.2, np.random.default_rng(7)))  # first draw
    mu, sigma = lognormal_params(0.2)
    assert mu == pytest.approx(-sigma**2 / 2) and sigma == pytest.approx(np.sqrt(np.log(1.04)))
    f = lognormal_factors((200_000,), 0.2, np.random.default_rng(0))
    assert f.dtype == np.float64 and f.mean() == pytest.approx(1.0, abs=0.005)
    assert f.std() / f.mean() == pytest.approx(0.2, abs=0.005)
