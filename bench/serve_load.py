"""Closed-loop HTTP load on a served model vs the same model called in-process.

Starts local Ray + Serve on 127.0.0.1, deploys MODEL (or trains a tiny digits model into a temporary
store), then runs N concurrent closed-loop clients in a *separate process* (each sends a request and
waits for the answer before the next). Prints p50/p99 latency and throughput for HTTP and for the
in-process baseline (ModelServer.infer on the same spikes, one caller), and the ratios HTTP/in-process.

    .venv/bin/python bench/serve_load.py [--kind loihi] [--clients 8] [--seconds 10] [--samples 1]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def _clients(url: str, body: bytes, ctype: str, path: str, n: int, seconds: float, q: mp.Queue) -> None:
    """Child process: ``n`` threads, closed loop for ``seconds``; puts (latencies_s, failures, wall_s)."""
    import httpx

    lat: list[float] = []
    fails = [0]
    lock = threading.Lock()
    ready = threading.Barrier(n + 1)
    t_end = [0.0]

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60) as h:
            for _ in range(3):  # warm-up: connection, replica batch queue
                h.post(path, content=body, headers={"content-type": ctype})
            ready.wait()
            mine = []
            while time.perf_counter() < t_end[0]:
                t0 = time.perf_counter()
                r = h.post(path, content=body, headers={"content-type": ctype})
                if r.status_code == 200:
                    mine.append(time.perf_counter() - t0)
                else:
                    with lock:
                        fails[0] += 1
            with lock:
                lat.extend(mine)

    ts = [threading.Thread(target=worker) for _ in range(n)]
    for t in ts:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    t_end[0] = t0 + seconds
    for t in ts:
        t.join()
    q.put((lat, fails[0], time.perf_counter() - t0))


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
    ap.add_argument("--kind", default="loihi")
    ap.add_argument("--store", help="store holding MODEL (absolute path)")
    ap.add_argument("--model", help="deployment or program id (default: train a tiny digits model)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent closed-loop clients (default 8)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--samples", type=int, default=1, help="samples per request (default 1)")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--npy", action="store_true", help="send .npy bodies instead of JSON")
    ap.add_argument("--placement", choices=("pool", "replica"), default="pool",
                    help="pool: replicas call the shared device actors; replica: runtime inside the replica")
    a = ap.parse_args()

    from ray import serve as rserve

    from fabric.connect import connect
    from serve import ModelServer, ServeClient, start

    connect(num_cpus=2)
    store, model = (a.store, a.model) if a.model else _tiny_model(a.kind)
    local = ModelServer(store, model, a.kind)
    info = local.info
    spikes = (np.random.default_rng(0).random((a.samples, info.encoder["timesteps"], info.n_in)) < 0.2).astype(np.uint8)

    # in-process baseline: the same runtime on the same spikes, one caller, closed loop
    local.infer([spikes])
    lat, t_end = [], time.perf_counter() + a.seconds
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
    ServeClient(url, "bench").deploy(model, kind=a.kind, replicas=a.replicas, placement=a.placement)
    if a.npy:
        import io

        buf = io.BytesIO()
        np.save(buf, spikes)
        body, ctype, path = buf.getvalue(), "application/octet-stream", "/v1/predict.npy"
    else:
        import json

        body, ctype, path = json.dumps({"spikes": spikes.tolist()}).encode(), "application/json", "/v1/predict"
    q: mp.Queue = mp.get_context("spawn").Queue()
    p = mp.get_context("spawn").Process(target=_clients, args=(url, body, ctype, path, a.clients, a.seconds, q))
    p.start()
    http_lat, fails, wall = q.get()
    p.join()
    rserve.shutdown()

    rows = [("in-process", 1, lat, base_wall, 0), (f"HTTP {'npy' if a.npy else 'JSON'}", a.clients, http_lat, wall, fails)]
    print(f"kind {a.kind}, {a.samples} sample(s)/request, T={info.encoder['timesteps']}, n_in={info.n_in}, "
          f"placement {a.placement}, {a.seconds:g}s each, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} (other work on the machine inflates both paths)")
    print(f"{'path':<12}{'clients':>8}{'requests':>10}{'failed':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for name, c, ls, w, f in rows:
        print(f"{name:<12}{c:>8}{len(ls):>10}{f:>8}{len(ls) / w:>10.1f}{_pct(ls, 50):>10.3f}{_pct(ls, 99):>10.3f}")
    print(f"ratio HTTP/in-process: throughput {len(http_lat) / wall / (len(lat) / base_wall):.3f}, "
          f"p50 latency {_pct(http_lat, 50) / _pct(lat, 50):.1f}x, p99 latency {_pct(http_lat, 99) / _pct(lat, 99):.1f}x")


if __name__ == "__main__":
    main()
