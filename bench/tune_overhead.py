"""Share of a tune run's wall time not spent training or on devices (issue #7, item 6).

Runs a small ``run_tune`` on a local fabric (temporary store) and prints, from the phases every trial
times itself (union over concurrent trials, so overlapping work is counted once):

* the share of wall time in which some trial was training or measuring on a device (``busy``) and the
  rest (``overhead``: Tune/Ray scheduling, trial start, encoding, fit checks, compile, registry writes);
* per-phase shares, and the ratio wall / ideal, where ideal = (summed train + device seconds) /
  concurrency is the time the same work would take perfectly packed with zero overhead.

    .venv/bin/python bench/tune_overhead.py [--samples 8] [--kinds loihi,fpga] [--spec examples/digits_tune.yaml]
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", default="examples/digits_tune.yaml")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--kinds", default="loihi,fpga")
    ap.add_argument("--concurrent", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    import ray

    from fabric.connect import connect
    from fabric.spec import load_spec
    from fabric.store.registry import Registry
    from tune import run_tune

    spec = load_spec(a.spec)
    connect(num_cpus=max(2, a.concurrent))
    with tempfile.TemporaryDirectory() as d:
        res = run_tune(spec, Registry(os.path.join(d, "store")), kinds=a.kinds.split(","), num_samples=a.samples,
                       seed=a.seed, max_concurrent=a.concurrent, progress=True, log=lambda s: None)
    ray.shutdown()
    wall = res.seconds
    ideal = (res.train_seconds + res.device_seconds) / a.concurrent
    print(f"spec={spec.name} trials={res.trials} kinds={res.kinds} concurrency={a.concurrent} "
          f"front={len(res.front)} wall={wall:.1f}s")
    print(f"{'phase':<28}{'seconds (union)':>16}{'share of wall':>15}")
    for k, v in res.phase_seconds.items():
        print(f"{'in trial: ' + k:<28}{v:>16.1f}{v / wall:>15.3f}")
    print(f"{'outside trial functions':<28}{wall - res.in_trial_seconds:>16.1f}{1 - res.in_trial_seconds / wall:>15.3f}")
    print(f"busy (training or on a device) share: {res.busy_seconds / wall:.3f}")
    print(f"overhead (neither) share:             {res.overhead_share:.3f}")
    print(f"wall / ideal (train+device summed / concurrency = {ideal:.1f}s): {wall / ideal:.2f}x")


if __name__ == "__main__":
    main()
