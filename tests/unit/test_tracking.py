"""MLflow as a view (issue #19 item 5), against a local sqlite tracking store in tmp: a real run summary
(a tiny pipeline without Ray) maps to params, per-kind KPI metrics, gate results and artifact-id tags; a
tune result makes a parent run and one nested child per trial; an unusable store is one warning line and
changes nothing; ``fabric run --mlflow`` end to end keeps stdout one JSON document."""

from __future__ import annotations

import copy
import json
import os
import socket
import time

import pytest

from fabric.flow.pipeline import run_pipeline
from fabric.flow.tracking import (
    ENV_URI,
    MAX_KEY,
    MAX_PARAM_VALUE,
    flatten_params,
    log_run,
    log_tune,
    metric_key,
    resolve_uri,
    run_payload,
    tune_payloads,
)
from fabric.spec import parse_spec
from fabric.store.registry import Registry
from tests.unit.local_pool import LocalPool


def _quiet(_: str) -> None:
    pass


def _spec_dict(min_accuracy: float) -> dict:
    return {"name": "trk", "dataset": {"name": "digits", "limit": 200}, "encoder": {"timesteps": 8},
            "targets": ["cpu", "loihi"], "train": {"epochs": 1, "device": "cpu"}, "golden": {"samples": 0},
            "seed": 1, "kpis": {"min_accuracy": min_accuracy}}


@pytest.fixture
def local(monkeypatch, tmp_path):
    """Stages without Ray (in-process pool), MLflow's default artifact root (./mlruns) inside tmp."""
    import fabric.kinds

    monkeypatch.setattr(fabric.kinds, "device_pool", LocalPool)
    monkeypatch.setenv("FABRIC_LAVA_PYTHON", str(tmp_path / "no-such-python"))
    monkeypatch.delenv(ENV_URI, raising=False)
    monkeypatch.chdir(tmp_path)
    return Registry(str(tmp_path / "store"))


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    """One sqlite tracking store for the module (creating its schema takes seconds); tests use their own
    experiment names in it."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def _runs(uri: str, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(experiment_names=[experiment], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)


# -- pure mapping ----------------------------------------------------------------------------------------
def test_flatten_params_dotted_keys_and_mlflow_limits():
    p = flatten_params({"train": {"lr": 0.005, "epochs": 2}, "model": {"hidden": [64, 32]}, "search_space": {},
                        "budgets": {"max_neurons": None}, "name": "x"})
    assert p == {"train.lr": "0.005", "train.epochs": "2", "model.hidden": "[64, 32]", "search_space": "{}",
                 "budgets.max_neurons": "null", "name": "x"}
    at, over = "a" * MAX_PARAM_VALUE, "a" * (MAX_PARAM_VALUE + 1)
    assert flatten_params({"v": at})["v"] == at  # at the limit: kept as is
    cut = flatten_params({"v": over})["v"]
    assert len(cut) == MAX_PARAM_VALUE and cut.endswith("...[truncated]")
    assert len(metric_key("k" * MAX_KEY)) == MAX_KEY and len(metric_key("k" * (MAX_KEY + 1))) == MAX_KEY
    assert metric_key("neurobench.Synaptic Ops/effective:MACs") == "neurobench.Synaptic_Ops_effective_MACs"
    assert metric_key("../x") == "_x"


def test_flag_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(ENV_URI, "sqlite:///env.db")
    assert resolve_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert resolve_uri(None) == "sqlite:///env.db"
    monkeypatch.setenv(ENV_URI, "  ")
    assert resolve_uri(None) is None


# -- a real run summary -> one MLflow run ----------------------------------------------------------------
def test_run_summary_maps_to_params_metrics_gates_and_artifact_tags(local, tmp_path, store_uri):
    spec = parse_spec(_spec_dict(0.99))  # a gate this tiny model cannot pass
    s = run_pipeline(spec, local, progress=False, log=_quiet)
    d = s.to_dict()
    assert not s.passed
    uri = store_uri
    rid = log_run(uri, d, spec.to_dict(), registry=local)
    assert rid
    (run,) = _runs(uri, "trk")
    assert run.info.run_id == rid and run.info.status == "FINISHED"
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert p["train.lr"] == str(spec.train.lr) and p["dataset.limit"] == "200" and p["targets"] == '["cpu", "loihi"]'
    rows = {r.kind: r for r in s.kpis}
    for kind in ("cpu", "loihi"):
        assert m[f"{kind}.accuracy"] == pytest.approx(rows[kind].accuracy)
        assert m[f"{kind}.energy_mj"] == pytest.approx(rows[kind].energy_mj)
        assert m[f"{kind}.latency_p50_ms"] == pytest.approx(rows[kind].latency_p50_ms)
        assert m[f"{kind}.gates.accuracy"] == 0.0 and t[f"gate.failed.{kind}.accuracy"] == "failed"
    assert m["gates.passed"] == 0.0
    assert m["neurobench.ParameterCount"] == pytest.approx(s.neurobench["ParameterCount"])
    model_id = next(o.artifact for o in s.stages if o.stage == "train")
    assert t["fabric.report"] == s.report_id and t["fabric.model"] == model_id
    assert t["fabric.program.loihi"] == next(o.artifact for o in s.stages if o.stage == "compile[loihi]")
    assert t["fabric.spec_hash"] == spec.hash and t["fabric.store"] == local.url
    assert f"fabric registry show {s.report_id}" in t["mlflow.note.content"]
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    names = {a.path for a in client.list_artifacts(rid, "fabric")}
    assert names == {"fabric/report.md", "fabric/report.png", "fabric/report.json"}
    md = client.download_artifacts(rid, "fabric/report.md", str(tmp_path))
    assert open(md, "rb").read() == local.get(s.markdown_id)  # the registry's bytes, unchanged

    # a passing spec, into another experiment: gates.passed 1, no failed-gate tags
    ok = parse_spec(_spec_dict(0.0))
    s2 = run_pipeline(ok, local, progress=False, log=_quiet)
    assert s2.passed
    assert log_run(uri, s2.to_dict(), ok.to_dict(), experiment="trk-ok")
    (run2,) = _runs(uri, "trk-ok")
    assert run2.data.metrics["gates.passed"] == 1.0
    assert not [k for k in run2.data.tags if k.startswith("gate.failed.")]


def test_a_kind_that_did_not_run_is_a_failed_status_gate():
    summary = {"spec_name": "x", "spec_hash": "h", "store": "/s", "report_id": "r" * 64, "stages": [], "seconds": 1.0,
               "kpis": [{"kind": "akida", "status": "does not fit", "reason": "too many neurons", "gates": {}}],
               "passed": False}
    pl = run_payload(summary, {"name": "x"})
    assert pl.metrics["gates.passed"] == 0.0 and pl.metrics["akida.passed"] == 0.0
    assert pl.tags["gate.failed.akida.status"] == "does not fit"
    assert pl.tags["fabric.status.akida"] == "does not fit: too many neurons"
    assert "akida.accuracy" not in pl.metrics


# -- a tune result -> parent + one child per trial -------------------------------------------------------
def _row(trial: str, kind: str, acc: float | None, status: str = "ok", front: bool = False) -> dict:
    m = {"accuracy": acc, "latency_ms": 0.2 if acc is not None else None, "energy_mj": 0.01 if acc is not None else None,
         "footprint_kb": 12.0 if acc is not None else None}
    return {"trial_id": trial, "config": {"lr": 0.01, "hidden": 32, "encoder": "rate"}, "kind": kind, "metrics": m,
            "model_id": "m" * 64 if acc is not None else None, "program_id": "p" * 64 if acc is not None else None,
            "status": status, "on_front": front, "fit_error": None if status != "does not fit" else "too big",
            "test_metrics": {"accuracy": acc - 0.05} if front else None, "test_evaluation_id": None}


def test_tune_result_makes_a_parent_and_nested_children(local, tmp_path, store_uri):
    rows = [_row("t1", "fpga", 0.8, front=True), _row("t1", "loihi", 0.7),
            _row("t2", "fpga", 0.6), _row("t2", "loihi", 0.9, front=True),
            _row("t3", "fpga", None, status="does not fit"), _row("t3", "loihi", None, status="error")]
    pareto = local.put_json({"trials": rows}, kind="pareto", name="trk/pareto")
    plot = local.put(b"\x89PNG fake plot", kind="report", name="trk/pareto.png", parents=[pareto.id])
    result = {"experiment": "trk-abc-1", "experiment_path": "/x/trk-abc-1", "pareto_id": pareto.id,
              "plot_id": plot.id, "front": [0, 3], "fronts": {"fpga": [0], "loihi": [3]}, "trials": rows,
              "seconds": 12.5, "errors": ["t3: boom"]}
    spec = parse_spec(_spec_dict(0.5) | {"name": "trk-tune"}).to_dict()
    uri = store_uri
    pid = log_tune(uri, result, spec, registry=local, settings={"samples": 3, "kinds": ["fpga", "loihi"]},
                   store=local.url)
    assert pid
    runs = {r.info.run_id: r for r in _runs(uri, "trk-tune")}
    assert len(runs) == 4
    parent = runs.pop(pid)
    assert parent.data.tags["fabric.pareto"] == pareto.id and parent.data.tags["fabric.plot"] == plot.id
    assert parent.data.params["tune.samples"] == "3" and parent.data.params["train.epochs"] == "1"
    assert parent.data.metrics["tune.trials"] == 3 and parent.data.metrics["front.loihi.size"] == 1
    from mlflow import MlflowClient

    assert {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(pid, "fabric")} == {
        "fabric/pareto.png", "fabric/pareto.json"}
    kids = {r.data.tags["fabric.trial_id"]: r for r in runs.values()}
    assert set(kids) == {"t1", "t2", "t3"}
    assert all(r.data.tags["mlflow.parentRunId"] == pid for r in kids.values())
    t1, t2, t3 = kids["t1"], kids["t2"], kids["t3"]
    assert t1.data.params == {"lr": "0.01", "hidden": "32", "encoder": "rate"}
    assert t1.data.metrics["val.fpga.accuracy"] == pytest.approx(0.8)
    assert t1.data.metrics["val.loihi.accuracy"] == pytest.approx(0.7)
    assert t1.data.metrics["test.fpga.accuracy"] == pytest.approx(0.75) and "test.loihi.accuracy" not in t1.data.metrics
    assert t2.data.metrics["test.loihi.accuracy"] == pytest.approx(0.85) and t2.data.metrics["loihi.on_front"] == 1.0
    assert "val.fpga.accuracy" not in t3.data.metrics  # null objectives are not logged as numbers
    assert t3.data.tags["fabric.status.fpga"] == "does not fit: too big" and t3.info.status == "FINISHED"


def test_tune_payloads_count_children_per_trial():
    rows = [_row(f"t{i}", k, 0.5) for i in range(5) for k in ("cpu", "loihi")]
    parent, kids = tune_payloads({"experiment": "e", "pareto_id": "p" * 64, "plot_id": "q" * 64, "trials": rows},
                                 {"name": "x"})
    assert len(kids) == 5 and parent.metrics["tune.rows"] == 10
    assert all(set(k.metrics) >= {"val.cpu.accuracy", "val.loihi.latency_ms"} for k in kids)


# -- an unusable store: one warning, nothing else changes ------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SUMMARY = {"spec_name": "x", "spec_hash": "h", "store": "/s", "report_id": "r" * 64, "stages": [], "seconds": 1.0,
           "kpis": [{"kind": "cpu", "status": "ok", "accuracy": 0.9, "gates": {"accuracy": True}}], "passed": True}


@pytest.mark.parametrize("uri", [f"http://127.0.0.1:{_closed_port()}", "nosuchscheme://somewhere",
                                 "sqlite:///{tmp}/a-file/m.db"])
def test_unusable_store_is_one_warning_and_changes_nothing(uri, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("a file, so no directory can be made here")
    uri = uri.format(tmp=tmp_path)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    before = copy.deepcopy(SUMMARY)
    t0 = time.perf_counter()
    assert log_run(uri, SUMMARY, {"name": "x"}) is None
    assert time.perf_counter() - t0 < 10  # includes mlflow's first import for the non-http URIs
    out, err = capsys.readouterr()
    assert out == ""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"fabric: warning: mlflow {uri}: ")
    assert SUMMARY == before
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # set only while logging, then restored


def test_tune_cli_takes_the_mlflow_options():
    from fabric.cli.main import build_parser

    a = build_parser().parse_args(["tune", "s.yaml", "--mlflow", "sqlite:///m.db", "--mlflow-experiment", "e"])
    assert a.mlflow == "sqlite:///m.db" and a.mlflow_experiment == "e"
    assert build_parser().parse_args(["run", "s.yaml"]).mlflow is None


def test_unreachable_http_server_is_refused_by_the_probe_fast(capsys):
    t0 = time.perf_counter()
    assert log_tune(f"http://127.0.0.1:{_closed_port()}",
                    {"experiment": "e", "pareto_id": "p" * 64, "plot_id": "q" * 64, "trials": []}, {"name": "x"}) is None
    assert time.perf_counter() - t0 < 3  # the /health probe, not MLflow's retry loop
    assert "cannot reach" in capsys.readouterr().err


# -- the CLI end to end (no Ray: the pool is in-process and connect is a no-op) --------------------------
def test_fabric_run_mlflow_flag_keeps_json_stdout_and_exit_code(local, tmp_path, capsys, monkeypatch, store_uri):
    import yaml

    import fabric.connect
    from fabric.cli.main import main

    monkeypatch.setattr(fabric.connect, "connect", lambda *a, **k: None)
    path = tmp_path / "trk.yaml"
    path.write_text(yaml.safe_dump(_spec_dict(0.99)))
    uri = store_uri
    monkeypatch.setenv(ENV_URI, f"http://127.0.0.1:{_closed_port()}")  # the flag wins over the environment
    code = main(["run", str(path), "--store", local.url, "--json", "--mlflow", uri, "--mlflow-experiment", "cli"])
    out, err = capsys.readouterr()
    doc = json.loads(out)  # stdout is one JSON document
    assert code == 3 and doc["passed"] is False  # the gate fails: same exit code as without MLflow
    assert "warning" not in err
    (run,) = _runs(uri, "cli")
    assert run.data.tags["fabric.report"] == doc["report_id"] and run.data.metrics["gates.passed"] == 0.0
    # the environment's unreachable server: a warning, the same result and exit code
    monkeypatch.setenv(ENV_URI, f"http://127.0.0.1:{_closed_port()}")
    assert main(["run", str(path), "--store", local.url, "--json"]) == 3
    out, err = capsys.readouterr()
    again = json.loads(out)
    assert again["passed"] is False and [r["accuracy"] for r in again["kpis"]] == [r["accuracy"] for r in doc["kpis"]]
    assert [ln for ln in err.splitlines() if ln.startswith("fabric: warning: mlflow http://127.0.0.1:")]
