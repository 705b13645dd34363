"""Losing a worker node mid-job: device actors restart on a replacement node with the same resources,
the job finishes, and nothing stored is lost or corrupt (Registry.verify_all)."""

from __future__ import annotations

import threading

import ray

from actors.cluster.pool import DevicePool, scheduler
from fabric.flow.pipeline import run_pipeline
from fabric.spec import parse_spec
from fabric.store.registry import Registry
from tests.integration.conftest import wait_for


def _alive_owner(kind: str) -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get(kind, 0) > 0}


def _loihi_grants() -> int:
    return len(ray.get(scheduler().grants.remote("loihi")))


def test_pipeline_survives_losing_the_loihi_node(ray_cluster, ray_session, tiny_spec_dict, store_dir):
    workers = ray_cluster["workers"]
    [old_node] = _alive_owner("loihi")
    spec = parse_spec(tiny_spec_dict | {"name": "nodekill", "targets": ["loihi"], "eval_batch_size": 16,
                                        "dataset": {"name": "digits", "limit": 300, "test_fraction": 0.25},
                                        "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "device": "cpu"}})
    pool = DevicePool("loihi")
    for i in range(2):  # each batch holds its board 0.5 s, so the evaluation is still running when the node dies
        pool.inject_fault(i, "slow", delay_s=0.5)
    base = _loihi_grants()
    reg = Registry(store_dir)
    out: dict[str, object] = {}

    def job() -> None:
        try:
            out["summary"] = run_pipeline(spec, reg, progress=False, log=lambda s: None)
        except Exception as exc:  # surfaced by the assertion below
            out["summary"] = exc

    th = threading.Thread(target=job)
    th.start()
    # evaluation has started on the loihi boards (5 test batches + 20 latency probes = 25 grants in all)
    wait_for(lambda: "summary" in out or _loihi_grants() >= base + 3, 240, "loihi evaluation to start", interval=0.1)
    assert "summary" not in out, f"the job ended before the node could be killed: {out.get('summary')}"
    workers.kill("node-a")
    workers.start("node-a", wait=False)  # a replacement node advertising the same boards
    wait_for(lambda: (o := _alive_owner("loihi")) and old_node not in o, 240, "the replacement node")
    th.join(300)
    summary = out["summary"]
    assert not isinstance(summary, Exception), f"pipeline failed after the node loss: {summary!r}"
    row = summary.kpis[0]
    assert row.kind == "loihi" and row.status == "ok" and row.accuracy > 0.3
    [new_node] = _alive_owner("loihi")
    assert new_node != old_node
    assert {h["node_id"] for h in DevicePool("loihi").health()} == {new_node}  # the boards restarted there
    checks = reg.verify_all()
    assert checks and all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    assert {"dataset", "encoding", "model", "nir", "program", "report"} <= {r.kind for r in reg.ls()}
    # a rerun finds every stage cached: nothing stored was lost
    again = run_pipeline(spec, reg, progress=False, log=lambda s: None)
    assert all(o.cached for o in again.stages) and again.kpis[0].accuracy == row.accuracy


TUNE_SPEC = {
    "name": "tune_nodekill", "dataset": {"name": "digits", "limit": 300, "test_fraction": 0.25},
    "encoder": {"name": "rate", "timesteps": 8}, "model": {"hidden": [16]},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "device": "cpu"}, "targets": ["loihi"], "seed": 7,
    "search_space": {"beta": {"low": 0.88, "high": 0.95}, "hidden": [[8], [16]]},
}


def test_tune_run_survives_losing_the_loihi_node(ray_cluster, ray_session, tmp_path):
    from tune import run_tune

    workers = ray_cluster["workers"]
    [old_node] = _alive_owner("loihi")
    reg = Registry(str(tmp_path / "store"))
    spec = parse_spec(TUNE_SPEC)
    base = _loihi_grants()
    out: dict[str, object] = {}

    def job() -> None:
        try:
            out["res"] = run_tune(spec, reg, kinds=["loihi"], num_samples=4, max_concurrent=2, early_stop=False,
                                  storage_path=str(tmp_path / "tune"), progress=False, log=lambda s: None)
        except Exception as exc:  # surfaced by the assertion below
            out["res"] = exc

    th = threading.Thread(target=job)
    th.start()
    wait_for(lambda: "res" in out or _loihi_grants() > base, 300, "a trial measuring on loihi", interval=0.1)
    assert "res" not in out, f"the tune run ended before the node could be killed: {out.get('res')}"
    workers.kill("node-a")
    workers.start("node-a", wait=False)
    wait_for(lambda: (o := _alive_owner("loihi")) and old_node not in o, 240, "the replacement node")
    th.join(400)
    res = out["res"]
    assert not isinstance(res, Exception), f"tune failed after the node loss: {res!r}"
    assert res.trials == 4 and len(res.rows) == 4
    assert all(r["status"] in ("ok", "stopped early") for r in res.rows), [r["status"] for r in res.rows]
    assert res.front and reg.get_json(res.pareto_id)["trials"]
    checks = reg.verify_all()
    assert checks and all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    assert {h["node_id"] for h in DevicePool("loihi").health()} <= _alive_owner("loihi")
