import pytest

from fabric.spec import SpecError, load_spec, parse_spec


def test_example_specs_are_valid():
    spec = load_spec("examples/digits.yaml")
    assert spec.dataset.name == "digits"
    assert spec.targets and all(isinstance(t, str) for t in spec.targets)


def test_defaults_fill_in(tiny_spec_dict):
    del tiny_spec_dict["encoder"]
    spec = parse_spec(tiny_spec_dict)
    assert spec.encoder.name == "rate" and spec.encoder.timesteps == 25


@pytest.mark.parametrize(
    "patch, path, reason",
    [
        ({"model": {"hidden": [32, 0]}}, "model.hidden", "hidden[1] must be > 0"),
        ({"targets": ["cpu", "tpu"]}, "targets", "unknown device kind 'tpu'"),
        ({"dataset": {"name": "mnist"}}, "dataset.name", "unknown dataset 'mnist'"),
        ({"encoder": {"name": "rate", "timesteps": 0}}, "encoder.timesteps", "greater than 0"),
        ({"train": {"epochs": 2, "lr": -1}}, "train.lr", "greater than 0"),
        ({"kpis": {"min_accuracy": 1.5}}, "kpis.min_accuracy", "less than or equal to 1"),
        ({"modle": {}}, "modle", "Extra inputs are not permitted"),
        ({"dataset": {"name": "digits", "test_fraction": 0.6, "val_fraction": 0.5}}, "<root>", "must be < 1"),
        ({"encoder": {"name": "rate", "params": {"gian": 2}}}, "encoder.params.gian:", "unknown parameter"),
        ({"encoder": {"name": "rate", "params": {"gain": -1}}}, "encoder.params.gain:", "must be > 0"),
        ({"encoder": {"name": "level_crossing", "params": {"threshold": "big"}}}, "encoder.params.threshold:",
         "must be a number"),
        ({"encoder": {"name": "lif", "params": {"beta": 1.5}}}, "encoder.params.beta:", "[0, 1)"),
        ({"encoder": {"name": "delta", "params": {"polarity": 3}}}, "encoder.params.polarity:", "true or false"),
        ({"encoder": {"name": "event_frames", "params": {"downsample": 0}}}, "encoder.params.downsample:",
         "integer >= 1"),
    ],
)
def test_bad_spec_names_field_and_reason(tiny_spec_dict, patch, path, reason):
    tiny_spec_dict.update(patch)
    with pytest.raises(SpecError) as ei:
        parse_spec(tiny_spec_dict)
    msg = str(ei.value)
    assert "\n" not in msg
    assert path in msg and reason in msg


@pytest.mark.parametrize("name", ["digits", "har", "gesture"])
def test_use_case_examples_target_every_kind(name):
    spec = load_spec(f"examples/{name}.yaml")
    assert spec.targets == ["cpu", "loihi", "akida", "spinnaker", "fpga", "dynapse"]
    assert spec.kpis.min_accuracy is not None


def test_good_encoder_params_pass(tiny_spec_dict):
    tiny_spec_dict["encoder"] = {"name": "level_crossing", "timesteps": 20, "params": {"threshold": 0.05}}
    assert parse_spec(tiny_spec_dict).encoder.params == {"threshold": 0.05}


def test_spec_hash_is_stable_and_sensitive(tiny_spec_dict):
    a = parse_spec(tiny_spec_dict).hash
    assert a == parse_spec(dict(tiny_spec_dict)).hash
    tiny_spec_dict["seed"] = 4
    assert parse_spec(tiny_spec_dict).hash != a


def test_yaml_errors_are_reported(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("name: x\ndataset: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(p)
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.yaml")
