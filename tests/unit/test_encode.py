"""Spike encoders: shapes for static, time-series and event inputs; determinism; decoders; errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fabric.data.encode import (
    DECODERS,
    ENCODERS,
    decode,
    encode,
    encode_with_meta,
    encoder_params,
    resample,
)
from fabric.data.events import EVENT_DTYPE, EventSet, generate_gestures

DENSE = ["rate", "latency", "delta", "sigma_delta", "level_crossing", "lif"]


@pytest.fixture(scope="module")
def static() -> np.ndarray:
    return np.random.default_rng(0).random((40, 12)).astype(np.float32)


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    """[N=4, C=3, T=60] slow sines in [0.1, 0.9]."""
    t = np.linspace(0, 1, 60)
    base = 0.5 + 0.4 * np.sin(2 * np.pi * np.outer([1, 2, 3], t) + np.arange(3)[:, None])
    return np.repeat(base[None], 4, axis=0).astype(np.float32)


def test_registry_has_every_encoder_and_decoders_where_they_exist():
    assert set(ENCODERS) == {"rate", "latency", "delta", "sigma_delta", "level_crossing", "lif", "event_frames"}
    assert set(DECODERS) == {"rate", "latency", "sigma_delta", "level_crossing", "lif"}


@pytest.mark.parametrize("name", DENSE)
def test_static_input_gives_binary_spikes_n_t_features_deterministically(name, static):
    s = encode(name, static, 20, seed=5)
    k = {"delta": 2, "level_crossing": 2, "lif": 4}.get(name, 1)
    assert s.shape == (40, 20, 12 * k) and s.dtype == np.uint8 and set(np.unique(s)) <= {0, 1}
    assert np.array_equal(s, encode(name, static, 20, seed=5))


@pytest.mark.parametrize("name, k", [("rate", 1), ("delta", 2), ("level_crossing", 2), ("sigma_delta", 1), ("lif", 4)])
def test_time_series_are_encoded_along_the_time_axis(name, k, series):
    s, meta = encode_with_meta(name, series, 30, 0)
    assert s.shape == (4, 30, 3 * k), "[N, T', C*k] with T' = timesteps (resampled)"
    assert meta["input_kind"] == "timeseries" and meta["spikes_per_input"] == k
    # channel c owns features c*k .. c*k+k-1: channel 2 (fastest sine) is the busiest for change codes
    if name in ("delta", "level_crossing"):
        per_channel = s.reshape(4, 30, 3, k).sum(axis=(0, 1, 3))
        assert per_channel[2] > per_channel[0]


def test_latency_flattens_time_series_values(series):
    assert encode("latency", series, 10, 0).shape == (4, 10, 3 * 60)


def test_rate_static_matches_the_original_bernoulli_code(static):
    rng = np.random.default_rng(7)
    ref = (rng.random((40, 25, 12), dtype=np.float32) < static[:, None, :]).astype(np.uint8)
    assert np.array_equal(encode("rate", static, 25, 7), ref)
    assert not np.array_equal(encode("rate", static, 25, 7), encode("rate", static, 25, 8))


def test_delta_fires_once_per_step_change_with_its_sign():
    x = np.zeros((1, 1, 10), np.float32)
    x[0, 0, 3:7] = 0.5  # up at t=3, down at t=7
    s = encode("delta", x, 10, 0, {"threshold": 0.2})[0]
    assert list(np.flatnonzero(s[:, 0])) == [3] and list(np.flatnonzero(s[:, 1])) == [7]
    assert encode("delta", x, 10, 0, {"polarity": False}).shape == (1, 10, 1)


@pytest.mark.parametrize("name, params, tol", [
    ("latency", {}, 1 / 38),
    ("sigma_delta", {}, 1 / 40 + 1e-6),
    ("level_crossing", {"threshold": 0.05}, 0.05 + 1e-6),
    ("lif", {}, 0.08),
    ("rate", {}, 0.35),
])
def test_decoders_recover_static_values(name, params, tol, static):
    x = np.clip(static, 0.02, 1.0)  # latency stays silent at or below its threshold
    s, meta = encode_with_meta(name, x, 40, 1, params)
    assert np.abs(decode(s, meta) - x).max() <= tol


@pytest.mark.parametrize("name, params, tol", [
    ("level_crossing", {"threshold": 0.05, "baseline": 0.5}, 0.05 + 1e-6),
    ("sigma_delta", {}, 0.07),
    ("lif", {}, 0.07),
])
def test_decoders_track_time_series(name, params, tol, series):
    x = resample(series, 120)
    s, meta = encode_with_meta(name, x, 120, 0, params)
    est = decode(s, meta, window=8)
    assert est.shape == x.shape and float(np.abs(est - x).mean()) <= tol


def test_delta_has_no_decoder(static):
    s, meta = encode_with_meta("delta", static, 10, 0)
    assert meta["decoder"] is None
    with pytest.raises(ValueError, match="'delta' has no decoder"):
        decode(s, meta)


def test_metadata_holds_resolved_parameters_and_is_json(static):
    _, meta = encode_with_meta("lif", static, 10, 3, {"neurons": 3})
    assert meta["params"] == {"neurons": 3, "beta": 0.8, "gain": 0.6, "width": 0.6}
    assert meta["seed"] == 3 and meta["timesteps"] == 10 and meta["input_shape"] == [12]
    assert json.loads(json.dumps(meta)) == meta


def test_event_streams_bin_to_frames():
    es, y = generate_gestures(6, seed=1)
    s, meta = encode_with_meta("event_frames", es, 16, 0)
    assert s.shape == (6, 16, 2 * 32 * 32) and meta["input_kind"] == "events"
    assert 0 < s.sum() <= es.counts().sum()
    assert encode("event_frames", es, 16, 0, {"downsample": 4}).shape == (6, 16, 2 * 8 * 8)
    # one ON event at (x=3, y=2) at half the duration lands in bin T/2, feature 1*H*W + 2*W + 3
    ev = np.zeros(1, EVENT_DTYPE)
    ev[0] = (3, 2, 500, 1)
    one = encode("event_frames", EventSet(events=[ev], sensor_size=(4, 4), duration_us=1000), 4, 0)
    assert one.sum() == 1 and one[0, 2, 16 + 2 * 4 + 3] == 1


def test_wrong_input_kind_names_the_right_encoder(static):
    es, _ = generate_gestures(2, seed=0)
    with pytest.raises(ValueError, match="event stream: use the 'event_frames' encoder"):
        encode("rate", es, 10, 0)
    with pytest.raises(ValueError, match="'event_frames' needs an event stream"):
        encode("event_frames", static, 10, 0)


def test_bad_names_and_parameters_are_named():
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(KeyError, match="unknown encoder 'poisson'; valid: .*'rate'"):
        encode("poisson", x, 10, 0)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['thresh'\] for encoder 'delta'; valid: .*threshold"):
        encoder_params("delta", {"thresh": 0.1})
    with pytest.raises(ValueError, match=r"encoder.params.threshold for 'level_crossing' must be > 0"):
        encode("level_crossing", x, 10, 0, {"threshold": -1})
    with pytest.raises(ValueError, match="encoder.params.neurons for 'lif'"):
        encode("lif", x, 10, 0, {"neurons": 0})
    with pytest.raises(ValueError, match="timesteps must be a positive integer"):
        encode("rate", x, 0, 0)


def test_resample_keeps_endpoints():
    x = np.arange(10, dtype=np.float32).reshape(1, 1, 10)
    assert np.array_equal(resample(x, 10), x)
    r = resample(x, 19)
    assert r.shape == (1, 1, 19) and r[0, 0, 0] == 0 and r[0, 0, -1] == 9 and r[0, 0, 2] == 1


def test_validate_encoder_params_names_the_parameter():
    from fabric.data.encode import EncoderParamError, validate_encoder_params

    assert validate_encoder_params("level_crossing", {"threshold": 0.05}) == {"threshold": 0.05, "baseline": 0.0}
    assert validate_encoder_params("event_frames", {}) == {"downsample": 1, "polarity": True}
    cases = [("rate", {"gian": 1}, "gian", "unknown parameter"), ("rate", {"gain": 0}, "gain", "must be > 0"),
             ("lif", {"neurons": 0}, "neurons", "integer >= 1"), ("delta", {"polarity": "yes"}, "polarity", "true or false"),
             ("sigma_delta", {"gain": None}, "gain", "must be a number")]
    for name, params, param, reason in cases:
        with pytest.raises(EncoderParamError) as ei:
            validate_encoder_params(name, params)
        assert ei.value.param == param and reason in ei.value.reason
        assert str(ei.value).startswith(f"encoder.params.{param}: ")
