"""The closed retrain loop over real HTTP on 127.0.0.1 (issue #17 item 4): a tiny model served by Ray
Serve on the session cluster gets drifted (dimmed) inputs and labelled feedback; one
``fabric serve autopilot NAME --once`` cycle triggers, retrains as a Ray task on the training split +
the feedback, deploys a canary and promotes it without a person; a second cycle with noise labels and
a forced canary gate makes a bad retrain that is rolled back. ``--history`` prints the signed events."""

from __future__ import annotations

import copy
import threading
import time

import httpx
import numpy as np
import pytest

from fabric.data.datasets import from_parquet_bytes
from fabric.spec import parse_spec
from fabric.store.registry import Registry
from tests.conftest import TINY
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration
TOKEN = "autopilot-token"
APP = "apitest"


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    """Tiny digits model (cpu kind, runs in the ingress) deployed as v1 of app APP."""
    from ray import serve

    from fabric.flow.pipeline import run_pipeline
    from serve import ServeClient, start

    d = copy.deepcopy(TINY)
    d.update(name="autopilot-tiny", targets=["cpu"])
    d["dataset"]["limit"] = 240
    d["encoder"]["timesteps"] = 8
    d["train"]["epochs"] = 2
    store = str(tmp_path_factory.mktemp("autopilot") / "store")
    reg = Registry(store)
    run_pipeline(parse_spec(d), reg, progress=False, log=lambda s: None)
    dep = next(r.id for r in reg.ls(kind="deployment"))
    ds, _ = from_parquet_bytes(reg.get(reg.ls(kind="dataset")[0].id))
    url = start(app=APP, store=store, token=TOKEN, port=free_port(), seed=0,
                policy={"min_requests": 8, "min_feedback": 8})
    client = ServeClient(url, TOKEN)
    assert client.deploy(dep)["version"] == "v1"
    try:
        yield {"url": url, "client": client, "store": store, "reg": reg, "x": ds.x.astype(np.float32),
               "y": ds.y.astype(int)}
    finally:
        client.close()
        serve.shutdown()


def _traffic(url, x, y, label, n=None, stop=None, seed=0, scale=0.4):
    """Requests of 4 dimmed samples (the sensor drifted), each followed by its feedback over HTTP."""
    rng = np.random.default_rng(seed)
    sent = 0
    with httpx.Client(base_url=url, timeout=60) as h:
        while (n is None or sent < n) and not (stop is not None and stop.is_set()):
            i = rng.integers(0, len(x), 4)
            r = h.post("/v1/predict", json={"inputs": (x[i] * scale).tolist()})
            assert r.status_code == 200, r.text
            fb = h.post("/v1/feedback", json={"request_id": r.json()["request_id"],
                                              "labels": [int(v) for v in label(y[i], rng)]})
            assert fb.status_code == 200, fb.text
            sent += 1


def _cycle(s, label, *extra):
    """Traffic before the cycle (the evidence), then during it (the canary's evidence)."""
    from fabric.cli.main import main

    _traffic(s["url"], s["x"], s["y"], label, n=40)
    stop = threading.Event()
    bg = threading.Thread(target=_traffic, args=(s["url"], s["x"], s["y"], label), kwargs={"stop": stop, "seed": 1},
                          daemon=True)
    bg.start()
    try:
        t0 = time.time()
        rc = main(["serve", "autopilot", APP, "--once", "--url", s["url"], "--token", TOKEN, "--store", s["store"],
                   "--epochs", "1", "--canary-requests", "8", "--canary-feedback", "16", "--canary-timeout", "90",
                   *extra])
        print(f"[autopilot test] cycle {time.time() - t0:.1f}s")
    finally:
        stop.set()
        bg.join(30)
    return rc


def test_drift_retrain_canary_promote_without_a_person(served, capsys):
    from fabric.cli.autopilot import history

    primary = next(d["version"] for d in served["client"].status()["deployments"] if d["role"] == "primary")
    assert _cycle(served, lambda y, rng: y) == 0
    assert f"autopilot {APP}: promoted" in capsys.readouterr().out
    events = history(served["reg"], APP)
    assert [e["event"] for e in events[-4:]] == ["trigger", "retrained", "canary", "verdict"]
    trig, done, canary, verdict = events[-4:]
    assert "drift" in trig["trigger"]["sources"]
    assert done["retrain"]["feedback_samples"] >= 160 and done["feedback"] in served["reg"].record(
        done["retrain"]["dataset"]).parents
    roles = {d["version"]: d["role"] for d in served["client"].status()["deployments"]}
    assert roles[canary["version"]] == "primary" and roles[primary] == "standby"
    assert verdict["verdict"] == "promoted" and served["reg"].record(verdict["step"]).kind == "rollout"


def test_bad_retrain_is_rolled_back_and_history_printed(served, capsys):
    from fabric.cli.autopilot import history
    from fabric.cli.main import main

    primary = next(d["version"] for d in served["client"].status()["deployments"] if d["role"] == "primary")
    noise = lambda y, rng: rng.integers(0, 10, len(y))  # noqa: E731  (labels without signal: a bad retrain)
    assert _cycle(served, noise, "--feedback-gate", "0.9", "--canary-gate", "0.5") == 0
    assert f"autopilot {APP}: rolled-back" in capsys.readouterr().out
    verdict = history(served["reg"], APP)[-1]
    assert verdict["event"] == "verdict" and verdict["verdict"] == "rolled-back"
    assert "accuracy_feedback" in verdict["reason"] or "min_accuracy" in verdict["reason"]
    roles = {d["version"]: d["role"] for d in served["client"].status()["deployments"]}
    assert roles[verdict["version"]] == "rolled_back" and roles[primary] == "primary"
    assert main(["serve", "autopilot", APP, "--history", "--store", served["store"]]) == 0
    out = capsys.readouterr().out
    assert "promoted" in out and "rolled-back" in out and out.count("verdict") == 2
