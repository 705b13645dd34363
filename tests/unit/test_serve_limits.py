"""Input limits and credentials at the serve door, without Ray: the body budget holds for chunked and
.npy bodies (413 as soon as it is passed, the rest never read, memory flat), JSON depth is bounded,
the optional predict token, and tokens kept only as digests (never printed, never an init argument)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serve._private.ingress import Ingress, build_app, token_digest
from serve._private.schemas import MAX_BODY_BYTES, MAX_JSON_DEPTH

CHUNK = 64 * 1024
HUNDRED_MB = 100 * 1024 * 1024


def _rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; the peak during a request is what counts)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture()
def ing(tmp_path):
    return Ingress(app="limits", store=str(tmp_path / "store"), tenant=None, token="adm1n", predict_token="pr3d")


def _asgi_post(app: Any, path: str, ctype: str, head: bytes, filler: bytes, total: int,
               content_length: int | None = None) -> dict[str, Any]:
    """POST a lazily produced body of ``total`` bytes straight into the ASGI app, chunk by chunk
    (what a server does with ``Transfer-Encoding: chunked``); returns status, answer, bytes pulled
    and the peak RSS growth seen while the body streamed."""
    headers = [(b"content-type", ctype.encode()), (b"host", b"testserver"), (b"authorization", b"Bearer pr3d")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 8000), "state": {}}
    produced = {"bytes": 0, "peak": 0}
    base = _rss_bytes()

    def chunks():
        yield head
        while produced["bytes"] < total:
            yield filler

    gen = chunks()
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        try:
            part = next(gen)
        except StopIteration:
            if done.is_set():
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": b"", "more_body": False}
        produced["bytes"] += len(part)
        produced["peak"] = max(produced["peak"], _rss_bytes() - base)
        return {"type": "http.request", "body": part, "more_body": produced["bytes"] < total}

    sent: list[dict[str, Any]] = []

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)
        if msg["type"] == "http.response.body" and not msg.get("more_body"):
            done.set()

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return {"status": start["status"], "json": json.loads(body), "pulled": produced["bytes"],
            "rss_growth": max(produced["peak"], _rss_bytes() - base)}


@pytest.mark.parametrize("path,ctype,head,filler", [
    ("/v1/predict", "application/json", b'{"inputs": [[', b"0," * (CHUNK // 2)),
    ("/v1/predict.npy", "application/octet-stream", b"\x93NUMPY\x01\x00", b"\0" * CHUNK),
])
def test_100mb_chunked_body_is_refused_with_413_reading_no_further_and_memory_flat(ing, path, ctype, head, filler):
    r = _asgi_post(build_app(ing), path, ctype, head, filler, HUNDRED_MB)
    assert r["status"] == 413 and "limit" in r["json"]["error"] and r["json"]["error"].startswith("body:")
    assert r["pulled"] <= MAX_BODY_BYTES + len(head) + 2 * CHUNK  # stopped at the limit, the rest never read
    assert r["rss_growth"] < HUNDRED_MB // 4, f"RSS grew {r['rss_growth'] / 2**20:.1f} MiB for a 100 MB body"
    assert ing.metrics.requests[(path, "413", "")] == 1  # counted as what the client got


def test_a_content_length_that_lies_is_caught_while_streaming(ing):
    r = _asgi_post(build_app(ing), "/v1/predict.npy", "application/octet-stream", b"", b"\0" * CHUNK,
                   2 * MAX_BODY_BYTES, content_length=100)
    assert r["status"] == 413 and r["pulled"] <= MAX_BODY_BYTES + 2 * CHUNK


def test_testclient_generator_bodies_over_the_limit_get_413(ing):
    """Through the HTTP test client with a generator (chunked, no Content-Length) body. The test
    client itself buffers a generator body client side, hence the ASGI-level memory test above."""
    def body(n: int):
        sent = 0
        while sent < n:
            sent += CHUNK
            yield b"1" * CHUNK

    with TestClient(build_app(ing)) as client:
        for path, ctype in (("/v1/predict", "application/json"), ("/v1/predict.npy", "application/octet-stream")):
            r = client.post(path, content=body(MAX_BODY_BYTES + 4 * CHUNK), headers={"content-type": ctype,
                                                                                      "Authorization": "Bearer pr3d"})
            assert r.status_code == 413 and r.json()["error"].startswith("body:"), (path, r.text)
        r = client.post("/v1/predict", content=b"0" * (MAX_BODY_BYTES + 1), headers={"content-type": "application/json"})
        assert r.status_code == 413 and f"> limit {MAX_BODY_BYTES}" in r.json()["error"]  # Content-Length: no read


def test_json_depth_is_bounded_before_parsing(ing):
    with TestClient(build_app(ing)) as client:
        deep = b'{"inputs": ' + b"[" * (MAX_JSON_DEPTH + 5) + b"]" * (MAX_JSON_DEPTH + 5) + b"}"
        r = client.post("/v1/predict", content=deep, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "nested deeper" in r.json()["error"]
        huge = b"[" * 200_000  # would hit Python's recursion limit in a parser
        r = client.post("/v1/predict", content=huge, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "nested deeper" in r.json()["error"]
        # brackets inside strings do not count
        s = json.dumps({"inputs": [[0.1]], "version": "[" * 40})
        r = client.post("/v1/predict", content=s, headers={"content-type": "application/json",
                                                           "Authorization": "Bearer pr3d"})
        assert r.status_code == 422 and "nested" not in r.text  # the version pattern refuses it, not the depth


def test_predict_token_is_off_by_default_and_401_without_it(tmp_path, ing):
    body = {"inputs": [[0.1]]}
    with TestClient(build_app(ing)) as client:
        assert client.post("/v1/predict", json=body).status_code == 401
        assert client.post("/v1/predict", json=body, headers={"Authorization": "Bearer adm1n"}).status_code == 401
        assert client.post("/v1/predict", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/v1/predict", json=body, headers={"Authorization": "Bearer pr3d"}).status_code != 401
        assert client.post("/v1/feedback", json={"request_id": "x", "labels": [0]}).status_code == 401
        assert client.get("/admin/status", headers={"Authorization": "Bearer pr3d"}).status_code == 401
        assert client.get("/admin/status", headers={"Authorization": "Bearer adm1n"}).status_code == 200
        assert client.get("/healthz").status_code == 200
    open_ing = Ingress(app="open", store=str(tmp_path / "s2"), tenant=None, token="adm1n")
    with TestClient(build_app(open_ing)) as client:
        assert client.post("/v1/predict", json=body).status_code != 401  # no token configured: open


def test_tokens_are_kept_as_digests_and_reach_serve_only_as_digests(ing, monkeypatch):
    assert "adm1n" not in repr(vars(ing)) and "pr3d" not in repr(vars(ing))
    import serve._private.factory as factory

    bound: dict[str, Any] = {}

    class FakeDeployment:
        def bind(self, **kw: Any) -> str:
            bound.update(kw)
            return "app"

    monkeypatch.setattr(factory, "IngressDeployment", FakeDeployment())
    monkeypatch.setattr(factory.serve, "start", lambda **kw: None)
    monkeypatch.setattr(factory.serve, "run", lambda *a, **kw: None)
    factory.start_ingress(app="a", store="/s", token="adm1n", port=8123, predict_token="pr3d")
    assert "token" not in bound and "predict_token" not in bound
    assert bound["token_sha256"] == token_digest("adm1n") and bound["predict_token_sha256"] == token_digest("pr3d")
    assert "adm1n" not in repr(bound) and "pr3d" not in repr(bound)


def test_deploy_never_prints_the_admin_token(tmp_path, monkeypatch, capsys):
    import ray.serve

    import fabric.connect
    import serve._private.client as client_mod
    import serve._private.factory as factory
    from serve import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FABRIC_SERVE_TOKEN", raising=False)
    monkeypatch.delenv("FABRIC_SERVE_PREDICT_TOKEN", raising=False)
    seen_env: dict[str, str | None] = {}
    monkeypatch.setattr(fabric.connect, "connect", lambda address=None, **kw: seen_env.update(
        auth=os.environ.get("RAY_AUTH_MODE")))
    monkeypatch.setattr(ray.serve, "status", lambda: argparse.Namespace(applications={}))
    monkeypatch.setattr(factory, "start_ingress", lambda **kw: "http://127.0.0.1:8123")
    monkeypatch.setattr(client_mod.ServeClient, "deploy", lambda self, *a, **kw: {"version": "v1", "kind": "cpu"})
    a = argparse.Namespace(scmd="deploy", model_id="abcdef", kind="cpu", replicas=1, version=None, placement="pool",
                           port=8123, address="ray://head:10001", store=str(tmp_path / "store"), tenant=None,
                           app="fabric", gate_predict=False, predict_token=True, url=None, token=None, json=False)
    monkeypatch.setattr(cli, "_port", lambda p: p)
    assert cli.main(a) == 0
    out = capsys.readouterr().out
    state = json.loads(Path(".fabric/serve.json").read_text())
    assert state["token"] and state["token"] not in out and state["predict_token"] not in out
    assert "serve.json" in out and "0600" in out
    assert (Path(".fabric/serve.json").stat().st_mode & 0o777) == 0o600
    assert seen_env["auth"] in (None, os.environ.get("RAY_AUTH_MODE"))  # the CLI set nothing itself
