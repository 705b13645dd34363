"""One real Ray cluster per test session, started the way users start one (``ray start --head`` on
loopback, advertising emulated device resources); the test driver joins it, and job-submission
tests submit to the same cluster. These machines have 2 cores: never start a second one."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.s3server import s3_endpoint, s3_url  # noqa: F401  (fixtures for the s3:// store tests)

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
DEVICES = {"loihi": 2, "akida": 1, "spinnaker": 1, "fpga": 1, "dynapse": 1}
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """Start the head node; yield ``{"address", "dashboard"}``; stop it at the end."""
    port, dash = free_port(), free_port()
    tmp = tmp_path_factory.mktemp("ray")
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    cmd = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           f"--resources={json.dumps(DEVICES)}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
           f"--dashboard-port={dash}", "--disable-usage-stats"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180, cwd=tmp)
    if r.returncode != 0:
        raise RuntimeError(f"ray start failed:\n{r.stdout}\n{r.stderr}")
    info = {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}"}
    try:
        yield info
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_session(ray_cluster):
    """The test process connected as a driver to the session cluster."""
    import ray

    from fabric.connect import connect

    resources = connect(ray_cluster["address"])
    yield resources
    ray.shutdown()


def wait_for(pred, timeout: float, what: str, interval: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
