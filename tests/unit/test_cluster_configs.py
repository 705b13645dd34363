"""The three cluster layouts (ray up, KubeRay, Slurm) agree with the device registry and pass their
tools' checks: Ray's own cluster-config schema, a structural check of the RayCluster manifest (the
KubeRay CRD is not available offline), and `bash -n` + shellcheck + a stubbed dry run for Slurm."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fabric.kinds import embedded_resources, registry

ROOT = Path(__file__).resolve().parents[2]
DEVICE_KINDS = set(registry()) - {"cpu"}


def _ray_validate(cfg: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)
    return prepared


def _device_resources(res: dict) -> dict[str, float]:
    return {k: v for k, v in res.items() if k in DEVICE_KINDS}


def test_cluster_yaml_passes_rays_schema_and_hosts_every_kind():
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    prepared = _ray_validate(cfg)
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert not _device_resources(head["resources"])  # the head hosts no boards
    hosts: dict[str, list[str]] = {}
    for name, t in types.items():
        for kind, n in _device_resources(t["resources"]).items():
            hosts.setdefault(kind, []).append(name)
            assert t["min_workers"] >= 1 and n >= embedded_resources()[kind], f"{name} advertises too few {kind}"
    assert set(hosts) == set(embedded_resources())  # every kind is hosted by some worker node type ...
    assert all(len(v) == 1 for v in hosts.values())  # ... exactly one (per-kind node types)
    assert any("make setup" in c for c in prepared["setup_commands"])


def test_rays_schema_check_rejects_a_broken_cluster_yaml():
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    bad = copy.deepcopy(cfg)
    bad["available_node_types"]["loihi_host"]["resourcez"] = bad["available_node_types"]["loihi_host"].pop("resources")
    with pytest.raises(Exception, match="resourcez|resources"):
        _ray_validate(bad)
    bad = copy.deepcopy(cfg)
    bad["max_workers"] = "many"
    with pytest.raises(Exception, match="many|max_workers"):
        _ray_validate(bad)


def _kuberay_groups(doc: dict) -> dict[str, dict[str, float]]:
    """groupName -> advertised device resources, checking the RayCluster fields KubeRay requires."""
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster" and doc["metadata"]["name"]
    spec = doc["spec"]
    head = spec["headGroupSpec"]
    assert head["template"]["spec"]["containers"] and isinstance(head["rayStartParams"], dict)
    assert "resources" not in head["rayStartParams"]  # the head hosts no boards
    out = {}
    for g in spec["workerGroupSpecs"]:
        assert g["groupName"] and g["template"]["spec"]["containers"][0]["image"]
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        params = g["rayStartParams"]
        assert all(isinstance(v, str) for v in params.values()), f"{g['groupName']}: rayStartParams values are strings"
        res = {}
        if "resources" in params:
            # KubeRay's documented form: a quoted JSON string, e.g. '"{\"loihi\": 2}"'
            raw = params["resources"]
            assert raw.startswith('"') and raw.endswith('"'), f"{g['groupName']}: resources must be '\"{{...}}\"'"
            res = json.loads(raw[1:-1].replace('\\"', '"'))
            unknown = set(res) - DEVICE_KINDS
            assert not unknown, f"{g['groupName']}: unknown device kinds {unknown}"
        out[g["groupName"]] = res
    return out


def test_kuberay_raycluster_has_a_worker_group_per_kind():
    doc = yaml.safe_load((ROOT / "deploy/kuberay/raycluster.yaml").read_text())
    groups = _kuberay_groups(doc)
    hosted: dict[str, float] = {}
    for res in groups.values():
        for k, v in res.items():
            hosted[k] = hosted.get(k, 0) + v
    assert hosted == {k: float(v) for k, v in embedded_resources().items()}
    assert sum(1 for r in groups.values() if r) == len(embedded_resources())  # one group per kind
    # the same layout as cluster.yaml
    ray_types = yaml.safe_load((ROOT / "cluster.yaml").read_text())["available_node_types"]
    ray_kinds = {k for t in ray_types.values() for k in _device_resources(t["resources"])}
    assert ray_kinds == set(hosted)


def test_kuberay_check_catches_a_bad_resources_string():
    doc = yaml.safe_load((ROOT / "deploy/kuberay/raycluster.yaml").read_text())
    doc["spec"]["workerGroupSpecs"][1]["rayStartParams"]["resources"] = '{"loihi": 2}'  # unquoted: KubeRay mangles it
    with pytest.raises(AssertionError, match="resources must be"):
        _kuberay_groups(doc)


def test_slurm_script_lints_and_starts_one_worker_per_kind(tmp_path):
    script = ROOT / "deploy/slurm/fabric.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck"):  # Debian's shellcheck when installed; bash -n and the dry run always run
        r = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout
    # dry run with stub Slurm/Ray commands that log their arguments
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls.log"
    stubs = {
        "scontrol": "printf 'n0\\nn1\\nn2\\nn3\\nn4\\nn5\\nn6\\n'",
        "srun": f'echo "srun $*" >> {log}; if [ "${{@: -2:1}}" = hostname ]; then echo 10.0.0.1; fi',
        "ray": f'echo "ray $*" >> {log}',
        "py": f'echo "py $*" >> {log}',
    }
    for name, body in stubs.items():
        (bin_ / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_ / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}", SLURM_JOB_NODELIST="n[0-6]", SLURM_CPUS_PER_TASK="4",
               FABRIC_RAY=str(bin_ / "ray"), FABRIC_PYTHON=str(bin_ / "py"), FABRIC_START_WAIT_S="0")
    r = subprocess.run(["bash", str(script), "examples/digits.yaml"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    calls = log.read_text()
    starts = [ln for ln in calls.splitlines() if " start " in ln]
    head = [ln for ln in starts if "--head" in ln]
    assert len(head) == 1 and "--resources={}" in head[0] and "-w n0" in head[0]
    workers = {ln.split(" -w ")[1].split()[0]: json.loads(ln.split("--resources=")[1].split(" --")[0])
               for ln in starts if "--head" not in ln}
    assert sorted(workers) == ["n1", "n2", "n3", "n4", "n5", "n6"]  # one per kind with a board
    hosted: dict[str, int] = {}
    for res in workers.values():
        for k, v in res.items():
            hosted[k] = hosted.get(k, 0) + v
    assert hosted == embedded_resources()
    assert "py -m apps.pipeline examples/digits.yaml --store" in calls

    env["NODE_RESOURCES"] = '{"loihi": 2};{"akida": 1};' * 4  # 8 groups on 7 nodes: refused, one line
    r = subprocess.run(["bash", str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "need 9 nodes, got 7" in r.stderr


def test_shipped_configs_bind_the_dashboard_to_loopback():
    """Whoever reaches the dashboard can submit jobs (run code): every launcher binds it to 127.0.0.1."""
    head_cmds = yaml.safe_load((ROOT / "cluster.yaml").read_text())["head_start_ray_commands"]
    start = [c for c in head_cmds if "ray start --head" in c]
    assert len(start) == 1 and "--dashboard-host=127.0.0.1" in start[0]
    doc = yaml.safe_load((ROOT / "deploy/kuberay/raycluster.yaml").read_text())
    assert doc["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    sbatch = (ROOT / "deploy/slurm/fabric.sbatch").read_text()
    assert "--head" in sbatch and "--dashboard-host=127.0.0.1" in sbatch
    for path in [ROOT / "cluster.yaml", *sorted((ROOT / "deploy").rglob("*"))]:
        if path.is_file():
            assert "0.0.0.0" not in path.read_text(), f"{path.relative_to(ROOT)} binds something to every interface"


def test_no_shipped_code_disables_ray_auth():
    """Ray's token auth is passed, never switched off, by the fabric's own code and configs."""
    import re

    pattern = re.compile(r"RAY_AUTH_MODE\W{0,6}disabled", re.IGNORECASE)
    roots = ["fabric", "actors", "tune", "serve", "apps", "deploy", "examples"]
    files = [ROOT / "cluster.yaml", ROOT / "Makefile"]
    for r in roots:
        files += [p for p in (ROOT / r).rglob("*") if p.is_file() and p.suffix in (".py", ".yaml", ".yml", ".sh",
                                                                                     ".sbatch", ".toml", "")]
    offenders = [str(p.relative_to(ROOT)) for p in files if p.exists() and pattern.search(p.read_text(errors="ignore"))]
    assert not offenders, f"these disable Ray's auth: {offenders}"
