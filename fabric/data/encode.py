"""Spike encoders (NMLOps stage 2) as pure functions over arrays, in one registry, with decoders.

Every encoder maps samples to spikes ``[N, T, features]`` (uint8, 0/1) and is fully determined by its
parameters and seed; :func:`encode_with_meta` returns the resolved parameters (defaults filled in) so
the encoded artifact records exactly how it was made, and :func:`decode` reconstructs the input from
spikes plus that metadata for the encoders where a decoder exists.

Inputs (values in [0, 1]):

* static samples ``[N, F]`` (or more dims, flattened): value codes (rate, latency) see a value per
  feature; temporal codes (delta, level-crossing, sigma-delta, LIF) see each value as a constant
  signal held for ``T`` steps, starting from a baseline of 0.
* time series ``[N, C, T_in]``: temporal codes work along the time axis, which is first resampled
  (linear interpolation) to ``T = timesteps``; the output is ``[N, T, C * k]`` with feature index
  ``c * k + j`` (``k`` = spikes channels per input channel: 2 for up/down codes, ``neurons`` for
  LIF). Rate codes each resampled step; latency has no time axis and flattens ``C * T_in`` values.
* event streams (:class:`fabric.data.events.EventSet`): only ``event_frames`` applies (time bins).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from fabric.data.events import EVENT_DTYPE, EventSet, events_to_frames

__all__ = [
    "ENCODERS",
    "DECODERS",
    "encode",
    "encode_with_meta",
    "encoder_params",
    "EncoderParamError",
    "validate_encoder_params",
    "decode",
    "rate_encode",
    "latency_encode",
    "delta_encode",
    "sigma_delta_encode",
    "level_crossing_encode",
    "lif_encode",
    "event_frames_encode",
]


# -- input handling ------------------------------------------------------------------------------
def _dense(x: Any, encoder: str) -> np.ndarray:
    if isinstance(x, EventSet):
        raise ValueError(f"encoder {encoder!r} needs dense samples [N, F] or [N, C, T]; this input is an event "
                         "stream: use the 'event_frames' encoder")
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim < 2:
        raise ValueError(f"encoder {encoder!r}: input must be [N, F] or [N, C, T], got shape {arr.shape}")
    return arr


def _check_timesteps(timesteps: int) -> None:
    if int(timesteps) != timesteps or timesteps <= 0:
        raise ValueError(f"timesteps must be a positive integer, got {timesteps!r}")


def _positive(name: str, value: float, encoder: str, *, allow_zero: bool = False) -> None:
    if not (value >= 0 if allow_zero else value > 0):
        raise ValueError(f"encoder.params.{name} for {encoder!r} must be {'>=' if allow_zero else '>'} 0, got {value!r}")


def resample(x: np.ndarray, steps: int) -> np.ndarray:
    """Linear interpolation of ``[N, C, T_in]`` along time to ``[N, C, steps]`` (identity if equal)."""
    t_in = x.shape[-1]
    if t_in == steps:
        return x.astype(np.float32, copy=False)
    if t_in == 1:
        return np.repeat(x, steps, axis=-1).astype(np.float32)
    pos = np.linspace(0.0, t_in - 1, steps)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, t_in - 1)
    frac = (pos - i0).astype(np.float32)
    return (x[..., i0] * (1 - frac) + x[..., i1] * frac).astype(np.float32)


def _signal(x: np.ndarray, timesteps: int) -> np.ndarray:
    """``[N, T, C]`` signal for temporal codes: time series resampled, static samples held constant."""
    if x.ndim == 3:
        return np.ascontiguousarray(resample(x, timesteps).transpose(0, 2, 1))
    flat = x.reshape(len(x), -1)
    return np.broadcast_to(flat[:, None, :], (flat.shape[0], timesteps, flat.shape[1])).astype(np.float32)


def _interleave(*parts: np.ndarray) -> np.ndarray:
    """Stack ``k`` ``[N, T, C]`` spike arrays into ``[N, T, C * k]`` with feature ``c * k + j``."""
    return np.stack(parts, axis=-1).reshape(*parts[0].shape[:2], -1).astype(np.uint8)


# -- encoders ------------------------------------------------------------------------------------
def rate_encode(x: np.ndarray, timesteps: int, *, seed: int = 0, gain: float = 1.0) -> np.ndarray:
    """Poisson/Bernoulli rate code: P(spike at t) = clip(gain * x, 0, 1), independent per step.

    Static ``[N, F]`` -> ``[N, T, F]``; time series ``[N, C, T_in]`` -> ``[N, T, C]`` with the
    probability following the resampled signal.
    """
    _check_timesteps(timesteps)
    _positive("gain", gain, "rate")
    arr = _dense(x, "rate")
    rng = np.random.default_rng(seed)
    if arr.ndim == 3:
        p = np.clip(_signal(arr, timesteps) * gain, 0.0, 1.0)
        return (rng.random(p.shape, dtype=np.float32) < p).astype(np.uint8)
    flat = np.clip(arr.reshape(len(arr), -1) * gain, 0.0, 1.0)
    return (rng.random((flat.shape[0], timesteps, flat.shape[1]), dtype=np.float32) < flat[:, None, :]).astype(np.uint8)


def latency_encode(x: np.ndarray, timesteps: int, *, seed: int = 0, threshold: float = 0.01) -> np.ndarray:
    """Time-to-first-spike: one spike at t = round((1 - x) * (T - 1)); inputs <= threshold stay silent.

    A latency codes a value, not a signal, so time series are flattened to ``C * T_in`` values.
    """
    _check_timesteps(timesteps)
    _positive("threshold", threshold, "latency", allow_zero=True)
    flat = np.clip(_dense(x, "latency").reshape(len(x), -1), 0.0, 1.0)
    t = np.rint((1.0 - flat) * (timesteps - 1)).astype(np.int64)
    out = np.zeros((flat.shape[0], timesteps, flat.shape[1]), dtype=np.uint8)
    n, f = np.nonzero(flat > threshold)
    out[n, t[n, f], f] = 1
    return out


def delta_encode(x: np.ndarray, timesteps: int, *, seed: int = 0, threshold: float = 0.05,
                 polarity: bool = True) -> np.ndarray:
    """Temporal-difference code: a spike where the signal changed by >= threshold since the last step.

    ``polarity`` gives two channels per input (up, down: k = 2), otherwise one (any change). The
    magnitude of a change is lost, so there is no decoder. Static input = a step from 0 at t = 0.
    """
    _check_timesteps(timesteps)
    _positive("threshold", threshold, "delta")
    sig = _signal(_dense(x, "delta"), timesteps)
    d = np.diff(sig, axis=1, prepend=np.zeros_like(sig[:, :1]))
    up, down = d >= threshold, d <= -threshold
    return _interleave(up, down) if polarity else (up | down).astype(np.uint8)


def level_crossing_encode(x: np.ndarray, timesteps: int, *, seed: int = 0, threshold: float = 0.1,
                          baseline: float = 0.0) -> np.ndarray:
    """Step-forward level-crossing code (up/down channels, k = 2).

    A reference starts at ``baseline``; each step emits an up (down) spike and moves the reference by
    +threshold (-threshold) when the signal is at least ``threshold`` above (below) it. Decodable:
    ``baseline + threshold * cumsum(up - down)`` tracks the signal within ``threshold`` once it has
    caught up (slopes up to ``threshold`` per step).
    """
    _check_timesteps(timesteps)
    _positive("threshold", threshold, "level_crossing")
    sig = _signal(_dense(x, "level_crossing"), timesteps)
    ref = np.full(sig[:, 0].shape, baseline, dtype=np.float32)
    up = np.zeros(sig.shape, dtype=bool)
    down = np.zeros(sig.shape, dtype=bool)
    eps = np.float32(1e-6)  # float32 accumulation must not miss an exact crossing
    for t in range(sig.shape[1]):
        u = sig[:, t] >= ref + threshold - eps
        dn = sig[:, t] <= ref - threshold + eps
        up[:, t], down[:, t] = u, dn
        ref += np.float32(threshold) * (u.astype(np.float32) - dn.astype(np.float32))
    return _interleave(up, down)


def sigma_delta_encode(x: np.ndarray, timesteps: int, *, seed: int = 0, gain: float = 1.0) -> np.ndarray:
    """First-order sigma-delta modulation: integrate the error between input and output, spike on 1/2.

    Deterministic density code (k = 1): over any window the spike rate tracks ``gain * x`` with an
    error below one spike, so a constant input over T steps is recovered within 1 / T.
    """
    _check_timesteps(timesteps)
    _positive("gain", gain, "sigma_delta")
    sig = np.clip(_signal(_dense(x, "sigma_delta"), timesteps) * gain, 0.0, 1.0)
    acc = np.zeros(sig[:, 0].shape, dtype=np.float32)
    out = np.zeros(sig.shape, dtype=np.uint8)
    for t in range(sig.shape[1]):
        acc += sig[:, t]
        s = acc >= 0.5
        out[:, t] = s
        acc -= s
    return out


def _lif_centres(neurons: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, neurons, dtype=np.float32) if neurons > 1 else np.array([0.5], np.float32)


def lif_encode(x: np.ndarray, timesteps: int, *, seed: int = 0, neurons: int = 4, beta: float = 0.8,
               gain: float = 0.6, width: float = 0.6) -> np.ndarray:
    """Population of ``neurons`` LIF neurons per input with Gaussian receptive fields (k = neurons).

    Neuron j of input c gets current ``gain * exp(-(x - mu_j)^2 / (2 sigma^2))`` with centres mu_j
    evenly spaced on [0, 1] and ``sigma = width / (neurons - 1)``; membrane ``v = beta * v + I``,
    spike and subtract 1 at v >= 1. Decodable by the population vector of spike counts.
    """
    _check_timesteps(timesteps)
    if int(neurons) != neurons or neurons < 1:
        raise ValueError(f"encoder.params.neurons for 'lif' must be an integer >= 1, got {neurons!r}")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"encoder.params.beta for 'lif' must be in [0, 1), got {beta!r}")
    _positive("gain", gain, "lif")
    _positive("width", width, "lif")
    sig = _signal(_dense(x, "lif"), timesteps)  # [N, T, C]
    mu = _lif_centres(neurons)
    sigma = width / max(neurons - 1, 1)
    cur = gain * np.exp(-((sig[..., None] - mu) ** 2) / (2 * sigma * sigma))  # [N, T, C, k]
    v = np.zeros(cur[:, 0].shape, dtype=np.float32)
    out = np.zeros(cur.shape, dtype=np.uint8)
    for t in range(cur.shape[1]):
        v = beta * v + cur[:, t]
        s = v >= 1.0
        out[:, t] = s
        v -= s
    return out.reshape(out.shape[0], out.shape[1], -1)


def event_frames_encode(x: EventSet, timesteps: int, *, seed: int = 0, downsample: int = 1,
                        polarity: bool = True) -> np.ndarray:
    """Event stream -> ``timesteps`` time bins: a spike where a pixel (and polarity) had any event.

    Output ``[N, T, P * H' * W']`` (see :func:`fabric.data.events.events_to_frames`).
    """
    _check_timesteps(timesteps)
    if not isinstance(x, EventSet):
        raise ValueError("encoder 'event_frames' needs an event stream (EventSet); dense samples use rate, latency, "
                         "delta, sigma_delta, level_crossing or lif")
    if int(downsample) != downsample or downsample < 1:
        raise ValueError(f"encoder.params.downsample for 'event_frames' must be an integer >= 1, got {downsample!r}")
    return events_to_frames(x, timesteps, downsample=int(downsample), polarity=polarity, binary=True)


ENCODERS: dict[str, Callable[..., np.ndarray]] = {
    "rate": rate_encode,
    "latency": latency_encode,
    "delta": delta_encode,
    "sigma_delta": sigma_delta_encode,
    "level_crossing": level_crossing_encode,
    "lif": lif_encode,
    "event_frames": event_frames_encode,
}


def _fn(name: str) -> Callable[..., np.ndarray]:
    try:
        return ENCODERS[name]
    except KeyError:
        raise KeyError(f"unknown encoder {name!r}; valid: {sorted(ENCODERS)}") from None


def encoder_params(name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """All parameters of encoder ``name`` with defaults filled in; unknown names are an error."""
    sig = inspect.signature(_fn(name))
    valid = {k: p.default for k, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and k != "seed"}
    unknown = sorted(set(params or {}) - set(valid))
    if unknown:
        raise ValueError(f"encoder.params: unknown parameter(s) {unknown} for encoder {name!r}; valid: {sorted(valid)}")
    return valid | dict(params or {})


class EncoderParamError(ValueError):
    """A bad ``encoder.params`` entry: ``param`` names it, ``reason`` says what is wrong (one line)."""

    def __init__(self, param: str, reason: str) -> None:
        self.param, self.reason = param, reason
        super().__init__(f"encoder.params.{param}: {reason}")


def _probe_input(name: str) -> np.ndarray | EventSet:
    if name == "event_frames":
        ev = np.zeros(2, dtype=EVENT_DTYPE)
        ev["x"], ev["y"], ev["t"], ev["p"] = [0, 1], [0, 1], [0, 5], [0, 1]
        return EventSet(events=[ev], sensor_size=(2, 2), duration_us=10)
    return np.full((1, 2), 0.5, dtype=np.float32)


def validate_encoder_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Check ``params`` for encoder ``name`` before any data is touched; return them resolved.

    Unknown names, values of the wrong type and out-of-range values raise :class:`EncoderParamError`
    naming the parameter. Ranges are checked by running the encoder on a two-value probe input, so
    the rule lives in one place (the encoder itself).
    """
    sig = inspect.signature(_fn(name))
    defaults = {k: p.default for k, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and k != "seed"}
    for key, value in (params or {}).items():
        if key not in defaults:
            raise EncoderParamError(key, f"unknown parameter for encoder {name!r}; valid: {sorted(defaults)}")
        want = defaults[key]
        if isinstance(want, bool):
            if not isinstance(value, bool):
                raise EncoderParamError(key, f"must be true or false, got {value!r}")
        elif isinstance(want, int | float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise EncoderParamError(key, f"must be a number, got {value!r}")
    resolved = defaults | dict(params or {})
    try:
        _fn(name)(_probe_input(name), 2, seed=0, **resolved)
    except ValueError as exc:
        msg = str(exc)
        for key in resolved:
            prefix = f"encoder.params.{key} "
            if msg.startswith(prefix):
                raise EncoderParamError(key, msg.removeprefix(prefix)) from None
        raise EncoderParamError(next(iter(params or resolved), "?"), msg) from None
    return resolved


def encode(name: str, x: np.ndarray | EventSet, timesteps: int, seed: int,
           params: dict[str, Any] | None = None) -> np.ndarray:
    """Spikes ``[N, T, features]`` (uint8) for samples ``x`` with encoder ``name``."""
    fn = _fn(name)
    return fn(x, timesteps, seed=seed, **encoder_params(name, params))


def _input_kind(x: Any) -> str:
    if isinstance(x, EventSet):
        return "events"
    return "timeseries" if np.ndim(x) == 3 else "static"


def encode_with_meta(name: str, x: np.ndarray | EventSet, timesteps: int, seed: int,
                     params: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Spikes plus the metadata to store with them: resolved params, input kind/shape, decoder."""
    resolved = encoder_params(name, params)
    spikes = encode(name, x, timesteps, seed, resolved)
    kind = _input_kind(x)
    in_shape = list(x.sensor_size) if isinstance(x, EventSet) else [int(d) for d in np.shape(x)[1:]]
    if kind == "events" or (kind == "timeseries" and name == "latency"):
        per_input = 1
    else:
        n_in = in_shape[0] if kind == "timeseries" else int(np.prod(in_shape))
        per_input = spikes.shape[2] // max(n_in, 1)
    meta = {"encoder": name, "timesteps": int(timesteps), "seed": int(seed), "params": resolved,
            "input_kind": kind, "input_shape": in_shape, "spikes_per_input": int(per_input),
            "decoder": name if name in DECODERS else None}
    return spikes, meta


# -- decoders ------------------------------------------------------------------------------------
def _window_mean(s: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 1 of ``[N, T, C]`` (decoding is offline, so no lag)."""
    c = np.cumsum(s.astype(np.float32), axis=1)
    c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
    t = np.arange(s.shape[1])
    lo = np.maximum(t - window // 2, 0)
    hi = np.minimum(t - window // 2 + window, s.shape[1])
    return (c[:, hi] - c[:, lo]) / (hi - lo)[None, :, None]


def _unflatten(est: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """``[N, T, C]`` estimate -> ``[N, F]`` (static, last step) or ``[N, C, T]`` (time series)."""
    if meta["input_kind"] == "timeseries":
        return np.ascontiguousarray(est.transpose(0, 2, 1))
    return est[:, -1].reshape(est.shape[0], *meta["input_shape"])


def _decode_density(spikes: np.ndarray, meta: dict[str, Any], window: int) -> np.ndarray:
    """Rate and sigma-delta are both density codes of ``gain * x``: spike density / gain (moving
    average over ``window`` steps for time series, the whole window for static input)."""
    gain = meta["params"]["gain"]
    if meta["input_kind"] == "timeseries":
        return _unflatten(_window_mean(spikes, window) / gain, meta)
    return (spikes.mean(axis=1) / gain).reshape(spikes.shape[0], *meta["input_shape"])


def _decode_latency(spikes: np.ndarray, meta: dict[str, Any], window: int) -> np.ndarray:
    t = spikes.shape[1]
    fired = spikes.any(axis=1)
    first = spikes.argmax(axis=1)
    est = np.where(fired, 1.0 - first / max(t - 1, 1), 0.0).astype(np.float32)
    return est.reshape(spikes.shape[0], *meta["input_shape"])


def _decode_level_crossing(spikes: np.ndarray, meta: dict[str, Any], window: int) -> np.ndarray:
    p = meta["params"]
    s = spikes.reshape(*spikes.shape[:2], -1, 2).astype(np.float32)
    est = p["baseline"] + p["threshold"] * np.cumsum(s[..., 0] - s[..., 1], axis=1)
    return _unflatten(est, meta)


def _decode_lif(spikes: np.ndarray, meta: dict[str, Any], window: int) -> np.ndarray:
    k = meta["params"]["neurons"]
    s = spikes.reshape(*spikes.shape[:2], -1, k).astype(np.float32)
    counts = _window_mean(s.reshape(*s.shape[:2], -1), window).reshape(s.shape) if meta["input_kind"] == "timeseries" \
        else np.broadcast_to(s.sum(axis=1, keepdims=True), s.shape)
    mu = _lif_centres(k)
    total = counts.sum(axis=-1)
    est = np.where(total > 0, (counts * mu).sum(axis=-1) / np.maximum(total, 1e-9), 0.0)
    return _unflatten(est.astype(np.float32), meta)


DECODERS: dict[str, Callable[[np.ndarray, dict[str, Any], int], np.ndarray]] = {
    "rate": _decode_density,
    "latency": _decode_latency,
    "level_crossing": _decode_level_crossing,
    "sigma_delta": _decode_density,
    "lif": _decode_lif,
}


def decode(spikes: np.ndarray, meta: dict[str, Any], *, window: int = 8) -> np.ndarray:
    """Reconstruct the input from spikes and the metadata of :func:`encode_with_meta`.

    Static inputs come back as ``[N, ...F]``, time series as ``[N, C, T]`` (resampled length);
    ``window`` is the moving-average length for the density codes on time series.
    """
    name = meta.get("encoder")
    if name not in DECODERS:
        raise ValueError(f"encoder {name!r} has no decoder (it discards the magnitude or geometry needed); "
                         f"decodable: {sorted(DECODERS)}")
    if window < 1:
        raise ValueError(f"decode: window must be >= 1, got {window}")
    return DECODERS[name](np.asarray(spikes), meta, window)
