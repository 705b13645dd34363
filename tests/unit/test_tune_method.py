"""Tune's method without Ray (issue #19 item 1): per-kind fronts and objectives (never a mean across
kinds), the validation split trials are measured and selected on, the test split measured once for
front models, and the pareto artifact's split bookkeeping."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fabric.spec import parse_spec
from tests.unit.local_pool import LocalPool as SharedLocalPool
from tune import (
    DEFAULT_VAL_FRACTION,
    OBJECTIVES,
    front_union,
    objective_names,
    pareto_front,
    pareto_fronts,
    per_kind_objectives,
    select_per_kind,
    with_validation,
)
from tune._space import candidate_spec

BASE = {"name": "t", "dataset": {"name": "digits", "limit": 60}, "encoder": {"name": "rate", "timesteps": 8},
        "model": {"hidden": [16]}, "train": {"epochs": 1, "device": "cpu"}, "targets": ["loihi", "fpga"], "seed": 1}


def row(acc, lat, en, kb, kind="loihi", trial="a", status="ok"):
    return {"trial_id": trial, "kind": kind, "status": status,
            "metrics": {"accuracy": acc, "latency_ms": lat, "energy_mj": en, "footprint_kb": kb}}


# -- per-kind fronts ---------------------------------------------------------------------------------
def test_fronts_compare_rows_only_within_their_kind():
    rows = [row(0.90, 0.15, 0.01, 4, "loihi", "a"),   # 0: loihi, fast
            row(0.85, 0.20, 0.02, 5, "loihi", "b"),   # 1: dominated by 0 (same kind)
            row(0.92, 26.0, 0.90, 9, "fpga", "a"),    # 2: slower than every loihi row, best fpga
            row(0.80, 30.0, 1.00, 9, "fpga", "b")]    # 3: dominated by 2
    # one front over every row would drop the fpga rows only when a loihi row beats them everywhere
    assert pareto_front(rows) == [0, 2]
    fronts = pareto_fronts(rows)
    assert fronts == {"loihi": [0], "fpga": [2]} and front_union(fronts) == [0, 2]
    # a loihi row that dominates every fpga row across kinds leaves fpga's best on fpga's front
    rows[0]["metrics"] |= {"accuracy": 0.99}
    rows[2]["metrics"] |= {"latency_ms": 0.5, "energy_mj": 0.5}
    rows.append(row(0.95, 0.1, 0.005, 3, "loihi", "c"))  # 4: dominates the fpga rows on every figure
    assert 2 not in pareto_front(rows)  # the old, cross-kind front
    assert pareto_fronts(rows)["fpga"] == [2]


def test_fronts_list_every_kind_even_unmeasured_ones():
    rows = [row(0.9, 1.0, 0.1, 4), row(None, None, None, None, "fpga", status="does not fit")]
    assert pareto_fronts(rows) == {"loihi": [0], "fpga": []}


# -- per-kind objectives for the searcher -----------------------------------------------------------
def test_searcher_objectives_are_per_kind_never_a_mean():
    names = objective_names(["loihi", "fpga"])
    assert list(names) == [f"{m}@{k}" for k in ("loihi", "fpga") for m in OBJECTIVES]
    assert names["accuracy@fpga"] == "max" and names["latency_ms@loihi"] == "min"
    out = per_kind_objectives([row(0.9, 0.15, 0.01, 4), row(0.7, 26.0, 0.9, 8, "fpga")], ["loihi", "fpga"])
    assert out["latency_ms@loihi"] == 0.15 and out["latency_ms@fpga"] == 26.0  # not (0.15 + 26) / 2
    assert out["accuracy@loihi"] == 0.9 and out["accuracy@fpga"] == 0.7 and set(out) == set(names)
    unfit = per_kind_objectives([row(0.9, 0.15, 0.01, 4), row(None, None, None, None, "fpga", status="does not fit")],
                                ["loihi", "fpga"])
    assert unfit["accuracy@fpga"] == 0.0 and unfit["latency_ms@fpga"] == math.inf and unfit["accuracy@loihi"] == 0.9
    assert per_kind_objectives([row(None, None, None, None, status="does not fit")], ["loihi"]) == {}


def test_searcher_takes_per_kind_objectives_and_a_kind_that_did_not_fit():
    import optuna

    from tune._run import _searcher
    from tune._space import effective_space, make_space_fn

    spec = parse_spec(BASE | {"search_space": {"hidden": [[8], [16]]}})
    s = _searcher(7, 8, make_space_fn(effective_space(spec)), ["loihi", "fpga"])
    assert s.metric == list(objective_names(["loihi", "fpga"])) and len(s.metric) == 2 * len(OBJECTIVES)
    s.suggest("a")
    s.suggest("b")
    s.on_trial_complete("a", per_kind_objectives([row(0.9, 0.15, 0.01, 4), row(0.7, 26.0, 0.9, 8, "fpga")],
                                                 ["loihi", "fpga"]))
    s.on_trial_complete("b", per_kind_objectives([row(0.8, 0.1, 0.01, 3)], ["loihi", "fpga"]))  # fpga: no fit
    assert [t.state for t in s._ot_study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert s._ot_study.trials[1].values[len(OBJECTIVES):] == [0.0, math.inf, math.inf, math.inf]


def test_select_per_kind_picks_each_kinds_best():
    rows = [row(0.95, 8.0, 0.9, 20, trial="big"), row(0.90, 3.0, 0.4, 9, trial="mid"),
            row(0.90, 2.0, 0.4, 9, kind="fpga", trial="mid"), row(0.60, 0.5, 0.05, 3, kind="fpga", trial="tiny")]
    picks = select_per_kind(rows, "latency_ms<5")
    assert {k: i for k, (i, _) in picks.items()} == {"fpga": 2, "loihi": 1}
    assert {k: i for k, (i, _) in select_per_kind(rows, "latency_ms<1").items()} == {"fpga": 3}
    assert select_per_kind(rows, "accuracy>0.99") == {}


# -- the validation split ------------------------------------------------------------------------------
def test_default_validation_split_is_carved_from_train_only_and_seeded():
    y = np.repeat(np.arange(4), 25)
    splits = np.array((["train"] * 20 + ["test"] * 5) * 4)
    out, info = with_validation(splits, y, seed=3)
    assert np.array_equal(out == "test", splits == "test")  # the test split is untouched
    assert info == {"counts": {"train": 64, "val": 16, "test": 20}, "val_source": "default",
                    "val_fraction": DEFAULT_VAL_FRACTION}
    assert all(((out == "val") & (y == c)).sum() == 4 for c in range(4))  # stratified: 20 % of each class
    again, _ = with_validation(splits, y, seed=3)
    other, _ = with_validation(splits, y, seed=4)
    assert np.array_equal(again, out) and not np.array_equal(other, out)
    assert set(splits) == {"train", "test"}  # the input is not modified


def test_an_existing_validation_split_is_kept_and_its_source_recorded():
    y = np.zeros(10, dtype=int)
    splits = np.array(["train"] * 6 + ["val"] * 2 + ["test"] * 2)
    out, info = with_validation(splits, y, seed=0, spec_fraction=0.2)
    assert np.array_equal(out, splits) and info["val_source"] == "spec" and info["val_fraction"] == 0.2
    assert with_validation(splits, y, seed=0)[1]["val_source"] == "dataset"  # e.g. a stored version's split
    with pytest.raises(ValueError, match="too few"):
        with_validation(np.array(["train", "train", "test"]), np.array([0, 1, 0]), seed=0)


# -- a trial measures on val; the driver measures front models once on test --------------------------------
class LocalPool(SharedLocalPool):
    """The in-process pool, recording how many samples each run saw."""

    seen: list[int] = []

    def run(self, program, batches, record_raster=False, progress=None):
        LocalPool.seen.append(sum(len(b) for b in batches))
        return super().run(program, batches, record_raster=record_raster, progress=progress)


def test_trial_measures_on_val_and_front_models_once_on_test(monkeypatch, tmp_path):
    import ray.tune

    import actors.cluster.pool
    from fabric.data.datasets import load_builtin
    from fabric.store.registry import Registry
    from tune._run import measure_test
    from tune._trainable import TrialContext, tune_trial

    reported = []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, **kw: reported.append(metrics))
    monkeypatch.setattr(actors.cluster.pool, "DevicePool", LocalPool)
    LocalPool.seen = []
    ds = load_builtin("digits", 60)
    splits, info = with_validation(np.array(["train"] * 45 + ["test"] * 15), ds.y, seed=1)
    n_val, n_test = info["counts"]["val"], info["counts"]["test"]
    spec = parse_spec(BASE | {"targets": ["fpga"]})
    reg = Registry(str(tmp_path / "store"))
    data = reg.put(b"x", kind="dataset", name="d")
    ctx = TrialContext(spec=spec.to_dict(), kinds=["fpga"], store_url=reg.store.url, tenant=reg.tenant,
                       dataset_id=data.id, x=ds.x, y=ds.y, splits=splits, n_classes=len(ds.classes),
                       classes=list(ds.classes))
    config = {"hidden": "16", "beta": 0.9}
    tune_trial(config, ctx)
    last = reported[-1]
    assert last["trial_status"] == "ok" and set(objective_names(["fpga"])) <= set(last)
    assert "accuracy" not in last  # no cross-kind (or any) mean is reported
    (r,) = json.loads(last["rows_json"])
    assert r["status"] == "ok" and r["encoding_id"]
    assert LocalPool.seen[0] == n_val  # measured on the val split only
    assert reg.record(r["evaluation_id"]).extra["test_samples"] == n_val  # stages' name for "samples measured"

    rows = [dict(r, trial_id="t0", config=config)]
    measure_test(reg, spec, rows, [0], ds.x, ds.y, splits, list(ds.classes))
    assert LocalPool.seen[2] == n_test  # (index 1 was the trial's batch-1 latency probe)
    assert set(rows[0]["test_metrics"]) == set(OBJECTIVES) and rows[0]["test_evaluation_id"] != r["evaluation_id"]
    calls = len(LocalPool.seen)
    again = [dict(r, trial_id="t0", config=config)]
    measure_test(reg, spec, again, [0], ds.x, ds.y, splits, list(ds.classes))
    assert len(LocalPool.seen) == calls  # measured once: a restore reuses the cached test evaluation
    assert again[0]["test_evaluation_id"] == rows[0]["test_evaluation_id"]


# -- the artifact ---------------------------------------------------------------------------------------
def test_pareto_artifact_records_splits_and_one_front_per_kind(tmp_path, capsys):
    from fabric.cli.main import main
    from fabric.store.registry import Registry
    from tune._run import store_pareto

    reg = Registry(str(tmp_path / "store"))
    spec = parse_spec(BASE)
    data = reg.put(b"d", kind="dataset", name="d")
    rows = [dict(r, config={}, model_id=None, program_id=None, fit_error=None, on_front=False, test_metrics=None)
            for r in (row(0.9, 0.15, 0.01, 4, "loihi", "a"), row(0.85, 0.2, 0.02, 5, "loihi", "b"),
                      row(0.92, 26.0, 0.9, 9, "fpga", "a"))]
    fronts = pareto_fronts(rows)
    for i in front_union(fronts):
        rows[i]["on_front"], rows[i]["test_metrics"] = True, dict(rows[i]["metrics"], accuracy=0.8)
    split_info = {"counts": {"train": 8, "val": 2, "test": 3}, "val_source": "default", "val_fraction": 0.2}
    pid, _ = store_pareto(reg, spec, "exp", rows, front_union(fronts), data.id, fronts=fronts, splits=split_info)
    doc = reg.get_json(pid)
    assert doc["selected_on"] == "val" and doc["reported_on"] == "test" and doc["splits"] == split_info
    assert doc["fronts"] == {"loihi": [0], "fpga": [2]} and doc["front"] == [0, 2]
    assert [t["test_metrics"] is not None for t in doc["trials"]] == [True, False, True]
    assert reg.record(pid).extra["selected_on"] == "val"
    assert reg.get_json(store_pareto(reg, spec, "exp2", rows, [0, 2], data.id)[0])["fronts"] == doc["fronts"]

    store = ["--store", str(tmp_path / "store")]
    assert main(["tune", "--from", pid[:12], "--select", "latency_ms<30", "--json", *store]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: v["index"] for k, v in out["per_kind"].items()} == {"fpga": 2, "loihi": 0}
    assert out["selected_on"] == "val" and out["index"] == 2  # the overall pick, as before
    assert main(["tune", "--from", pid[:12], "--select", "latency_ms<30", *store]) == 0
    text = capsys.readouterr().out
    assert "loihi: row 0" in text and "fpga: row 2" in text and "test acc" in text


# -- search-space additions (issue #19 item 3): each value changes what is trained or exported ------------
def _trained_weights(spec, seed_data=0):
    from fabric.data.datasets import load_builtin
    from fabric.flow.stages import encode_inputs
    from fabric.model.train import train_model

    ds = load_builtin("digits", 60)
    spikes, _ = encode_inputs(spec, ds.x, ds.classes)
    res = train_model(spec, spikes, ds.y, 10, progress=False)
    return spikes, np.concatenate([fc.weight.detach().numpy().ravel() for fc in res.model.fcs])


def test_space_samples_the_new_dimensions_and_candidates_apply_them():
    from tune._space import make_space_fn

    spec = parse_spec(BASE | {"search_space": {"encoder": ["rate", "latency"], "sparsity_kind": ["unstructured",
                                                                                                "structured"],
                                               "rate_reg": {"low": 0.0, "high": 2.0},
                                               "exit_reg": {"low": 0.0, "high": 1.0},
                                               "early_exit_patience": [2, 4]}})
    seen: dict = {}

    class Trial:
        def suggest_categorical(self, name, choices):
            seen[name] = list(choices)
            return choices[0]

        def suggest_float(self, name, low, high, log=False):
            seen[name] = (low, high)
            return low

    make_space_fn(spec.search_space)(Trial())
    assert seen == {"encoder": ["rate", "latency"], "sparsity_kind": ["unstructured", "structured"],
                    "rate_reg": (0.0, 2.0), "exit_reg": (0.0, 1.0), "early_exit_patience": [2, 4]}
    cand = candidate_spec(spec, {"encoder": "latency", "rate_reg": 0.5, "exit_reg": 0.25, "early_exit_patience": 4,
                                 "sparsity_kind": "structured"})
    assert (cand.encoder.name, cand.encoder.params, cand.train.rate_reg, cand.train.exit_reg,
            cand.early_exit.patience) == ("latency", {}, 0.5, 0.25, 4)


def test_encoder_choice_changes_the_spikes_and_the_weights():
    spec = parse_spec(BASE)
    a_spikes, a = _trained_weights(candidate_spec(spec, {"encoder": "rate"}))
    b_spikes, b = _trained_weights(candidate_spec(spec, {"encoder": "latency"}))
    assert not np.array_equal(a_spikes, b_spikes) and not np.allclose(a, b)


@pytest.mark.parametrize("term", ["rate_reg", "exit_reg"])
def test_loss_terms_change_the_trained_weights(term):
    spec = parse_spec(BASE)
    _, w0 = _trained_weights(candidate_spec(spec, {term: 0.0}))
    _, w0_again = _trained_weights(candidate_spec(spec, {term: 0.0}))
    _, w1 = _trained_weights(candidate_spec(spec, {term: 1.0}))
    assert np.array_equal(w0, w0_again)  # seeded: the difference is the term's, not noise
    assert not np.allclose(w0, w1)


def test_rate_reg_lowers_the_spike_rate_and_exit_penalty_rewards_early_right_counts():
    import torch

    from fabric.model.train import early_exit_penalty, rate_penalty

    spk = torch.zeros(4, 1, 3)
    early, late = spk.clone(), spk.clone()
    early[0, 0, 1] = 1.0  # the right class (1) spikes at the first step
    late[3, 0, 1] = 1.0  # ... at the last step
    y = torch.tensor([1])
    assert early_exit_penalty(early, y) < early_exit_penalty(late, y)
    assert rate_penalty(early) == rate_penalty(late) == pytest.approx(1 / 12)
    # a run trained with rate_reg spikes less on its training data than the same run without it
    from fabric.data.datasets import load_builtin
    from fabric.flow.stages import encode_inputs
    from fabric.model.train import train_model

    spec = parse_spec(BASE | {"train": {"epochs": 2, "device": "cpu"}})
    ds = load_builtin("digits", 60)
    x, _ = encode_inputs(spec, ds.x, ds.classes)
    rates = []
    for reg in (0.0, 20.0):
        m = train_model(candidate_spec(spec, {"rate_reg": reg}), x, ds.y, 10, progress=False).model
        with torch.no_grad():
            rates.append(float(m(torch.as_tensor(x, dtype=torch.float32).transpose(0, 1))[0].mean()))
    assert rates[1] < rates[0]


def test_structured_sparsity_removes_neurons_unstructured_keeps_the_shape():
    from fabric.model.snn import LifMLP
    from tune._space import compress, is_structured

    def net():
        import torch

        torch.manual_seed(0)
        return LifMLP(8, [10], 3, 0.9, 1.0)

    un = compress(net(), None, 0.5, is_structured({"sparsity_kind": "unstructured"}))
    st = compress(net(), None, 0.5, is_structured({"sparsity_kind": "structured"}))
    assert un.fcs[0].weight.shape == (10, 8) and int((un.fcs[0].weight == 0).sum()) == 40
    assert st.fcs[0].weight.shape == (5, 8) and st.fcs[1].weight.shape == (3, 5)
    assert int((st.fcs[0].weight == 0).sum()) == 0


def test_new_search_dimensions_refuse_bad_values_one_line():
    from fabric.spec import SpecError

    for space, match in [({"encoder": ["nope"]}, r"search_space\.encoder: .*unknown encoder 'nope'"),
                         ({"rate_reg": {"low": 0.0, "high": 100.0 + 1e-9}}, r"search_space\.rate_reg: .*inside \[0, 100"),
                         ({"early_exit_patience": [0]}, r"early_exit_patience\[0\] must be in 1\.\.10000"),
                         ({"sparsity_kind": ["blocky"]}, r"search_space\.sparsity_kind\[0\]: Input should be .unstructured."),
                         ({"encoder": ["rate"], "encoder_params": {"gain": [1.0]}}, r"search_space\.encoder: searching")]:
        with pytest.raises(SpecError, match=match):
            parse_spec(BASE | {"search_space": space})
    assert parse_spec(BASE | {"search_space": {"rate_reg": {"low": 0.0, "high": 100.0}}})
    with pytest.raises(SpecError, match=r"train\.rate_reg: Input should be less than or equal to 100"):
        parse_spec(BASE | {"train": {"rate_reg": 100.5}})


# -- --repeats for the front's models (issue #19 item 2) ---------------------------------------------------
def test_front_models_repeated_with_more_seeds_on_test(tmp_path):
    from fabric.data.datasets import load_builtin
    from fabric.flow import stages
    from fabric.kpis import repeat_stats
    from fabric.store.registry import Registry
    from tune._repeats import repeat_front
    from tune._run import store_pareto

    reg = Registry(str(tmp_path / "store"))
    spec = parse_spec(BASE)
    ds = load_builtin("digits", 60)
    splits, _ = with_validation(np.where(np.arange(60) % 4 == 0, "test", "train").astype(object), ds.y, 1)
    config = {"hidden": "16", "weight_bits": 8}
    cand = candidate_spec(spec, config)
    spikes, meta = stages.encode_inputs(cand, ds.x, ds.classes)
    enc = stages.put_encoding(reg, cand, spikes, ds.y, splits, meta, parents=[], name="t/rate")
    rows = [{"trial_id": "a", "config": config, "kind": k, "status": "ok", "encoding_id": enc.id,
             "metrics": {"accuracy": 0.5, "latency_ms": 1.0, "energy_mj": 0.1, "footprint_kb": 2.0},
             "test_metrics": {"accuracy": 0.25, "latency_ms": 1.0, "energy_mj": 0.1, "footprint_kb": 2.0}}
            for k in ("loihi", "fpga")]
    rows.append({**rows[0], "trial_id": "b", "kind": "loihi"})  # not picked: no repeats
    summary = repeat_front(reg, spec, rows, [0, 1], ds.x, ds.y, splits, list(ds.classes), n=2,
                           pool=SharedLocalPool, log=lambda _: None)
    assert summary == {"n": 2, "confidence": 0.95, "seeds": [1, 2], "split": "test"}
    for r in rows[:2]:
        acc = r["repeats"]["accuracy"]
        assert acc["n"] == 2 and acc["values"][0] == 0.25  # repeat 0 = the row's own test figure
        assert acc == repeat_stats(acc["values"]) | {"values": acc["values"]}
        assert set(r["repeats"]) == {"accuracy", "latency_ms", "energy_mj", "footprint_kb"}
        assert r["repeats"]["energy_mj"]["values"][1] != 0.1  # the second seed was really measured
    assert "repeats" not in rows[2]
    pid, _ = store_pareto(reg, spec, "exp", rows, [0, 1], enc.id, repeats=summary)
    doc = reg.get_json(pid)
    assert doc["repeats"] == summary and doc["trials"][0]["repeats"] == rows[0]["repeats"]
    from tune.cli import format_rows

    assert "repeated seeds (test split, mean ± std [CI]):" in format_rows(doc["trials"], [0, 1])
    # one seed: nothing re-trained
    assert repeat_front(reg, spec, rows, [0], ds.x, ds.y, splits, list(ds.classes), n=1,
                        pool=SharedLocalPool)["n"] == 1


def test_tune_repeats_out_of_range_is_refused_before_any_cluster():
    from tune._run import TuneError, run_tune

    with pytest.raises(TuneError, match=r"repeats: must be in 1\.\.50, got 51"):
        run_tune(parse_spec(BASE), None, repeats=51)
    with pytest.raises(TuneError, match=r"repeats: must be in 1\.\.50, got 0"):
        run_tune(parse_spec(BASE), None, repeats=0)
