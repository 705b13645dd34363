"""Models from anywhere through `fabric run` against the session cluster (issue #15): a NIR graph made
outside the fabric (written with the ``nir`` API), and the custom-model example (a user snntorch
factory), cheapened; plus a bad model file refused with one line and nothing stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import yaml

from fabric.spec import load_spec
from fabric.store.registry import Registry

REPO = Path(__file__).resolve().parents[2]


def _fabric(args: list[str], ray_cluster: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_ADDRESS=ray_cluster["address"], RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "fabric.cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def _graph(steps: int, limit: int) -> nir.NIRGraph:
    """Input(64) -> Affine -> LIF -> Affine -> LIF -> Output(10): the digits' class prototypes as weights."""
    from fabric.data.datasets import load_builtin
    from fabric.data.encode import encode_with_meta

    ds = load_builtin("digits", limit)
    spikes, _ = encode_with_meta("rate", ds.x, steps, 3, {})
    rates = spikes.mean(1)
    protos = np.stack([rates[ds.y == c].mean(0) for c in range(10)])
    dt, tau = 1e-3, 1e-2

    def lif(n: int) -> nir.LIF:
        return nir.LIF(tau=np.full(n, tau, np.float32), r=np.full(n, tau / dt, np.float32),
                       v_leak=np.zeros(n, np.float32), v_threshold=np.ones(n, np.float32), v_reset=np.zeros(n, np.float32))

    nodes = {"in": nir.Input(input_type={"input": np.array([64])}),
             "w1": nir.Affine(weight=((protos - protos.mean(0)) * 4.0).astype(np.float32), bias=np.zeros(10, np.float32)),
             "l1": lif(10), "w2": nir.Affine(weight=np.eye(10, dtype=np.float32) * 1.5, bias=np.zeros(10, np.float32)),
             "l2": lif(10), "out": nir.Output(output_type={"output": np.array([10])})}
    return nir.NIRGraph(nodes=nodes, edges=[("in", "w1"), ("w1", "l1"), ("l1", "w2"), ("w2", "l2"), ("l2", "out")],
                        metadata={"dt": dt, "producer": "nir API (outside the fabric)"})


def test_fabric_run_on_a_nir_graph_made_outside_the_fabric(ray_cluster, tmp_path):
    graph = tmp_path / "outside.nir"
    nir.write(graph, _graph(10, 300))
    spec = tmp_path / "nir.yaml"
    spec.write_text(json.dumps({
        "name": "outside-nir", "dataset": {"name": "digits", "limit": 300}, "encoder": {"name": "rate", "timesteps": 10},
        "model": {"nir": str(graph)}, "targets": ["cpu", "loihi", "spinnaker"], "seed": 3, "kpis": {"min_accuracy": 0.3},
    }))
    store = tmp_path / "store"
    r = _fabric(["run", str(spec), "--store", str(store), "--json"], ray_cluster)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    stages = [s["stage"] for s in summary["stages"]]
    assert "import" in stages and "train" not in stages and "export" not in stages
    assert {k["kind"]: k["status"] for k in summary["kpis"]} == {"cpu": "ok", "loihi": "ok", "spinnaker": "ok"}
    assert all(k["accuracy"] > 0.3 for k in summary["kpis"])
    reg = Registry(str(store))
    assert [x.id for x in reg.ls("nir")] == [next(s["artifact"] for s in summary["stages"] if s["stage"] == "import")]
    assert set(summary["deployments"]) == {"cpu", "loihi", "spinnaker"}


def test_fabric_run_on_the_custom_model_example(ray_cluster, tmp_path):
    data = yaml.safe_load((REPO / "examples" / "custom_model" / "spec.yaml").read_text())
    data["dataset"]["limit"] = 300
    data["encoder"]["timesteps"] = 10
    data["model"]["params"]["hidden"] = 16
    data["train"] |= {"epochs": 2, "device": "cpu"}
    data["budgets"], data["kpis"] = {}, {}
    spec = tmp_path / "custom-cheap.yaml"
    spec.write_text(yaml.safe_dump(data))
    load_spec(spec)
    store = tmp_path / "store"
    r = _fabric(["run", str(spec), "--store", str(store), "--json"], ray_cluster)  # cwd: the repository root
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout)
    stages = {s["stage"] for s in summary["stages"]}
    assert {"train", "neurobench", "export"} <= stages
    assert [k["kind"] for k in summary["kpis"]] == ["cpu", "loihi", "akida", "spinnaker"]
    assert all(k["status"] == "ok" for k in summary["kpis"]), summary["kpis"]


def test_fabric_run_refuses_a_bad_model_file_with_one_line(ray_cluster, tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def build(input_shape, n_classes):\n    raise ValueError('no such layer size')\n")
    spec = tmp_path / "bad.yaml"
    spec.write_text(json.dumps({"name": "bad", "dataset": {"name": "digits", "limit": 100},
                                "encoder": {"timesteps": 5}, "model": {"module": f"{bad}:build"}, "targets": ["cpu"]}))
    store = tmp_path / "store"
    r = _fabric(["run", str(spec), "--store", str(store)], ray_cluster)
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("fabric: error: invalid spec: model.module: ") and "no such layer size" in line, r.stderr
    reg = Registry(str(store))
    assert reg.ls("model") == [] and reg.ls("nir") == []
