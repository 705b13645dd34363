"""Quotas and weights come from the admin's policy file (FABRIC_QUOTA_POLICY), not from the caller:
a caller can lower its own limits, never raise them; a bad policy file is a one-line error naming the
field, and the scheduler then grants nothing (fail closed). No Ray."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from actors.cluster import (
    POLICY_ENV,
    BoardScheduler,
    PolicyError,
    PolicyFile,
    Quota,
    QuotaExceeded,
    QuotaRefused,
    SchedulerActor,
    load_policy,
    parse_policy,
)

POLICY = """
default: {max_concurrent: 2, device_seconds: 100}
tenants:
  capped: {max_concurrent: 1}
  budget: {device_seconds: 0.5}
  heavy: {weight: 2}
"""


@pytest.fixture
def policy_path(tmp_path):
    p = tmp_path / "quota-policy.yaml"
    p.write_text(POLICY)
    return p


def _sched(policy_path, boards: int = 2) -> BoardScheduler:
    s = BoardScheduler(policy=load_policy(policy_path))
    s.register("loihi", [f"loihi/{i}" for i in range(boards)])
    return s


def test_the_policy_values_apply_without_any_caller_quota(policy_path):
    s = _sched(policy_path)
    for _ in range(4):
        s.request("loihi", "capped")
    assert len(s.dispatch()) == 1  # two free boards, the policy allows "capped" one at a time
    t = s.request("loihi", "budget")
    [(g, _)] = s.dispatch()
    assert g == t
    s.release(g, busy_s=0.6)
    with pytest.raises(QuotaExceeded, match=r"tenant 'budget' used 0.600s of its 0.5s device-time quota"):
        s.request("loihi", "budget")
    st = s.status()["tenants"]
    assert st["capped"]["quota"] == {"max_concurrent": 1, "device_seconds": None}
    assert st["budget"]["quota"] == {"max_concurrent": None, "device_seconds": 0.5}
    assert s.quota("someone-else") == Quota(max_concurrent=2, device_seconds=100.0)  # the default
    assert s.status()["policy"]["source"] == str(policy_path) and s.status()["policy"]["error"] is None


def test_a_caller_cannot_raise_its_own_quota_but_can_lower_it(policy_path):
    s = _sched(policy_path)
    with pytest.raises(QuotaRefused, match=r"tenant 'capped': quota.max_concurrent=4 is above the admin policy "
                                           r".*'s 1; a caller can only lower its own quota") as e:
        s.set_quota("capped", Quota(max_concurrent=4))
    assert "\n" not in str(e.value) and str(policy_path) in str(e.value)
    with pytest.raises(QuotaRefused, match=r"tenant 'anyone': quota.device_seconds=1000.0 is above .*'s 100.0"):
        s.set_quota("anyone", Quota(device_seconds=1000.0))  # the default's limit holds for unlisted tenants
    assert s.quota("capped").max_concurrent == 1 and "anyone" not in s.quotas  # nothing was taken
    s.set_quota("budget", Quota(device_seconds=0.2, max_concurrent=5))  # lower, and a limit the policy leaves open
    assert s.quota("budget") == Quota(max_concurrent=5, device_seconds=0.2)
    s.set_quota("capped", Quota(device_seconds=3.0))  # a field left None keeps the policy's value
    assert s.quota("capped") == Quota(max_concurrent=1, device_seconds=3.0)
    s.set_quota("capped", None)  # back to the policy (a listed tenant's entry replaces the default)
    assert s.quota("capped") == Quota(max_concurrent=1, device_seconds=None)


def test_no_policy_leaves_callers_free_to_set_limits_as_before():
    s = BoardScheduler()
    assert s.quota("t") == Quota() and s.weight("t") == 1
    s.set_quota("t", Quota(max_concurrent=7, device_seconds=1e6))
    assert s.quota("t") == Quota(max_concurrent=7, device_seconds=1e6)


def test_a_lower_policy_caps_an_earlier_caller_quota(policy_path, tmp_path):
    s = BoardScheduler()
    s.set_quota("capped", Quota(max_concurrent=3))
    s.set_policy(load_policy(policy_path))  # the admin tightens the policy later
    assert s.quota("capped").max_concurrent == 1


def test_the_scheduler_actor_refuses_a_raise_the_way_a_pool_sees_it(policy_path):
    async def go() -> None:
        actor = SchedulerActor(PolicyFile(policy_path))
        actor._reaper = object()  # no background reaper in a unit test
        await actor.register("loihi", ["loihi/0"])
        with pytest.raises(QuotaRefused, match="tenant 'capped'"):
            await actor.set_quota("capped", {"max_concurrent": 2, "device_seconds": None})
        await actor.set_quota("capped", {"max_concurrent": 1, "device_seconds": 5.0})
        st = await actor.status()
        assert st["tenants"]["capped"]["quota"] == {"max_concurrent": 1, "device_seconds": 5.0}
        assert st["tenants"]["capped"]["caller_quota"] == {"max_concurrent": 1, "device_seconds": 5.0}

    asyncio.run(go())


def test_weights_give_a_tenant_that_many_grants_per_round(policy_path):
    s = _sched(policy_path, boards=1)
    for _ in range(6):
        s.request("loihi", "heavy")
        s.request("loihi", "light")
    order = []
    while True:
        got = s.dispatch()
        if not got:
            break
        [(tid, _)] = got
        order.append(s.tickets[tid].tenant)
        s.release(tid)
    assert order[:9] == ["heavy", "heavy", "light"] * 3
    assert s.status()["tenants"]["heavy"]["weight"] == 2


@pytest.mark.parametrize("text, field", [
    ("tenants: {a: {max_concurrent: 0}}", "tenants.a.max_concurrent must be an integer >= 1"),
    ("tenants: {a: {max_concurrent: 1.5}}", "tenants.a.max_concurrent must be an integer >= 1"),
    ("tenants: {a: {max_concurrent: true}}", "tenants.a.max_concurrent must be an integer >= 1"),
    ("tenants: {a: {device_seconds: .inf}}", "tenants.a.device_seconds must be a finite number > 0"),
    ("tenants: {a: {device_seconds: -3}}", "tenants.a.device_seconds must be a finite number > 0"),
    ("tenants: {a: {device_seconds: lots}}", "tenants.a.device_seconds must be a finite number > 0"),
    ("tenants: {a: {weight: 0}}", "tenants.a.weight must be an integer >= 1"),
    ("tenants: {a: {max_concurent: 2}}", "tenants.a.max_concurent is not a policy field"),
    ("default: {weight: 2.5}", "default.weight must be an integer >= 1"),
    ("default: 3", "default must be a mapping"),
    ("tenant: {a: {}}", "tenant is not a policy key"),
    ("tenants: [a, b]", "tenants must be a mapping"),
    ("[1, 2]", "the document must be a mapping"),
    ("tenants: {a: {max_concurrent: [}", "not valid YAML/JSON at line 1"),
])
def test_a_bad_policy_file_is_a_one_line_error_naming_the_field(tmp_path, text, field):
    p = tmp_path / "policy.yaml"
    p.write_text(text)
    with pytest.raises(PolicyError) as e:
        load_policy(p)
    msg = str(e.value)
    assert msg.startswith(f"quota policy {p}: ") and field in msg and "\n" not in msg, msg


def test_json_policies_and_a_missing_file(tmp_path):
    p = tmp_path / "policy.json"
    p.write_text(json.dumps({"tenants": {"a": {"max_concurrent": 3, "weight": 2}}, "default": None}))
    pol = load_policy(p)
    assert pol.limits("a").max_concurrent == 3 and pol.limits("a").weight == 2 and pol.limits("b").max_concurrent is None
    with pytest.raises(PolicyError, match=r"quota policy .*nope.yaml: cannot read it \(FileNotFoundError"):
        load_policy(tmp_path / "nope.yaml")
    assert parse_policy(None).tenants == {}  # an empty file limits nobody


def test_policy_file_from_the_environment_is_reread_and_a_bad_one_fails_closed(policy_path, monkeypatch, caplog):
    monkeypatch.setenv(POLICY_ENV, str(policy_path))

    async def go() -> None:
        actor = SchedulerActor()  # reads FABRIC_QUOTA_POLICY like the head node's scheduler does
        actor._reaper = object()
        await actor.register("loihi", ["loihi/0", "loihi/1"])
        assert actor.core.quota("capped").max_concurrent == 1
        policy_path.write_text("tenants: {capped: {max_concurrent: 0}}")
        os.utime(policy_path, ns=(1, 1))  # a new stamp even within the file system's time resolution
        with pytest.raises(PolicyError, match="tenants.capped.max_concurrent must be an integer >= 1"):
            await actor.request_many("loihi", "capped", ["loihi/0"], 1)
        st = await actor.status()
        assert "tenants.capped.max_concurrent" in st["policy"]["error"]
        policy_path.write_text("tenants: {capped: {max_concurrent: 2}}")
        os.utime(policy_path, ns=(2, 2))
        [t] = await actor.request_many("loihi", "capped", ["loihi/0"], 1)
        assert actor.core.quota("capped").max_concurrent == 2 and (await actor.status())["policy"]["error"] is None
        await actor.cancel([t])

    with caplog.at_level("WARNING", logger="actors.cluster.pool"):
        asyncio.run(go())
    assert any("no new tickets are granted" in r.getMessage() for r in caplog.records)
    assert any("is valid again" in r.getMessage() for r in caplog.records)


def test_without_the_variable_there_is_no_policy(monkeypatch):
    monkeypatch.delenv(POLICY_ENV, raising=False)
    assert PolicyFile().current().tenants == {} and PolicyFile().path is None
