"""The spine end to end on a real Ray cluster: device actors, the store, caching, `ray job submit`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ray

from actors.cluster.pool import DevicePool
from fabric.flow.pipeline import run_pipeline
from fabric.store.registry import Registry
from tests.integration.conftest import RAY


def test_pipeline_runs_on_device_actors_and_reuses_cache(ray_session, tiny_spec, store_dir):
    reg = Registry(store_dir)
    s1 = run_pipeline(tiny_spec, reg, progress=False, log=lambda s: None)
    assert [o.stage for o in s1.stages] == ["requirements", "data", "encode", "train", "neurobench", "export",
                                            "compile[cpu]", "evaluate[cpu]", "golden[cpu]", "deploy[cpu]"]
    assert not any(o.cached for o in s1.stages)
    row = s1.kpis[0]
    assert row.kind == "cpu" and row.status == "ok"
    assert row.accuracy > 0.5  # 10 classes: chance is 0.1; tiny 3-epoch model on 300 samples
    assert row.latency_p99_ms >= row.latency_p50_ms > 0
    assert row.spikes_per_inference > 0 and row.energy_mj > 0
    report = reg.get_json(s1.report_id)
    assert report["kpis"][0]["accuracy"] == row.accuracy and "accuracy" in report["table"]
    kinds = {r.kind for r in reg.ls()}
    assert {"dataset", "encoding", "model", "nir", "program", "report", "sbom"} <= kinds
    # lineage: report -> evaluation -> program -> nir -> model -> encoding -> dataset
    prog = reg.ls("program")[0]
    chain, node = [], reg.lineage(prog.id)
    while node["parents"]:
        node = node["parents"][0]
        chain.append(node["record"].kind)
    assert chain == ["nir", "model", "encoding", "dataset"]

    # the encoding stores every encoder parameter, defaults resolved
    enc = reg.ls("encoding")[0]
    assert enc.extra["params"] == {"gain": 1.0} and enc.extra["input_kind"] == "static"
    # no gate set -> cpu passes -> deployed with the fields the Serve room reads
    dep = reg.get_json(s1.deployments["cpu"])
    assert set(dep) == {"kind", "program_id", "model_id", "nir_id", "encoding_id", "encoder", "n_in", "n_out",
                        "classes", "kpis", "spec_name", "spec_hash", "version"}
    assert dep["program_id"] == prog.id and dep["encoder"] == {"name": "rate", "timesteps": tiny_spec.encoder.timesteps,
                                                               "params": {"gain": 1.0}, "seed": tiny_spec.seed}
    assert dep["n_in"] == 64 and dep["n_out"] == 10 and dep["classes"] == [str(i) for i in range(10)]
    assert s1.golden["cpu"]["status"] == "no reference"

    s2 = run_pipeline(tiny_spec, reg, progress=False, log=lambda s: None)
    assert all(o.cached for o in s2.stages)
    assert s2.kpis[0].accuracy == row.accuracy and s2.deployments == s1.deployments


def test_pool_queues_when_all_boards_are_busy(ray_session, tiny_spec, store_dir):
    import numpy as np

    from fabric.ir.lowering import lower  # noqa: F401  (import check: framework importable in driver)
    from fabric.model.snn import LifMLP, export_nir

    pool = DevicePool("cpu", size=1)
    g = export_nir(LifMLP(8, [4], 3, 0.9, 1.0))
    prog = pool.compile(g)
    batches = [np.random.default_rng(i).integers(0, 2, (4, 5, 8)).astype(np.uint8) for i in range(6)]
    res = pool.run(prog, batches)
    assert len(res) == 6 and all(r.counts.shape == (4, 3) for r in res)
    health = pool.health()
    assert health[0]["ok"] and health[0]["calls"] >= 6


def test_device_actor_pinned_to_its_resource(ray_session):
    pool = DevicePool("cpu", size=1)
    assert pool.info()["kind"] == "cpu"
    assert ray.available_resources().get("loihi", 0) <= 2


def test_ray_job_submit_runs_the_pipeline(ray_cluster, tmp_path):
    store = tmp_path / "jobstore"
    spec = tmp_path / "job.yaml"
    spec.write_text(json.dumps({
        "name": "jobtest", "dataset": {"name": "digits", "limit": 300},
        "encoder": {"name": "rate", "timesteps": 10}, "model": {"hidden": [16]},
        "train": {"epochs": 2, "device": "cpu"}, "targets": ["cpu"], "seed": 1,
    }))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, RAY_ADDRESS=ray_cluster["dashboard"], RAY_AUTH_MODE="disabled")
    r = subprocess.run(
        [RAY, "job", "submit", "--working-dir", repo,
         "--runtime-env-json", json.dumps({"excludes": [".venv", "toolchains/lava/.venv", ".fabric", ".git"]}),
         "--", sys.executable, "-m", "apps.pipeline", str(spec), "--store", str(store), "--quiet"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "accuracy" in r.stdout and "report artifact" in r.stdout
    reg = Registry(str(store))
    reports = [x for x in reg.ls("report") if x.name == "jobtest/kpi-report"]
    assert len(reports) == 1
    assert reg.get_json(reports[0].id)["kpis"][0]["kind"] == "cpu"
