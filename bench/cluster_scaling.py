"""How the fabric's costs grow with nodes, boards and tenants, measured on a loopback cluster.

Prints ratios against an in-process baseline (the runtime called directly, no Ray), never absolute
claims: per-batch overhead of a board on the driver's node vs on another node, the board scheduler's
cost per batch, time to add a node, actor placement time, memory per node, and the scheduler core's
grant rate with 1..N tenants. Starts its own `ray start` clusters (each in its own process session,
stopped by killing exactly that session) on 127.0.0.1; never calls `ray stop`.

    .venv/bin/python bench/cluster_scaling.py [--batches 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# one BLAS/OpenMP thread, as Ray gives its workers: the in-process baseline and the actors compute alike
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RAY = str(Path(sys.executable).with_name("ray"))
ENV = dict(os.environ, RAY_AUTH_MODE="disabled")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(p) for p, s in (ln.split() for ln in out.splitlines() if ln.strip()) if int(s) == sid]


def _rss_mb(sid: int) -> float:
    total = 0
    for pid in _session_pids(sid):
        try:
            for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
                if ln.startswith("VmRSS:"):
                    total += int(ln.split()[1])
        except OSError:
            pass
    return total / 1024


def _stop(sid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_pids(sid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while _session_pids(sid) and time.time() < deadline:
            time.sleep(0.2)


def _advertised(address: str, resource: str) -> float:
    import re

    out = subprocess.run([RAY, "status", f"--address={address}"], capture_output=True, text=True, env=ENV).stdout
    m = re.search(rf"[\d.]+/([\d.]+) {re.escape(resource)}\b", out)
    return float(m.group(1)) if m else 0.0


def _wait(pred, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.25)
    raise TimeoutError(f"timed out waiting for {what}")


class LoopbackCluster:
    """A head (`ray start --head --block`) and worker nodes, each in its own process session."""

    def __init__(self, head_resources: dict[str, int], tmp: Path) -> None:
        self.tmp = tmp
        self.address = f"127.0.0.1:{_port()}"
        self.procs: list[subprocess.Popen] = []
        t0 = time.perf_counter()
        self.head = self._popen([RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                                 f"--port={self.address.split(':')[1]}", "--num-cpus=1",
                                 f"--resources={json.dumps(head_resources)}", "--include-dashboard=false",
                                 f"--dashboard-agent-listen-port={_port()}", "--disable-usage-stats"], "head")
        _wait(lambda: subprocess.run([RAY, "status", f"--address={self.address}"], capture_output=True,
                                     env=ENV).returncode == 0, 180, "head")
        self.head_start_s = time.perf_counter() - t0

    def _popen(self, cmd: list[str], name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=self.tmp, start_new_session=True)
        self.procs.append(p)
        return p

    def add_worker(self, resources: dict[str, int], name: str) -> tuple[subprocess.Popen, float]:
        """Start a worker node; return it and the seconds until the cluster advertises its boards."""
        want = {k: _advertised(self.address, k) + v for k, v in resources.items()}
        t0 = time.perf_counter()
        p = self._popen([RAY, "start", f"--address={self.address}", "--block", "--node-ip-address=127.0.0.1",
                         "--num-cpus=0", f"--resources={json.dumps(resources)}", "--object-store-memory=100000000",
                         f"--dashboard-agent-listen-port={_port()}",  # 52365 would be shared by every node
                         "--disable-usage-stats"], name)
        _wait(lambda: all(_advertised(self.address, k) >= v for k, v in want.items()), 180, f"worker {name}")
        return p, time.perf_counter() - t0

    def stop(self) -> None:
        for p in reversed(self.procs):
            _stop(p.pid)


def _workload(batches: int):
    from fabric.model.snn import LifMLP, export_nir

    graph = export_nir(LifMLP(64, [64], 10, 0.9, 1.0))
    rng = np.random.default_rng(0)
    xs = [(rng.random((1, 25, 64)) < 0.2).astype(np.uint8) for _ in range(batches)]
    return graph, xs


def in_process(kind: str, graph, xs) -> float:
    """Seconds per batch with the runtime called directly (the baseline)."""
    from fabric.kinds import make_runtime

    rt = make_runtime(kind)
    rt.load(rt.compile(graph))
    rt.run(xs[0])
    t0 = time.perf_counter()
    for x in xs:
        rt.run(x)
    return (time.perf_counter() - t0) / len(xs)


def on_cluster(address: str, kind: str, graph, xs) -> dict[str, float]:
    """Placement time, seconds per batch through DevicePool (scheduler) and through direct actor calls."""
    import ray

    from actors.cluster.pool import DevicePool
    from fabric.connect import connect

    connect(address)
    try:
        t0 = time.perf_counter()
        pool = DevicePool(kind, size=1)
        node = pool.health()[0]["node_id"]
        placement = time.perf_counter() - t0
        prog = pool.compile(graph)
        pool.run(prog, xs[:5])
        t0 = time.perf_counter()
        pool.run(prog, xs)
        pooled = (time.perf_counter() - t0) / len(xs)
        ref = ray.put(prog)
        a = pool.actors[0]
        t0 = time.perf_counter()
        for x in xs:  # one call at a time, no scheduler ticket: Ray's round trip alone
            ray.get(a.execute.remote(ref, prog.digest, x))
        direct = (time.perf_counter() - t0) / len(xs)
        head = {n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"]}
        return {"placement_s": placement, "pooled_s": pooled, "direct_s": direct, "on_head": node in head}
    finally:
        ray.shutdown()


def scheduler_grant_rate(tenants: int, tickets: int = 2000, boards: int = 4) -> float:
    """Grants per second of the scheduler core (plain Python) with ``tenants`` tenants queued."""
    from actors.cluster.scheduling import BoardScheduler

    s = BoardScheduler()
    s.register("loihi", [f"loihi/{i}" for i in range(boards)])
    for i in range(tickets):
        s.request("loihi", f"t{i % tenants}")
    t0 = time.perf_counter()
    held = [t for t, _ in s.dispatch()]
    done = len(held)
    while held:
        s.release(held.pop(0), 0.001)
        for t, _ in s.dispatch():
            held.append(t)
            done += 1
    return done / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=200, help="batches per measurement (1 sample each)")
    ap.add_argument("--kind", default="loihi", help="device kind to measure (emulated)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    graph, xs = _workload(args.batches)
    base = in_process(args.kind, graph, xs)
    out: dict[str, object] = {"kind": args.kind, "batches": args.batches, "in_process_s": base,
                              "cores": os.cpu_count(), "load_avg_1m": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        one = LoopbackCluster({args.kind: 1}, Path(tmp))  # 1 node: the board is on the driver's node
        try:
            out["head_start_s"] = one.head_start_s
            out["head_rss_mb"] = _rss_mb(one.head.pid)
            out["one_node"] = on_cluster(one.address, args.kind, graph, xs)
        finally:
            one.stop()
    with tempfile.TemporaryDirectory() as tmp:
        two = LoopbackCluster({}, Path(tmp))  # 2+ nodes: the board is on a worker node
        try:
            w1, out["add_node_1_s"] = two.add_worker({args.kind: 1}, "w1")
            out["worker_rss_mb"] = _rss_mb(w1.pid)
            out["two_nodes"] = on_cluster(two.address, args.kind, graph, xs)
            _, out["add_node_2_s"] = two.add_worker({"akida": 1}, "w2")
        finally:
            two.stop()
    out["grants_per_s"] = {n: scheduler_grant_rate(n) for n in (1, 10, 100)}

    o1, o2 = out["one_node"], out["two_nodes"]
    print(f"cluster scaling, kind {args.kind}, {args.batches} single-sample batches, 64-64-10 LIF T=25, "
          f"{out['cores']} cores, load avg {out['load_avg_1m']:.1f} (figures are measured wall time)")
    print(f"  in-process runtime.run         {base * 1e3:8.3f} ms/batch   (baseline = 1.00)")
    for label, o in (("1 node (board on head)", o1), ("2 nodes (board on worker)", o2)):
        print(f"  {label:<26}     pool {o['pooled_s'] * 1e3:8.3f} ms/batch  x{o['pooled_s'] / base:6.2f}   "
              f"direct actor {o['direct_s'] * 1e3:8.3f} ms  x{o['direct_s'] / base:6.2f}   "
              f"placement {o['placement_s']:.2f} s (on head: {o['on_head']})")
    print(f"  remote/local board per-batch ratio (pool)      {o2['pooled_s'] / o1['pooled_s']:.2f}")
    print(f"  scheduler cost: pool/direct per batch           1 node {o1['pooled_s'] / o1['direct_s']:.2f}, "
          f"2 nodes {o2['pooled_s'] / o2['direct_s']:.2f}")
    print(f"  head start {out['head_start_s']:.1f} s; add node: first {out['add_node_1_s']:.1f} s, "
          f"second {out['add_node_2_s']:.1f} s")
    print(f"  memory (RSS of the node's process session): head {out['head_rss_mb']:.0f} MB, "
          f"worker {out['worker_rss_mb']:.0f} MB")
    g = out["grants_per_s"]
    print("  scheduler core grants/s: " + ", ".join(f"{n} tenants {v:,.0f}" for n, v in g.items())
          + f"  (100 vs 1 tenant: x{g[100] / g[1]:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
