"""Irregular load (issue #17 item 3) without Ray: the serve policy's validation, the spill decision one
step either side of the SLO, the board sleep state machine and its energy, the constants it reads, and
the ingress spilling a burst to an overflow kind (in-process ASGI, stand-in handles)."""

from __future__ import annotations

import asyncio
import copy

import httpx
import numpy as np
import pytest

from actors.base.energy import load_constants
from fabric.kinds import kinds
from fabric.spec import SpecError, parse_spec
from fabric.store.registry import Registry
from serve._private.ingress import Ingress, build_app
from serve._private.metrics import Metrics
from serve._private.policy import (
    BoardPower,
    PolicyError,
    Route,
    ServePolicy,
    ServiceClock,
    SleepState,
    Target,
    batches_ahead,
    board_power,
    choose_kind,
    estimate_ms,
)
from serve._private.resolve import ModelInfo
from tests.conftest import TINY

KINDS = kinds()


# -- the policy record ------------------------------------------------------------------------------
def test_policy_round_trips_and_orders_the_chain():
    p = ServePolicy.from_dict({"slo_p99_ms": 20, "overflow": ["loihi", "cpu"], "sleep_after_s": 30}, KINDS)
    assert p.to_dict() == {"slo_p99_ms": 20.0, "overflow": ["loihi", "cpu"], "sleep_after_s": 30.0}
    assert ServePolicy.from_dict(p.to_dict(), KINDS) == p
    assert p.chain("loihi") == ["loihi", "cpu"]  # the primary is not repeated
    assert p.chain("akida") == ["akida", "loihi", "cpu"]
    assert ServePolicy.from_dict(None).to_dict() == {}


@pytest.mark.parametrize("bad, match", [
    ({"slo_p99_ms": 0}, r"serve\.slo_p99_ms: must be > 0, got 0"),
    ({"slo_p99_ms": -1.5}, r"serve\.slo_p99_ms: must be > 0"),
    ({"slo_p99_ms": float("nan")}, r"serve\.slo_p99_ms: must be > 0"),
    ({"slo_p99_ms": "fast"}, r"serve\.slo_p99_ms: must be a number"),
    ({"slo_p99_ms": 3_600_001}, r"serve\.slo_p99_ms: 3600001 > limit 3.6e\+06"),
    ({"sleep_after_s": 0}, r"serve\.sleep_after_s: must be > 0"),
    ({"slo_p99_ms": 5, "overflow": ["loihi", "gpu"]}, r"serve\.overflow\[1\]: unknown device kind 'gpu'; valid: \["),
    ({"slo_p99_ms": 5, "overflow": "cpu"}, r"serve\.overflow: must be a list"),
    ({"slo_p99_ms": 5, "overflow": ["cpu", "cpu"]}, r"serve\.overflow: must not repeat"),
    ({"overflow": ["cpu"]}, r"serve\.overflow: needs slo_p99_ms"),
    ({"slo": 5}, r"serve\.slo: unknown field"),
])
def test_policy_refuses_bad_input_with_one_line_naming_the_field(bad, match):
    with pytest.raises(PolicyError, match=match) as e:
        ServePolicy.from_dict(bad, KINDS)
    assert "\n" not in str(e.value)


def test_policy_at_the_limit_is_accepted():
    assert ServePolicy.from_dict({"slo_p99_ms": 3_600_000}).slo_p99_ms == 3_600_000.0


def test_spec_serve_section_is_validated_and_kept_out_of_old_hashes():
    d = copy.deepcopy(TINY)
    before = parse_spec(d)
    assert "serve" not in before.to_dict()  # a spec without the section hashes as before it existed
    d["serve"] = {"slo_p99_ms": 20, "overflow": ["loihi", "cpu"], "sleep_after_s": 30}
    s = parse_spec(d)
    assert s.to_dict()["serve"] == {"slo_p99_ms": 20.0, "overflow": ["loihi", "cpu"], "sleep_after_s": 30.0}
    assert s.hash != before.hash
    for bad, match in [({"slo_p99_ms": 0}, "serve.slo_p99_ms"), ({"slo_p99_ms": 1, "overflow": ["gpu"]},
                       "serve.overflow: entry 0: unknown device kind 'gpu'; valid"),
                       ({"overflow": ["cpu"]}, "needs slo_p99_ms")]:
        d["serve"] = bad
        with pytest.raises(SpecError, match=match):
            parse_spec(d)


# -- the spill decision -----------------------------------------------------------------------------
def test_estimate_is_depth_plus_one_times_service_plus_wake():
    assert estimate_ms(0, 5.0) == 5.0
    assert estimate_ms(3, 5.0) == 20.0
    assert estimate_ms(3, 5.0, wake_ms=2.0) == 22.0
    assert estimate_ms(7, None, wake_ms=1.0) == 1.0  # nothing measured yet: only the wake is predicted
    assert batches_ahead(0, 16) == 0 and batches_ahead(1, 16) == 1 and batches_ahead(17, 16) == 2
    with pytest.raises(ValueError, match="max_batch_size"):
        batches_ahead(1, 0)


def test_one_step_over_the_slo_spills_one_step_under_does_not():
    chain = ["loihi", "cpu"]
    # 5 ms per batch, SLO 20 ms: 3 batches ahead -> 20 ms (keeps it), 4 ahead -> 25 ms (spills)
    under = {"loihi": estimate_ms(3, 5.0), "cpu": estimate_ms(0, 1.0)}
    over = {"loihi": estimate_ms(4, 5.0), "cpu": estimate_ms(0, 1.0)}
    assert choose_kind(chain, under, 20.0) == "loihi"
    assert choose_kind(chain, over, 20.0) == "cpu"


def test_when_every_kind_breaks_the_slo_the_least_loaded_wins_and_missing_kinds_never():
    assert choose_kind(["loihi", "akida", "cpu"], {"loihi": 50.0, "akida": 40.0, "cpu": 45.0}, 20.0) == "akida"
    assert choose_kind(["loihi", "cpu"], {"loihi": 30.0, "cpu": 30.0}, 20.0) == "loihi"  # ties: earlier
    assert choose_kind(["loihi", "spinnaker", "cpu"], {"loihi": 30.0, "cpu": 5.0}, 20.0) == "cpu"
    with pytest.raises(ValueError, match="no kind"):
        choose_kind(["loihi"], {}, 20.0)


def test_service_clock_divides_by_the_batches_waited_and_smooths():
    c = ServiceClock(alpha=0.5)
    assert c.service_ms is None
    assert c.observe(40.0, depth=3) == 10.0  # waited behind 3 batches: 4 batch times
    assert c.observe(20.0, depth=0) == 15.0
    with pytest.raises(ValueError, match="alpha"):
        ServiceClock(alpha=0)


def _target(kind: str, service_ms: float | None, in_flight: int = 0, max_batch: int = 1) -> Target:
    t = Target(kind=kind, handle=None, max_batch_size=max_batch, in_flight=in_flight)
    t.clock.service_ms = service_ms
    return t


def test_route_spills_past_the_slo_and_counts_a_sleeping_boards_wake():
    pol = ServePolicy(slo_p99_ms=20.0, overflow=("cpu",))
    route = Route(policy=pol, primary="loihi", targets={"loihi": _target("loihi", 5.0, in_flight=3),
                                                        "cpu": _target("cpu", 2.0)})
    assert route.pick({}, 0.0).kind == "loihi"  # 4 x 5 = 20 ms: within
    route.targets["loihi"].in_flight = 4
    assert route.pick({}, 0.0).kind == "cpu"  # 25 ms: spills
    # a sleeping primary's wake latency counts: 3 ahead (20 ms) + 1 ms wake breaks 20 ms
    route.targets["loihi"].in_flight = 3
    board = SleepState(sleep_after_s=10.0, power=BoardPower(p_idle_w=1.0, p_sleep_w=0.1, t_wake_s=1e-3), now=0.0)
    assert route.pick({"loihi": board}, 5.0).kind == "loihi"  # awake at t=5
    assert route.pick({"loihi": board}, 10.0).kind == "cpu"  # asleep from t=10: 21 ms
    t, depth, wake = route.begin({"loihi": board}, 0.0)
    assert (t.kind, depth, wake, t.in_flight) == ("loihi", 3, 0.0, 4)
    route.end({"loihi": board}, t, depth, 40.0, 0.01)
    assert t.in_flight == 3 and t.served == 1 and t.clock.service_ms == pytest.approx(0.3 * 10 + 0.7 * 5)
    st = route.status()
    assert st["policy"] == pol.to_dict() and st["targets"]["loihi"]["served"] == 1


# -- the sleep state machine -------------------------------------------------------------------------
POWER = BoardPower(p_idle_w=0.5, p_sleep_w=0.05, t_wake_s=0.002)


def test_board_sleeps_after_the_idle_time_and_not_one_step_before():
    b = SleepState(sleep_after_s=30.0, power=POWER, now=100.0)
    b.advance(129.999)
    assert b.state == "awake" and b.sleeps == 0
    b.advance(130.0)
    assert b.state == "asleep" and b.sleeps == 1


def test_wake_latency_goes_to_the_first_request_only_and_energy_counts_sleep_time():
    b = SleepState(sleep_after_s=30.0, power=POWER, now=0.0)
    snap = b.snapshot(100.0)  # idle 30 s, then asleep 70 s
    assert snap["state"] == "asleep" and snap["idle_s"] == pytest.approx(30.0) and snap["sleep_s"] == pytest.approx(70.0)
    assert snap["idle_energy_mj"] == pytest.approx(0.5 * 30 * 1e3)
    assert snap["sleep_energy_mj"] == pytest.approx(0.05 * 70 * 1e3)
    assert b.wake_pending_s(100.0) == 0.002
    assert b.begin(100.0) == 0.002  # woken: the first request pays the wake
    assert b.begin(100.001) == 0.0  # a second one, concurrent: awake already
    b.end(100.01)
    b.end(100.02)
    assert b.begin(110.0) == 0.0  # idle 10 s < 30 s: still awake
    b.end(110.0)
    snap = b.snapshot(110.0)
    assert (snap["wakes"], snap["sleeps"], snap["wake_ms_total"]) == (1, 1, pytest.approx(2.0))
    assert snap["sleep_s"] == pytest.approx(70.0)  # busy and awake time is not sleep
    assert snap["idle_s"] == pytest.approx(30.0 + 9.98)  # busy intervals (100.0-100.02) are not idle either


def test_a_busy_board_never_falls_asleep():
    b = SleepState(sleep_after_s=1.0, power=POWER, now=0.0)
    b.begin(0.0)
    b.advance(50.0)  # one long request
    assert b.state == "awake" and b.idle_s == 0.0 and b.sleep_s == 0.0
    b.end(50.0)
    b.advance(51.5)
    assert b.state == "asleep" and b.idle_s == pytest.approx(1.0) and b.sleep_s == pytest.approx(0.5)


def test_sleep_state_and_power_refuse_bad_figures():
    with pytest.raises(ValueError, match="sleep_after_s: must be > 0"):
        SleepState(sleep_after_s=0.0, power=POWER, now=0.0)
    with pytest.raises(ValueError, match="p_sleep_w"):
        BoardPower(p_idle_w=1.0, p_sleep_w=-0.1, t_wake_s=0.0)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_cited_sleep_figures_with_bands(kind):
    c = load_constants(kind)
    for key in ("p_idle_w", "p_sleep_w", "t_wake_s"):
        k = c.constants[key]
        assert k.low <= k.value <= k.high and k.source and k.band, (kind, key)
        assert "DOI" in k.source or "arXiv" in k.source or "band" in k.source or "declared" in k.source, (kind, key)
    p = board_power(kind)
    assert p.p_sleep_w <= p.p_idle_w  # sleeping never costs more than idling


# -- the ingress, in-process -------------------------------------------------------------------------
T, N_IN, N_OUT = 4, 6, 3


class _Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args):
        return self.fn(*args)


class _Board:
    """Stands in for a version's handle: ``delay_s`` per call, answers like ModelServer.infer."""

    def __init__(self, delay_s: float):
        self.delay_s, self.calls = delay_s, 0

        async def infer(x: np.ndarray) -> dict:
            self.calls += 1
            await asyncio.sleep(self.delay_s)
            n = len(x)
            return {"classes": [0] * n, "scores": [[1.0, 0.0, 0.0]] * n, "device_ms": 0.01, "energy_mj": 1e-3,
                    "emulated": True, "batch_samples": n}
        self.infer = _Method(infer)


def _info(kind: str, reg: Registry) -> ModelInfo:
    pid = reg.put(f"{kind} program".encode(), kind="program", name=f"{kind}-program", extra={"kind": kind}).id
    return ModelInfo(program_id=pid, kind=kind, model_id="m" * 12, nir_id=None, encoding_id=None,
                     encoder={"name": "rate", "timesteps": T, "params": {}, "seed": 0}, n_in=N_IN, n_out=N_OUT,
                     classes=[0, 1, 2], input_shape=None)


def _ingress(tmp_path, slo_ms: float, sleep_after_s: float | None = None):
    ing = Ingress(app="overflow", store=str(tmp_path / "store"), tenant=None, token="t0k", seed=0)
    slow, fast = _Board(0.06), _Board(0.0)
    primary = _info("loihi", ing.registry)
    ing.register("v1", primary, slow, model_id="m" * 12)
    pol = ServePolicy(slo_p99_ms=slo_ms, overflow=("loihi", "cpu"), sleep_after_s=sleep_after_s)
    ing.install_policy("v1", primary, slow, pol, {"cpu": Target(kind="cpu", handle=fast, info=_info("cpu", ing.registry),
                                                                max_batch_size=16)}, {"akida": "none"})
    return ing, slow, fast


async def _burst(ing: Ingress, n: int, sequential: bool = False) -> list[dict]:
    spikes = np.zeros((1, T, N_IN), dtype=int).tolist()
    transport = httpx.ASGITransport(app=build_app(ing))
    async with httpx.AsyncClient(transport=transport, base_url="http://unit") as c:
        async def one():
            r = await c.post("/v1/predict", json={"spikes": spikes})
            assert r.status_code == 200, r.text
            return r.json()
        if sequential:
            return [await one() for _ in range(n)]
        return list(await asyncio.gather(*(one() for _ in range(n))))


def test_ingress_spills_a_burst_past_the_slo_and_says_where_each_answer_ran(tmp_path):
    ing, slow, fast = _ingress(tmp_path, slo_ms=20.0)

    async def run():
        first = await _burst(ing, 1)  # measures the primary: 60 ms a batch, over the 20 ms SLO
        return first + await _burst(ing, 12)

    bodies = asyncio.run(run())
    ran = [b["ran_on"] for b in bodies]
    assert ran[0] == "loihi" and ran.count("cpu") >= 6, ran
    assert all(b["spilled_from"] == "loihi" for b in bodies if b["ran_on"] == "cpu")
    assert all("spilled_from" not in b for b in bodies if b["ran_on"] == "loihi")
    assert fast.calls == ran.count("cpu") and slow.calls == ran.count("loihi")
    spilled = ran.count("cpu")
    assert ing.metrics.spills == {("loihi", "cpu"): spilled}
    text = ing.metrics.render()
    assert f'fabric_serve_spills_total{{from="loihi",to="cpu"}} {spilled}' in text
    assert f'fabric_serve_ran_on_total{{version="v1",kind="cpu"}} {spilled}' in text
    st = ing.status_body()
    assert st["spills"] == [{"from": "loihi", "to": "cpu", "requests": spilled}]
    assert st["serve"]["v1"]["skipped"] == {"akida": "none"} and st["serve"]["v1"]["targets"]["cpu"]["served"] == spilled


def test_ingress_keeps_the_primary_when_the_slo_holds(tmp_path):
    ing, slow, fast = _ingress(tmp_path, slo_ms=1000.0)
    bodies = asyncio.run(_burst(ing, 6, sequential=True))
    assert {b["ran_on"] for b in bodies} == {"loihi"} and fast.calls == 0
    assert ing.metrics.spills == {} and "fabric_serve_spills_total{" not in ing.metrics.render()


def test_ingress_wakes_a_sleeping_board_once_and_accounts_sleep_energy(tmp_path):
    ing, slow, fast = _ingress(tmp_path, slo_ms=1000.0, sleep_after_s=30.0)
    board = ing.boards["loihi"]
    board.now = board.last_active = board.now - 100.0  # as if idle for the last 100 s
    bodies = asyncio.run(_burst(ing, 2, sequential=True))
    wake_ms = load_constants("loihi").value("t_wake_s") * 1e3
    assert bodies[0]["wake_ms"] == pytest.approx(wake_ms) and "wake_ms" not in bodies[1]
    assert bodies[0]["device_latency_ms"] == pytest.approx(0.01 + wake_ms)
    assert bodies[1]["device_latency_ms"] == pytest.approx(0.01)
    assert ing.metrics.wakes == {"loihi": 1}
    ing.metrics.boards = {k: b.snapshot(b.now) for k, b in ing.boards.items()}
    snap = ing.metrics.boards["loihi"]
    assert snap["sleep_s"] == pytest.approx(70.0, abs=1.0) and snap["state"] == "awake"
    assert snap["sleep_energy_mj"] == pytest.approx(load_constants("loihi").value("p_sleep_w") * snap["sleep_s"] * 1e3)
    text = ing.metrics.render()
    assert 'fabric_serve_wakes_total{kind="loihi"} 1' in text
    assert 'fabric_serve_board_energy_mj_total{kind="loihi",state="asleep"}' in text


def test_metrics_render_has_no_overflow_series_before_any_traffic():
    text = Metrics().render()
    assert "# TYPE fabric_serve_spills_total counter" in text and "fabric_serve_spills_total{" not in text


@pytest.fixture()
def compiled(tmp_path):
    """dataset -> encoding -> model -> nir -> program[loihi, cpu] in a fresh store."""
    import torch

    from fabric.flow.pipeline import nir_to_bytes
    from fabric.kinds import make_runtime
    from fabric.model.snn import LifMLP, export_nir

    reg = Registry(str(tmp_path / "store"))
    ds = reg.put(b"rows", kind="dataset", name="d", extra={"shape": [N_IN], "classes": [0, 1, 2]})
    enc = reg.put(b"spikes", kind="encoding", name="d/rate", parents=[ds.id],
                  extra={"encoder": "rate", "timesteps": T, "params": {}, "seed": 0, "n_classes": N_OUT,
                         "shape": [10, T, N_IN]})
    torch.manual_seed(0)
    graph = export_nir(LifMLP(N_IN, [8], N_OUT, 0.9, 0.5), metadata={"timesteps": T})
    model = reg.put(b"weights", kind="model", name="m", parents=[enc.id])
    nir_rec = reg.put(nir_to_bytes(graph), kind="nir", name="m.nir", parents=[model.id])
    progs = {k: reg.put(make_runtime(k).compile(graph).to_bytes(), kind="program", name=f"{k}-program",
                        parents=[nir_rec.id], device_id=k, extra={"kind": k}).id for k in ("loihi", "cpu")}
    return reg, progs


def test_overflow_targets_are_the_kinds_with_a_compiled_program_of_the_model(compiled):
    """A model compiled for loihi and cpu: cpu becomes an in-ingress target running the cpu program;
    spinnaker (never compiled) is left out with the reason."""
    from serve._private.local import LocalHandle
    from serve._private.resolve import resolve_model
    from serve._private.schemas import DeployRequest

    reg, progs = compiled
    ing = Ingress(app="targets", store=reg.store.url, tenant=None, token="t0k")
    info = resolve_model(ing.registry, progs["loihi"])
    pol = ServePolicy.from_dict({"slo_p99_ms": 5, "overflow": ["loihi", "spinnaker", "cpu"]}, KINDS)
    out, skipped = asyncio.run(ing._overflow_targets(info, pol, DeployRequest(model_id=progs["loihi"]), "targets-v1"))
    assert set(out) == {"cpu"} and set(skipped) == {"spinnaker"}
    assert skipped["spinnaker"].startswith("no compiled program: no 'spinnaker' program compiled from model")
    cpu = out["cpu"]
    assert isinstance(cpu.handle, LocalHandle) and cpu.info.program_id == progs["cpu"] and cpu.max_batch_size == 16
    res = asyncio.run(cpu.handle.infer.remote(np.ones((2, T, N_IN), dtype=np.uint8)))
    assert len(res["classes"]) == 2


def test_deploy_route_checks_the_serve_policy_at_the_door_and_reports_left_out_kinds(compiled):
    from fastapi.testclient import TestClient

    reg, progs = compiled
    ing = Ingress(app="door", store=reg.store.url, tenant=None, token="t0k")
    auth = {"Authorization": "Bearer t0k"}
    with TestClient(build_app(ing)) as client:
        r = client.post("/admin/deploy", headers=auth, json={"model_id": progs["cpu"], "serve": {
            "slo_p99_ms": 5, "overflow": ["cpu", "gpu"]}})
        assert r.status_code == 422 and r.json()["error"].startswith(
            "serve.overflow[1]: unknown device kind 'gpu'; valid: ["), r.text
        r = client.post("/admin/deploy", headers=auth, json={"model_id": progs["cpu"], "serve": {"slo_p99_ms": 0}})
        assert r.status_code == 422 and "serve.slo_p99_ms" in r.json()["error"]
        assert ing.state.versions == {}  # nothing was deployed by a refused request
        r = client.post("/admin/deploy", headers=auth, json={"model_id": progs["cpu"], "serve": {
            "slo_p99_ms": 5, "overflow": ["spinnaker"], "sleep_after_s": 60}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["serve"]["policy"] == {"slo_p99_ms": 5.0, "overflow": ["spinnaker"], "sleep_after_s": 60.0}
        assert set(body["serve"]["targets"]) == {"cpu"} and "spinnaker" in body["serve"]["skipped"]
        spikes = np.zeros((1, T, N_IN), dtype=int).tolist()
        r = client.post("/v1/predict", json={"spikes": spikes})
        assert r.status_code == 200 and r.json()["ran_on"] == "cpu" and "spilled_from" not in r.json()
        assert set(client.get("/admin/status", headers=auth).json()["boards"]) == {"cpu"}
