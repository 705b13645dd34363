"""Board leases in the scheduler's plain-Python core (no Ray): a lease holder's batches skip the
scheduler, yet fairness, quotas, draining and dead callers work as for single-batch tickets."""

from __future__ import annotations

import types

import numpy as np
import pytest

from actors.cluster.scheduling import (
    LEASE_IDLE_S,
    LEASE_MAX_S,
    BoardScheduler,
    LeaseRevoked,
    Quota,
    QuotaExceeded,
)


def _sched(boards: int = 1) -> BoardScheduler:
    s = BoardScheduler()
    s.register("loihi", [f"loihi/{i}" for i in range(boards)])
    return s


def _lease(s: BoardScheduler, tenant: str, owner: str = "") -> int:
    t = s.request("loihi", tenant, owner=owner, lease=True)
    assert (t, "loihi/0") in s.dispatch()
    return t


def test_a_lease_holds_its_board_and_each_batch_is_accounted_without_freeing_it():
    s = _sched(1)
    t = _lease(s, "a")
    assert s.lease_ok(t) == "loihi/0" and s.in_flight["a"] == 1
    for _ in range(3):
        s.account(t, 0.01)
    st = s.status()
    assert st["boards"]["loihi/0"]["busy"] and st["boards"]["loihi/0"]["holder"]["lease"]
    assert st["tenants"]["a"]["calls"] == 3 and st["tenants"]["a"]["busy_s"] == pytest.approx(0.03)
    assert s.recall() == []  # nobody waits, not idle, not old: the lease stays
    s.end_lease(t)
    st = s.status()
    assert not st["boards"]["loihi/0"]["busy"] and st["tenants"]["a"]["calls"] == 3  # nothing added at the end
    assert s.in_flight["a"] == 0 and s.lease_ok(t) is None
    s.account(t, 5.0)  # a late accounting for an ended lease is ignored
    assert s.status()["tenants"]["a"]["busy_s"] == pytest.approx(0.03)


def test_a_waiting_tenant_recalls_the_lease_and_gets_the_board_next():
    s = _sched(1)
    held = _lease(s, "noisy")
    quiet = s.request("loihi", "quiet")
    assert s.dispatch() == []  # the board is still leased until the board acknowledges the recall
    assert s.recall() == [(held, "loihi/0")]
    assert s.lease_ok(held) is None  # the board refuses the holder's next batch from now on
    assert s.recall() == []  # reported once
    again = s.request("loihi", "noisy", lease=True)  # the recalled holder queues for a new lease
    s.end_lease(held)  # the board acknowledged: free
    assert s.dispatch() == [(quiet, "loihi/0")]  # round robin: the waiting tenant first
    s.release(quiet, 0.01)
    assert s.dispatch() == [(again, "loihi/0")]
    assert [g[2] for g in s.grants("loihi")] == ["noisy", "quiet", "noisy"]


def test_a_waiter_held_back_by_its_own_concurrency_cap_does_not_recall_other_leases():
    s = _sched(2)
    s.set_quota("capped", Quota(max_concurrent=1))
    c = s.request("loihi", "capped")
    assert s.dispatch() == [(c, "loihi/0")]
    lz = s.request("loihi", "other", lease=True)
    assert s.dispatch() == [(lz, "loihi/1")]
    s.request("loihi", "capped")  # at its cap: it could not take loihi/1 anyway
    assert s.recall() == []
    s.set_quota("capped", Quota(max_concurrent=2))  # one board more allowed: now its waiter recalls the lease
    assert s.recall() == [(lz, "loihi/1")]


def test_spent_device_time_recalls_the_lease_and_refuses_a_new_one():
    s = _sched(1)
    s.set_quota("b", Quota(device_seconds=0.05))
    t = _lease(s, "b")
    s.account(t, 0.04)
    assert s.recall() == []  # 0.04 of 0.05 s: still within the budget
    s.account(t, 0.02)  # one batch over the budget
    assert s.recall() == [(t, "loihi/0")]
    s.end_lease(t)
    with pytest.raises(QuotaExceeded, match=r"tenant 'b' used 0.060s of its 0.05s device-time quota"):
        s.request("loihi", "b", lease=True)


def test_idle_and_old_leases_are_recalled_at_their_limits():
    s = _sched(1)
    t = _lease(s, "a")
    granted = s.tickets[t].granted_at
    assert s.recall(now=granted + LEASE_IDLE_S - 0.01) == []
    assert s.recall(now=granted + LEASE_IDLE_S + 0.01) == [(t, "loihi/0")]
    s.end_lease(t)
    t2 = _lease(s, "a")
    g2 = s.tickets[t2].granted_at
    for dt in (1.0, 2.0, 3.0, 4.0, LEASE_MAX_S - 0.01):  # kept busy: never idle, but bounded in age
        s.tickets[t2].last_used = g2 + dt
        assert s.recall(now=g2 + dt) == []
    s.tickets[t2].last_used = g2 + LEASE_MAX_S
    assert s.recall(now=g2 + LEASE_MAX_S + 0.01) == [(t2, "loihi/0")]


def test_a_board_fault_drains_the_board_and_ends_the_lease():
    s = _sched(2)
    t = s.request("loihi", "a", lease=True)
    assert s.dispatch() == [(t, "loihi/0")]
    s.account(t, 0.01, ok=False, reason="simulated fault 'dead'")
    st = s.status()["boards"]["loihi/0"]
    assert st["drained"] and st["drain_reason"] == "unhealthy: simulated fault 'dead'" and not st["busy"]
    assert st["failures"] == 1 and s.lease_ok(t) is None and s.in_flight["a"] == 0
    again = s.request("loihi", "a", lease=True)
    assert s.dispatch() == [(again, "loihi/1")]  # the drained board gets no lease


def test_an_operator_drain_recalls_the_lease_on_that_board():
    s = _sched(1)
    t = _lease(s, "a")
    s.drain("loihi/0", "maintenance")
    assert s.recall() == [(t, "loihi/0")]


def test_a_dead_lease_holder_is_forgotten_and_its_board_freed():
    s = _sched(1)
    t = _lease(s, "a", owner="driver-9")
    s.claim(t)
    assert s.held_owners(0.0, now=s.tickets[t].granted_at + 1.0) == {"driver-9"}
    assert s.forget_owner("driver-9") == [t]
    assert not s.status()["boards"]["loihi/0"]["busy"] and s.lease_ok(t) is None


class _FakeSched:
    """Stands in for the scheduler actor: ``x.remote(...)`` calls the core at once."""

    def __init__(self, core: BoardScheduler) -> None:
        self.core, self.calls = core, []
        for name in ("lease_ok", "account", "release"):
            setattr(self, name, types.SimpleNamespace(remote=self._call(name)))

    def _call(self, name):
        def f(*a):
            self.calls.append(name)
            return getattr(self.core, name)(*a)
        return f


def test_board_checks_a_lease_once_accounts_each_batch_and_refuses_after_a_recall(monkeypatch):
    import actors.cluster.pool as pool_mod
    from actors.cluster.pool import DeviceActor
    from fabric.model.snn import LifMLP, export_nir

    monkeypatch.setattr(pool_mod.ray, "get", lambda v, **kw: v)  # the fake's calls return values, not refs
    core = _sched(1)
    board = DeviceActor("loihi", "loihi-test-0")
    board._sched = fake = _FakeSched(core)
    prog = board.compile(export_nir(LifMLP(8, [4], 3, 0.9, 1.0)).to_dict())
    x = np.random.default_rng(0).integers(0, 2, (2, 5, 8)).astype(np.uint8)
    with pytest.raises(LeaseRevoked, match="lease 99 was recalled"):  # a ticket the scheduler never leased
        board.execute(prog, prog.digest, x, ticket=99, lease=True)
    t = _lease(core, "a")
    for _ in range(3):
        assert board.execute(prog, prog.digest, x, ticket=t, lease=True).counts.shape == (2, 3)
    assert fake.calls == ["lease_ok", "lease_ok", "account", "account", "account"]  # checked once, then straight
    assert core.status()["tenants"]["a"]["calls"] == 3 and core.status()["boards"]["loihi/0"]["busy"]
    core.request("loihi", "b")
    assert core.recall() == [(t, "loihi/0")]
    board.revoke(t)  # acknowledged: no batch of the lease runs after this returns
    with pytest.raises(LeaseRevoked):
        board.execute(prog, prog.digest, x, ticket=t, lease=True)
    assert core.status()["tenants"]["a"]["calls"] == 3
