"""A job killed mid-way (SIGKILL, no clean-up) and run again finishes without redoing finished stages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from fabric.store.registry import Registry


def test_killed_job_resumes_from_finished_stages(ray_cluster, tmp_path):
    spec = tmp_path / "resume.yaml"
    spec.write_text(json.dumps({
        "name": "resume", "dataset": {"name": "digits", "limit": 300}, "encoder": {"name": "rate", "timesteps": 10},
        "model": {"hidden": [16]}, "train": {"epochs": 2, "device": "cpu"}, "targets": ["cpu"], "seed": 5,
    }))
    store = tmp_path / "store"
    env = dict(os.environ, RAY_ADDRESS=ray_cluster["address"], RAY_AUTH_MODE="disabled", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "apps.pipeline", str(spec), "--store", str(store)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("[export] stored"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert not Registry(str(store)).ls("program"), "the kill must land before compile finished"

    r = subprocess.run(cmd + ["--json"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    cached = {s["stage"]: s["cached"] for s in summary["stages"]}
    assert cached == {"requirements": True, "data": True, "encode": True, "train": True, "neurobench": True,
                      "export": True, "compile[cpu]": False, "evaluate[cpu]": False, "golden[cpu]": False,
                      "deploy[cpu]": False}
    assert summary["kpis"][0]["status"] == "ok"
