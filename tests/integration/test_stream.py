"""Streaming sessions over a real WebSocket on 127.0.0.1: a pipeline-trained model behind Ray Serve, two
concurrent clients (the ``websockets`` package) sending frames at 30 FPS for ~3 s each; every frame is
answered with its per-frame latency, and the two sessions' answers equal each one's own stream run
alone (no state leak), then the same through ``ServeClient.stream``."""

from __future__ import annotations

import asyncio
import copy
import json
import time

import numpy as np
import pytest

from fabric.data.datasets import from_parquet_bytes
from fabric.kinds import make_runtime
from fabric.records import Program
from fabric.spec import parse_spec
from fabric.store.registry import Registry
from serve._private.resolve import resolve_model
from tests.conftest import TINY
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

TOKEN = "stream-token"
FPS, SECONDS = 30, 3.0


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    from ray import serve

    from fabric.flow.pipeline import run_pipeline
    from serve import ServeClient, start

    d = copy.deepcopy(TINY)
    d.update(name="stream-tiny", targets=["loihi"])
    d["dataset"]["limit"] = 200
    d["encoder"]["timesteps"] = 10
    d["train"]["epochs"] = 1
    store = str(tmp_path_factory.mktemp("stream") / "store")
    reg = Registry(store)
    run_pipeline(parse_spec(d), reg, progress=False, log=lambda s: None)
    dep = next(r.id for r in reg.ls(kind="deployment") if reg.get_json(r.id)["kind"] == "loihi")
    ds, splits = from_parquet_bytes(reg.get(reg.ls(kind="dataset")[0].id))
    url = start(app="stream", store=store, token=TOKEN, port=free_port(), seed=0)
    client = ServeClient(url, TOKEN)
    client.deploy(dep, replicas=1, stream={"reset": "never"})
    info = resolve_model(reg, dep)
    rt = make_runtime(info.kind)
    rt.load(Program.from_bytes(reg.get(info.program_id)))
    try:
        yield {"url": url, "client": client, "info": info, "rt": rt, "x": ds.x[splits == "test"]}
    finally:
        client.close()
        serve.shutdown()


async def _session(url: str, frames: np.ndarray) -> list[dict]:
    """One WebSocket client: one frame every 1/FPS s (paced on a clock, not on the answers)."""
    import websockets

    answers: list[dict] = []
    async with websockets.connect(url.replace("http", "ws", 1) + "/v1/stream") as ws:
        hello = json.loads(await ws.recv())
        assert hello["reset"] == "never"
        t_start = time.perf_counter()
        for k, f in enumerate(frames):
            delay = t_start + k / FPS - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            t0 = time.perf_counter()
            await ws.send(json.dumps({"spikes": f.tolist(), "frame": k}))
            out = json.loads(await ws.recv())
            out["client_ms"] = (time.perf_counter() - t0) * 1e3
            answers.append(out)
    return answers


def test_two_sessions_at_30_fps_answer_every_frame_without_leaking_state(served):
    info, rt = served["info"], served["rt"]
    n = int(FPS * SECONDS)
    t_steps = int(info.encoder["timesteps"])
    rng = np.random.default_rng(0)
    streams = [(rng.random((n, t_steps, info.n_in)) < p).astype(np.uint8) for p in (0.1, 0.4)]

    async def both() -> list[list[dict]]:
        return await asyncio.gather(*(_session(served["url"], s) for s in streams))

    t0 = time.perf_counter()
    got = asyncio.run(both())
    wall = time.perf_counter() - t0
    for frames, answers in zip(streams, got, strict=True):
        assert [a.get("frame") for a in answers] == list(range(n)), [a for a in answers if "error" in a][:3]
        lat = np.array([a["client_ms"] for a in answers])
        print(f"[stream test] {n} frames in {wall:.2f}s: per-frame client p50 {np.percentile(lat, 50):.1f} ms, "
              f"p99 {np.percentile(lat, 99):.1f} ms; device {answers[0]['device_ms']:.3f} ms")
        assert all(a["host_ms"] > 0 and a["device_ms"] >= 0 for a in answers)
        # the session's state is its own: equal to this stream run alone, chunk after chunk
        whole = rt.run(frames.reshape(1, n * t_steps, info.n_in), record_raster=True).raster[0]
        want = whole.reshape(n, t_steps, -1).sum(axis=1).astype(float).tolist()
        assert [a["scores"] for a in answers] == want
    assert wall < SECONDS * 3, f"{n} frames at {FPS} FPS took {wall:.1f}s"


def test_python_client_stream_and_reset(served):
    info, rt = served["info"], served["rt"]
    t_steps = int(info.encoder["timesteps"])
    x = (np.random.default_rng(3).random((1, 3 * t_steps, info.n_in)) < 0.3).astype(np.uint8)
    whole = rt.run(x, record_raster=True).raster[0]
    with served["client"].stream() as s:
        for k in range(3):
            out = s.send(spikes=x[0, k * t_steps:(k + 1) * t_steps], frame=k)
            assert out["scores"] == whole[k * t_steps:(k + 1) * t_steps].sum(axis=0).astype(float).tolist()
        assert s.send(reset=True)["reset"] is True
        out = s.send(spikes=x[0, :t_steps])
        assert out["scores"] == whole[:t_steps].sum(axis=0).astype(float).tolist()
        assert "class" in s.send(inputs=served["x"][0])  # a raw sample, encoded on the server
