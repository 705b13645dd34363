"""No silent paths: what used to be swallowed is logged and reported. The scheduler's reaper (failed
rounds, state-API errors read as unknown, not as "alive"), the dashboard's refused rows, the ingress's
refused versions and ``fabric registry verify-all``. No Ray."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

import actors.cluster.pool as pool
from actors.cluster import SchedulerActor, classify_owners
from apps._dashboard import list_runs, refused_rows
from fabric.cli.main import main
from fabric.store.registry import Registry
from serve._private.ingress import Ingress
from serve._private.traffic import VersionState


def _file(store_dir: str, aid: str, record: bool) -> Path:
    [p] = [p for p in Path(store_dir).rglob(f"{aid}.json" if record else aid) if p.is_file()]
    return p


def _tamper_record(store_dir: str, aid: str) -> None:
    p = _file(store_dir, aid, record=True)
    d = json.loads(p.read_text())
    d["name"] = d["name"] + "-forged"
    p.write_text(json.dumps(d))


# -- scheduler reaper ------------------------------------------------------------------------------
def test_classify_owners_reads_a_state_api_error_as_unknown_not_alive():
    def lookup(owner: str):
        if owner == "flaky":
            raise TimeoutError("state API timed out\nafter 10s")
        return {"dead": [SimpleNamespace(is_alive=False)], "live": [SimpleNamespace(is_alive=True)]}.get(owner, [])

    dead, unknown = classify_owners({"dead", "live", "flaky", "ghost"}, lookup)
    assert dead == {"dead"}
    assert unknown == {"flaky": "state API error: TimeoutError: after 10s", "ghost": "not listed by the state API"}


def _actor_with_a_held_board(owner: str) -> SchedulerActor:
    actor = SchedulerActor()
    actor._reaper = object()  # no background loop: rounds are run by hand
    actor.core.register("fpga", ["fpga/0"])
    t = actor.core.request("fpga", "ghost", owner=owner)
    assert actor.core.dispatch() == [(t, "fpga/0")]
    actor.core.claim(t)
    actor.core.tickets[t].granted_at -= 60  # old enough for the reaper to ask about
    return actor


def test_reaper_does_not_free_a_board_on_a_state_api_error_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(pool, "_dead_workers", lambda owners: (set(), {o: "state API error: ConnectionError: down"
                                                                       for o in owners}))
    actor = _actor_with_a_held_board("worker-1")
    with caplog.at_level("WARNING", logger="actors.cluster.pool"):
        asyncio.run(actor._reap_once())
    st = asyncio.run(actor.status())
    assert st["boards"]["fpga/0"]["busy"] and st["reaped_owners"] == []  # doubt never frees a board
    assert st["reaper"]["state_api_errors"] == 1
    assert st["reaper"]["unknown_owners"] == {"worker-1": "state API error: ConnectionError: down"}
    assert any("cannot tell whether 1 board holder(s) live" in r.getMessage() for r in caplog.records)

    monkeypatch.setattr(pool, "_dead_workers", lambda owners: (set(owners), {}))  # the API answers: dead
    asyncio.run(actor._reap_once())
    st = asyncio.run(actor.status())
    assert not st["boards"]["fpga/0"]["busy"] and st["reaped_owners"] == ["worker-1"]
    assert st["reaper"]["unknown_owners"] == {} and st["reaper"]["rounds"] == 2


def test_a_failing_reaper_round_is_logged_counted_and_the_loop_goes_on(monkeypatch, caplog):
    monkeypatch.setattr(pool, "REAP_PERIOD_S", 0.001)
    actor = SchedulerActor()
    calls = []

    def boom(older_than_s: float, now: float | None = None) -> set[str]:
        calls.append(1)
        raise RuntimeError("scheduler state is odd")

    actor.core.held_owners = boom  # type: ignore[method-assign]

    async def go() -> dict:
        task = asyncio.ensure_future(actor._reap_forever())
        while len(calls) < 3:
            await asyncio.sleep(0.005)
        task.cancel()
        return await actor.status()

    with caplog.at_level("WARNING", logger="actors.cluster.pool"):
        st = asyncio.run(go())
    assert st["reaper"]["errors"] >= 3 and st["reaper"]["last_error"] == "RuntimeError: scheduler state is odd"
    msgs = [r for r in caplog.records if "reaper: round failed" in r.getMessage()]
    assert len(msgs) >= 3 and msgs[0].exc_info and not msgs[-1].exc_info  # one traceback, then one line each


# -- dashboard ---------------------------------------------------------------------------------------
def test_dashboard_shows_tampered_records_as_refused_rows(store_dir):
    reg = Registry(store_dir)
    good = reg.put_json({"kpis": [], "spec": {"name": "ok"}}, kind="report", name="ok/kpi-report")
    forged = reg.put_json({"kpis": [], "spec": {"name": "forged"}}, kind="report", name="forged/kpi-report")
    corrupt = reg.put_json({"experiment": "e", "trials": []}, kind="pareto", name="e")
    assert refused_rows(reg).empty
    _tamper_record(store_dir, forged.id)
    _file(store_dir, corrupt.id, record=False).write_bytes(b'{"experiment": "x", "trials": []}')
    rows = refused_rows(reg)
    assert list(rows.columns) == ["id", "kind", "name", "reason"]
    by_id = {r.id: r for r in rows.itertuples()}
    assert set(by_id) == {forged.id, corrupt.id}
    assert by_id[forged.id].kind == "?" and "refused" in by_id[forged.id].reason  # its fields are untrusted
    assert by_id[corrupt.id].kind == "pareto" and by_id[corrupt.id].name == "e" and "corrupt" in by_id[corrupt.id].reason
    assert list(list_runs(reg)["report"]) == [good.id]  # the listing still uses only what verified


# -- serve ingress -----------------------------------------------------------------------------------
def test_ingress_restore_logs_and_reports_a_version_that_fails_verification(store_dir, caplog):
    reg = Registry(store_dir)
    prog = reg.put(b"program-bytes", kind="program", name="loihi-program", device_id="loihi", extra={"kind": "loihi"})
    v = VersionState(name="v1", model_id=prog.id, kind="loihi", app_name="app-v1", role="primary", weight=1.0)
    reg.put_json({"action": "deploy", "app": "app", "step": 1, "versions": {"v1": v.to_dict()}}, kind="rollout",
                 name="app/step-1", extra={"app": "app", "action": "deploy", "step": 1, "session": "s1"})
    _tamper_record(store_dir, prog.id)
    ing = Ingress(app="app", store=store_dir, tenant=None, token="t")
    with caplog.at_level("WARNING", logger="serve._private.ingress"), \
            pytest.warns(UserWarning, match="left out of listing"):  # the registry's own listing warning
        assert ing.restore(lambda app: object()) == 0
    [r] = ing.status_body()["refused"]
    assert r["version"] == "v1" and r["model_id"] == prog.id and "refused" in r["reason"]
    assert any("not restoring version v1" in m.getMessage() for m in caplog.records)


# -- fabric registry verify-all ---------------------------------------------------------------------
def test_verify_all_prints_every_status_and_lists_the_refused(store_dir, capsys):
    reg = Registry(store_dir)
    ok = reg.put(b"weights", kind="model", name="m")
    bad = reg.put(b"data", kind="dataset", name="d")
    assert main(["registry", "verify-all", "--store", store_dir]) == 0
    capsys.readouterr()
    _file(store_dir, bad.id, record=False).write_bytes(b"Data")
    assert main(["registry", "verify-all", "--store", store_dir]) == 4  # 4: a failing artifact (fabric's exit codes)
    out, err = capsys.readouterr()
    assert f"{ok.id[:12]} model" in out and "OK" in out and f"{bad.id[:12]} dataset" in out and "FAILED" in out
    assert "1 REFUSED" in out
    assert f"fabric: refused {bad.id}: " in err and "corrupt" in err
    assert main(["registry", "verify-all", "--store", store_dir, "--json"]) == 4
    out, err = capsys.readouterr()
    assert {r["id"]: r["ok"] for r in json.loads(out)}[bad.id] is False and bad.id in err


def test_verify_all_on_an_empty_store_is_clean(store_dir, capsys):
    Registry(store_dir)
    assert main(["registry", "verify-all", "--store", store_dir]) == 0
    out, err = capsys.readouterr()
    assert "0/0 artifacts verified" in out and "REFUSED" not in out and err == ""
