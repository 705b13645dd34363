"""Pure parts of the serve room: KPI windows and breach rules, traffic transitions, request
validation, Prometheus text. No Ray, no HTTP."""

from __future__ import annotations

import io

import numpy as np
import pytest

from serve import (
    KpiWindow,
    Metrics,
    RequestProblem,
    RolloutPolicy,
    TrafficError,
    TrafficState,
    VersionState,
    breaches,
    check_inputs,
    check_spikes,
    parse_npy,
    to_array,
)


def _v(name: str, role: str = "primary") -> VersionState:
    return VersionState(name=name, model_id="m" * 12, kind="loihi", app_name=f"app-{name}", role=role)


# -- KPI window and breach rule ------------------------------------------------------------------
def test_window_percentiles_error_rate_and_feedback():
    w = KpiWindow(size=100)
    for i in range(1, 101):
        w.add(ok=True, device_ms=float(i), serving_ms=2.0 * i, energy_mj=0.5)
    w.add(ok=False)
    s = w.snapshot()
    assert s["requests"] == 101 and s["window"] == 100  # rolling: the oldest success fell out
    assert s["error_rate"] == pytest.approx(0.01)
    assert s["p50_ms"] == pytest.approx(np.percentile(np.arange(1, 101), 50))
    assert s["p99_ms"] == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert s["energy_mj_per_inference"] == pytest.approx(0.5)
    w.feedback([True, True, False, True])
    assert w.snapshot()["accuracy_feedback"] == pytest.approx(0.75)


def test_breach_needs_evidence_then_names_the_threshold():
    pol = RolloutPolicy(min_requests=10, min_feedback=4)
    kpis = {"max_latency_p99_ms": 5.0, "min_accuracy": 0.8}
    w = KpiWindow()
    for _ in range(9):
        w.add(ok=True, device_ms=13.0)
    assert breaches(w.snapshot(), kpis, pol) == []  # 9 < min_requests: not judged yet
    w.add(ok=True, device_ms=13.0)
    reasons = breaches(w.snapshot(), kpis, pol)
    assert len(reasons) == 1 and "p99_ms 13 > max_latency_p99_ms 5" in reasons[0]
    w.feedback([False, False, True, False])
    assert any("accuracy_feedback 0.250 < min_accuracy 0.8" in r for r in breaches(w.snapshot(), kpis, pol))


def test_breach_error_rate_and_serving_limit():
    pol = RolloutPolicy(min_requests=4, max_error_rate=0.2, max_serving_p99_ms=50.0)
    w = KpiWindow()
    for ok in (True, False, False, True):
        w.add(ok=ok, device_ms=1.0, serving_ms=80.0)
    reasons = breaches(w.snapshot(), {}, pol)
    assert any(r.startswith("error_rate 0.500") for r in reasons)
    assert any("serving_p99_ms 80 > max_serving_p99_ms 50" in r for r in reasons)
    healthy = KpiWindow()
    for _ in range(4):
        healthy.add(ok=True, device_ms=1.0, serving_ms=10.0)
    assert breaches(healthy.snapshot(), {"max_latency_p99_ms": 5.0}, pol) == []


# -- traffic -------------------------------------------------------------------------------------
def test_canary_split_follows_weights():
    t = TrafficState(seed=0)
    t.add(_v("v1"))
    step = t.add(_v("v2", "canary"), weight=0.25)
    assert step["action"] == "deploy-canary" and step["weights"] == {"v1": 0.75, "v2": 0.25}
    picks = [t.choose().name for _ in range(4000)]
    assert picks.count("v2") / 4000 == pytest.approx(0.25, abs=0.03)
    assert t.choose(0.74).name == "v1" and t.choose(0.76).name == "v2"


def test_rollback_of_canary_returns_all_traffic_to_primary():
    t = TrafficState(seed=1)
    t.add(_v("v1"))
    t.add(_v("v2", "canary"), weight=0.5)
    step = t.rollback(reason="automatic: p99")
    assert step["from_version"] == "v2" and step["to_version"] == "v1" and step["reason"] == "automatic: p99"
    assert t.versions["v2"].role == "rolled_back" and t.weights() == {"v1": 1.0, "v2": 0.0}
    assert {t.choose().name for _ in range(200)} == {"v1"}


def test_shadow_gets_no_direct_traffic_and_blue_green_switches_back():
    t = TrafficState(seed=2)
    t.add(_v("v1"))
    t.add(_v("v2", "shadow"))
    assert [s.name for s in t.shadows()] == ["v2"] and {t.choose().name for _ in range(100)} == {"v1"}
    step = t.promote("v2")
    assert (step["from_version"], step["to_version"]) == ("v1", "v2")
    assert t.versions["v1"].role == "standby" and {t.choose().name for _ in range(100)} == {"v2"}
    back = t.rollback()
    assert (back["from_version"], back["to_version"]) == ("v2", "v1") and t.primary.name == "v1"
    with pytest.raises(TrafficError, match="nothing to roll back"):
        t.rollback()
    with pytest.raises(TrafficError, match="was rolled back"):
        t.promote("v2")  # a version taken out for a breach is not switched back in by accident


def test_traffic_errors_are_client_errors():
    t = TrafficState()
    with pytest.raises(TrafficError, match="first version must be the primary"):
        t.add(_v("v1", "canary"))
    with pytest.raises(TrafficError) as e:
        t.choose()
    assert e.value.status == 503
    t.add(_v("v1"))
    with pytest.raises(TrafficError) as e:
        t.get("v9")
    assert e.value.status == 404 and "unknown version 'v9'" in str(e.value)
    t.add(_v("v2", "shadow"))
    with pytest.raises(TrafficError, match="weight"):
        t.set_canary("v2", 1.5)
    with pytest.raises(TrafficError, match="already exists"):
        t.add(_v("v2", "canary"))


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value, status, needle", [
    ([], 422, "at least one sample"),
    ([[1, 2], [3]], 422, "rectangular"),
    ([["a", "b"]], 422, "only numbers"),
    ([[None, 1]], 422, "only numbers"),
    ([[float("nan")]], 422, "NaN"),
    ([[1.0]] * 300, 413, "limit 256"),
])
def test_to_array_rejects_with_field_and_status(value, status, needle):
    with pytest.raises(RequestProblem) as e:
        to_array(value, "inputs")
    assert e.value.status == status and str(e.value).startswith("inputs:") and needle in str(e.value)


def test_spike_and_input_shapes():
    ok = check_spikes(np.ones((2, 8, 4), dtype=np.int64), 8, 4)
    assert ok.dtype == np.uint8 and ok.shape == (2, 8, 4)
    for bad, needle in ((np.ones((2, 7, 4)), "[N, 8, 4]"), (np.full((1, 8, 4), 2), "0 or 1"),
                        (np.ones((8, 4)), "got [8, 4]")):
        with pytest.raises(RequestProblem, match="spikes:") as e:
            check_spikes(bad, 8, 4)
        assert e.value.status == 422 and needle in str(e.value)
    assert check_inputs(np.zeros((3, 64)), [64]).dtype == np.float32
    with pytest.raises(RequestProblem, match=r"inputs: shape must be \[N, 64\]"):
        check_inputs(np.zeros((3, 8, 8)), [64])
    with pytest.raises(RequestProblem, match="overflow"):
        check_inputs(np.full((1, 64), 1e300), [64])


def test_parse_npy_refuses_pickles_and_garbage():
    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 8, 4), np.uint8))
    assert parse_npy(buf.getvalue()).shape == (2, 8, 4)
    obj = io.BytesIO()
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for body, status in ((b"", 400), (b"not numpy", 400), (obj.getvalue(), 400)):
        with pytest.raises(RequestProblem) as e:
            parse_npy(body)
        assert e.value.status == status and str(e.value).startswith("body:")
    big = io.BytesIO()
    np.save(big, np.zeros((2000, 1), np.uint8))
    with pytest.raises(RequestProblem) as e:
        parse_npy(big.getvalue())
    assert e.value.status == 413


# -- Prometheus text -------------------------------------------------------------------------------
def test_metrics_text_is_prometheus_exposition():
    m = Metrics()
    m.request("/v1/predict", 200, "v1")
    m.request("/v1/predict", 200, "v1")
    m.request("/v1/predict", 422, "")
    m.served("v1", serving_ms=3.0, device_ms=0.07, energy_mj_total=0.002, samples=2)
    m.served("v1", serving_ms=30.0, device_ms=0.07, energy_mj_total=0.002, samples=1)
    text = m.render()
    lines = text.splitlines()
    assert 'fabric_serve_requests_total{endpoint="/v1/predict",status="200",version="v1"} 2' in lines
    assert 'fabric_serve_requests_total{endpoint="/v1/predict",status="422",version=""} 1' in lines
    assert 'fabric_serve_latency_ms_bucket{version="v1",le="5"} 1' in lines  # cumulative buckets
    assert 'fabric_serve_latency_ms_bucket{version="v1",le="50"} 2' in lines
    assert 'fabric_serve_latency_ms_bucket{version="v1",le="+Inf"} 2' in lines
    assert 'fabric_serve_latency_ms_count{version="v1"} 2' in lines
    assert 'fabric_serve_energy_mj_total{version="v1"} 0.004' in lines
    assert 'fabric_serve_inferences_total{version="v1"} 3' in lines
    for ln in lines:  # every sample line is NAME{labels} VALUE with a numeric value
        if not ln.startswith("#"):
            float(ln.rsplit(" ", 1)[1])
    assert text.count("# TYPE fabric_serve_latency_ms histogram") == 1
