"""Repeated trials through the pipeline (issue #19 item 2), without Ray: ``repeats.n: 2`` re-trains and
re-measures on each kind with a second seed, stores a signed repeats artifact whose statistics are those
of the per-seed rows, shows ``mean ± std [CI]`` in the table, and ``kpis.on: lower_ci`` gates on it."""

from __future__ import annotations

import argparse

import pytest

from fabric.cli.main import with_repeats
from fabric.flow.pipeline import run_pipeline
from fabric.flow.repeats import repeat_seed
from fabric.kpis import fmt_interval, repeat_stats
from fabric.spec import SpecError, parse_spec
from fabric.store.registry import Registry
from tests.unit.local_pool import LocalPool


@pytest.fixture
def local(monkeypatch, tmp_path):
    import fabric.kinds

    monkeypatch.setattr(fabric.kinds, "device_pool", LocalPool)
    return Registry(str(tmp_path / "store"))


def _spec(**kw):
    d = {"name": "rep", "dataset": {"name": "digits", "limit": 160}, "encoder": {"timesteps": 6},
         "model": {"hidden": [8]}, "targets": ["cpu", "fpga"], "train": {"epochs": 2, "device": "cpu"},
         "golden": {"samples": 0}, "seed": 5} | kw
    return parse_spec(d)


def _quiet(_: str) -> None:
    pass


def test_one_repeat_is_todays_run_and_hash():
    plain = _spec()
    assert "repeats" not in plain.to_dict() and "on" not in plain.to_dict()["kpis"]
    assert _spec(repeats={"n": 1}).hash == plain.hash  # n: 1 is the default: same spec, same caches
    assert _spec(repeats={"n": 2}).hash != plain.hash


def test_run_with_two_repeats_stores_stats_and_gates_on_the_interval(local):
    one = run_pipeline(_spec(kpis={"min_accuracy": 0.05, "on": "lower_ci"}), local, progress=False, log=_quiet)
    assert one.repeats == {}
    assert "gates on: point estimate (kpis.on: lower_ci needs repeats" in one.gates_note
    assert not any("#" in o.stage for o in one.stages)  # the 1-repeat path runs no extra stages

    # the bound: between the two seeds' accuracies there is a lower CI bound; gate just over and under it
    spec2 = with_repeats(_spec(kpis={"min_accuracy": 0.05, "on": "lower_ci"}), 2)
    s = run_pipeline(spec2, local, progress=False, log=_quiet)
    rep = s.repeats
    assert rep["n"] == 2 and rep["seeds"] == [5, repeat_seed(5, 1)] == [5, 6] and rep["confidence"] == 0.95
    assert local.record(rep["id"]).kind == "report" and local.get_json(rep["id"])["kinds"] == rep["kinds"]
    stages = [o.stage for o in s.stages]
    for name in ("encode[#1]", "train[#1]", "export[#1]", "compile[cpu#1]", "evaluate[fpga#1]"):
        assert name in stages
    for kind in ("cpu", "fpga"):
        acc = rep["kinds"][kind]["accuracy"]
        row0 = next(r for r in s.kpis if r.kind == kind)
        assert acc["values"][0] == row0.accuracy  # repeat 0 is the run itself
        assert acc == repeat_stats(acc["values"]) | {"values": acc["values"]}
        assert set(rep["kinds"][kind]) >= {"accuracy", "latency_p50_ms", "energy_mj", "footprint_kb"}
    # two seeds really trained two models: the accuracy differs somewhere (2 epochs, 8 hidden units)
    assert any(len(set(rep["kinds"][k]["energy_mj"]["values"])) == 2 for k in ("cpu", "fpga"))
    assert s.gates_note == "gates on: lower_ci of the repeated-seed interval"
    from fabric.flow.pipeline import format_run_extras

    extras = format_run_extras(s)
    assert fmt_interval(rep["kinds"]["cpu"]["accuracy"]) in extras and "±" in extras
    assert "repeats (2 seeds [5, 6]" in local.get_json(s.report_id)["table"]

    # gates on the interval's bound (worst_ci: the upper bound of energy, a lower-is-better figure): at it
    # passes, one step under it fails, while the point estimate (on: mean) passes that same limit; no
    # retraining (every stage cached). Energy, not accuracy: two seeds of a 2-epoch toy model can give a
    # lower accuracy bound below 0, but an energy bound is always a positive limit
    kind = next(k for k in ("cpu", "fpga") if len(set(rep["kinds"][k]["energy_mj"]["values"])) == 2)
    high = rep["kinds"][kind]["energy_mj"]["upper_ci"]
    assert high > next(r for r in s.kpis if r.kind == kind).energy_mj > 0

    def gate(limit: float, on: str) -> bool:
        run = run_pipeline(with_repeats(_spec(kpis={"max_energy_mj": limit, "on": on}), 2), local, progress=False,
                           log=_quiet)
        assert all(o.cached for o in run.stages if o.stage.startswith(("train", "evaluate")))
        return next(r for r in run.kpis if r.kind == kind).gates["energy"]

    step = high * 1e-6
    assert gate(high, "worst_ci") is True
    assert gate(high - step, "worst_ci") is False
    assert gate(high - step, "upper_ci") is False
    assert gate(high - step, "mean") is True


def test_repeats_out_of_range_is_one_line():
    with pytest.raises(SpecError, match=r"repeats\.n: Input should be less than or equal to 50"):
        with_repeats(_spec(), 51)
    assert with_repeats(_spec(), 50).repeats.n == 50
    with pytest.raises(SpecError, match=r"repeats\.n: Input should be greater than or equal to 1"):
        with_repeats(_spec(), 0)
    with pytest.raises(SpecError, match=r"kpis\.on: .*must be one of"):
        _spec(kpis={"on": "median"})
    with pytest.raises(SpecError, match=r"repeats\.confidence"):
        _spec(repeats={"n": 2, "confidence": 1.0})


def test_cli_run_parses_repeats():
    from fabric.cli.main import build_parser

    a = build_parser().parse_args(["run", "x.yaml", "--repeats", "3"])
    assert isinstance(a, argparse.Namespace) and a.repeats == 3
