"""Drift detection on generated spike traffic: a rate shift triggers a retrain, the same distribution
does not, and `fabric drift` stores what the dashboard reads."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from fabric.cli.main import main as fabric_main
from fabric.flow.codecs import pack_spikes
from fabric.flow.drift import (
    DriftInputError,
    DriftPolicy,
    drift_report,
    event_rates,
    inter_event_intervals,
)
from fabric.store.registry import Registry


def bernoulli(n: int, rate: float, seed: int, t: int = 12, c: int = 16) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, t, c)) < rate).astype(np.uint8)


def test_event_rate_and_intervals_on_a_known_raster():
    x = np.zeros((2, 6, 2), np.uint8)
    x[0, [0, 2, 5], 0] = 1  # channel 0: intervals 2, 3
    x[0, [1, 2], 1] = 1  # channel 1: interval 1
    x[1, 4, 0] = 1  # a lone event: no interval
    assert event_rates(x).tolist() == pytest.approx([5 / 12, 1 / 12])
    assert sorted(inter_event_intervals(x).tolist()) == [1, 2, 3]
    # intervals never span two samples or two channels
    y = np.zeros((2, 4, 1), np.uint8)
    y[0, 3, 0] = y[1, 0, 0] = 1
    assert inter_event_intervals(y).size == 0


def test_same_distribution_does_not_trigger():
    rep = drift_report(bernoulli(300, 0.2, 0), bernoulli(200, 0.2, 1))
    assert rep["retrain"] is False
    for f in rep["features"].values():
        assert not f["drifted"] and f["statistic"] < 0.1
    assert rep["samples"] == {"training": 300, "served": 200}


def test_rate_shift_triggers_a_retrain_with_the_reason():
    rep = drift_report(bernoulli(300, 0.2, 0), bernoulli(200, 0.35, 1))
    assert rep["retrain"] is True
    er = rep["features"]["event_rate"]
    assert er["drifted"] and er["statistic"] > 0.5 and er["p_value"] < 1e-6
    assert er["served"]["mean"] > er["train"]["mean"]
    assert "event_rate" in rep["reason"]
    # the stored histograms are densities on shared edges (what the dashboard plots)
    h = er["histogram"]
    assert len(h["edges"]) == len(h["train"]) + 1 == len(h["served"]) + 1
    assert sum(h["train"]) == pytest.approx(1.0) and sum(h["served"]) == pytest.approx(1.0)
    json.dumps(rep)  # JSON-ready


def test_policy_is_configurable():
    a, b = bernoulli(300, 0.2, 0), bernoulli(200, 0.23, 1)  # a small shift
    strict = drift_report(a, b, DriftPolicy(alpha=0.05, min_statistic=0.05))
    lax = drift_report(a, b, DriftPolicy(alpha=0.05, min_statistic=0.9))
    assert strict["retrain"] and not lax["retrain"]
    only_iei = drift_report(bernoulli(300, 0.2, 0), bernoulli(200, 0.35, 1),
                            DriftPolicy(features=("inter_event_interval",), min_statistic=0.9))
    assert only_iei["features"]["event_rate"]["drifted"] is False
    with pytest.raises(ValueError, match="alpha"):
        DriftPolicy(alpha=0)
    with pytest.raises(ValueError, match="features"):
        DriftPolicy(features=("bogus",))


def test_bad_shapes_name_the_constraint():
    with pytest.raises(DriftInputError, match=r"\[N, T, C\]"):
        drift_report(np.zeros((5, 4)), bernoulli(5, 0.1, 0))
    with pytest.raises(DriftInputError, match="channel count differs"):
        drift_report(bernoulli(5, 0.1, 0, c=8), bernoulli(5, 0.1, 0, c=9))


def _store_with_traffic(store: str, served_rate: float) -> tuple[Registry, str, str]:
    reg = Registry(store)
    train = bernoulli(200, 0.2, 0)
    enc = reg.put(pack_spikes(train, np.zeros(200, np.int64), np.array(["train"] * 150 + ["test"] * 50),
                              {"encoder": "rate", "timesteps": 12}), kind="encoding", name="digits/rate")
    prog = reg.put(b"program", kind="program", name="cpu-program", parents=[enc.id])
    buf = io.BytesIO()
    np.savez_compressed(buf, spikes=bernoulli(120, served_rate, 7))
    served = reg.put(buf.getvalue(), kind="served-inputs", name="tiny/v1/served-inputs", parents=[prog.id],
                     extra={"encoding_id": enc.id})  # as serve's snapshot records it
    return reg, served.id, enc.id


def test_cli_stores_a_drift_artifact_and_exits_3_on_drift(store_dir, capsys):
    reg, served, enc = _store_with_traffic(store_dir, 0.4)
    rc = fabric_main(["drift", "--served", served[:10], "--training", enc[:10], "--store", store_dir, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 3 and out["retrain"] is True
    rec = reg.record(out["id"])
    assert rec.kind == "drift" and rec.parents == [served, enc] and rec.extra["retrain"] is True
    stored = reg.get_json(rec.id)
    assert stored["served"] == served and stored["training"] == enc and stored["samples"]["training"] == 150


def test_cli_no_drift_exit_0_and_bad_input_is_one_line(store_dir, capsys):
    reg, served, enc = _store_with_traffic(store_dir, 0.2)
    assert fabric_main(["drift", "--served", served, "--store", store_dir]) == 0  # reference from the record
    out = capsys.readouterr().out
    assert "no retrain" in out and "vs digits/rate (150 training samples)" in out
    n = len(reg.ls())
    # swapped arguments: named field, exit 2, nothing stored
    assert fabric_main(["drift", "--served", enc, "--training", served, "--store", store_dir]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fabric: error: --served") and "\n" not in err
    assert fabric_main(["drift", "--served", served, "--training", enc, "--alpha", "2", "--store", store_dir]) == 2
    assert "alpha" in capsys.readouterr().err
    assert fabric_main(["drift", "--served", "abcdef12", "--training", enc, "--store", store_dir]) == 4
    assert len(reg.ls()) == n
