"""One real Ray cluster per test session, started the way users start one (``ray start --head`` on
loopback, advertising emulated device resources); the test driver joins it, and job-submission
tests submit to the same cluster. These machines have 2 cores: never start a second one."""

from __future__ import annotations

import faulthandler
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
DEVICES = {"loihi": 2, "akida": 1, "spinnaker": 1, "fpga": 1, "dynapse": 1, "xylo": 1}
# The session cluster is multi-node: the head advertises CPUs and no device resources; each worker node
# (its own `ray start --address ... --block`, num-cpus 0) advertises the boards it hosts, so a device
# actor can only land on the node that owns its kind. Together the groups advertise DEVICES.
NODE_GROUPS = {"node-a": {"loihi": 2, "akida": 1}, "node-b": {"spinnaker": 1, "fpga": 1, "dynapse": 1, "xylo": 1}}
RAY = str(Path(sys.executable).with_name("ray"))
# A test (with the set-up of the fixtures it is first to use) that runs longer than this fails with a
# dump of every thread here, the board scheduler's state and the stacks of Ray's busy worker processes,
# instead of hanging the whole run until CI's own limit kills it without a word.
TEST_TIMEOUT_S = int(os.environ.get("FABRIC_TEST_TIMEOUT_S", "600"))


_CLUSTER: dict[str, str] = {}  # the session cluster's address, for the watchdog
_CLUSTER_OBJ: dict[str, object] = {}  # its head pid and worker nodes, for the watchdog's last resort
_STATUS = """
import json, sys, ray
ray.init(address=sys.argv[1], namespace="fabric", logging_level="ERROR")
from actors.cluster.pool import scheduler
print(json.dumps(ray.get(scheduler().status.remote(), timeout=20), default=str, indent=1))
"""


def _dump_cluster_state(out) -> None:
    """Scheduler state (asked by a separate driver process: Ray must not be re-entered from a signal
    handler that interrupted a ``ray.get``) and the stacks of Ray's busy worker processes."""
    repo = str(Path(__file__).resolve().parents[2])
    if _CLUSTER.get("address"):
        try:
            r = subprocess.run([sys.executable, "-c", _STATUS, _CLUSTER["address"]], capture_output=True, text=True,
                               timeout=60, cwd=repo, env={**os.environ, "PYTHONPATH": repo})
            print("[watchdog] board scheduler:", r.stdout or r.stderr[-2000:], file=out, flush=True)
        except subprocess.TimeoutExpired:
            print("[watchdog] the board scheduler did not answer within 60 s", file=out, flush=True)
    spy = Path(sys.executable).with_name("py-spy")
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines()
    busy = [line.split(None, 1) for line in ps if "ray::" in line and "IDLE" not in line and "Agent" not in line]
    for pid, args in busy[:12]:
        try:
            dump = subprocess.run([str(spy), "dump", "--pid", pid], capture_output=True, text=True, timeout=30)
            print(f"[watchdog] {args.strip()} (pid {pid}):\n{dump.stdout or dump.stderr[-500:]}", file=out, flush=True)
        except subprocess.TimeoutExpired:
            pass


def _hard_exit() -> None:
    """The main thread ignored the interrupt: stop the cluster's processes and end the run."""
    try:
        if "workers" in _CLUSTER_OBJ:
            _CLUSTER_OBJ["workers"].stop_all()
        if "head_pid" in _CLUSTER_OBJ:
            stop_session(_CLUSTER_OBJ["head_pid"])
    finally:
        print("[watchdog] the test did not stop after the interrupt; exiting", file=sys.__stderr__, flush=True)
        os._exit(3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """A watchdog thread per test: past TEST_TIMEOUT_S it dumps every thread of this process, the
    scheduler's state and the busy Ray workers' stacks, then interrupts the main thread (ending the run
    the way Ctrl-C does; ``ray.get`` answers only that). If even that is ignored for 60 s, it stops the
    session cluster and exits. A signal handler cannot do this: ``ray.get`` does not run one."""
    import _thread
    import threading

    done = threading.Event()

    def watch() -> None:
        if done.wait(TEST_TIMEOUT_S):
            return
        capman = item.config.pluginmanager.getplugin("capturemanager")
        with capman.global_and_fixture_disabled():  # to the real stderr: the run is about to be cut short
            out = sys.__stderr__
            print(f"\n[watchdog] {item.nodeid} passed {TEST_TIMEOUT_S}s (FABRIC_TEST_TIMEOUT_S); threads of the "
                  "test process:", file=out, flush=True)
            faulthandler.dump_traceback(file=out, all_threads=True)
            _dump_cluster_state(out)
        _thread.interrupt_main()
        if not done.wait(60):
            _hard_exit()

    t = threading.Thread(target=watch, name="test-watchdog", daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """Start the head node; yield ``{"address", "dashboard"}``; stop it at the end."""
    port, dash = free_port(), free_port()
    tmp = tmp_path_factory.mktemp("ray")
    # FABRIC_HOME (the session's temporary key and trust list, tests/conftest.py): every Ray process of
    # the cluster, so every Tune trial, Serve replica and task, signs with the driver's key
    env = dict(os.environ, RAY_AUTH_MODE="disabled", FABRIC_HOME=os.environ["FABRIC_HOME"])
    cmd = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
           "--resources={}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
           f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={free_port()}", "--disable-usage-stats"]
    log = open(tmp / "head.log", "wb")
    # --block keeps the head in this process's own session, so teardown stops exactly this cluster
    # (never `ray stop`, which would stop every Ray instance on the machine).
    head = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp, start_new_session=True)
    info = {"address": f"127.0.0.1:{port}", "dashboard": f"http://127.0.0.1:{dash}", "tmp": str(tmp)}
    _CLUSTER["address"] = info["address"]
    _CLUSTER_OBJ["head_pid"] = head.pid
    try:
        wait_for(lambda: head.poll() is not None or subprocess.run(
            [RAY, "status", f"--address={info['address']}"], capture_output=True, env=env).returncode == 0,
            180, "ray head to start")
        if head.poll() is not None:
            raise RuntimeError(f"ray start failed:\n{(tmp / 'head.log').read_text()}")
        info["workers"] = _CLUSTER_OBJ["workers"] = workers = WorkerNodes(info["address"], tmp, env)
        for name in NODE_GROUPS:  # one at a time: concurrent raylet start-ups time out on 2 busy cores
            workers.start(name)
        yield info
    finally:
        if "workers" in info:
            info["workers"].stop_all()
        stop_session(head.pid)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


class WorkerNodes:
    """The session cluster's worker nodes by group name: start, kill (node loss) and wait for them."""

    def __init__(self, address: str, tmp: Path, env: dict[str, str]) -> None:
        self.address, self.tmp, self.env = address, tmp, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: list = []

    def start(self, name: str, wait: bool = True) -> None:
        res = NODE_GROUPS[name]
        cmd = [RAY, "start", f"--address={self.address}", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=0",
               f"--resources={json.dumps(res)}", "--object-store-memory=100000000", "--disable-usage-stats",
               # the agent's HTTP port defaults to 52365 for every node on the machine; the head's job agent
               # must not lose it to a worker (or another cluster), or `ray job submit` finds no agent
               f"--dashboard-agent-listen-port={free_port()}"]
        log = open(self.tmp / f"{name}.log", "ab")
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.tmp,
                                            start_new_session=True)
        if wait:
            try:
                self.wait_ready([name])
            except RuntimeError:  # "node timed out during startup" under load: one more try
                self.procs.pop(name, None)
                self.start(name, wait=False)
                self.wait_ready([name])

    def wait_ready(self, names: list[str], timeout: float = 120) -> None:
        """Until the cluster advertises every resource of ``names`` (and their processes still run)."""
        want: dict[str, float] = {}
        for n in names:
            for k, v in NODE_GROUPS[n].items():
                want[k] = want.get(k, 0) + v

        def ready() -> bool:
            for n in names:
                if self.procs[n].poll() is not None:
                    raise RuntimeError(f"worker {n} exited:\n{(self.tmp / f'{n}.log').read_text()[-3000:]}")
            out = subprocess.run([RAY, "status", f"--address={self.address}"], capture_output=True, text=True,
                                 env=self.env).stdout
            return all(_advertised(out, k) >= v for k, v in want.items())

        wait_for(ready, timeout, f"worker nodes {names} to join")

    def kill(self, name: str) -> None:
        """Lose node ``name``: every process of its `ray start` session is killed at once (SIGKILL)."""
        stop_session(self.procs.pop(name).pid, grace=0.0, sig=signal.SIGKILL)

    def stop_all(self) -> None:
        import threading

        stops = [threading.Thread(target=stop_session, args=(self.procs.pop(n).pid,)) for n in list(self.procs)]
        for t in stops:  # in parallel: each waits up to its grace period
            t.start()
        for t in stops:
            t.join()
        for log in self.logs:
            log.close()


def _advertised(status: str, resource: str) -> float:
    """Total of ``resource`` in `ray status` output (lines like ``0.0/2.0 loihi``)."""
    import re

    m = re.search(rf"[\d.]+/([\d.]+) {re.escape(resource)}\b", status)
    return float(m.group(1)) if m else 0.0


def stop_session(sid: int, grace: float = 5.0, sig: int = signal.SIGTERM) -> None:
    """Stop every process in session ``sid`` (a ``ray start --block`` and all it spawned)."""
    def members() -> list[int]:
        out = subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True).stdout
        return [int(p) for p, s in (ln.split() for ln in out.splitlines() if ln.strip()) if int(s) == sid]

    for signum, wait in ((sig, grace), (signal.SIGKILL, 0.0)):
        for pid in members():
            try:
                os.kill(pid, signum)
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
