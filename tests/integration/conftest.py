"""One real Ray cluster per test session, started the way users start one (``ray start --head`` on
loopback, advertising emulated device resources); the test driver joins it, and job-submission
tests submit to the same cluster. These machines have 2 cores: never start a second one."""

from __future__ import annotations

import json
import os
import shutil
import signal
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
    cmd = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           f"--resources={json.dumps(DEVICES)}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
           f"--dashboard-port={dash}", "--disable-usage-stats"]
    log = open(tmp / "head.log", "wb")
    # --block keeps the head in this process's own session, so teardown stops exactly this cluster
    # (never `ray stop`, which would stop every Ray instance on the machine).
    head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True)
    info = {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}", "tmp": str(tmp)}
    try:
        wait_for(lambda: head.poll() is not None or subprocess.run(
            [RAY, "status", f"--address={info['address']}"], capture_output=True, env=env).returncode == 0,
            180, "ray head to start")
        if head.poll() is not None:
            raise RuntimeError(f"ray start failed:\n{(tmp / 'head.log').read_text()}")
        yield info
    finally:
        stop_session(head.pid)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def stop_session(sid: int, grace: float = 5.0) -> None:
    """Stop every process in session ``sid`` (a ``ray start --block`` and all it spawned)."""
    def members() -> list[int]:
        out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
        return [int(p) for p, s in (ln.split() for ln in out.splitlines() if ln.strip()) if int(s) == sid]

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0.0)):
        for pid in members():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while members() and time.time() < deadline:
            time.sleep(0.2)


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
