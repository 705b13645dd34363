"""Irregular load over real HTTP on 127.0.0.1 (issue #17 item 3): a model compiled for loihi and cpu,
served with the spec's ``serve: {slo_p99_ms: 1, overflow: [loihi, cpu], sleep_after_s: 2}`` behind Ray
Serve on the session cluster. A burst of concurrent requests breaks the tiny SLO on loihi (pool
placement: boards behind the scheduler), batches spill to the cpu program (inside the ingress), every
answer says where it ran, /metrics and /admin/status count the spills per (from, to); idle boards go
to their modelled sleep state and the next request wakes one."""

from __future__ import annotations

import copy
import re
import threading

import httpx
import numpy as np
import pytest

from fabric.data.datasets import from_parquet_bytes
from fabric.spec import parse_spec
from fabric.store.registry import Registry
from tests.conftest import TINY
from tests.integration.conftest import free_port, wait_for

pytestmark = pytest.mark.integration
TOKEN = "overflow-token"


@pytest.fixture(scope="module")
def overflow_app(ray_session, tmp_path_factory):
    from ray import serve

    from fabric.flow.pipeline import run_pipeline
    from serve import ServeClient, start

    d = copy.deepcopy(TINY)
    d.update(name="overflow-tiny", targets=["loihi", "cpu"],
             serve={"slo_p99_ms": 1.0, "overflow": ["loihi", "cpu"], "sleep_after_s": 2.0})
    d["dataset"]["limit"] = 200
    d["encoder"]["timesteps"] = 8
    d["train"]["epochs"] = 1
    store = str(tmp_path_factory.mktemp("overflow") / "store")
    reg = Registry(store)
    run_pipeline(parse_spec(d), reg, progress=False, log=lambda s: None)
    deps = {reg.get_json(r.id)["kind"]: r.id for r in reg.ls(kind="deployment")}
    progs = {r.extra["kind"]: r.id for r in reg.ls(kind="program")}
    ds, splits = from_parquet_bytes(reg.get(reg.ls(kind="dataset")[0].id))
    url = start(app="overflow", store=store, token=TOKEN, port=free_port(), seed=0)
    client = ServeClient(url, TOKEN)
    try:
        yield {"url": url, "client": client, "deps": deps, "progs": progs, "x": ds.x[splits == "test"]}
    finally:
        client.close()
        serve.shutdown()


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_burst_spills_to_cpu_says_where_it_ran_and_boards_sleep(overflow_app):
    c, url = overflow_app["client"], overflow_app["url"]
    dep = c.deploy(overflow_app["deps"]["loihi"])  # no serve field: the spec's serve section applies
    assert dep["kind"] == "loihi" and dep["serve"]["policy"] == {"slo_p99_ms": 1.0, "overflow": ["loihi", "cpu"],
                                                                 "sleep_after_s": 2.0}
    assert set(dep["serve"]["targets"]) == {"loihi", "cpu"} and dep["serve"]["skipped"] == {}
    assert dep["serve"]["targets"]["cpu"]["program_id"] == overflow_app["progs"]["cpu"]

    x = overflow_app["x"].astype(np.float32)
    bodies: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as h:
            for j in range(6):
                r = h.post("/v1/predict", json={"inputs": x[(i * 6 + j) % len(x)][None].tolist()})
                with lock:
                    (bodies if r.status_code == 200 else errors).append(r.json() if r.status_code == 200 else r.text)

    c.predict(inputs=x[:1])  # measures loihi's service time: over a 1 ms SLO through the pool
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    ran = [b["ran_on"] for b in bodies]
    assert len(ran) == 48 and set(ran) <= {"loihi", "cpu"}
    spilled = [b for b in bodies if b["ran_on"] == "cpu"]
    assert spilled, ran
    assert all(b["spilled_from"] == "loihi" and b["program_id"] == overflow_app["progs"]["cpu"] for b in spilled)
    assert all("spilled_from" not in b for b in bodies if b["ran_on"] == "loihi")

    text = c.metrics()
    assert _metric(text, "fabric_serve_spills_total", **{"from": "loihi", "to": "cpu"}) == len(spilled)
    assert _metric(text, "fabric_serve_ran_on_total", version=dep["version"], kind="cpu") == len(spilled)
    st = c.status()
    assert st["spills"] == [{"from": "loihi", "to": "cpu", "requests": len(spilled)}]

    # idle past sleep_after_s: both boards asleep, with sleep energy accrued; the next request wakes one
    st = wait_for(lambda: (s := c.status()) and all(b["state"] == "asleep" for b in s["boards"].values()) and s,
                  timeout=20, what="boards asleep after 2 s idle")
    assert set(st["boards"]) == {"loihi", "cpu"} and all(b["sleep_energy_mj"] > 0 for b in st["boards"].values())
    assert _metric(c.metrics(), "fabric_serve_board_asleep", kind="loihi") == 1
    r = c.predict(inputs=x[:1])
    st = c.status()
    assert st["boards"][r["ran_on"]]["state"] == "awake" and st["boards"][r["ran_on"]]["wakes"] >= 1
    if r["ran_on"] == "loihi":  # cpu's host does not sleep for real: its wake latency is 0
        assert r["wake_ms"] > 0
        assert _metric(c.metrics(), "fabric_serve_wakes_total", kind="loihi") >= 1
