"""Tune room without Ray: Pareto maths, the --select language, search-space validation, candidate
specs, compression, fit pruning before training, and the stored pareto artifact + --from CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fabric.spec import SpecError, parse_spec
from tune import (
    OBJECTIVES,
    SelectError,
    candidate_spec,
    check_fit,
    compress,
    pareto_front,
    parse_select,
    select,
)

BASE = {"name": "t", "dataset": {"name": "digits", "limit": 60}, "encoder": {"name": "rate", "timesteps": 8},
        "model": {"hidden": [16]}, "train": {"epochs": 1, "device": "cpu"}, "targets": ["loihi", "fpga"], "seed": 1}


def row(acc, lat, en, kb, kind="loihi", trial="a"):
    return {"trial_id": trial, "kind": kind,
            "metrics": {"accuracy": acc, "latency_ms": lat, "energy_mj": en, "footprint_kb": kb}}


# -- pareto_front --------------------------------------------------------------------------------
def test_front_drops_dominated_rows_and_keeps_trade_offs():
    rows = [row(0.9, 2.0, 1.0, 10),   # 0: accurate but slow
            row(0.7, 0.5, 0.2, 5),    # 1: fast and frugal
            row(0.8, 2.5, 1.5, 12),   # 2: dominated by 0 on every objective
            row(0.9, 2.0, 1.0, 11)]   # 3: dominated by 0 (only footprint worse)
    assert pareto_front(rows) == [0, 1]


def test_front_keeps_exact_ties_and_ignores_unmeasured_rows():
    rows = [row(0.8, 1.0, 0.3, 4), row(0.8, 1.0, 0.3, 4, kind="fpga"),
            row(None, None, None, None), {"kind": "fpga", "metrics": None},
            row(0.5, float("nan"), 0.1, 1)]
    assert pareto_front(rows) == [0, 1]


def test_front_respects_direction_of_each_objective():
    rows = [row(0.9, 1.0, 1.0, 1), row(0.8, 1.0, 1.0, 1)]
    assert pareto_front(rows) == [0]
    assert pareto_front(rows, {**OBJECTIVES, "accuracy": "min"}) == [1]
    with pytest.raises(ValueError, match="mode must be"):
        pareto_front(rows, {"accuracy": "up"})


# -- select ----------------------------------------------------------------------------------------
ROWS = [row(0.95, 8.0, 0.9, 20, trial="big"), row(0.90, 3.0, 0.4, 9, trial="mid"),
        row(0.90, 2.0, 0.4, 9, kind="fpga", trial="mid"), row(0.60, 0.5, 0.05, 3, trial="tiny"),
        {"trial_id": "x", "kind": "fpga", "metrics": dict.fromkeys(OBJECTIVES), "status": "does not fit"}]


def test_select_picks_most_accurate_feasible_then_lowest_latency():
    i, best = select(ROWS, "latency_ms<5 and energy_mj<0.5")
    assert (i, best["kind"]) == (2, "fpga")  # tie on accuracy broken by latency
    assert select(ROWS, "latency_ms < 1")[0] == 3
    assert select(ROWS, "accuracy > 0.99") is None


def test_select_and_binds_tighter_than_or_and_parentheses_and_words():
    assert select(ROWS, "accuracy>0.94 or latency_ms<1 and energy_mj>1")[0] == 0
    assert select(ROWS, "(accuracy>0.94 or latency_ms<1) and energy_mj<0.1")[0] == 3
    assert select(ROWS, "kind == loihi and latency_ms <= 3")[0] == 1
    assert select(ROWS, "not kind == loihi")[0] == 2
    assert parse_select("footprint_kb>=9")(ROWS[1]) and not parse_select("footprint_kb!=9")(ROWS[1])


@pytest.mark.parametrize("expr, token", [
    ("latncy_ms<5", "'latncy_ms' at column 1"),
    ("latency_ms<5 and", "expression ends"),
    ("latency_ms 5", "column 12"),
    ("latency_ms<5 energy_mj<1", "'energy_mj' at column 14"),
    ("__import__('os').system('x')", "column 12"),
    ("latency_ms<5; rm", "';' at column 13"),
    ("kind < loihi", "'loihi' at column 8"),
    ("(accuracy>0.5", "expression ends"),
    ("", "empty expression"),
])
def test_select_errors_name_the_bad_token(expr, token):
    with pytest.raises(SelectError) as exc:
        select(ROWS, expr)
    assert token in str(exc.value) and "\n" not in str(exc.value)


# -- search space ----------------------------------------------------------------------------------
@pytest.mark.parametrize("space, path", [
    ({"beta": {"low": 0.5, "high": 1.2}}, "search_space.beta"),
    ({"hidden": [[16], [0]]}, "search_space.hidden"),
    ({"sparsity": {"low": 0.4, "high": 0.1}}, "search_space.sparsity"),
    ({"weight_bits": [4, 32]}, "search_space.weight_bits"),
    ({"timesteps": []}, "search_space.timesteps"),
    ({"hiden": [[8]]}, "search_space.hiden"),
    ({"encoder_params": {"gian": [1.0]}}, "search_space.encoder_params"),
    ({"lr": {"low": 0.0, "high": 0.1}}, "search_space.lr"),
])
def test_bad_search_space_names_the_field(space, path):
    with pytest.raises(SpecError) as exc:
        parse_spec(BASE | {"search_space": space})
    assert path in str(exc.value)


def test_search_space_does_not_change_hash_of_specs_without_one():
    plain = parse_spec(BASE)
    assert plain.to_dict()["search_space"] == {}
    tuned = parse_spec(BASE | {"search_space": {"hidden": [[8], [16]]}})
    assert tuned.to_dict()["search_space"] == {"hidden": [[8], [16]]} and tuned.hash != plain.hash


def test_candidate_spec_applies_the_config():
    spec = parse_spec(BASE | {"search_space": {"hidden": [[8], [16, 16]], "encoder_params": {"gain": [0.5, 1.0]}}})
    c = candidate_spec(spec, {"hidden": "16-16", "beta": 0.8, "threshold": 0.7, "timesteps": 12, "encoder.gain": 0.5,
                              "weight_bits": 4, "sparsity": 0.2, "lr": 0.01})
    assert c.model.hidden == [16, 16] and c.model.beta == 0.8 and c.model.threshold == 0.7
    assert c.encoder.timesteps == 12 and c.encoder.params == {"gain": 0.5} and c.train.lr == 0.01
    assert c.to_dict()["search_space"] == {}
    with pytest.raises(SpecError, match="config.bogus"):
        candidate_spec(spec, {"bogus": 1})
    with pytest.raises(SpecError, match="model.beta"):
        candidate_spec(spec, {"beta": 1.5})


def test_space_fn_samples_only_named_fields_and_is_seeded():
    import optuna

    from tune._space import effective_space, make_space_fn

    spec = parse_spec(BASE | {"search_space": {"hidden": [[8], [16, 16]], "beta": {"low": 0.8, "high": 0.9}}})
    fn = make_space_fn(effective_space(spec))

    def draw(seed):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        t = study.ask()
        fn(t)
        return t.params

    a = draw(3)
    assert set(a) == {"hidden", "beta"} and a["hidden"] in ("8", "16-16") and 0.8 <= a["beta"] <= 0.9
    assert draw(3) == a
    from tune import DEFAULT_SPACE

    assert effective_space(parse_spec(BASE)).model_dump() == parse_spec(
        BASE | {"search_space": DEFAULT_SPACE}).search_space.model_dump()  # no space named -> the default


# -- compression and fit pruning ---------------------------------------------------------------------
def test_compress_prunes_and_quantizes():
    import torch

    from fabric.model.snn import LifMLP

    torch.manual_seed(0)
    m = compress(LifMLP(20, [30], 5, 0.9, 1.0), weight_bits=3, sparsity=0.5)
    w = m.fcs[0].weight.detach().numpy()
    assert 0.49 <= np.mean(w == 0) <= 0.55
    assert len(np.unique(np.abs(w[w != 0]))) <= 3  # 3 bits: levels 1..3 x scale


def test_fit_check_refuses_too_big_candidate_per_kind():
    spec = parse_spec(BASE)
    big = candidate_spec(spec, {"hidden": "300", "beta": 0.9})
    fits = check_fit(big, {"hidden": "300"}, 64, 10, ["loihi", "fpga"])
    assert fits["loihi"] is None
    assert "fpga" in fits["fpga"] and "neurons" in fits["fpga"] and "limit" in fits["fpga"]


def test_unfit_candidate_is_never_trained(monkeypatch, tmp_path):
    import ray.tune

    import fabric.model.train
    from fabric.data.datasets import load_builtin
    from fabric.store.registry import Registry
    from tune._trainable import TrialContext, tune_trial

    reported = []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, **kw: reported.append(metrics))

    def no_training(*a, **k):
        raise AssertionError("an unfit candidate was trained")

    monkeypatch.setattr(fabric.model.train, "train_model", no_training)
    ds = load_builtin("digits", 40)
    spec = parse_spec(BASE | {"targets": ["fpga"]})
    reg = Registry(str(tmp_path / "store"))
    data = reg.put(b"x", kind="dataset", name="d")
    ctx = TrialContext(spec=spec.to_dict(), kinds=["fpga"], store_url=reg.store.url, tenant=reg.tenant,
                       dataset_id=data.id, x=ds.x, y=ds.y, splits=np.array(["train"] * 30 + ["test"] * 10),
                       n_classes=len(ds.classes))
    tune_trial({"hidden": "16-16", "beta": 0.9}, ctx)  # fpga takes 2 neuron layers; this has 3
    assert len(reported) == 1 and reported[0]["trial_status"] == "does not fit"
    (r,) = json.loads(reported[0]["rows_json"])
    assert r["status"] == "does not fit" and "3 layers used > 2 layers limit" in r["fit_error"]
    assert not [a for a in reg.ls() if a.kind in ("model", "encoding")]  # nothing trained or stored


# -- artifact and CLI --------------------------------------------------------------------------------
def test_pareto_artifact_format_png_and_select_from_store(tmp_path, capsys):
    from fabric.cli.main import main
    from fabric.store.registry import Registry
    from tune._run import store_pareto

    reg = Registry(str(tmp_path / "store"))
    spec = parse_spec(BASE)
    data = reg.put(b"d", kind="dataset", name="d")
    model = reg.put(b"m", kind="model", name="m", parents=[data.id])
    prog = reg.put(b"p", kind="program", name="p", parents=[model.id])
    rows = [dict(r, config={"hidden": "16"}, model_id=model.id, program_id=prog.id, status="ok", fit_error=None,
                 on_front=False) for r in ROWS[:4]]
    rows.append(dict(ROWS[4], config={}, model_id=None, program_id=None, fit_error="does not fit", on_front=False))
    front = pareto_front(rows)
    pid, png = store_pareto(reg, spec, "exp", rows, front, data.id)
    doc = reg.get_json(pid)
    assert set(doc) >= {"experiment", "spec_hash", "objectives", "trials", "front"}
    assert doc["objectives"] == OBJECTIVES and doc["front"] == front and doc["spec_hash"] == spec.hash
    assert {"trial_id", "config", "kind", "metrics", "model_id", "program_id", "status", "on_front",
            "fit_error"} <= set(doc["trials"][0])
    assert set(reg.record(pid).parents) == {data.id, model.id, prog.id}
    assert reg.record(png).parents == [pid] and reg.get(png)[:8] == b"\x89PNG\r\n\x1a\n"

    store = ["--store", str(tmp_path / "store")]
    assert main(["tune", "--from", pid[:12], "--select", "latency_ms<5 and energy_mj<0.5", "--json", *store]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["index"] == 2 and out["selected"]["model_id"] == model.id
    assert main(["tune", "--from", pid[:12], "--select", "accuracy>0.99", *store]) == 3
    assert main(["tune", "--from", pid[:12], "--select", "acc>0.5", *store]) == 2
    assert "unknown name 'acc'" in capsys.readouterr().err
    assert main(["tune", "--from", model.id[:12], "--select", "accuracy>0", *store]) == 2
    assert "not a 'pareto'" in capsys.readouterr().err


def test_busy_time_is_the_union_of_phases():
    from tune._run import _union

    assert _union([(0, 2), (1, 3), (5, 6)]) == 4
    assert _union([]) == 0


def test_searcher_tells_optuna_pruned_for_trials_without_objectives():
    import optuna

    from tune._run import _searcher
    from tune._space import effective_space, make_space_fn

    spec = parse_spec(BASE | {"search_space": {"hidden": [[8], [16]], "beta": {"low": 0.8, "high": 0.9}}})
    s = _searcher(7, 8, make_space_fn(effective_space(spec)))
    assert s.metric == list(OBJECTIVES) and s.mode == list(OBJECTIVES.values())
    a, b = s.suggest("a"), s.suggest("b")
    assert set(a) == {"hidden", "beta"} and set(b) == {"hidden", "beta"}
    s.on_trial_complete("a", {"train_loss": 2.0, "epoch": 1})  # stopped early: no objectives
    s.on_trial_complete("b", {"accuracy": 0.8, "latency_ms": 1.0, "energy_mj": 0.1, "footprint_kb": 3.0})
    states = [t.state for t in s._ot_study.trials]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]
    assert s._ot_study.trials[1].values == [0.8, 1.0, 0.1, 3.0]
    again = _searcher(7, 8, make_space_fn(effective_space(spec)))
    assert again.suggest("a") == a  # seeded
