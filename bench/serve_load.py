"""Closed-loop HTTP load: the fabric's serving path vs bare Ray Serve, in the same run.

Starts local Ray + Serve on 127.0.0.1 and two applications behind the same HTTP proxy:

- **bare**: a Ray Serve FastAPI ingress of the same shape as the fabric's (``POST /bare/v1/predict``
  with ``{"spikes": [[[...]]]}`` validated by pydantic, JSON answer with classes and scores) whose model
  is a trivial numpy function (spike counts @ a fixed matrix) inside the ingress: the cost of Ray
  Serve itself, nothing of the fabric's;
- **fabric**: ``fabric serve`` with MODEL deployed (or a tiny digits model trained into a temporary
  store), through its ingress, version routing, KPI windows and model replicas.

For each client count (``--clients 1,8,32``) N closed-loop clients in a *separate process* (each sends
a request and waits for the answer before the next) load bare, then fabric, for ``--seconds`` each.
Prints req/s, p50, p99 and errors per path and the ratios fabric/bare (throughput: higher is better,
1.0 = as fast as Ray Serve; latency: lower is better), plus the in-process baseline
(ModelServer.infer on the same spikes, one caller) for scale.

    .venv/bin/python bench/serve_load.py [--kind cpu] [--clients 1,8,32] [--seconds 8] [--samples 1]
    .venv/bin/python bench/serve_load.py --store /abs/store --model <deployment-or-program-id>
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _clients(url: str, body: bytes, ctype: str, path: str, n: int, seconds: float, q: mp.Queue) -> None:
    """Child process: ``n`` threads, closed loop for ``seconds``; puts (latencies_s, failures, wall_s)."""
    import httpx

    lat: list[float] = []
    fails = [0]
    lock = threading.Lock()
    ready = threading.Barrier(n + 1)
    go = threading.Event()
    t_end = [0.0]
    first_error: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60) as h:
            for _ in range(3):  # warm-up: connection, replica batch queue
                h.post(path, content=body, headers={"content-type": ctype})
            ready.wait()
            go.wait()  # t_end is set
            mine = []
            while time.perf_counter() < t_end[0]:
                t0 = time.perf_counter()
                r = h.post(path, content=body, headers={"content-type": ctype})
                if r.status_code == 200:
                    mine.append(time.perf_counter() - t0)
                else:
                    with lock:
                        fails[0] += 1
                        if not first_error:
                            first_error.append(f"HTTP {r.status_code}: {r.text[:200]}")
            with lock:
                lat.extend(mine)

    ts = [threading.Thread(target=worker) for _ in range(n)]
    for t in ts:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    t_end[0] = t0 + seconds
    go.set()
    for t in ts:
        t.join()
    if first_error:
        print(f"[{path}, {n} clients] first error: {first_error[0]}", flush=True)
    q.put((lat, fails[0], time.perf_counter() - t0))


class BareBody(BaseModel):
    """The bare app's request body: the fabric's ``spikes`` field shape."""

    spikes: list[list[list[float]]]


def _bare_app(n_in: int, n_out: int) -> object:
    """Bare Ray Serve: FastAPI ingress, pydantic body, a trivial numpy model inside the ingress."""
    from fastapi import FastAPI
    from ray import serve as rserve

    api = FastAPI()

    @rserve.deployment(num_replicas=1, max_ongoing_requests=512, ray_actor_options={"num_cpus": 0})
    @rserve.ingress(api)
    class Bare:
        def __init__(self) -> None:
            self.w = np.random.default_rng(0).random((n_in, n_out))

        def predict(self, body):  # noqa: ANN001 - annotated with the class itself below (no string
            # annotation: the replica unpickles this function without the bench module's globals)
            counts = np.asarray(body.spikes, dtype=np.float32).sum(axis=1) @ self.w
            return {"predictions": [{"class": int(c), "scores": r.tolist()}
                                    for c, r in zip(counts.argmax(axis=1), counts, strict=True)]}

        predict.__annotations__ = {"body": BareBody, "return": dict}
        predict = api.post("/v1/predict")(predict)

    return Bare.bind()


def _load(url: str, body: bytes, ctype: str, path: str, n: int, seconds: float) -> tuple[list[float], int, float]:
    q: mp.Queue = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=_clients, args=(url, body, ctype, path, n, seconds, q))
    p.start()
    out = q.get()
    p.join()
    return out


def _tiny_model(kind: str) -> tuple[str, str]:
    from fabric.flow.pipeline import run_pipeline
    from fabric.spec import parse_spec
    from fabric.store.registry import Registry
    from tests.conftest import TINY

    d = copy.deepcopy(TINY)
    d.update(name="bench-serve", targets=[kind])
    store = tempfile.mkdtemp(prefix="serve-bench-")
    reg = Registry(store)
    run_pipeline(parse_spec(d), reg, progress=False, log=lambda s: None)
    prog = next(r.id for r in reg.ls(kind="program") if r.extra.get("kind") == kind)
    return store, prog


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1e3, q)) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="cpu")
    ap.add_argument("--store", help="store holding MODEL (absolute path)")
    ap.add_argument("--model", help="deployment or program id (default: train a tiny digits model)")
    ap.add_argument("--clients", default="1,8,32", help="concurrent closed-loop client counts (default 1,8,32)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per path per client count")
    ap.add_argument("--samples", type=int, default=1, help="samples per request (default 1)")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--placement", choices=("auto", "pool", "replica"), default="auto",
                    help="pool: replicas call the shared device actors; replica: runtime inside the replica; "
                         "auto: the deploy default (replica for kinds without a device resource)")
    ap.add_argument("--batch-wait", type=float, default=None,
                    help="serve.batch wait in seconds (default: the deploy default)")
    a = ap.parse_args()
    counts = [int(c) for c in a.clients.split(",")]

    import json

    from ray import serve as rserve

    from fabric.connect import connect
    from serve import ModelServer, ServeClient, start

    if not a.model:
        # the tiny spec's module points FABRIC_HOME at a throwaway directory (its signing key and trust
        # list): import it before Ray starts so Serve's replicas inherit the same home
        import tests.conftest  # noqa: F401
    connect(num_cpus=2)
    store, model = (a.store, a.model) if a.model else _tiny_model(a.kind)
    local = ModelServer(store, model, a.kind)
    info = local.info
    spikes = (np.random.default_rng(0).random((a.samples, info.encoder["timesteps"], info.n_in)) < 0.2).astype(np.uint8)

    # in-process baseline (for scale): the same runtime on the same spikes, one caller, closed loop
    local.infer([spikes])
    lat, t_end = [], time.perf_counter() + min(a.seconds, 3.0)
    t0 = time.perf_counter()
    while time.perf_counter() < t_end:
        t1 = time.perf_counter()
        local.infer([spikes])
        lat.append(time.perf_counter() - t1)
    base_wall = time.perf_counter() - t0

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = start(app="bench", store=store, token="bench", port=port)
    rserve.run(_bare_app(info.n_in, info.n_out), name="bare", route_prefix="/bare")
    kw = {} if a.placement == "auto" else {"placement": a.placement}
    if a.batch_wait is not None:
        kw["batch_wait_timeout_s"] = a.batch_wait
    ServeClient(url, "bench").deploy(model, kind=a.kind, replicas=a.replicas, **kw)
    body, ctype = json.dumps({"spikes": spikes.tolist()}).encode(), "application/json"

    rows = []
    for n in counts:
        bare = _load(url, body, ctype, "/bare/v1/predict", n, a.seconds)
        fab = _load(url, body, ctype, "/v1/predict", n, a.seconds)
        rows.append((n, bare, fab))
    rserve.shutdown()

    print(f"kind {a.kind}, {a.samples} sample(s)/request (JSON), T={info.encoder['timesteps']}, n_in={info.n_in}, "
          f"placement {a.placement}, {a.seconds:g}s per point, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} (other work on the machine inflates both paths alike)")
    print(f"in-process ModelServer.infer, 1 caller: {len(lat) / base_wall:.0f} req/s, p50 {_pct(lat, 50):.3f} ms")
    print(f"{'clients':>7} {'path':<7}{'requests':>9}{'errors':>7}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"   fabric/bare: {'throughput':>10}{'p50':>7}{'p99':>7}")
    for n, bare, fab in rows:
        for name, (ls, f, w) in (("bare", bare), ("fabric", fab)):
            line = f"{n:>7} {name:<7}{len(ls):>9}{f:>7}{len(ls) / w:>9.1f}{_pct(ls, 50):>9.2f}{_pct(ls, 99):>9.2f}"
            if name == "fabric":
                thr = (len(fab[0]) / fab[2]) / max(len(bare[0]) / bare[2], 1e-9)
                line += (f"   {'':>12}{thr:>10.2f}{_pct(fab[0], 50) / _pct(bare[0], 50):>6.2f}x"
                         f"{_pct(fab[0], 99) / _pct(bare[0], 99):>6.2f}x")
            print(line)
    print("goals (issue #17): throughput >= 0.8x bare at every client count, p50 at 1 client <= 1.3x, "
          "p99 at 8 clients <= 1.3x, 0 errors")


if __name__ == "__main__":
    main()
