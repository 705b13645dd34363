"""A board killed again and again while two callers share it: no batch is lost and nobody waits forever.

Regression test for a CI hang: a board actor killed just after a call returned never sent its
fire-and-forget ticket release, so the scheduler held the only fpga board for a caller that already had
its result, and every later fpga batch on the cluster waited (83 minutes, until CI's limit). Kills past
``max_restarts`` also leave no actor behind; a waiting pool must re-create it.
"""

from __future__ import annotations

import time

import numpy as np
import ray

from actors.cluster.pool import scheduler
from tests.integration.conftest import wait_for

KILLS = 20  # > max_restarts (3): the board actor is also re-created, not only restarted


@ray.remote(num_cpus=0, max_concurrency=2)
class Caller:
    """Runs fpga batches in a loop through its own DevicePool until told to stop."""

    def __init__(self) -> None:
        self.rounds, self.errors, self.stop = 0, [], False

    def loop(self) -> int:
        from actors.cluster.pool import DevicePool
        from fabric.model.snn import LifMLP, export_nir

        pool = DevicePool("fpga", call_timeout_s=10)
        prog = pool.compile(export_nir(LifMLP(8, [8], 3, 0.9, 1.0)))
        rng = np.random.default_rng(0)
        while not self.stop:
            try:
                batches = [rng.integers(0, 2, (2, 10, 8)).astype(np.uint8) for _ in range(int(rng.integers(1, 5)))]
                out = pool.run(prog, batches)
                assert len(out) == len(batches) and all(o.predictions.shape == (2,) for o in out)
                # many tiny calls (like a latency probe): the window where a kill lands between a
                # call's return and the board's release is hit often
                singles = pool.run(prog, [rng.integers(0, 2, (1, 10, 8)).astype(np.uint8) for _ in range(10)])
                assert len(singles) == 10
                self.rounds += 1
            except Exception as exc:  # recorded: the test asserts there were none
                self.errors.append(f"{type(exc).__name__}: {exc}")
        return self.rounds

    def progress(self) -> tuple[int, list[str]]:
        return self.rounds, list(self.errors)

    def finish(self) -> None:
        self.stop = True


def test_repeatedly_killed_board_never_strands_its_callers(ray_session):
    callers = [Caller.remote() for _ in range(2)]
    loops = [c.loop.remote() for c in callers]
    wait_for(lambda: all(r > 0 for r, _ in ray.get([c.progress.remote() for c in callers])), 120, "callers to start")
    rng = np.random.default_rng(1)
    for _ in range(KILLS):
        time.sleep(float(rng.uniform(0.5, 2.0)))
        try:
            ray.kill(ray.get_actor("fpga/0", namespace="fabric"), no_restart=False)
        except ValueError:  # restarts spent and not re-created yet: a waiting pool re-creates it
            pass
    after_kills = [r for r, _ in ray.get([c.progress.remote() for c in callers])]
    # every caller keeps getting the board after the last kill: nothing holds it, nothing stays drained
    wait_for(lambda: all(r >= a + 3 for (r, _), a in zip(ray.get([c.progress.remote() for c in callers]), after_kills,
                                                           strict=True)),
             120, "both callers to finish 3 more rounds after the kills")
    for c in callers:
        c.finish.remote()
    rounds = ray.get(loops, timeout=120)
    errors = [e for _, errs in ray.get([c.progress.remote() for c in callers]) for e in errs]
    assert not errors, errors[:5]
    assert min(rounds) >= 3
    st = ray.get(scheduler().status.remote())
    assert not st["boards"]["fpga/0"]["busy"] or st["boards"]["fpga/0"]["holder"]["held_s"] < 30
    for c in callers:
        ray.kill(c)
    # leave later tests a fresh board with its restarts available, created by this driver
    ray.kill(ray.get_actor("fpga/0", namespace="fabric"), no_restart=True)
    wait_for(lambda: _gone("fpga/0"), 30, "the old fpga/0 to be gone")
    from actors.cluster.pool import DevicePool

    assert DevicePool("fpga").health()[0]["ok"]


def _gone(name: str) -> bool:
    try:
        ray.get_actor(name, namespace="fabric")
        return False
    except ValueError:
        return True
