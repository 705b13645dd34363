"""Board leases on a real cluster: single-batch runs (served requests) go straight to a leased board,
and another tenant, quotas and a board fault still take the board back."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import ray

from actors.cluster.pool import DevicePool, Quota, QuotaExceeded, scheduler
from fabric.model.snn import LifMLP, export_nir
from tests.integration.conftest import wait_for


@pytest.fixture(scope="module")
def prog(ray_session):
    return DevicePool("loihi").compile(export_nir(LifMLP(8, [8], 3, 0.9, 1.0)))


def _x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (2, 6, 8)).astype(np.uint8)


def _status() -> dict:
    return ray.get(scheduler().status.remote())


def test_single_batches_share_one_lease_and_every_batch_is_accounted(ray_session, prog):
    pool = DevicePool("loihi", tenant="lease-a")
    out = [pool.run(prog, [_x(i)])[0] for i in range(30)]
    assert all(o.counts.shape == (2, 3) for o in out)
    assert 1 <= pool.lease_grants <= 5  # one scheduler call per lease, not per batch
    wait_for(lambda: _status()["tenants"]["lease-a"]["calls"] == 30, 10, "30 batches accounted", interval=0.05)
    pool.end_lease()
    wait_for(lambda: _status()["tenants"]["lease-a"]["in_flight"] == 0, 10, "lease given back", interval=0.05)


def test_a_waiting_tenant_recalls_a_busy_lease(ray_session, prog):
    holder, other = DevicePool("loihi", tenant="lease-holder"), DevicePool("loihi", tenant="lease-other")
    for i in range(2):
        holder.inject_fault(i, "slow", delay_s=0.05)
    stop, done = threading.Event(), {"n": 0}

    def hold() -> None:
        while not stop.is_set():
            holder.run(prog, [_x()])
            done["n"] += 1

    th = threading.Thread(target=hold, daemon=True)
    th.start()
    try:
        wait_for(lambda: done["n"] >= 3, 30, "holder running")
        res = other.run(prog, [_x(i) for i in range(6)])  # tickets: each one recalls the holder's lease
        assert len(res) == 6
        n_before = done["n"]
        wait_for(lambda: done["n"] > n_before, 30, "holder re-leased after the recall")
    finally:
        stop.set()
        th.join(30)
        for i in range(2):
            holder.clear_fault(i)
    holder.end_lease()
    assert not th.is_alive()
    order = [t for _, _, t, _ in ray.get(scheduler().grants.remote("loihi")) if t in ("lease-holder", "lease-other")]
    assert order.count("lease-other") == 6 and order.count("lease-holder") >= 2  # it had to lease again


def test_device_time_quota_stops_a_leased_tenant(ray_session, prog):
    pool = DevicePool("loihi", tenant="lease-budget", quota=Quota(device_seconds=0.2))
    for i in range(2):
        pool.inject_fault(i, "slow", delay_s=0.05)
    try:
        with pytest.raises(QuotaExceeded, match=r"tenant 'lease-budget' used .* of its 0.2s device-time quota"):
            for i in range(40):  # 0.05 s a batch: refused after a few batches over 0.2 s, long before 40
                pool.run(prog, [_x(i)])
        assert i < 15  # the batch that was refused
    finally:
        for i in range(2):
            pool.clear_fault(i)


def test_a_dead_leased_board_is_drained_and_the_batch_runs_on_the_other(ray_session, prog):
    pool = DevicePool("loihi", tenant="lease-fault")
    pool.run(prog, [_x()])
    leased = pool._lease[1]
    j = pool.names.index(leased)
    pool.inject_fault(j, "dead")
    try:
        out = pool.run(prog, [_x(1)])[0]
        assert out.counts.shape == (2, 3) and pool._lease[1] != leased
        assert _status()["boards"][leased]["drained"]
    finally:
        pool.clear_fault(j)
        pool.end_lease()
        ray.get(scheduler().undrain.remote(leased))
