"""Tune searches a template's params (issue #15 item 2): a 2-trial search over a tiny conv_snn's
``model_params`` on the event gestures, measured on cpu + loihi; the stored Pareto rows carry the
model params each trial chose, and each trial's model was built with exactly those params."""

from __future__ import annotations

import json

from fabric.spec import parse_spec

SPEC = {
    "name": "tune_conv", "dataset": {"name": "dvs_gestures", "limit": 96, "test_fraction": 0.25},
    "encoder": {"name": "event_frames", "timesteps": 6, "params": {"downsample": 2, "polarity": False}},
    "model": {"template": "conv_snn", "params": {"channels": [4], "kernel": 3, "stride": 2, "pool": 1,
                                                 "in_channels": 1}},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "device": "cpu"}, "targets": ["cpu", "loihi"], "seed": 2,
    "search_space": {"model_params": {"channels": [[2], [4]], "kernel": [1, 3], "beta": {"low": 0.8, "high": 0.95}},
                     "weight_bits": [8]},
}


def test_two_trial_conv_snn_tune_stores_rows_with_the_model_params(ray_session, tmp_path):
    from fabric.store.registry import Registry
    from tune import run_tune

    reg = Registry(str(tmp_path / "store"))
    spec = parse_spec(SPEC)
    res = run_tune(spec, reg, kinds=["cpu", "loihi"], num_samples=2, seed=3, max_concurrent=2, early_stop=False,
                   progress=False, log=lambda s: None)
    assert not res.errors, res.errors
    assert res.trials == 2 and {r["kind"] for r in res.rows} == {"cpu", "loihi"}
    doc = reg.get_json(res.pareto_id)
    assert reg.record(res.pareto_id).kind == "pareto" and len(doc["trials"]) == 4  # 2 trials x 2 kinds
    for row in doc["trials"]:
        cfg = row["config"]
        assert {"model.channels", "model.kernel", "model.beta"} <= set(cfg)
        assert cfg["model.channels"] in ("[2]", "[4]") and cfg["model.kernel"] in (1, 3)
        assert 0.8 <= cfg["model.beta"] <= 0.95
        assert row["status"] == "ok", row
        model = reg.record(row["model_id"])  # built through the factory with what the config chose
        assert model.extra["factory"] == "fabric.model.templates:conv_snn"
        assert model.extra["params"]["channels"] == json.loads(cfg["model.channels"])
        assert model.extra["params"]["kernel"] == cfg["model.kernel"]
        assert model.extra["params"]["beta"] == cfg["model.beta"] and model.extra["params"]["stride"] == 2
        assert 0.0 <= row["metrics"]["accuracy"] <= 1.0
    assert set(doc["fronts"]) == {"cpu", "loihi"} and all(doc["fronts"].values())
