"""Streaming sessions without Ray: the runtimes' stateful step (chunks == one run over the whole input,
spike for spike, cpu and loihi) and the ingress's /v1/stream WebSocket route (FastAPI TestClient):
state carried, reset on request and by policy, sessions isolated, disconnect frees, session limit,
kinds that cannot keep state refused, predict token."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from fabric.flow.pipeline import nir_to_bytes
from fabric.kinds import capabilities, make_runtime
from fabric.model.snn import LifMLP, export_nir
from fabric.store.registry import Registry
from serve import ModelServer
from serve._private.ingress import Ingress, build_app
from serve._private.stream import CLOSE_FULL, CLOSE_NOT_STATEFUL, CLOSE_UNAUTHORIZED

T, N_IN, N_OUT = 8, 32, 10
SPEC_HASH = "cd" * 32


def _graph():
    torch.manual_seed(0)
    net = LifMLP(N_IN, [16], N_OUT, 0.9, 0.5)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(4.0)
    return export_nir(net, metadata={"timesteps": T})


def _spikes(steps: int, seed: int, batch: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).random((batch, steps, N_IN)) < 0.3).astype(np.uint8)


@pytest.mark.parametrize("kind", ["cpu", "loihi"])
def test_chunks_equal_one_run_spike_for_spike(kind):
    rt = make_runtime(kind)
    rt.load(rt.compile(_graph()))
    assert capabilities(kind).stateful_stream
    x = _spikes(45, 1, batch=2)
    full = rt.run(x, record_raster=True)
    assert full.raster.sum() > 0
    state, parts = None, []
    for a, b in [(0, 8), (8, 9), (9, 26), (26, 45)]:
        res, state = rt.step(x[:, a:b], state, record_raster=True)
        parts.append(res.raster)
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), full.raster)
    fresh, _ = rt.step(x[:, :8], None, record_raster=True)  # no state = a plain run
    np.testing.assert_array_equal(fresh.raster, rt.run(x[:, :8], record_raster=True).raster)


def test_kinds_without_state_say_so():
    assert not capabilities("spinnaker").stateful_stream
    rt = make_runtime("spinnaker")
    rt.load(rt.compile(_graph()))
    with pytest.raises(NotImplementedError, match="stateful_stream"):
        rt.step(_spikes(T, 0))


class _Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        async def call():
            return self.fn(*args)
        return call()


class _Handle:
    def __init__(self, server: ModelServer):
        self.infer = _Method(lambda x: server.infer([x])[0])
        self.stream = _Method(server.step)
        self.health = _Method(server.health)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    reg = Registry(str(tmp_path_factory.mktemp("stream") / "store"))
    ds = reg.put(b"rows", kind="dataset", name="d", spec_hash=SPEC_HASH,
                 extra={"shape": [N_IN], "classes": [f"c{i}" for i in range(N_OUT)]})
    enc = reg.put(b"spikes", kind="encoding", name="d/rate", parents=[ds.id], spec_hash=SPEC_HASH,
                  extra={"encoder": "rate", "timesteps": T, "params": {"gain": 1.0}, "seed": 3, "n_classes": N_OUT,
                         "shape": [4, T, N_IN]})
    model = reg.put(b"w", kind="model", name="tiny", parents=[enc.id], spec_hash=SPEC_HASH)
    graph = _graph()
    nir_rec = reg.put(nir_to_bytes(graph), kind="nir", name="tiny.nir", parents=[model.id], spec_hash=SPEC_HASH)
    progs = {}
    for kind in ("cpu", "loihi", "spinnaker"):
        prog = make_runtime(kind).compile(graph)
        progs[kind] = reg.put(prog.to_bytes(), kind="program", name=f"{kind}-program", parents=[nir_rec.id],
                              spec_hash=SPEC_HASH, device_id=kind, extra={"kind": kind}).id
    return reg, progs


def _app(store, *, max_sessions=4, predict_token=None, stream=None):
    reg, progs = store
    ing = Ingress(app="unit", store=reg.store.url, tenant=None, token="s3cret", seed=0, max_sessions=max_sessions,
                  predict_token=predict_token)
    servers = {k: ModelServer(reg.store.url, p) for k, p in progs.items()}
    for i, k in enumerate(("loihi", "cpu", "spinnaker")):
        ing.register(f"v{i + 1}", servers[k].info, _Handle(servers[k]), model_id=progs[k],
                     role="primary" if i == 0 else "canary", weight=None if i == 0 else 0.0,
                     stream=stream if i < 2 else None)
    return ing, servers


@pytest.mark.parametrize("version", ["v1", "v2"])  # loihi, cpu
def test_session_carries_state_and_resets_on_request(store, version):
    ing, servers = _app(store)
    rt = servers["loihi" if version == "v1" else "cpu"].runtime
    x = _spikes(4 * T, 5)
    whole = rt.run(x, record_raster=True).raster[0]
    with TestClient(build_app(ing)) as client, client.websocket_connect(f"/v1/stream?version={version}") as ws:
        hello = ws.receive_json()
        assert hello["version"] == version and hello["reset"] == "never" and hello["n_in"] == N_IN
        assert len(ing.sessions.open) == 1
        for k in range(4):
            ws.send_json({"spikes": x[0, k * T:(k + 1) * T].tolist(), "frame": k})
            out = ws.receive_json()
            assert out["frame"] == k and out["host_ms"] > 0 and out["device_ms"] >= 0
            assert out["scores"] == whole[k * T:(k + 1) * T].sum(axis=0).astype(float).tolist()
        ws.send_json({"reset": True})
        assert ws.receive_json()["reset"] is True
        ws.send_json({"spikes": x[0, 3 * T:].tolist()})
        alone = rt.run(x[:, 3 * T:]).counts[0].astype(float).tolist()
        assert ws.receive_json()["scores"] == alone  # after the reset: as if the stream began here
        ws.send_json({"spikes": [[2] * N_IN]})
        assert "0 or 1" in ws.receive_json()["error"]  # a bad chunk is answered; the session lives on
    assert not ing.sessions.open  # the disconnect freed the state


def test_sessions_are_isolated(store):
    ing, servers = _app(store)
    rt = servers["loihi"].runtime
    a, b = _spikes(3 * T, 11), _spikes(3 * T, 12)
    want_a, want_b = rt.run(a, record_raster=True).raster[0], rt.run(b, record_raster=True).raster[0]
    with TestClient(build_app(ing)) as client, client.websocket_connect("/v1/stream") as wa, \
            client.websocket_connect("/v1/stream") as wb:
        sa, sb = wa.receive_json()["session"], wb.receive_json()["session"]
        assert sa != sb and len(ing.sessions.open) == 2
        for k in range(3):  # interleaved chunks: each session sees only its own history
            wa.send_json({"spikes": a[0, k * T:(k + 1) * T].tolist()})
            wb.send_json({"spikes": b[0, k * T:(k + 1) * T].tolist()})
            assert wa.receive_json()["scores"] == want_a[k * T:(k + 1) * T].sum(axis=0).astype(float).tolist()
            assert wb.receive_json()["scores"] == want_b[k * T:(k + 1) * T].sum(axis=0).astype(float).tolist()
    assert not ing.sessions.open


def test_reset_policy_per_chunk(store):
    ing, servers = _app(store, stream={"reset": "per_chunk"})
    rt = servers["cpu"].runtime
    x = _spikes(2 * T, 7)
    with TestClient(build_app(ing)) as client, client.websocket_connect("/v1/stream?version=v2") as ws:
        assert ws.receive_json()["reset"] == "per_chunk"
        for k in range(2):
            ws.send_json({"spikes": x[0, k * T:(k + 1) * T].tolist()})
            out = ws.receive_json()
            assert out["reset"] is True
            assert out["scores"] == rt.run(x[:, k * T:(k + 1) * T]).counts[0].astype(float).tolist()


def test_session_limit_stateless_kind_and_token(store):
    ing, _ = _app(store, max_sessions=1)
    with TestClient(build_app(ing)) as client:
        with client.websocket_connect("/v1/stream") as ws:
            ws.receive_json()
            with client.websocket_connect("/v1/stream") as full, pytest.raises(WebSocketDisconnect) as exc:
                full.receive_json()
            assert exc.value.code == CLOSE_FULL and "session limit" in exc.value.reason
        with client.websocket_connect("/v1/stream") as ws:  # the first one's slot was freed
            assert "session" in ws.receive_json()
        with client.websocket_connect("/v1/stream?version=v3") as ws, pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_json()
        assert exc.value.code == CLOSE_NOT_STATEFUL and "spinnaker" in exc.value.reason
    ing, _ = _app(store, predict_token="p-tok")
    with TestClient(build_app(ing)) as client:
        with client.websocket_connect("/v1/stream") as ws, pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_json()
        assert exc.value.code == CLOSE_UNAUTHORIZED
        with client.websocket_connect("/v1/stream", headers={"Authorization": "Bearer p-tok"}) as ws:
            assert "session" in ws.receive_json()
