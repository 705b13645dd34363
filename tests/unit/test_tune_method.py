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
