"""Tune over a template's or a user factory's params (issue #15 item 2), without Ray: the
``search_space.model_params`` forms, the candidate spec a trial trains, the space function's draws,
compression and the fit check on factory models, and the lif_mlp-only keys refused at the door."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fabric.model.train import build_model
from fabric.spec import SpecError, parse_spec
from tune._space import (
    FACTORY_DEFAULT_SPACE,
    candidate_spec,
    check_fit,
    compress,
    effective_space,
    make_space_fn,
    param_key,
    weight_sparsity,
)

# the gesture CNN's shape: 16x16 single-channel event frames (256 features), 6 classes
CONV = {"name": "tc", "dataset": {"name": "dvs_gestures", "limit": 40},
        "encoder": {"name": "event_frames", "timesteps": 4, "params": {"downsample": 2, "polarity": False}},
        "model": {"template": "conv_snn", "params": {"channels": [8, 16], "kernel": 3, "stride": 2, "pool": 1,
                                                     "in_channels": 1}},
        "train": {"epochs": 1, "device": "cpu"}, "targets": ["cpu", "loihi"], "seed": 3}
SPACE = {"model_params": {"channels": [[4, 8], [8, 16]], "kernel": [3, 5], "beta": {"low": 0.8, "high": 0.95}}}
FACTORY = '''
import snntorch as snn
from torch import nn


def build(input_shape, n_classes, hidden=32, beta=0.9):
    def lif(**kw):
        return snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero", **kw)

    return nn.Sequential(nn.Linear(input_shape[0], hidden), lif(), nn.Linear(hidden, n_classes), lif(output=True))
'''


def _draw(fn, seed: int) -> dict:
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    t = study.ask()
    fn(t)
    return t.params


def test_candidate_spec_of_a_template_applies_model_params():
    spec = parse_spec(CONV | {"search_space": SPACE})
    c = candidate_spec(spec, {"model.channels": "[4,8]", "model.kernel": 5, "model.beta": 0.85, "weight_bits": 4})
    assert c.model.module == "fabric.model.templates:conv_snn"
    assert c.model.params == {"channels": [4, 8], "kernel": 5, "stride": 2, "pool": 1, "in_channels": 1, "beta": 0.85}
    assert c.to_dict()["search_space"] == {} and c.hash != candidate_spec(spec, {"model.kernel": 3}).hash
    net = build_model(c, 256, 6).net  # the factory path `fabric run` takes builds what the config chose
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    assert [m.out_channels for m in convs] == [4, 8] and convs[0].kernel_size == (5, 5)
    with pytest.raises(SpecError, match=r"config\.model\.channels: '\[2,2\]' is not one of"):
        candidate_spec(spec, {"model.channels": "[2,2]"})


def test_candidate_spec_of_a_user_module(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(FACTORY)
    spec = parse_spec({"name": "u", "dataset": {"name": "digits", "limit": 40}, "encoder": {"name": "rate", "timesteps": 4},
                       "model": {"module": f"{path}:build", "params": {"beta": 0.8}}, "train": {"epochs": 1},
                       "search_space": {"model_params": {"hidden": {"low": 8, "high": 24}}}})
    c = candidate_spec(spec, {"model.hidden": 12})
    assert c.model.module == f"{path}:build" and c.model.params == {"beta": 0.8, "hidden": 12}
    assert build_model(c, 64, 10).net[0].out_features == 12


def test_space_fn_draws_model_params_seeded_with_integer_ranges():
    spec = parse_spec(CONV | {"search_space": {"model_params": {"channels": [[4, 8], [8, 16]], "kernel": [3, 5],
                                                                "hidden": {"low": 16, "high": 64}}}})
    fn = make_space_fn(effective_space(spec))
    a = _draw(fn, 4)
    assert set(a) == {"model.channels", "model.kernel", "model.hidden"}
    assert a["model.channels"] in ("[4,8]", "[8,16]") and a["model.kernel"] in (3, 5)
    assert isinstance(a["model.hidden"], int) and 16 <= a["model.hidden"] <= 64  # integer ends: an integer
    assert _draw(fn, 4) == a
    drawn = {_draw(fn, s)["model.channels"] for s in range(12)}
    assert drawn == {"[4,8]", "[8,16]"}  # both choices are reachable
    floats = make_space_fn(effective_space(parse_spec(CONV | {"search_space": SPACE})))
    assert isinstance(_draw(floats, 1)["model.beta"], float)
    assert param_key([8, 16]) == "[8,16]" and param_key(3) == 3 and param_key("avg") == "avg"


def test_factory_model_without_a_space_searches_compression_only():
    spec = parse_spec(CONV)
    assert effective_space(spec).model_dump() == parse_spec(
        CONV | {"search_space": FACTORY_DEFAULT_SPACE}).search_space.model_dump()
    cfg = _draw(make_space_fn(effective_space(spec)), 0)
    assert set(cfg) == {"weight_bits", "sparsity"}
    assert candidate_spec(spec, cfg).model.params == CONV["model"]["params"]


@pytest.mark.parametrize("space, path", [
    ({"hidden": [[8]]}, "search_space.hidden"),
    ({"beta": {"low": 0.8, "high": 0.9}}, "search_space.beta"),
    ({"layer_threshold": {"low": 0.5, "high": 1.0}}, "search_space.layer_threshold"),
    ({"state_bits": [8]}, "search_space.state_bits"),
    ({"sparsity_kind": ["unstructured", "structured"]}, "search_space.sparsity_kind"),
])
def test_lif_mlp_only_keys_are_refused_for_factory_models_naming_the_key(space, path):
    with pytest.raises(SpecError) as exc:
        parse_spec(CONV | {"search_space": space})
    msg = str(exc.value)
    assert path in msg and "\n" not in msg
    parse_spec(CONV | {"search_space": {"sparsity_kind": ["unstructured"]}})  # unstructured pruning is general


@pytest.mark.parametrize("params, needle", [
    ({"kernel": []}, "kernel: expected a non-empty list of choices"),
    ({"kernel": 3}, "kernel: expected a non-empty list of choices"),
    ({"hidden": {"low": 64, "high": 16}}, "hidden: low (64) must be <= high (16)"),
    ({"hidden": {"low": 16}}, "hidden: high: Field required"),
    ({"beta": [0.5, float("nan")]}, "beta[1] must be a finite number"),
    ({"not-a-name": [1]}, "not-a-name: not a keyword-argument name"),
])
def test_bad_model_params_get_one_line_naming_the_param(params, needle):
    with pytest.raises(SpecError) as exc:
        parse_spec(CONV | {"search_space": {"model_params": params}})
    assert "search_space.model_params" in str(exc.value) and needle in str(exc.value)
    assert "\n" not in str(exc.value)


def test_model_params_only_for_factory_models():
    lif = {k: v for k, v in CONV.items() if k != "model"} | {"model": {"hidden": [16]}}
    with pytest.raises(SpecError, match=r"search_space\.model_params: only for model\.module"):
        parse_spec(lif | {"search_space": {"model_params": {"hidden": [8]}}})
    spec = parse_spec(lif)
    with pytest.raises(SpecError, match=r"config\.model\.hidden"):
        candidate_spec(spec, {"model.hidden": 8})


def test_compress_prunes_and_quantizes_every_conv_and_linear_of_a_factory_model():
    spec = parse_spec(CONV)
    m = compress(build_model(spec, 256, 6), weight_bits=3, sparsity=0.5)
    layers = [x for x in m.modules() if isinstance(x, torch.nn.Conv2d | torch.nn.Linear)]
    assert len(layers) == 3
    for layer in layers:
        w = layer.weight.detach().numpy()
        assert 0.45 <= np.mean(w == 0) <= 0.6
        assert len(np.unique(np.abs(w[w != 0]))) <= 3  # 3 bits: levels 1..3 x scale
    assert 0.45 <= weight_sparsity(m) <= 0.6
    with pytest.raises(ValueError, match="sparsity_kind: 'structured'"):
        compress(build_model(spec, 256, 6), sparsity=0.5, structured=True)


def test_fit_check_exports_a_factory_model_and_names_a_kinds_limit():
    spec = parse_spec(CONV | {"search_space": SPACE})
    cand = candidate_spec(spec, {"model.channels": "[4,8]", "model.kernel": 3, "model.beta": 0.9})
    fits = check_fit(cand, {"weight_bits": 8, "sparsity": 0.2}, 256, 6, ["cpu", "loihi", "fpga"])
    assert fits["cpu"] is None and fits["loihi"] is None
    assert fits["fpga"] is not None and "limit" in fits["fpga"]  # 3 neuron layers > fpga's 2
