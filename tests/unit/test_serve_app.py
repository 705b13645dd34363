"""The serve resolver on a hand-built lineage, and the FastAPI ingress driven in-process (ASGI test
client, version handles backed by the in-process ModelServer): routing, validation, auth, feedback,
automatic rollback, snapshots. No Ray."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from fabric.flow.pipeline import nir_to_bytes
from fabric.kinds import make_runtime
from fabric.model.snn import LifMLP, export_nir
from fabric.store.registry import Registry
from serve import ModelServer, ResolveError, encode_inputs, resolve_model
from serve._private.ingress import Ingress, build_app

T, N_IN, N_OUT = 8, 64, 10
SPEC_HASH = "ab" * 32


@pytest.fixture(scope="module")
def lineage(tmp_path_factory):
    """dataset -> encoding -> model -> nir -> program[loihi, spinnaker] + the spec's KPI report."""
    reg = Registry(str(tmp_path_factory.mktemp("serve") / "store"))
    ds = reg.put(b"rows", kind="dataset", name="digits", spec_hash=SPEC_HASH,
                 extra={"shape": [N_IN], "classes": [f"c{i}" for i in range(N_OUT)]})
    enc = reg.put(b"spikes", kind="encoding", name="digits/rate", parents=[ds.id], spec_hash=SPEC_HASH,
                  extra={"encoder": "rate", "timesteps": T, "params": {"gain": 1.0}, "seed": 3, "n_classes": N_OUT,
                         "shape": [50, T, N_IN]})
    torch.manual_seed(0)
    net = LifMLP(N_IN, [16], N_OUT, 0.9, 0.5)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(4.0)  # enough drive that outputs spike
    model = reg.put(b"weights", kind="model", name="tiny/lif_mlp", parents=[enc.id], spec_hash=SPEC_HASH)
    graph = export_nir(net, metadata={"timesteps": T})
    nir_rec = reg.put(nir_to_bytes(graph), kind="nir", name="tiny.nir", parents=[model.id], spec_hash=SPEC_HASH)
    progs = {}
    for kind in ("loihi", "spinnaker"):
        prog = make_runtime(kind).compile(graph)
        progs[kind] = reg.put(prog.to_bytes(), kind="program", name=f"{kind}-program", parents=[nir_rec.id],
                              spec_hash=SPEC_HASH, device_id=kind, extra={"kind": kind}).id
    reg.put_json({"spec": {"name": "tiny", "kpis": {"max_latency_p99_ms": 5.0, "min_accuracy": None}}}, kind="report",
                 name="tiny/kpi-report", spec_hash=SPEC_HASH)
    return {"reg": reg, "progs": progs, "model": model.id, "nir": nir_rec.id, "enc": enc.id}


def test_resolver_walks_program_lineage(lineage):
    reg = lineage["reg"]
    info = resolve_model(reg, lineage["progs"]["loihi"])
    assert info.kind == "loihi" and info.program_id == lineage["progs"]["loihi"]
    assert (info.model_id, info.nir_id, info.encoding_id) == (lineage["model"], lineage["nir"], lineage["enc"])
    assert info.encoder == {"name": "rate", "timesteps": T, "params": {"gain": 1.0}, "seed": 3}
    assert (info.n_in, info.n_out, info.input_shape) == (N_IN, N_OUT, [N_IN])
    assert info.classes[3] == "c3" and info.kpis == {"max_latency_p99_ms": 5.0}  # None thresholds dropped
    # a model id needs the kind; with it, the program of that kind is found
    assert resolve_model(reg, lineage["model"], "spinnaker").program_id == lineage["progs"]["spinnaker"]
    with pytest.raises(ResolveError, match="give --kind"):
        resolve_model(reg, lineage["model"])
    with pytest.raises(ResolveError, match="not 'akida'"):
        resolve_model(reg, lineage["progs"]["loihi"], "akida")
    with pytest.raises(ResolveError, match="is a 'encoding'"):
        resolve_model(reg, lineage["enc"])


def test_resolver_reads_deployment_artifacts(lineage):
    reg = lineage["reg"]
    dep = reg.put_json({"kind": "loihi", "program_id": lineage["progs"]["loihi"], "model_id": lineage["model"],
                        "nir_id": lineage["nir"], "encoding_id": lineage["enc"],
                        "encoder": {"name": "rate", "timesteps": T, "params": {}, "seed": 5}, "n_in": N_IN,
                        "n_out": N_OUT, "classes": list("abcdefghij"), "kpis": {"max_energy_mj": 0.1, "min_accuracy": None},
                        "spec_name": "tiny", "spec_hash": SPEC_HASH, "version": 1},
                       kind="deployment", name="tiny/loihi", parents=[lineage["progs"]["loihi"]])
    info = resolve_model(reg, dep.id[:10])
    assert info.deployment_id == dep.id and info.encoder["seed"] == 5 and info.classes[0] == "a"
    assert info.kpis == {"max_energy_mj": 0.1} and info.input_shape == [N_IN]
    bad = reg.put_json({"kind": "loihi"}, kind="deployment", name="broken", parents=[])
    with pytest.raises(ResolveError, match="lacks field"):
        resolve_model(reg, bad.id)


class _Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        async def call():
            return self.fn(*args)
        return call()


class _Handle:
    """Stands in for a Serve handle: the same ModelServer a replica holds, called in-process."""

    def __init__(self, server: ModelServer):
        self.infer = _Method(lambda x: server.infer([x])[0])
        self.health = _Method(server.health)


@pytest.fixture()
def app(lineage):
    reg = lineage["reg"]
    ing = Ingress(app="unit", store=reg.store.url, tenant=None, token="s3cret", seed=0,
                  policy={"min_requests": 8})
    servers = {k: ModelServer(reg.store.url, p) for k, p in lineage["progs"].items()}
    ing.register("v1", servers["loihi"].info, _Handle(servers["loihi"]), model_id=lineage["progs"]["loihi"])
    with TestClient(build_app(ing)) as client:
        yield client, ing, servers


AUTH = {"Authorization": "Bearer s3cret"}


def test_predict_raw_spikes_and_npy_match_in_process(app):
    client, ing, servers = app
    x = np.random.default_rng(0).random((3, N_IN))
    r = client.post("/v1/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    spikes = encode_inputs(servers["loihi"].info, x.astype(np.float32))
    local = servers["loihi"].infer([spikes])[0]
    assert [p["class"] for p in body["predictions"]] == local["classes"]
    assert body["kind"] == "loihi" and body["version"] == "v1" and body["figures"].startswith("modelled")
    assert body["device_latency_ms"] == pytest.approx(local["device_ms"]) and body["energy_mj"] > 0
    r2 = client.post("/v1/predict", json={"spikes": spikes.tolist()})
    assert [p["class"] for p in r2.json()["predictions"]] == local["classes"]
    buf = io.BytesIO()
    np.save(buf, np.concatenate([spikes] * 100))
    r3 = client.post("/v1/predict.npy", content=buf.getvalue(), headers={"content-type": "application/octet-stream"})
    assert r3.status_code == 200 and len(r3.json()["predictions"]) == 300
    fb = client.post("/v1/feedback", json={"request_id": body["request_id"], "labels": local["classes"]})
    assert fb.status_code == 200 and fb.json()["correct"] == 3
    assert ing.windows["v1"].snapshot()["accuracy_feedback"] == 1.0


@pytest.mark.parametrize("body, status, field", [
    ({"inputs": [[0.1] * 5]}, 422, "inputs: shape"),
    ({"spikes": [[[0, 1]]]}, 422, "spikes: shape"),
    ({"inputs": [[0.1] * N_IN], "spikes": [[[0]]]}, 422, "exactly one"),
    ({"inputs": [[0.1] * N_IN], "version": "v7"}, 404, "version: unknown version 'v7'"),
    ({"inputs": [[0.1] * N_IN], "extra": 1}, 422, "extra"),
    ({"inputs": [[0.1] * N_IN] * 257}, 413, "limit 256"),
    ({"inputs": "zeros"}, 422, "inputs"),
])
def test_bad_requests_are_4xx_naming_the_field(app, body, status, field):
    client, ing, _ = app
    r = client.post("/v1/predict", json=body)
    assert r.status_code == status and field in r.json()["error"]
    assert client.post("/v1/predict", content=b'{"inputs": [[NaN]]}',
                       headers={"content-type": "application/json"}).status_code == 422
    assert client.post("/v1/predict", content=b"[" * 100000, headers={"content-type": "application/json"}).status_code < 500
    assert client.post("/v1/predict.npy", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    assert client.post("/v1/feedback", json={"request_id": "nope", "labels": [1]}).status_code == 404


def test_admin_needs_the_token_and_status_reports_kpis(app):
    client, ing, _ = app
    assert client.get("/admin/status").status_code == 401
    assert client.get("/admin/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
    for path in ("/admin/rollback", "/admin/traffic", "/admin/deploy", "/admin/snapshot"):
        assert client.post(path, json={}).status_code in (401, 422)
        assert client.post(path, json={}, headers={"Authorization": "Bearer wrong"}).status_code in (401, 422)
    assert client.post("/admin/rollback", json={}).status_code == 401
    client.post("/v1/predict", json={"inputs": [[0.5] * N_IN]})
    st = client.get("/admin/status", headers=AUTH).json()
    d = st["deployments"][0]
    assert {"version", "kind", "model_id", "weight", "role", "p50_ms", "p99_ms", "error_rate", "requests",
            "energy_mj_per_inference", "accuracy_feedback"} <= set(d)
    assert d["role"] == "primary" and d["requests"] == 1 and d["p99_ms"] > 0
    assert client.get("/healthz").json()["ok"] is True and client.get("/readyz").status_code == 200
    text = client.get("/metrics").text
    assert 'fabric_serve_requests_total{endpoint="/admin/status",status="401",version=""} 2' in text
    assert 'endpoint="/v1/predict",status="200",version="v1"} 1' in text
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_slow_canary_is_rolled_back_without_failed_requests(app):
    client, ing, servers = app
    sp = servers["spinnaker"]
    ing.register("v2", sp.info, _Handle(sp), model_id="x" * 12, role="canary", weight=0.5)
    x = np.random.default_rng(1).random((1, N_IN)).tolist()
    seen = [client.post("/v1/predict", json={"inputs": x}) for _ in range(60)]
    assert all(r.status_code == 200 for r in seen)
    versions = [r.json()["version"] for r in seen]
    v2_served = versions.count("v2")
    assert v2_served == 8  # judged after min_requests, rolled back, then no more traffic
    assert versions[-10:] == ["v1"] * 10
    st = client.get("/admin/status", headers=AUTH).json()
    roles = {d["version"]: d["role"] for d in st["deployments"]}
    assert roles == {"v1": "primary", "v2": "rolled_back"}
    rb = [s for s in st["steps"] if s["action"] == "rollback"]
    assert len(rb) == 1 and "max_latency_p99_ms 5" in rb[0]["reason"] and rb[0]["reason"].startswith("automatic")


def test_shadow_blue_green_and_snapshot(app):
    client, ing, servers = app
    lo = servers["loihi"]
    ing.register("v2", lo.info, _Handle(lo), model_id="y" * 12, role="shadow")
    x = np.random.default_rng(2).random((2, N_IN)).tolist()
    for _ in range(5):
        assert client.post("/v1/predict", json={"inputs": x}).json()["version"] == "v1"
    assert ing.windows["v2"].requests == 5  # every primary request was copied to the shadow
    r = client.post("/admin/traffic", json={"version": "v2", "role": "primary"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["action"] == "promote"
    assert client.post("/v1/predict", json={"inputs": x}).json()["version"] == "v2"
    r = client.post("/admin/rollback", json={}, headers=AUTH)
    assert r.json()["to_version"] == "v1"
    assert client.post("/v1/predict", json={"inputs": x}).json()["version"] == "v1"
    snap = client.post("/admin/snapshot", json={"version": "v1"}, headers=AUTH).json()
    reg = Registry(ing.store)
    rec = reg.record(snap["artifact"])
    assert rec.kind == "served-inputs" and rec.parents == [lo.info.program_id]
    with np.load(io.BytesIO(reg.get(rec.id))) as z:
        assert z["spikes"].shape == (12, T, N_IN)  # 6 requests x 2 samples


def test_wrong_feedback_labels_roll_a_canary_back(app):
    client, ing, servers = app
    lo = servers["loihi"]
    ing.register("v2", lo.info, _Handle(lo), model_id="z" * 12, role="canary", weight=0.5,
                 kpis={"min_accuracy": 0.9}, policy={"min_feedback": 4})
    x = np.random.default_rng(3).random((2, N_IN)).tolist()
    for _ in range(40):
        r = client.post("/v1/predict", json={"inputs": x}).json()
        if r["version"] == "v2":
            wrong = [(p["class"] + 1) % N_OUT for p in r["predictions"]]
            assert client.post("/v1/feedback", json={"request_id": r["request_id"], "labels": wrong}).status_code == 200
        if ing.state.versions["v2"].role == "rolled_back":
            break
    assert ing.state.versions["v2"].role == "rolled_back"
    assert "accuracy_feedback 0.000 < min_accuracy 0.9" in ing.steps[-1]["reason"]
    bad = client.post("/v1/feedback", json={"request_id": r["request_id"], "labels": [1]})
    assert bad.status_code == 422 and "labels:" in bad.json()["error"]


def test_predict_can_be_token_gated(lineage):
    reg = lineage["reg"]
    lo = ModelServer(reg.store.url, lineage["progs"]["loihi"])
    ing = Ingress(app="gated", store=reg.store.url, tenant=None, token="s3cret", gate_predict=True)
    ing.register("v1", lo.info, _Handle(lo), model_id="g" * 12)
    with TestClient(build_app(ing)) as client:
        body = {"inputs": [[0.3] * N_IN]}
        assert client.post("/v1/predict", json=body).status_code == 401
        assert client.post("/v1/predict", json=body, headers=AUTH).status_code == 200
        assert client.get("/healthz").status_code == 200  # probes stay open


def test_restarted_ingress_restores_roles_and_weights_from_rollout_records(lineage):
    reg = lineage["reg"]
    servers = {k: ModelServer(reg.store.url, p) for k, p in lineage["progs"].items()}
    first = Ingress(app="restore", store=reg.store.url, tenant=None, token="t")
    first.register("v1", servers["loihi"].info, _Handle(servers["loihi"]), model_id=lineage["progs"]["loihi"])
    first.register("v2", servers["spinnaker"].info, _Handle(servers["spinnaker"]),
                   model_id=lineage["progs"]["spinnaker"], role="canary", weight=0.2)
    time.sleep(0.01)
    first._record(first.state.promote("v2"), "v2")  # blue-green: v2 primary, v1 standby
    handles = {"restore-v1": _Handle(servers["loihi"]), "restore-v2": _Handle(servers["spinnaker"])}
    again = Ingress(app="restore", store=reg.store.url, tenant=None, token="t")
    assert again.restore(handles.get) == 2
    assert {n: (v.role, v.weight) for n, v in again.state.versions.items()} == {
        "v1": ("standby", 0.0), "v2": ("primary", 1.0)}
    assert again.state.previous_primary == "v1" and again.steps[-1]["action"] == "restore"
    assert again.infos["v2"].kind == "spinnaker"
    gone = Ingress(app="restore", store=reg.store.url, tenant=None, token="t")
    assert gone.restore(lambda app: None) == 0 and gone.state.versions == {}  # apps gone: start empty
