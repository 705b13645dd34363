"""The closed retrain loop (issue #17 item 4) without Ray: the pure state machine (trigger -> retrain ->
canary -> promote, bad retrain -> rollback, no trigger -> nothing), then the driver on the in-process
ingress (ASGI test client, cpu kind run inside the ingress) with the real retrain job run in-process:
drifted inputs + labelled feedback -> retrain -> canary -> promote, and wrong labels -> rollback, every
step a signed artifact chained by lineage."""

from __future__ import annotations

import argparse
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fabric.cli.autopilot import format_history, history, run_cycle
from fabric.flow.autopilot import Autopilot, AutopilotPolicy, Evidence, find_trigger
from fabric.flow.drift import DriftPolicy
from fabric.store.registry import Registry
from tests.unit.local_pool import LocalPool

HEALTHY = {"requests": 50, "accuracy_feedback": 0.9, "feedback_samples": 50}


def _ev(**kw):
    return Evidence(**({"primary": "v1", "snapshot": dict(HEALTHY), "kpis": {"min_accuracy": 0.5}} | kw))


# -- the pure state machine ------------------------------------------------------------------------------
def test_no_trigger_does_nothing():
    m = Autopilot()
    act = m.observe(_ev(drift={"retrain": False, "reason": "no feature drifted"}))
    assert act.do == "none" and m.phase == "watching" and m.cycle == 0 and m.events == []


def test_trigger_retrain_canary_promote():
    m = Autopilot(AutopilotPolicy(canary_min_requests=10, canary_min_feedback=10))
    act = m.observe(_ev(drift={"retrain": True, "reason": "event_rate: KS 0.6"}, artifacts=["d1"]))
    assert act.do == "retrain" and m.phase == "retraining" and m.cycle == 1
    assert m.events[-1]["trigger"]["sources"] == ["drift"] and m.events[-1]["evidence_artifacts"] == ["d1"]
    act = m.retrained(ok=True, model_id="dep2", artifacts=["enc2", "m2"])
    assert act.do == "deploy-canary" and act.data == {"model_id": "dep2", "weight": 0.5} and m.phase == "canary"
    m.canary_deployed("v2")
    wait = m.judge(role="canary", snapshot={"requests": 9, "feedback_samples": 30}, breaches=[])
    assert wait.do == "wait" and "9/10 requests" in wait.reason and m.phase == "canary"
    act = m.judge(role="canary", snapshot={"requests": 10, "feedback_samples": 10}, breaches=[])
    assert act.do == "promote" and act.data == {"verdict": "promoted", "version": "v2"} and m.phase == "watching"
    assert [e["event"] for e in m.events] == ["trigger", "retrained", "canary", "verdict"]


def test_bad_retrain_is_rolled_back():
    m = Autopilot()
    m.observe(_ev(snapshot={"accuracy_feedback": 0.2, "feedback_samples": 40}))
    m.retrained(ok=True, model_id="dep2")
    m.canary_deployed("v2")
    act = m.judge(role="canary", snapshot={"requests": 5, "feedback_samples": 25},
                  breaches=["accuracy_feedback 0.100 < min_accuracy 0.5 on 25 labelled samples"])
    assert act.do == "rollback" and act.data["verdict"] == "rolled-back" and "accuracy_feedback 0.100" in act.reason
    # the serving monitor got there first: only recorded, no second rollback
    m.observe(_ev(drift={"retrain": True, "reason": "x"}))
    m.retrained(ok=True, model_id="dep3")
    m.canary_deployed("v3")
    act = m.judge(role="rolled_back", snapshot={}, breaches=[])
    assert act.do == "record" and act.data == {"verdict": "rolled-back", "version": "v3"} and m.cycle == 2


def test_failed_retrain_and_timeout_end_the_cycle():
    m = Autopilot()
    m.observe(_ev(breaches=["error_rate 0.200 > max_error_rate 0.05"]))
    assert m.events[-1]["trigger"]["sources"] == ["kpi"]
    act = m.retrained(ok=False, reason="RetrainError: no spec")
    assert act.do == "abandon" and m.phase == "watching"
    m.observe(_ev(breaches=["x"]))
    m.retrained(ok=True, model_id="d")
    m.canary_deployed("v2")
    assert m.timed_out({"requests": 1}).do == "rollback" and m.phase == "watching"
    with pytest.raises(RuntimeError, match="in phase 'watching', expected canary"):
        m.judge(role="canary", snapshot={}, breaches=[])


def test_feedback_gate_needs_enough_samples_and_uses_the_spec_floor():
    p = AutopilotPolicy(min_feedback=20)
    low = {"accuracy_feedback": 0.4, "feedback_samples": 20}
    assert find_trigger(_ev(snapshot=low), p).sources == ["feedback"]  # spec's min_accuracy 0.5
    assert find_trigger(_ev(snapshot=low | {"feedback_samples": 19}), p) is None  # one short of the minimum
    assert find_trigger(_ev(snapshot=low, kpis={}), p) is None  # no gate anywhere
    assert find_trigger(_ev(snapshot=low, kpis={}), AutopilotPolicy(feedback_gate=0.41)).sources == ["feedback"]
    assert find_trigger(_ev(snapshot=low, kpis={}), AutopilotPolicy(feedback_gate=0.4)) is None  # not below
    off = AutopilotPolicy(drift=False, kpi_breach=False)
    assert find_trigger(_ev(drift={"retrain": True}, breaches=["x"]), off) is None


@pytest.mark.parametrize("kw,msg", [({"feedback_gate": 1.01}, "feedback_gate: must be in"),
                                    ({"canary_weight": 1.0}, "canary_weight: must be in"),
                                    ({"canary_min_requests": 0}, "canary_min_requests: must be >= 1"),
                                    ({"feedback_repeat": 101}, "feedback_repeat: must be in"),
                                    ({"epochs": 1001}, "epochs: must be in")])
def test_policy_limits_one_step_over(kw, msg):
    with pytest.raises(ValueError, match=msg):
        AutopilotPolicy(**kw)
    AutopilotPolicy(**{k: {"feedback_gate": 1.0, "canary_weight": 0.99, "canary_min_requests": 1,
                           "feedback_repeat": 100, "epochs": 1000}[k] for k in kw})  # at the limit: accepted


# -- the driver on the in-process ingress with the real retrain job -----------------------------------------
TOKEN = "unit-token"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny digits model through the pipeline (in-process pool), once per module (copied per test)."""
    import fabric.kinds
    from fabric.data.datasets import from_parquet_bytes
    from fabric.flow.pipeline import run_pipeline
    from fabric.spec import parse_spec

    store = str(tmp_path_factory.mktemp("autopilot") / "store")
    reg = Registry(store)
    spec = parse_spec({"name": "ap", "dataset": {"name": "digits", "limit": 200}, "encoder": {"timesteps": 8},
                       "model": {"hidden": [16]}, "targets": ["cpu"],
                       "train": {"epochs": 1, "lr": 0.03, "device": "cpu"}, "golden": {"samples": 0}, "seed": 2})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fabric.kinds, "device_pool", LocalPool)
        run_pipeline(spec, reg, progress=False, log=lambda s: None)
    ds, _ = from_parquet_bytes(reg.get(reg.ls(kind="dataset")[0].id))
    return {"store": store, "x": ds.x.astype(np.float32), "y": ds.y.astype(int)}


@pytest.fixture
def served(built, monkeypatch, tmp_path):
    """The built store copied, its deployment served as v1 by an in-process ingress (cpu in the ingress)."""
    import shutil

    import fabric.kinds
    from serve import ServeClient
    from serve._private.ingress import Ingress, build_app

    monkeypatch.setattr(fabric.kinds, "device_pool", LocalPool)  # the retrain job's evaluate stage
    store = str(tmp_path / "store")
    shutil.copytree(built["store"], store)
    reg = Registry(store)
    dep = next(r.id for r in reg.ls(kind="deployment"))
    ing = Ingress(app="ap", store=store, tenant=None, token=TOKEN, seed=0,
                  policy={"min_requests": 8, "min_feedback": 8})
    with TestClient(build_app(ing), headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        c = ServeClient("http://testserver", TOKEN)
        c.http.close()
        c.http = http
        assert c.deploy(dep)["version"] == "v1"
        yield {"client": c, "ing": ing, "reg": reg, "x": built["x"], "y": built["y"]}


def _traffic(c, x, y, n, label=lambda y: y, scale=0.4, rng=None):
    """``n`` requests of 4 dimmed samples (the sensor drifted), each answered with feedback."""
    rng = rng or np.random.default_rng(0)
    for _ in range(n):
        i = rng.integers(0, len(x), 4)
        r = c.predict(inputs=x[i] * scale)
        c.feedback(r["request_id"], [int(v) for v in label(y[i])])


def _cycle(s, label, canary_kpis=None, **kw):
    c = s["client"]
    rng = np.random.default_rng(1)

    def sleep(_):  # the canary's evidence: more live traffic with feedback while the driver waits
        _traffic(c, s["x"], s["y"], 4, label, rng=rng)

    from fabric.flow.retrain import retrain

    machine = Autopilot(AutopilotPolicy(canary_min_requests=8, canary_min_feedback=16, epochs=2, **kw))
    return run_cycle(c, s["reg"], "ap", machine, drift_policy=DriftPolicy(), retrain_fn=retrain, poll=0,
                     canary_timeout=120, canary_kpis=canary_kpis, log=lambda s: None, sleep=sleep)


def test_drift_and_feedback_retrain_canary_promote(served):
    c, reg = served["client"], served["reg"]
    machine = Autopilot(AutopilotPolicy())
    assert run_cycle(c, reg, "ap", machine, drift_policy=DriftPolicy(), log=lambda s: None,
                     retrain_fn=lambda **kw: pytest.fail("no trigger must not retrain")) == "none"
    assert history(reg, "ap") == []  # nothing happened, nothing stored
    _traffic(c, served["x"], served["y"], 40)
    assert _cycle(served, lambda y: y) == "promoted"
    st = c.status()
    roles = {d["version"]: d["role"] for d in st["deployments"]}
    assert roles == {"v1": "standby", "v2": "primary"}
    events = history(reg, "ap")
    assert [e["event"] for e in events] == ["trigger", "retrained", "canary", "verdict"]
    assert "drift" in events[0]["trigger"]["sources"] and events[-1]["verdict"] == "promoted"
    for prev, e in zip(events, events[1:], strict=False):  # a chain: each event's first parent is the previous
        assert e["parents"][0] == prev["artifact"]
    kinds = {reg.record(p).kind for p in events[0]["parents"]}
    assert kinds == {"served-inputs", "drift"}  # trigger evidence
    r = events[1]["retrain"]
    assert r["feedback_samples"] == 160 and reg.record(r["dataset"]).parents[-1] == events[1]["feedback"]
    with np.load(io.BytesIO(reg.get(events[1]["feedback"]))) as z:
        assert z["spikes"].shape == (160, 8, 64) and z["labels"].shape == (160,)
    assert reg.record(r["model"]).parents == [r["dataset"]]
    from fabric.flow.retrain import find_spec

    assert find_spec(reg, reg.get_json(r["deployment"])["spec_hash"]).train.epochs == 2  # next cycle finds it
    assert st["deployments"][1]["model_id"] == r["deployment"]
    assert "rollout" in {reg.record(p).kind for p in events[-1]["parents"]}  # the promote step
    text = format_history(events)
    assert "promoted v2" in text and text.count("\n") == 4


def test_noise_labels_make_a_bad_retrain_that_is_rolled_back(served):
    c, reg = served["client"], served["reg"]
    noise = np.random.default_rng(7)
    shuffled = lambda y: noise.integers(0, 10, len(y))  # noqa: E731  (labels carry no signal: a bad retrain)
    _traffic(c, served["x"], served["y"], 40, shuffled)
    assert _cycle(served, shuffled, canary_kpis={"min_accuracy": 0.5}, feedback_gate=0.5) == "rolled-back"
    roles = {d["version"]: d["role"] for d in c.status()["deployments"]}
    assert roles == {"v1": "primary", "v2": "rolled_back"}
    events = history(reg, "ap")
    assert [e["event"] for e in events] == ["trigger", "retrained", "canary", "verdict"]
    assert "feedback" in events[0]["trigger"]["sources"]
    assert events[-1]["verdict"] == "rolled-back" and "accuracy_feedback" in events[-1]["reason"]


def test_cli_history_and_bad_input(served, capsys, tmp_path):
    from fabric.cli.autopilot import main

    ns = dict(name="ap", history=True, json=False, store=served["reg"].store.url, tenant=None)
    assert main(argparse.Namespace(**ns)) == 0
    assert capsys.readouterr().out.strip() == "no autopilot history"
    bad = ns | dict(history=False, no_drift=False, no_kpi=False, feedback_gate=1.5, min_feedback=20,
                    canary_weight=0.5, canary_requests=20, canary_feedback=20, epochs=None, alpha=0.01,
                    min_statistic=0.1, canary_gate=None, canary_timeout=10, interval=1)
    assert main(argparse.Namespace(**bad)) == 2
    assert "feedback_gate: must be in [0, 1], got 1.5" in capsys.readouterr().err
