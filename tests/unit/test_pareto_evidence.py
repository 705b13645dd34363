"""Issue #19 "done when", first item, on one stored Pareto artifact (no Ray, no training): it says which
split selected and which split reported each figure, holds one front per kind, and carries the
repeated-seed mean/std of the picked models when repeats ran. The repeated measurement itself is
tested in tests/unit/test_tune_method.py (test_front_models_repeated_with_more_seeds_on_test)."""

from __future__ import annotations

from fabric.kpis import repeat_stats
from fabric.spec import parse_spec
from fabric.store.registry import Registry
from tune import front_union, pareto_fronts
from tune._run import store_pareto

BASE = {"name": "t", "dataset": {"name": "digits", "limit": 60}, "model": {"hidden": [16]},
        "train": {"epochs": 1, "device": "cpu"}, "targets": ["loihi", "fpga"], "seed": 1}


def _row(acc: float, lat: float, kind: str, trial: str) -> dict:
    return {"trial_id": trial, "kind": kind, "status": "ok", "config": {}, "model_id": None, "program_id": None,
            "fit_error": None, "on_front": False, "test_metrics": None,
            "metrics": {"accuracy": acc, "latency_ms": lat, "energy_mj": 0.01, "footprint_kb": 4.0}}


def _stored(tmp_path, repeats: bool) -> dict:
    reg = Registry(str(tmp_path / f"store-{repeats}"))
    spec = parse_spec(BASE)
    data = reg.put(b"d", kind="dataset", name="d")
    rows = [_row(0.90, 0.15, "loihi", "a"), _row(0.85, 0.20, "loihi", "b"), _row(0.92, 26.0, "fpga", "a"),
            _row(0.80, 30.0, "fpga", "b")]
    fronts = pareto_fronts(rows)
    front = front_union(fronts)
    summary = None
    for i in front:
        rows[i]["on_front"], rows[i]["test_metrics"] = True, dict(rows[i]["metrics"], accuracy=0.8)
        if repeats:
            vals = {k: [v, v * 1.1, v * 0.9] for k, v in rows[i]["test_metrics"].items()}
            rows[i]["repeats"] = {k: repeat_stats(v) | {"values": v} for k, v in vals.items()}
    if repeats:
        summary = {"n": 3, "confidence": 0.95, "seeds": [1, 2, 3], "split": "test"}
    pid, _ = store_pareto(reg, spec, "exp", rows, front, data.id, fronts=fronts, repeats=summary,
                          splits={"counts": {"train": 8, "val": 2, "test": 3}, "val_source": "default",
                                  "val_fraction": 0.2})
    return reg.get_json(pid)


def test_pareto_artifact_names_each_figures_split_one_front_per_kind_and_repeat_stats(tmp_path):
    doc = _stored(tmp_path, repeats=True)
    assert (doc["selected_on"], doc["reported_on"]) == ("val", "test")
    assert doc["figure_splits"] == {"metrics": "val", "test_metrics": "test", "repeats": "test"}
    assert doc["fronts"] == {"loihi": [0], "fpga": [2]}  # one front per kind, never one across kinds
    picked = [doc["trials"][i] for i in doc["front"]]
    assert picked and all(set(t["repeats"]) == {"accuracy", "latency_ms", "energy_mj", "footprint_kb"}
                          for t in picked)
    for t in picked:
        acc = t["repeats"]["accuracy"]
        assert acc["n"] == 3 and abs(acc["mean"] - 0.8) < 1e-9 and acc["std"] > 0
        assert acc["lower_ci"] < acc["mean"] < acc["upper_ci"]
    assert all("repeats" not in t for i, t in enumerate(doc["trials"]) if i not in doc["front"])
    assert doc["repeats"]["split"] == "test" and doc["repeats"]["n"] == 3


def test_without_repeats_the_artifact_claims_no_repeat_figures(tmp_path):
    doc = _stored(tmp_path, repeats=False)
    assert doc["figure_splits"] == {"metrics": "val", "test_metrics": "test"}
    assert "repeats" not in doc and all("repeats" not in t for t in doc["trials"])
