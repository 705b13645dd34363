"""The board scheduler's plain-Python core (no Ray): fairness, quotas, drain, simulated faults."""

from __future__ import annotations

import threading
import time

import pytest

from actors.cluster.scheduling import (
    BoardScheduler,
    DeviceFault,
    Quota,
    QuotaExceeded,
    SimulatedFault,
)


def _sched(boards: int = 2) -> BoardScheduler:
    s = BoardScheduler()
    s.register("loihi", [f"loihi/{i}" for i in range(boards)])
    return s


def _drain_queue(s: BoardScheduler, granted: list[tuple[int, str]]) -> list[str]:
    """Finish granted tickets one at a time (oldest first) until nothing waits; return tenants in grant order."""
    order = []
    pending = list(granted)
    while pending:
        tid, _ = pending.pop(0)
        s.release(tid, busy_s=0.01)
        for t, d in s.dispatch():
            assert isinstance(d, str)
            pending.append((t, d))
    for _seq, _kind, tenant, _board in s.grants("loihi"):
        order.append(tenant)
    return order


def test_quiet_tenant_is_not_starved_by_a_noisy_one():
    s = _sched(2)
    noisy = [s.request("loihi", "noisy") for _ in range(40)]
    granted = [(t, d) for t, d in s.dispatch()]
    assert [s.tickets[t].tenant for t, _ in granted] == ["noisy", "noisy"]  # both boards busy
    quiet = [s.request("loihi", "quiet") for _ in range(3)]
    order = _drain_queue(s, granted)
    assert len(order) == 43 and order.count("quiet") == 3
    # after the quiet tenant queued (2 grants in), it is served every other grant: its 3 batches are
    # granted within 3 noisy grants, not after the 38 noisy batches queued before them (FIFO would)
    last_quiet = max(i for i, t in enumerate(order) if t == "quiet")
    assert order[2:last_quiet + 1].count("noisy") <= 3
    assert set(noisy) | set(quiet)  # tickets were distinct ids
    assert len(set(noisy) | set(quiet)) == 43


def test_max_concurrent_quota_caps_boards_held_at_once():
    s = _sched(2)
    s.set_quota("a", Quota(max_concurrent=1))
    ids = [s.request("loihi", "a") for _ in range(5)]
    first = s.dispatch()
    assert len(first) == 1  # two boards free, but tenant "a" may hold only one
    s.request("loihi", "b")
    second = s.dispatch()
    assert [s.tickets[t].tenant for t, _ in second] == ["b"]  # the other board goes to "b"
    order = _drain_queue(s, first + second)
    assert order.count("a") == 5 and s.peak_in_flight["a"] == 1
    assert ids


def test_device_seconds_quota_refuses_further_batches_with_one_line_error():
    s = _sched(1)
    s.set_quota("t", Quota(device_seconds=0.5))
    t1 = s.request("loihi", "t")
    t2 = s.request("loihi", "t")
    [(g, board)] = s.dispatch()
    assert g == t1 and board == "loihi/0"
    s.release(t1, busy_s=0.6)
    decisions = dict(s.dispatch())
    assert isinstance(decisions[t2], QuotaExceeded)  # the queued ticket fails instead of running
    with pytest.raises(QuotaExceeded, match=r"tenant 't' used 0.600s of its 0.5s device-time quota") as e:
        s.request("loihi", "t")
    assert "\n" not in str(e.value)
    assert s.status()["tenants"]["t"]["busy_s"] == pytest.approx(0.6)


def test_quota_fields_are_validated():
    with pytest.raises(ValueError, match="quota.max_concurrent"):
        Quota(max_concurrent=0)
    with pytest.raises(ValueError, match="quota.device_seconds"):
        Quota(device_seconds=-1)


def test_failed_board_is_drained_and_gets_no_more_tickets():
    s = _sched(2)
    a, b = s.request("loihi", "x"), s.request("loihi", "x")
    grants = dict(s.dispatch())
    s.release(a, ok=False, reason="simulated fault 'dead'")
    s.release(b)
    bad = grants[a]
    assert s.status()["boards"][bad]["drained"] and "dead" in s.status()["boards"][bad]["drain_reason"]
    for _ in range(4):
        t = s.request("loihi", "x")
        [(tid, board)] = s.dispatch()
        assert tid == t and board != bad
        s.release(t)
    s.report_health(bad, True)  # healthy again after a health drain: back in the pool
    assert not s.status()["boards"][bad]["drained"]


def test_operator_drain_is_not_undone_by_a_healthy_probe():
    s = _sched(1)
    s.drain("loihi/0", "maintenance")
    s.report_health("loihi/0", True)
    assert s.status()["boards"]["loihi/0"]["drained"]
    s.request("loihi", "x")
    assert s.dispatch() == []
    s.undrain("loihi/0")
    assert len(s.dispatch()) == 1


def test_cancel_frees_a_granted_board_and_forgets_a_waiting_ticket():
    s = _sched(1)
    a, b = s.request("loihi", "x"), s.request("loihi", "x")
    assert dict(s.dispatch()) == {a: "loihi/0"}
    s.cancel(b)
    s.cancel(a)
    assert s.dispatch() == [] and not s.status()["boards"]["loihi/0"]["busy"]
    assert s.queued("loihi") == {"loihi": 0}


def test_unknown_board_and_kind_errors_name_them():
    s = _sched(1)
    with pytest.raises(KeyError, match="unknown board 'loihi/9'"):
        s.drain("loihi/9", "x")
    with pytest.raises(KeyError, match="no boards of kind 'akida'"):
        s.request("akida", "x")


def test_simulated_faults():
    f = SimulatedFault()
    f.before_run("b")  # no fault: returns
    assert f.health()["ok"]
    with pytest.raises(ValueError, match="fault mode must be one of"):
        f.inject("melted")
    f.inject("dead")
    with pytest.raises(DeviceFault, match="simulated fault 'dead'"):
        f.before_run("b")
    assert not f.health()["ok"]
    f.inject("slow", delay_s=0.05)
    t0 = time.perf_counter()
    f.before_run("b")
    assert time.perf_counter() - t0 >= 0.05 and f.health() == {"ok": True, "fault": "slow", "simulated_fault": True,
                                                               "degraded": True}
    f.inject("stuck")
    threading.Timer(0.1, f.clear).start()  # an operator clears the fault: the blocked run returns
    f.before_run("b")
    assert f.health()["ok"] and f.mode is None


def test_device_actor_body_honours_injected_faults_without_ray():
    import numpy as np

    from actors.cluster.pool import DeviceActor
    from fabric.model.snn import LifMLP, export_nir

    board = DeviceActor("loihi", "loihi-test-0")
    prog = board.compile(export_nir(LifMLP(8, [4], 3, 0.9, 1.0)).to_dict())
    x = np.random.default_rng(0).integers(0, 2, (2, 5, 8)).astype(np.uint8)
    assert board.execute(prog, prog.digest, x).counts.shape == (2, 3)
    assert board.health()["ok"] and board.health()["calls"] == 1
    assert not board.inject_fault("dead")["ok"]
    with pytest.raises(DeviceFault, match="loihi-test-0: simulated fault 'dead'"):
        board.execute(prog, prog.digest, x)
    assert board.calls == 1  # the failed batch is not counted as done
    assert board.clear_fault()["ok"]
    assert board.execute(prog, prog.digest, x).counts.shape == (2, 3)
    with pytest.raises(ValueError, match="fault mode must be one of"):
        board.inject_fault("on fire")


def test_grants_a_dead_caller_never_claimed_are_reclaimed_with_its_queue():
    s = _sched(1)
    dead = [s.request("loihi", "a", owner="driver-1") for _ in range(3)]
    [(g, _)] = s.dispatch()
    live = s.request("loihi", "b", owner="driver-2")
    assert s.sweep(claim_timeout_s=60.0) == []  # fresh grant: left alone
    s.claim(g)
    assert s.sweep(claim_timeout_s=60.0, now=time.monotonic() + 120) == []  # claimed: a long batch, not a leak
    s.release(g)
    [(g2, _)] = s.dispatch()  # round robin: "b" had not been served, so it goes first
    assert g2 == live
    s.claim(g2)
    s.release(g2)
    [(g3, _)] = s.dispatch()
    assert g3 == dead[1]  # driver-1 got the board again but never claims it: it died
    dropped = s.sweep(claim_timeout_s=60.0, now=time.monotonic() + 61)
    assert set(dropped) == {dead[1], dead[2]}  # the unclaimed grant and the rest of that driver's queue
    assert not s.status()["boards"]["loihi/0"]["busy"] and s.queued("loihi") == {"loihi": 0}
    t = s.request("loihi", "b", owner="driver-2")
    assert s.dispatch() == [(t, "loihi/0")]


def test_a_claimed_grant_of_a_caller_that_died_is_freed_once_ray_reports_it_dead():
    """The caller claimed its board and died before its batch reached it: no board will ever release
    that ticket, and ``sweep`` leaves claimed grants alone, so the reaper frees it by owner."""
    s = _sched(1)
    g = s.request("loihi", "tune", owner="trial-worker")
    queued = s.request("loihi", "tune", owner="trial-worker")
    other = s.request("loihi", "job", owner="driver-2")
    assert s.dispatch() == [(g, "loihi/0")]
    s.claim(g)
    assert s.held_owners(older_than_s=5.0) == set()  # too fresh to ask about
    assert s.held_owners(older_than_s=5.0, now=time.monotonic() + 6) == {"trial-worker"}
    assert s.sweep(claim_timeout_s=60.0, now=time.monotonic() + 600) == []  # claimed: sweep cannot help
    assert sorted(s.forget_owner("trial-worker")) == sorted([g, queued])
    assert s.dispatch() == [(other, "loihi/0")]  # the live caller gets the board
    assert s.forget_owner("nobody") == []


def test_a_board_whose_release_was_lost_is_freed_after_the_caller_got_its_result():
    """The board actor was killed just after its call returned: the caller has the result but the
    board's fire-and-forget release never left the dead process. Without the caller's delivery mark
    the board stays busy forever and every queued batch of that kind waits (seen as a CI hang)."""
    s = _sched(1)
    g = s.request("loihi", "tune", owner="trial")
    nxt = s.request("loihi", "tune", owner="trial")
    assert s.dispatch() == [(g, "loihi/0")]
    s.claim(g)
    now = time.monotonic()
    assert s.sweep(now=now + 3600) == [] and s.status()["boards"]["loihi/0"]["busy"]  # claimed, undelivered: a long call
    holder = s.status()["boards"]["loihi/0"]["holder"]
    assert holder["ticket"] == g and holder["claimed"] and not holder["delivered"] and holder["owner"] == "trial"
    s.delivered(g, now=now)
    s.sweep(now=now + 5.0, release_grace_s=10.0)
    assert s.status()["boards"]["loihi/0"]["busy"]  # within the grace the board's own release may still come
    s.sweep(now=now + 11.0, release_grace_s=10.0)
    st = s.status()
    assert not st["boards"]["loihi/0"]["busy"] and st["lost_releases"] == 1 and st["boards"]["loihi/0"]["holder"] is None
    assert s.dispatch() == [(nxt, "loihi/0")]


def test_a_release_that_arrives_keeps_its_busy_time_and_is_not_counted_lost():
    s = _sched(1)
    g = s.request("loihi", "tune")
    s.dispatch()
    s.claim(g)
    s.delivered(g)
    s.release(g, busy_s=0.25)
    s.delivered(g)  # late or duplicate marks for a returned ticket are ignored
    s.sweep(now=time.monotonic() + 100)
    st = s.status()
    assert st["lost_releases"] == 0 and st["tenants"]["tune"]["busy_s"] == 0.25 and st["boards"]["loihi/0"]["calls"] == 1
