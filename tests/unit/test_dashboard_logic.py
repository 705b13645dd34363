"""Dashboard page logic over a registry holding artifacts in the formats the stages store (KPI report,
programs with fit reports, Pareto front, rollouts, deployments, served inputs, drift): what each page
shows, that it shows nothing it was not given, and that empty stores give messages, not errors."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

import apps._dashboard as D
from fabric.cli.drift import run_drift
from fabric.flow.codecs import pack_spikes, unpack_spikes
from fabric.flow.drift import DriftPolicy
from fabric.store.registry import Registry


def kpi_row(kind: str, status: str = "ok", emulated: bool = True, passed: bool = True, **kw) -> dict:
    row = {"kind": kind, "status": status, "emulated": emulated, "accuracy": None, "latency_p50_ms": None,
           "latency_p99_ms": None, "host_p50_ms": None, "energy_mj": None, "footprint_kb": None, "gates": {},
           "reason": "", "sources": {}, "passed": passed}
    return row | kw


def populate_run(reg: Registry, spec_name: str = "tiny") -> dict[str, str]:
    """A run as fabric.flow.pipeline stores it: stage artifacts, programs with fit reports, the KPI report."""
    ids = {}
    rng = np.random.default_rng(0)
    spikes = (rng.random((60, 10, 16)) < 0.2).astype(np.uint8)
    ids["data"] = reg.put(b"parquet-bytes", kind="dataset", name="digits").id
    ids["encode"] = reg.put(pack_spikes(spikes, np.zeros(60, np.int64), np.array(["train"] * 45 + ["test"] * 15),
                                        {"encoder": "rate"}), kind="encoding", name="digits/rate",
                            parents=[ids["data"]]).id
    ids["train"] = reg.put(b"weights", kind="model", name=f"{spec_name}/lif_mlp", parents=[ids["encode"]]).id
    ids["neurobench"] = reg.put_json({"ClassificationAccuracy": 0.91, "SynapticOperations": {"Effective_ACs": 812.5}},
                                     kind="report", name=f"{spec_name}/neurobench", parents=[ids["train"]]).id
    ids["export"] = reg.put(b"nir", kind="nir", name=f"{spec_name}.nir", parents=[ids["train"]]).id
    for kind, used in (("cpu", 10.0), ("loihi", 90.0)):
        fit = {"kind": kind, "items": [{"name": "neurons", "used": used, "limit": 100.0, "unit": "", "scope": "chip"},
                                       {"name": "synapse memory", "used": 40.0, "limit": 32.0, "unit": "KB",
                                        "scope": "core"}] if kind == "loihi" else [], "notes": []}
        ids[f"compile[{kind}]"] = reg.put(f"prog-{kind}".encode(), kind="program", name=f"{kind}-program",
                                          parents=[ids["export"]], device_id=kind, extra={"kind": kind, "fit": fit}).id
        ids[f"evaluate[{kind}]"] = reg.put_json({"kind": kind}, kind="report", name=f"{kind}-evaluation",
                                                parents=[ids[f"compile[{kind}]"], ids["encode"]]).id
    ids["golden[loihi]"] = reg.put_json({"kind": "loihi", "status": "bit-exact", "samples": 8,
                                         "summary": "8/8 samples bit-exact vs Lava"}, kind="report",
                                        name="loihi-golden", parents=[ids["compile[loihi]"], ids["encode"]]).id
    kpis = [kpi_row("cpu", emulated=False, accuracy=0.9133, latency_p50_ms=1.6, latency_p99_ms=2.5, energy_mj=0.8,
                    footprint_kb=18.8, gates={"accuracy": True, "latency_p99": True}),
            kpi_row("loihi", passed=False, accuracy=0.9021, latency_p50_ms=0.05, latency_p99_ms=0.07,
                    energy_mj=0.0012, footprint_kb=20.1, gates={"accuracy": True, "latency_p99": False}),
            kpi_row("akida", status="does not fit", passed=False, gates={"fits": False},
                    reason="neurons per layer: 2000 used > 1024 limit")]
    stages = [{"stage": s, "artifact": a, "cached": s == "data", "seconds": 0.1, "detail": ""} for s, a in ids.items()]
    report = {"spec": {"name": spec_name, "targets": ["cpu", "loihi", "akida"]}, "spec_hash": "ab" * 32, "kpis": kpis,
              "stages": stages, "neurobench": {"ClassificationAccuracy": 0.91,
                                               "SynapticOperations": {"Effective_ACs": 812.5}},
              "table": "kind mode accuracy ..."}
    ids["report"] = reg.put_json(report, kind="report", name=f"{spec_name}/kpi-report",
                                 parents=sorted(set(ids.values())), extra={"passed": False}).id
    reg.put(b"\x89PNG fake", kind="report", name=f"{spec_name}/kpis.png", parents=[ids["report"]],
            extra={"format": "png"})
    return ids


PARETO = {
    "experiment": "tiny-tune", "spec_hash": "cd" * 32,
    "objectives": {"accuracy": "max", "latency_ms": "min", "energy_mj": "min", "footprint_kb": "min"},
    "trials": [
        {"trial_id": "t1", "config": {"hidden": 16}, "kind": "loihi", "status": "ok", "on_front": True,
         "metrics": {"accuracy": 0.88, "latency_ms": 0.04, "energy_mj": 0.001, "footprint_kb": 9.0},
         "model_id": "m1", "program_id": "p1", "fit_error": None},
        {"trial_id": "t2", "config": {"hidden": 32}, "kind": "cpu", "status": "ok", "on_front": True,
         "metrics": {"accuracy": 0.93, "latency_ms": 1.7, "energy_mj": 0.9, "footprint_kb": 19.0},
         "model_id": "m2", "program_id": "p2", "fit_error": None},
        {"trial_id": "t3", "config": {"hidden": 24}, "kind": "loihi", "status": "ok", "on_front": False,
         "metrics": {"accuracy": 0.85, "latency_ms": 0.06, "energy_mj": 0.002, "footprint_kb": 14.0},
         "model_id": "m3", "program_id": "p3", "fit_error": None},
        {"trial_id": "t4", "config": {"hidden": 512}, "kind": "akida", "status": "does not fit", "on_front": False,
         "metrics": {"accuracy": None, "latency_ms": None, "energy_mj": None, "footprint_kb": None},
         "model_id": "m4", "program_id": None, "fit_error": "neurons 2000 > 1024"},
    ],
}
PARETO["front"] = [i for i, t in enumerate(PARETO["trials"]) if t["on_front"]]  # tune stores row indices


def populate_ops(reg: Registry, ids: dict[str, str]) -> dict[str, str]:
    """Tune, Serve and drift artifacts in their documented formats, attached to the run in ``ids``."""
    out = {"pareto": reg.put_json(PARETO, kind="pareto", name="tiny-tune/pareto").id}
    reg.put(b"\x89PNG front", kind="pareto", name="tiny-tune/pareto.png", extra={"format": "png"})
    out["deployment"] = reg.put_json({"app": "tiny", "version": "v1", "kind": "cpu", "program_id": ids["compile[cpu]"],
                                      "route": "/tiny", "weights": {"v1": 1.0}}, kind="deployment",
                                     name="tiny/cpu-deployment", parents=[ids["compile[cpu]"]]).id
    for step, (action, w, t) in enumerate((("canary", {"v1": 0.9, "v2": 0.1}, 1000.0),
                                           ("rollback", {"v1": 1.0, "v2": 0.0}, 2000.0))):
        reg.put_json({"app": "tiny", "step": step, "action": action, "from_version": "v1", "to_version": "v2",
                      "weights": w, "kpis": {"p99_ms": 3.0}, "reason": "p99 over spec" if action == "rollback" else "",
                      "time": t}, kind="rollout", name=f"tiny/rollout-{step}")
    # served traffic: the encoding's test split with a noisy sensor (20 % extra events) -> drift
    spikes, _, splits, _ = unpack_spikes(reg.get(ids["encode"]))
    test = spikes[splits == "test"]
    noisy = (test | (np.random.default_rng(5).random(test.shape) < 0.2)).astype(np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, spikes=noisy)
    out["served"] = reg.put(buf.getvalue(), kind="served-inputs", name="tiny/v1/served-inputs",
                            parents=[ids["compile[cpu]"]], extra={"encoding_id": ids["encode"], "version": "v1"}).id
    rec, _ = run_drift(reg, out["served"], None, DriftPolicy())  # reference: the encoding the served inputs name
    out["drift"] = rec.id
    return out


@pytest.fixture
def full(store_dir):
    reg = Registry(store_dir)
    ids = populate_run(reg)
    ids |= populate_ops(reg, ids)
    return reg, ids


def test_runs_page_lists_the_run_with_pass_fail_per_kind(full):
    reg, ids = full
    runs = D.list_runs(reg)
    assert runs["report"].tolist() == [ids["report"]]  # the PNG/markdown siblings are not runs
    r = runs.iloc[0]
    assert (r["spec"], r["status"], r["kinds"]) == ("tiny", "FAIL", "cpu:PASS loihi:FAIL akida:NO FIT")
    assert (r["stages"], r["cached stages"]) == (10, 1)  # data..golden[loihi]; one of them was cached
    kp = D.run_kpis(reg.get_json(ids["report"])).set_index("kind")
    assert kp.loc["cpu", "accuracy"] == 0.9133 and kp.loc["cpu", "mode"] == "measured"
    assert kp.loc["loihi", "mode"] == "emulated" and kp.loc["loihi", "gate latency_p99"] == "FAIL"
    assert kp.loc["akida", "status"] == "does not fit" and "1024" in kp.loc["akida", "reason"]
    st = D.run_stages(reg.get_json(ids["report"]))
    assert st.loc[st["stage"] == "train", "artifact"].item() == ids["train"]


def test_model_detail_fit_neurobench_lineage_and_signatures(full):
    reg, ids = full
    rep = reg.get_json(ids["report"])
    nb = D.neurobench_table(rep).set_index("metric")["value"]
    assert nb["ClassificationAccuracy"] == 0.91 and nb["SynapticOperations.Effective_ACs"] == 812.5
    fit = D.fit_reports(reg, rep)
    loihi = fit[fit["kind"] == "loihi"].set_index("resource")
    assert loihi.loc["neurons", "use %"] == pytest.approx(90.0) and loihi.loc["neurons", "status"] == "ok"
    assert loihi.loc["synapse memory", "status"] == "OVER"
    assert fit[fit["kind"] == "akida"]["status"].item().startswith("DOES NOT FIT: neurons per layer")
    gold = D.golden_rows(reg, rep)
    assert gold.to_dict("records") == [{"kind": "loihi", "status": "bit-exact", "samples": 8,
                                        "summary": "8/8 samples bit-exact vs Lava"}]
    lin = D.lineage_rows(reg, ids["report"])
    assert lin.iloc[0]["id"] == ids["report"] and lin.iloc[0]["depth"] == 0
    assert {ids["train"], ids["data"], ids["compile[loihi]"]} <= set(lin["id"])
    assert lin[lin["id"] == ids["data"]]["depth"].max() >= 3  # report -> ... -> model -> encoding -> dataset
    assert all(s != "unsigned" for s in lin["signed by"])
    arts = D.artifact_rows(reg, [ids["report"], ids["train"], ids["export"]])
    assert arts["verified"].tolist() == ["OK"] * 3 and arts["id"].tolist()[0] == ids["report"]

    # a tampered object shows as REFUSED (and the listing still works)
    p = reg.store.path(reg._okey(ids["export"]))
    with open(p, "wb") as f:
        f.write(b"tampered")
    arts = D.artifact_rows(reg, [ids["train"], ids["export"]]).set_index("id")
    assert arts.loc[ids["train"], "verified"] == "OK"
    assert arts.loc[ids["export"], "verified"] == "REFUSED" and "corrupt" in arts.loc[ids["export"], "detail"]


def test_cross_device_comparison_reads_the_report_values(full):
    reg, ids = full
    cmp = D.comparison(reg.get_json(ids["report"]))
    assert set(cmp["kind"]) == {"cpu", "loihi"}  # akida did not fit: no bars
    v = cmp.set_index(["kind", "metric"])["value"]
    assert v["cpu", "accuracy"] == 0.9133 and v["loihi", "energy_mj"] == 0.0012 and v["loihi", "footprint_kb"] == 20.1
    modes = dict(zip(cmp["kind"], cmp["mode"], strict=False))
    assert modes == {"cpu": "measured", "loihi": "emulated (modelled)"}


def test_automl_front_and_constraint_filter(full):
    reg, ids = full
    pl = D.list_pareto(reg)
    assert pl["pareto"].tolist() == [ids["pareto"]]  # the PNG sibling is skipped
    assert (pl.iloc[0]["trials"], pl.iloc[0]["on front"]) == (4, 2)
    tr = D.pareto_trials(reg.get_json(ids["pareto"]))
    assert tr.set_index("trial_id").loc["t2", "accuracy"] == 0.93
    assert D.filter_trials(tr, min_accuracy=0.86)["trial_id"].tolist() == ["t1", "t2"]
    assert D.filter_trials(tr, min_accuracy=0.86, max_latency_ms=1.0)["trial_id"].tolist() == ["t1"]
    assert D.filter_trials(tr, max_energy_mj=0.0015, kinds=["loihi"])["trial_id"].tolist() == ["t1"]
    assert D.filter_trials(tr, max_footprint_kb=1.0).empty
    assert len(D.filter_trials(tr)) == 4  # no constraint: every trial, also the one that did not fit


def test_serving_history_and_deployments(full):
    reg, ids = full
    ro = D.list_rollouts(reg)
    assert ro["action"].tolist() == ["canary", "rollback"] and ro.iloc[1]["reason"] == "p99 over spec"
    assert json.loads(ro.iloc[0]["weights"]) == {"v1": 0.9, "v2": 0.1}
    dep = D.list_deployments(reg)
    assert dep["id"].tolist() == [ids["deployment"]] and dep.iloc[0]["kind"] == "cpu"
    # the pipeline numbers versions (2), Serve names them ("v1"): one column, shown as text
    reg.put_json({"kind": "loihi", "version": 2, "program_id": ids["compile[loihi]"]}, kind="deployment",
                 name="tiny/loihi")
    dep = D.list_deployments(reg)
    assert sorted(dep["version"]) == ["2", "v1"]


def test_drift_page_reads_the_stored_report(full):
    reg, ids = full
    dl = D.list_drift(reg)
    assert dl["drift"].tolist() == [ids["drift"]] and dl.iloc[0]["retrain"] == "RETRAIN"
    doc = reg.get_json(ids["drift"])
    f = D.drift_features(doc).set_index("feature")
    assert f.loc["event_rate", "drifted"] and f.loc["event_rate", "KS statistic"] == dl.iloc[0]["KS event_rate"]
    h = D.drift_histogram(doc, "event_rate")
    assert set(h["set"]) == {"train", "served"}
    assert h.groupby("set")["density"].sum().to_dict() == pytest.approx({"train": 1.0, "served": 1.0})


def test_empty_store_gives_empty_frames_not_errors(store_dir):
    reg = Registry(store_dir)
    for fn in (D.list_runs, D.list_pareto, D.list_rollouts, D.list_deployments, D.list_drift):
        assert fn(reg).empty
    assert D.comparison({}).empty and D.run_kpis({}).empty and D.neurobench_table({}).empty


class _Serve(BaseHTTPRequestHandler):
    """/admin/status and /metrics in the formats serve's ingress answers; admin needs the bearer token."""

    TOKEN = "s3cret"

    def do_GET(self):  # noqa: N802
        if self.path == "/admin/status" and self.headers.get("Authorization") != f"Bearer {self.TOKEN}":
            self.send_response(401)
            self.end_headers()
            return
        body = {"/admin/status": json.dumps({"deployments": [
            {"version": "v1", "kind": "cpu", "model_id": "m", "weight": 0.9, "role": "stable", "p50_ms": 1.2,
             "p99_ms": 3.4, "error_rate": 0.0, "requests": 17, "energy_mj_per_inference": 0.8,
             "accuracy_feedback": None},
            {"version": "v2", "kind": "loihi", "model_id": "m2", "weight": 0.1, "role": "canary", "p50_ms": 0.9,
             "p99_ms": 1.1, "error_rate": 0.05, "requests": 2, "energy_mj_per_inference": 0.001,
             "accuracy_feedback": 0.9}]}),
            "/metrics": "# HELP x\nfabric_requests_total{version=\"v1\"} 17\nfabric_up 1\n"}.get(self.path)
        self.send_response(200 if body else 404)
        self.end_headers()
        self.wfile.write((body or "").encode())

    def log_message(self, *a):
        pass


def test_live_serve_status_and_clear_messages_when_absent():
    srv = HTTPServer(("127.0.0.1", 0), _Serve)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_port}"
    try:
        df, err = D.serve_status(url)
        assert df is None and "401" in err and "--serve-token" in err
        df, err = D.serve_status(url, _Serve.TOKEN)
        assert err is None and df["version"].tolist() == ["v1", "v2"] and df["weight"].sum() == pytest.approx(1.0)
        assert df.set_index("version").loc["v2", "error_rate"] == 0.05
        m, err = D.serve_metrics(url)
        assert err is None and m.set_index("metric").loc["fabric_requests_total", "value"] == 17.0
    finally:
        srv.shutdown()
        srv.server_close()
    df, err = D.serve_status(None)
    assert df is None and "--serve-url" in err
    df, err = D.serve_status(url, _Serve.TOKEN)  # server gone
    assert df is None and "did not answer" in err


def test_devices_without_a_cluster_is_a_message():
    import ray

    assert not ray.is_initialized()
    df, err = D.device_pools(None)
    assert df is None and "--ray-address" in err
    cat = D.device_catalog().set_index("kind")
    assert cat.loc["loihi", "mode"] == "emulated" and cat.loc["cpu", "mode"] == "hardware"


def test_fabric_dashboard_binds_loopback_headless_and_keeps_the_token_off_the_command_line(monkeypatch, tmp_path,
                                                                                           capsys):
    from apps.dashboard_cli import streamlit_command
    from fabric.cli.main import build_parser
    from fabric.cli.main import main as fabric_main

    monkeypatch.chdir(tmp_path)  # no .fabric/serve.json here
    monkeypatch.delenv("FABRIC_SERVE_URL", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    a = build_parser().parse_args(["dashboard", "--store", "s3://b/store", "--port", "8600",
                                   "--serve-token", "s3cret"])
    cmd = streamlit_command(a)
    opt = dict(zip(cmd[::1], cmd[1:], strict=False))
    assert opt["--server.address"] == "127.0.0.1" and opt["--server.port"] == "8600"
    assert opt["--server.headless"] == "true" and opt["--browser.gatherUsageStats"] == "false"
    assert cmd[cmd.index("--") + 1:] == ["--store", "s3://b/store"]
    assert "s3cret" not in cmd
    (tmp_path / ".fabric").mkdir()
    (tmp_path / ".fabric" / "serve.json").write_text(json.dumps({"url": "http://127.0.0.1:8123", "token": "t"}))
    cmd = streamlit_command(build_parser().parse_args(["dashboard", "--ray-address", "127.0.0.1:6379"]))
    tail = cmd[cmd.index("--") + 1:]
    assert tail[tail.index("--serve-url") + 1] == "http://127.0.0.1:8123"
    assert tail[tail.index("--ray-address") + 1] == "127.0.0.1:6379"
    assert fabric_main(["dashboard", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
