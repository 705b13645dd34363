"""Throughput of inference through a device actor vs the same runtime called in-process.

Prints samples/s for batch 1, 64 and 256 and the ratio actor/in-process (1.0 = no overhead). Both
paths run the same compiled program on the same spikes in the same process run.

    .venv/bin/python bench/actor_overhead.py [--kind cpu] [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _rate(fn, batch: int, seconds: float) -> float:
    fn()  # warm-up (program load, JIT, caches)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += batch
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="cpu")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--timesteps", type=int, default=25)
    a = ap.parse_args()

    import ray

    from actors.cluster.pool import DevicePool
    from fabric.connect import connect
    from fabric.kinds import make_runtime
    from fabric.model.snn import LifMLP, export_nir

    graph = export_nir(LifMLP(64, [64], 10, 0.9, 1.0))
    local = make_runtime(a.kind)
    program = local.compile(graph)
    local.load(program)
    connect(num_cpus=2)
    pool = DevicePool(a.kind, size=1)
    rng = np.random.default_rng(0)
    print(f"kind={a.kind} model=64-64-10 LIF, T={a.timesteps}, {a.seconds:g}s per point")
    print(f"{'batch':>6}{'in-process samples/s':>22}{'actor samples/s':>18}{'actor/in-process':>18}")
    for batch in (1, 64, 256):
        x = (rng.random((batch, a.timesteps, 64)) < 0.2).astype(np.uint8)
        r_local = _rate(lambda x=x: local.run(x), batch, a.seconds)
        r_actor = _rate(lambda x=x: pool.run(program, [x]), batch, a.seconds)
        print(f"{batch:>6}{r_local:>22.0f}{r_actor:>18.0f}{r_actor / r_local:>18.3f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
