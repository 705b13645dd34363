"""Search-space remnants of issue #19 item 3 without Ray: per-layer leak / threshold (``model.betas`` /
``model.thresholds``, searched as ``layer_beta`` / ``layer_threshold``) and neuron-state precision
(``state_bits``): each changes the trained, exported or compiled model; bad values are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fabric.flow.codecs import model_from_bytes, model_to_bytes
from fabric.kinds import make_runtime
from fabric.model.snn import LifMLP, export_nir
from fabric.model.train import build_model
from fabric.spec import SpecError, parse_spec
from tune._space import candidate_spec, compress_trained, make_space_fn

BASE = {"name": "t", "dataset": {"name": "digits", "limit": 60}, "encoder": {"name": "rate", "timesteps": 8},
        "model": {"hidden": [16]}, "train": {"epochs": 1, "device": "cpu"}, "targets": ["loihi"], "seed": 1}


def _with_model(**model) -> dict:
    return BASE | {"model": BASE["model"] | model}


def _data(spec):
    from fabric.data.datasets import load_builtin
    from fabric.flow.stages import encode_inputs

    ds = load_builtin("digits", 60)
    spikes, _ = encode_inputs(spec, ds.x, ds.classes)
    return spikes, ds.y


def _trained(spec):
    from fabric.model.train import train_model

    spikes, y = _data(spec)
    return train_model(spec, spikes, y, 10, progress=False).model, spikes, y


def _weights(model) -> np.ndarray:
    return np.concatenate([fc.weight.detach().numpy().ravel() for fc in model.fcs])


def test_per_layer_leak_and_threshold_reach_the_layers_the_graph_and_the_program():
    spec = parse_spec(_with_model(betas=[0.6, 0.95], thresholds=[0.5, 2.0]))
    m = build_model(spec, 64, 10)
    assert [float(lif.beta) for lif in m.lifs] == pytest.approx([0.6, 0.95])
    assert [float(lif.threshold) for lif in m.lifs] == [0.5, 2.0]
    g = export_nir(m)
    assert float(g.nodes["lif0"].v_threshold[0]) == 0.5 and float(g.nodes["lif1"].v_threshold[0]) == 2.0
    assert g.nodes["lif0"].tau[0] == pytest.approx(1e-3 / 0.4) and g.nodes["lif1"].tau[0] == pytest.approx(1e-3 / 0.05)
    # same weights, uniform constants: a different graph and a different compiled program
    uni = LifMLP(64, [16], 10, 0.9, 1.0)
    uni.fcs.load_state_dict(m.fcs.state_dict())  # the weights only (the LIF buffers hold beta/threshold)
    rt = make_runtime("loihi")
    per_prog, uni_prog = rt.compile(g), rt.compile(export_nir(uni))
    x = (np.random.default_rng(0).random((4, 8, 64)) < 0.3).astype(np.float32)
    rt.load(per_prog)
    a = rt.run(x)
    rt.load(uni_prog)
    b = rt.run(x)
    assert not np.array_equal(a.counts, b.counts)
    # the checkpoint keeps the per-layer values
    back = model_from_bytes(model_to_bytes(m))
    assert back.betas == m.betas and back.thresholds == m.thresholds


def test_per_layer_values_change_the_trained_weights():
    uni, _, _ = _trained(parse_spec(BASE))
    per, _, _ = _trained(parse_spec(_with_model(betas=[0.6, 0.95], thresholds=[0.5, 2.0])))
    assert not np.allclose(_weights(uni), _weights(per))


def test_per_layer_spec_rules_are_one_line_and_keep_old_hashes():
    assert "betas" not in parse_spec(BASE).to_dict()["model"]  # specs without them keep their hash
    d = parse_spec(_with_model(betas=[0.7, 0.8])).to_dict()["model"]
    assert d["betas"] == [0.7, 0.8] and "beta" not in d and d["threshold"] == 1.0
    assert parse_spec(BASE | {"model": d}).model.betas == [0.7, 0.8]  # round-trips
    bad = [({"betas": [0.9]}, r"betas: 1 values for 2 layers"),
           ({"betas": [0.9, 0.9, 0.9]}, r"betas: 3 values for 2 layers"),  # one over
           ({"thresholds": [1.0, 1.0, 1.0]}, r"thresholds: 3 values for 2 layers"),
           ({"betas": [0.9, 1.0]}, r"betas\[1\] must be in \(0, 1\)"),
           ({"thresholds": [1.0, 1e6 + 1]}, r"thresholds\[1\] must be in \(0, 1e\+06\]"),
           ({"beta": 0.8, "betas": [0.9, 0.9]}, "give one of beta .* and betas"),
           ({"threshold": 0.8, "thresholds": [0.9, 0.9]}, "give one of threshold .* and thresholds")]
    for model, msg in bad:
        with pytest.raises(SpecError, match=msg) as exc:
            parse_spec(_with_model(**model))
        assert "\n" not in str(exc.value)
    assert parse_spec(_with_model(thresholds=[1.0, 1e6])).model.thresholds == [1.0, 1e6]  # the limit itself
    with pytest.raises(SpecError, match="betas: settings of the lif_mlp template"):
        parse_spec(BASE | {"model": {"module": "m.py:build", "betas": [0.9, 0.9]}})


class _Trial:
    """Records what the space samples; returns the first choice / the low end."""

    def __init__(self) -> None:
        self.params: dict = {}

    def suggest_categorical(self, name, choices):
        self.params[name] = choices[0]
        return choices[0]

    def suggest_float(self, name, low, high, log=False):
        self.params[name] = low
        return low


def test_space_samples_one_value_per_layer_and_candidates_apply_them():
    spec = parse_spec(BASE | {"search_space": {"hidden": [[8, 8], [16]], "layer_beta": {"low": 0.6, "high": 0.9},
                                               "layer_threshold": {"low": 0.5, "high": 1.5}, "state_bits": [6, 8]}})
    t = _Trial()
    make_space_fn(spec.search_space, spec.model.hidden)(t)
    assert sorted(t.params) == ["beta.0", "beta.1", "beta.2", "hidden", "state_bits", "threshold.0", "threshold.1",
                                "threshold.2"]  # hidden 8-8: two hidden layers + output
    cand = candidate_spec(spec, {"hidden": "8-8", "beta.0": 0.6, "beta.1": 0.7, "beta.2": 0.8, "threshold.0": 0.5,
                                 "threshold.1": 1.0, "threshold.2": 1.5, "state_bits": 6})
    assert (cand.model.hidden, cand.model.betas, cand.model.thresholds, cand.compress.state_bits) == (
        [8, 8], [0.6, 0.7, 0.8], [0.5, 1.0, 1.5], 6)
    # without a hidden choice the spec's own hidden sizes the keys
    only = parse_spec(BASE | {"search_space": {"layer_threshold": {"low": 0.5, "high": 1.5}}})
    t = _Trial()
    make_space_fn(only.search_space, only.model.hidden)(t)
    assert sorted(t.params) == ["threshold.0", "threshold.1"]
    with pytest.raises(SpecError, match=r"betas: 1 values for 3 layers"):
        candidate_spec(spec, {"hidden": "8-8", "beta.0": 0.6})
    with pytest.raises(SpecError, match=r"per-layer keys must be beta.0 .. beta.N"):
        candidate_spec(spec, {"beta.1": 0.6})


def test_search_space_per_layer_and_state_bits_refuse_bad_values_one_line():
    bad = [({"beta": {"low": 0.7, "high": 0.9}, "layer_beta": {"low": 0.7, "high": 0.9}}, "give one of beta"),
           ({"layer_beta": {"low": 0.5, "high": 1.0}}, r"search_space.layer_beta: .*beta range must lie inside"),
           ({"layer_threshold": {"low": 0.0, "high": 1.0}}, r"search_space.layer_threshold: .*range must be > 0"),
           ({"state_bits": [8, 33]}, r"state_bits\[1\] must be in 2..32"),
           ({"state_bits": [1]}, r"state_bits\[0\] must be in 2..32")]
    for space, msg in bad:
        with pytest.raises(SpecError, match=msg) as exc:
            parse_spec(BASE | {"search_space": space})
        assert "\n" not in str(exc.value)
    assert parse_spec(BASE | {"search_space": {"state_bits": [2, 32]}}).search_space.state_bits == [2, 32]
    with pytest.raises(SpecError, match="search_space.state_bits: a lif_mlp template setting"):
        parse_spec({k: v for k, v in BASE.items() if k != "model"}
                   | {"model": {"module": "m.py:build"}, "search_space": {"state_bits": [8]}})


def test_state_bits_fine_tunes_the_trial_model_keeping_zeros_and_the_weight_grid():
    spec = parse_spec(BASE | {"compress": {"finetune_epochs": 1}})
    model, spikes, y = _trained(spec)
    base_cfg = {"weight_bits": 4, "sparsity": 0.3}
    plain = compress_trained(LifMLP(64, [16], 10, 0.9, 1.0), {}, spec, spikes, y)  # no config: no change
    assert isinstance(plain, LifMLP)
    ref = compress_trained(_copy(model), base_cfg, spec, spikes, y)
    low = compress_trained(_copy(model), base_cfg | {"state_bits": 3}, spec, spikes, y)
    assert not np.allclose(_weights(ref), _weights(low))  # the state precision changed the weights
    for fr, fl in zip(ref.fcs, low.fcs, strict=True):
        assert torch.equal(fr.weight == 0, fl.weight == 0)  # pruned weights stay pruned
        assert torch.unique(fl.weight).numel() <= 2**4 - 1  # still on the 4-bit grid
    again = compress_trained(_copy(model), base_cfg | {"state_bits": 3}, spec, spikes, y)
    assert np.array_equal(_weights(low), _weights(again))  # seeded


def _copy(model: LifMLP) -> LifMLP:
    from fabric.model.compress import clone

    return clone(model)
