"""Throughput of inference through a device actor vs the same runtime called in-process.

Prints samples/s for batch 1, 64 and 256 and the ratio actor/in-process (1.0 = no overhead). Both
paths run the same compiled program on the same spikes in the same process run, with the same
thread count: Ray starts a board actor with ``OMP_NUM_THREADS=1`` (it asks for no CPU), so the
in-process baseline runs single-threaded too. A multi-threaded BLAS/torch in the driver of a loaded
2-core machine ran 10x slower than one thread (the 13x "overhead" of issue #17 was that).

    .venv/bin/python bench/actor_overhead.py [--kind cpu] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/torch load: the actor's setting (see above)

import numpy as np  # noqa: E402


def _rates(fns: list, batch: int, seconds: float, rounds: int = 6) -> list[float]:
    """Samples/s of each of ``fns``, measured in alternating slices of ``seconds / rounds`` so that a
    load spike from other processes on a shared machine hits every path alike."""
    for fn in fns:
        fn()  # warm-up (program load, JIT, caches)
    n, busy = [0] * len(fns), [0.0] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds / rounds:
                fn()
                n[i] += batch
            busy[i] += time.perf_counter() - t0
    return [k / b for k, b in zip(n, busy, strict=True)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="cpu")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--timesteps", type=int, default=25)
    a = ap.parse_args()

    import ray
    import torch

    from actors.cluster.pool import DevicePool
    from fabric.connect import connect
    from fabric.kinds import make_runtime
    from fabric.model.snn import LifMLP, export_nir

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    graph = export_nir(LifMLP(64, [64], 10, 0.9, 1.0))
    local = make_runtime(a.kind)
    program = local.compile(graph)
    local.load(program)
    connect(num_cpus=2)
    pool = DevicePool(a.kind, size=1)
    rng = np.random.default_rng(0)
    print(f"kind={a.kind} model=64-64-10 LIF, T={a.timesteps}, {a.seconds:g}s per point, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} in both")
    print(f"{'batch':>6}{'in-process samples/s':>22}{'actor samples/s':>18}{'actor/in-process':>18}")
    for batch in (1, 64, 256):
        x = (rng.random((batch, a.timesteps, 64)) < 0.2).astype(np.uint8)
        r_local, r_actor = _rates([lambda x=x: local.run(x), lambda x=x: pool.run(program, [x])], batch, a.seconds)
        print(f"{batch:>6}{r_local:>22.0f}{r_actor:>18.0f}{r_actor / r_local:>18.3f}")
    print(f"board leases granted: {pool.lease_grants} (a single-batch run goes straight to the leased board)")
    ray.shutdown()


if __name__ == "__main__":
    main()
