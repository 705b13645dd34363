"""The dashboard against a real run: every page through Streamlit's AppTest (registry from a real
pipeline run on the session cluster, live device actors, a loopback Serve status endpoint), one page
from an s3:// store, and `fabric dashboard` loaded by a real headless Chromium over the DevTools
protocol: the page must render the run's headings and its stored accuracy, and the screenshot must be
a real rendering."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import HTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from fabric.spec import parse_spec
from fabric.store.registry import Registry
from tests.conftest import TINY
from tests.integration.conftest import free_port, stop_session, wait_for
from tests.s3server import s3_endpoint, s3_url
from tests.unit.test_dashboard_logic import _Serve, populate_ops, populate_run

pytestmark = pytest.mark.integration
FIXTURES = (s3_endpoint, s3_url)
REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "apps" / "dashboard.py")
FABRIC = str(Path(sys.executable).with_name("fabric"))


@pytest.fixture(scope="module")
def demo_store(ray_session, tmp_path_factory):
    """A store holding a real tiny run (cpu + emulated loihi) plus Tune/Serve/drift artifacts in their
    documented formats (served inputs and drift are computed from the run's real encoding)."""
    from fabric.flow.pipeline import run_pipeline

    store = str(tmp_path_factory.mktemp("dash") / "store")
    reg = Registry(store)
    spec = parse_spec(copy.deepcopy(TINY) | {"targets": ["cpu", "loihi"],
                                             "dataset": {"name": "digits", "limit": 240, "test_fraction": 0.25},
                                             "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "device": "cpu"},
                                             "golden": {"samples": 0}})  # Lava's start-up is not this test's subject
    t0 = time.perf_counter()
    summary = run_pipeline(spec, reg, progress=False, log=lambda s: None)
    print(f"[dashboard test] tiny run (cpu + loihi) in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    ids = {o.stage: o.artifact for o in summary.stages} | {"report": summary.report_id}
    ids |= populate_ops(reg, ids)
    acc = {r.kind: r.accuracy for r in summary.kpis}
    return {"store": store, "reg": reg, "ids": ids, "summary": summary, "acc": acc}


@pytest.fixture(scope="module")
def serve_url():
    srv = HTTPServer(("127.0.0.1", 0), _Serve)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    srv.server_close()


def app(store: str, page: str, **state) -> object:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=90)
    at.session_state["store"] = store
    for k, v in state.items():
        at.session_state[k] = v
    at.query_params["page"] = page
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(els) -> list[str]:
    return [e.value for e in els]


def test_every_page_renders_the_stored_run(demo_store, serve_url):
    store, ids, acc = demo_store["store"], demo_store["ids"], demo_store["acc"]
    assert set(acc) == {"cpu", "loihi"} and all(a is not None for a in acc.values())

    at = app(store, "Runs")
    assert texts(at.header) == ["Runs"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["cpu accuracy"] == f"{acc['cpu']:.3f}" and metrics["loihi accuracy"] == f"{acc['loihi']:.3f}"
    assert ids["report"] in at.dataframe[0].value["report"].tolist()
    kpi = at.table[0].value
    assert set(kpi.index) == {"cpu", "loihi"} and set(kpi["mode"]) == {"measured", "emulated"}

    at = app(store, "Model detail")
    assert texts(at.header) == ["Model detail"]
    n = len({o.artifact for o in demo_store["summary"].stages} | {ids["report"]})
    assert texts(at.success) == [f"{n} of {n} artifacts verified"]
    assert "ClassificationAccuracy" in at.table[0].value.index
    fit = at.dataframe[0].value
    assert "loihi" in set(fit["kind"]) and (fit["status"] == "ok").all()
    lineage = at.code[0].value
    assert ids["report"][:12] in lineage and ids["train"][:12] in lineage and ids["data"][:12] in lineage

    at = app(store, "Cross-device")
    assert texts(at.header) == ["Cross-device comparison"]
    wide = at.table[0].value
    assert wide.loc["cpu", "accuracy"] == f"{acc['cpu']:.4g}" and wide.loc["loihi", "accuracy"] == f"{acc['loihi']:.4g}"

    at = app(store, "AutoML")
    assert texts(at.header) == ["AutoML"] and at.success[0].value.startswith("Picked trial t1")
    at.number_input[0].set_value(0.9)  # min accuracy: only t2 meets it
    next(b for b in at.button if b.label == "Apply constraints").click().run()
    assert [m.value for m in at.markdown if "trial(s) meet" in m.value] == ["**1 trial(s) meet the constraints**"]
    assert at.success[0].value.startswith("Picked trial t2")

    at = app(store, "Serving", serve_url=serve_url, serve_token=_Serve.TOKEN)
    assert texts(at.header) == ["Serving"]
    live = {m.label: m.value for m in at.metric}
    assert live == {"v1 (cpu) p99 ms": "3.4", "v2 (loihi) p99 ms": "1.1"}
    frames = [d.value for d in at.dataframe]
    history = next(f for f in frames if "action" in f)
    assert history["action"].tolist() == ["canary", "rollback"]
    stored = next(f for f in frames if "program_id" in f)  # the run's deploy[kind] records + the hand-put one
    assert {"cpu", "loihi"} <= set(stored["kind"])
    prom = next(f for f in frames if "metric" in f)
    assert prom.set_index("metric").loc["fabric_requests_total", "value"] == 17.0

    at = app(store, "Devices")
    assert texts(at.header) == ["Devices"]
    healthy = at.success[0].value  # the run's device actors, asked for their health on the cluster
    assert healthy.endswith("device actors healthy") and healthy.split()[0] == healthy.split()[2]
    pools = at.table[-1].value
    assert {"cpu", "loihi"} <= set(pools["kind"]) and pools["healthy"].astype(bool).all()

    at = app(store, "Drift")
    assert texts(at.header) == ["Drift"] and at.error[0].value.startswith("Retrain triggered: event_rate")


def test_pages_say_what_to_run_when_the_store_is_empty(tmp_path):
    store = str(tmp_path / "empty")
    assert app(store, "Runs").info[0].value.startswith("No runs yet — run `fabric run")
    assert app(store, "AutoML").info[0].value.startswith("No tune runs yet — run `fabric tune SPEC`")
    assert app(store, "Drift").info[0].value.startswith("No drift reports yet — run `fabric drift")
    assert "--serve-url" in app(store, "Serving").info[0].value


def test_runs_page_renders_from_an_s3_store(s3_url):
    reg = Registry(s3_url)
    ids = populate_run(reg)
    at = app(s3_url, "Runs")
    assert at.dataframe[0].value["report"].tolist() == [ids["report"]]
    assert {m.label: m.value for m in at.metric}["cpu accuracy"] == "0.913"
    at = app(s3_url, "Model detail")
    assert at.success[0].value == f"{len(ids)} of {len(ids)} artifacts verified"


# -- a real browser ----------------------------------------------------------------------------
class Chromium:
    """Headless Chromium driven over the DevTools protocol (no Node toolchain): navigate, wait until
    the page's text shows what is expected, read the text, take a screenshot."""

    def __init__(self) -> None:
        exe = shutil.which("chromium")
        if exe is None:
            pytest.fail("chromium is not installed: run `make chromium` (Debian package chromium)")
        self.udd = Path(tempfile.mkdtemp(prefix="chromium-"))
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={self.udd}",
             "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = self.udd / "DevToolsActivePort"
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 60, "chromium DevTools port")
        port = int(port_file.read_text().split()[0])
        page = next(t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json() if t["type"] == "page")
        from websockets.sync.client import connect

        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.n = 0
        self.call("Page.enable")

    def call(self, method: str, **params) -> dict:
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def text(self) -> str:
        js = "document.body ? document.body.innerText : ''"
        return self.call("Runtime.evaluate", expression=js, returnByValue=True)["result"].get("value", "")

    def busy(self) -> bool:
        js = ("document.querySelectorAll('[data-testid=\"stSkeleton\"]').length + "
              "document.querySelectorAll('[data-testid=\"stStatusWidget\"]').length")
        return bool(self.call("Runtime.evaluate", expression=js, returnByValue=True)["result"].get("value"))

    def load(self, url: str, expect: list[str], timeout: float = 90) -> str:
        self.call("Page.navigate", url=url)
        deadline = time.time() + timeout
        text = ""
        while time.time() < deadline:
            text = self.text()
            if all(e in text for e in expect) and not self.busy():
                time.sleep(1.0)  # let charts finish drawing
                return self.text()
            time.sleep(0.5)
        missing = [e for e in expect if e not in text]
        raise AssertionError(f"{url} did not render {missing} within {timeout}s; page text: {text[:600]!r}")

    def screenshot(self, path: Path) -> bytes:
        png = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(png)
        return png

    def close(self) -> None:
        self.ws.close()
        stop_session(self.proc.pid, grace=2.0)
        shutil.rmtree(self.udd, ignore_errors=True)


def check_screenshot(png: bytes) -> None:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    assert img.size[0] >= 1000 and img.size[1] >= 700, img.size
    a = np.asarray(img, dtype=np.float32)
    assert a.std() > 10, "screenshot is (nearly) uniform: nothing was rendered"
    colours = len(np.unique(a.reshape(-1, 3)[::7], axis=0))
    assert colours > 50, f"only {colours} colours: not a rendered page"


def test_fabric_dashboard_in_a_real_browser(demo_store, tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    log = open(tmp_path / "dashboard.log", "wb")
    proc = subprocess.Popen([FABRIC, "dashboard", "--store", demo_store["store"], "--port", str(port)], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    browser = None
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"fabric dashboard exited:\n{(tmp_path / 'dashboard.log').read_text()}")
            try:
                return httpx.get(url + "/_stcore/health", timeout=2).text.strip() == "ok"
            except httpx.HTTPError:
                return False

        wait_for(healthy, 90, "fabric dashboard to serve")
        browser = Chromium()
        acc = demo_store["acc"]
        text = browser.load(url + "/?page=Runs", ["Neuromorphic fabric", "Runs", "cpu accuracy",
                                                  f"{acc['cpu']:.3f}", f"{acc['loihi']:.3f}", "KPIs and gates"])
        assert "Run tiny: " in text and "1 KPI report(s) in " + demo_store["store"] in text
        shot = tmp_path / "dashboard-runs.png"
        check_screenshot(browser.screenshot(shot))
        assert shot.stat().st_size > 20_000

        text = browser.load(url + "/?page=Cross-device", ["Cross-device comparison", "energy / inference [mJ]"])
        check_screenshot(browser.screenshot(tmp_path / "dashboard-compare.png"))
        assert f"{acc['loihi']:.4g}" in text
    finally:
        if browser is not None:
            browser.close()
        stop_session(proc.pid, grace=3.0)
        log.close()
