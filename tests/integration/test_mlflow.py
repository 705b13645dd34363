"""MLflow as a view (issue #19 item 5) against a real tracking server on 127.0.0.1: ``fabric run --mlflow``
and a 2-trial ``fabric tune --mlflow`` on the session cluster; the KPIs, gates, artifact ids and the
tune's parent/child runs are read back with MlflowClient. Also: a server that goes away is a warning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
SPEC = {"name": "mlflow_it", "dataset": {"name": "digits", "limit": 200}, "encoder": {"name": "rate", "timesteps": 8},
        "model": {"hidden": [16]}, "train": {"epochs": 1, "batch_size": 32, "device": "cpu"},
        "targets": ["cpu", "loihi"], "golden": {"samples": 0}, "seed": 2, "kpis": {"min_accuracy": 0.05},
        "search_space": {"beta": {"low": 0.88, "high": 0.95}, "hidden": [[8], [16]]}}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on a free loopback port with a sqlite store; yields its URI once /health answers."""
    tmp = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen([MLFLOW, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                             "--backend-store-uri", f"sqlite:///{tmp}/m.db", "--default-artifact-root", str(tmp / "art")],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start: {(tmp / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield uri
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


def _fabric(args: list[str], ray_cluster: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_ADDRESS=ray_cluster["address"], RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    env.pop("FABRIC_MLFLOW_URI", None)
    return subprocess.run([sys.executable, "-m", "fabric.cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def test_run_and_tune_appear_in_mlflow_with_their_kpis(ray_cluster, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    spec = tmp_path / "mlflow_it.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    store = tmp_path / "store"
    r = _fabric(["run", str(spec), "--store", str(store), "--json", "--mlflow", mlflow_server], ray_cluster)
    assert r.returncode in (0, 3), r.stderr[-3000:]
    doc = json.loads(r.stdout)  # MLflow's "View run" lines went to stderr
    assert "fabric: warning: mlflow" not in r.stderr, r.stderr[-2000:]
    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("mlflow_it")
    (run,) = client.search_runs([exp.experiment_id], filter_string="tags.`fabric.kind` = 'run'")
    rows = {k["kind"]: k for k in doc["kpis"]}
    assert run.data.metrics["loihi.accuracy"] == pytest.approx(rows["loihi"]["accuracy"])
    assert run.data.metrics["loihi.energy_mj"] == pytest.approx(rows["loihi"]["energy_mj"])
    assert run.data.metrics["gates.passed"] == float(doc["passed"])
    assert run.data.tags["fabric.report"] == doc["report_id"]
    assert {a.path for a in client.list_artifacts(run.info.run_id, "fabric")} >= {"fabric/report.md", "fabric/report.png"}

    r = _fabric(["tune", str(spec), "--store", str(store), "--kinds", "cpu,loihi", "--samples", "2", "--seed", "1",
                 "--max-concurrent", "1", "--no-early-stop", "--json", "--mlflow", mlflow_server,
                 "--mlflow-experiment", "mlflow_it-tune"], ray_cluster, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout)
    exp = client.get_experiment_by_name("mlflow_it-tune")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [x for x in runs if x.data.tags.get("fabric.kind") == "tune"]
    kids = [x for x in runs if x.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.data.tags["fabric.pareto"] == res["pareto_id"] and len(kids) == 2
    measured = [t for t in res["trials"] if t["status"] == "ok"]
    assert measured
    for t in measured:
        (kid,) = [k for k in kids if k.data.tags["fabric.trial_id"] == t["trial_id"]]
        assert kid.data.metrics[f"val.{t['kind']}.accuracy"] == pytest.approx(t["metrics"]["accuracy"])


def test_a_server_that_is_gone_is_one_warning(ray_cluster, tmp_path):
    spec = tmp_path / "mlflow_it.yaml"
    spec.write_text(yaml.safe_dump(SPEC | {"targets": ["cpu"]}))
    gone = f"http://127.0.0.1:{free_port()}"
    r = _fabric(["run", str(spec), "--store", str(tmp_path / "store"), "--json", "--mlflow", gone], ray_cluster)
    assert r.returncode in (0, 3), r.stderr[-3000:]
    json.loads(r.stdout)
    warn = [ln for ln in r.stderr.splitlines() if ln.startswith("fabric: warning: mlflow")]
    assert len(warn) == 1 and gone in warn[0]
