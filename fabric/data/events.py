"""Event streams (DVS-like cameras): a container, a seeded gesture generator, and binning into frames.

Event cameras emit ``(x, y, t, polarity)`` tuples instead of frames, so an event dataset cannot be a
dense array. :class:`EventSet` holds one sorted event array per sample plus the sensor geometry and
behaves enough like an array (``len``, slicing, ``shape``) for the dataset and pipeline code that
only slices and counts samples. Nothing is downloaded: :func:`generate_gestures` simulates a DVS
pixel array watching a blob move, which is enough to exercise event-based encoders and devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

import numpy as np

__all__ = ["EVENT_DTYPE", "EventSet", "GESTURE_CLASSES", "generate_gestures", "events_to_frames"]

EVENT_DTYPE = np.dtype([("x", "<u2"), ("y", "<u2"), ("t", "<i8"), ("p", "i1")])
"""One event: pixel column ``x``, row ``y``, time ``t`` in microseconds, polarity ``p`` (1 on, 0 off)."""

GESTURE_CLASSES = ("right", "left", "up", "down", "clockwise", "counterclockwise")


@dataclass(kw_only=True)
class EventSet:
    """``N`` event-stream samples on a ``width x height`` sensor, each lasting ``duration_us``."""

    events: list[np.ndarray]
    sensor_size: tuple[int, int]  # (width, height)
    duration_us: int

    def __post_init__(self) -> None:
        w, h = (int(v) for v in self.sensor_size)
        if w <= 0 or h <= 0:
            raise ValueError(f"EventSet.sensor_size must be positive (width, height), got {self.sensor_size}")
        if self.duration_us <= 0:
            raise ValueError(f"EventSet.duration_us must be > 0, got {self.duration_us}")
        self.sensor_size = (w, h)
        for i, ev in enumerate(self.events):
            if ev.dtype != EVENT_DTYPE:
                raise ValueError(f"EventSet.events[{i}] has dtype {ev.dtype}, expected {EVENT_DTYPE}")
            if len(ev) and (int(ev["x"].max()) >= w or int(ev["y"].max()) >= h):
                raise ValueError(f"EventSet.events[{i}] has a pixel outside the {w}x{h} sensor")

    def __len__(self) -> int:
        return len(self.events)

    @property
    def shape(self) -> tuple[int]:
        """``(N,)``: samples are ragged, so there are no trailing dimensions."""
        return (len(self.events),)

    @property
    def ndim(self) -> int:
        return 1

    @property
    def n_features(self) -> int:
        """Features after binning to frames with both polarities: ``2 * width * height``."""
        return 2 * self.sensor_size[0] * self.sensor_size[1]

    @overload
    def __getitem__(self, idx: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, idx: slice | np.ndarray | list[int]) -> EventSet: ...

    def __getitem__(self, idx: int | slice | np.ndarray | list[int]) -> np.ndarray | EventSet:
        if isinstance(idx, (int, np.integer)):
            return self.events[int(idx)]
        if isinstance(idx, slice):
            picked = self.events[idx]
        else:
            arr = np.asarray(idx)
            if arr.dtype == bool:
                arr = np.flatnonzero(arr)
            picked = [self.events[int(i)] for i in arr]
        return EventSet(events=picked, sensor_size=self.sensor_size, duration_us=self.duration_us)

    def counts(self) -> np.ndarray:
        """Events per sample."""
        return np.array([len(e) for e in self.events], dtype=np.int64)


def _trajectory(cls: int, steps: int, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Blob centre per step ``[steps, 2]`` for one gesture class, with a random offset and speed."""
    s = np.linspace(0.0, 1.0, steps) * rng.uniform(0.8, 1.0)
    cx, cy = w / 2 + rng.normal(0, w * 0.05), h / 2 + rng.normal(0, h * 0.05)
    span_x, span_y = w * rng.uniform(0.55, 0.7), h * rng.uniform(0.55, 0.7)
    name = GESTURE_CLASSES[cls]
    if name in ("right", "left"):
        sign = 1.0 if name == "right" else -1.0
        xs = cx + sign * (s - 0.5) * span_x
        ys = np.full(steps, cy)
    elif name in ("up", "down"):
        sign = -1.0 if name == "up" else 1.0  # row 0 is the top of the sensor
        xs = np.full(steps, cx)
        ys = cy + sign * (s - 0.5) * span_y
    else:
        sign = 1.0 if name == "clockwise" else -1.0
        phase = rng.uniform(0, 2 * np.pi)
        ang = phase + sign * 2 * np.pi * s
        r = min(w, h) * rng.uniform(0.22, 0.3)
        xs, ys = cx + r * np.cos(ang), cy + r * np.sin(ang)
    return np.stack([xs, ys], axis=1)


def generate_gestures(n: int, *, seed: int = 0, sensor_size: tuple[int, int] = (32, 32), duration_us: int = 300_000,
                      steps: int = 40, threshold: float = 0.15, noise_rate_hz: float = 0.5,
                      classes: tuple[str, ...] = GESTURE_CLASSES) -> tuple[EventSet, np.ndarray]:
    """Simulate a DVS watching a Gaussian blob move in one of ``classes``; return events and labels.

    Each pixel keeps a reference log-intensity and fires an ON (OFF) event when the intensity rose
    (fell) by ``threshold`` since its last event, which is how DVS pixels work; events get a uniform
    time jitter inside their step, and background noise events arrive at ``noise_rate_hz`` per
    pixel. Labels cycle through the classes in a seeded random order, so any prefix is balanced.
    """
    if n <= 0:
        raise ValueError(f"generate_gestures: n must be > 0, got {n}")
    unknown = [c for c in classes if c not in GESTURE_CLASSES]
    if unknown:
        raise ValueError(f"generate_gestures: unknown classes {unknown}; valid: {list(GESTURE_CLASSES)}")
    rng = np.random.default_rng(seed)
    w, h = sensor_size
    cls_idx = [GESTURE_CLASSES.index(c) for c in classes]
    labels = np.concatenate([rng.permutation(len(classes)) for _ in range(-(-n // len(classes)))])[:n]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    dt = duration_us / steps
    out: list[np.ndarray] = []
    for lab in labels:
        traj = _trajectory(cls_idx[lab], steps, rng, w, h)
        sigma = rng.uniform(2.0, 3.5)
        contrast = rng.uniform(0.8, 1.2)
        ref = np.zeros((h, w), dtype=np.float32)
        xs, ys, ts, ps = [], [], [], []
        for k in range(steps):
            cx, cy = traj[k]
            img = contrast * np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * sigma * sigma))
            d = img - ref
            on, off = d >= threshold, d <= -threshold
            fired = on | off
            if fired.any():
                yy, xx = np.nonzero(fired)
                xs.append(xx)
                ys.append(yy)
                ps.append(on[yy, xx].astype(np.int8))
                ts.append((k * dt + rng.uniform(0, dt, len(xx))).astype(np.int64))
                ref[fired] = img[fired]
        n_noise = rng.poisson(noise_rate_hz * w * h * duration_us * 1e-6)
        if n_noise:
            xs.append(rng.integers(0, w, n_noise))
            ys.append(rng.integers(0, h, n_noise))
            ps.append(rng.integers(0, 2, n_noise).astype(np.int8))
            ts.append(rng.integers(0, duration_us, n_noise))
        ev = np.zeros(sum(len(a) for a in xs), dtype=EVENT_DTYPE)
        if len(ev):
            ev["x"], ev["y"], ev["t"], ev["p"] = (np.concatenate(a) for a in (xs, ys, ts, ps))
            ev = ev[np.argsort(ev["t"], kind="stable")]
        out.append(ev)
    return EventSet(events=out, sensor_size=(w, h), duration_us=duration_us), labels.astype(np.int64)


def events_to_frames(es: EventSet, bins: int, *, downsample: int = 1, polarity: bool = True,
                     binary: bool = True) -> np.ndarray:
    """Bin events into ``[N, bins, P * H' * W']`` frames (P = 2 with polarity, else 1).

    Feature index is ``p * H' * W' + row * W' + col`` with ``H' = ceil(H / downsample)``. With
    ``binary`` a bin holds 1 if any event fell in it (a spike), otherwise the event count.
    """
    if bins <= 0:
        raise ValueError(f"bins must be > 0, got {bins}")
    if downsample < 1:
        raise ValueError(f"downsample must be >= 1, got {downsample}")
    w, h = es.sensor_size
    wd, hd = -(-w // downsample), -(-h // downsample)
    n_pol = 2 if polarity else 1
    n_feat = n_pol * hd * wd
    dtype = np.uint8 if binary else np.uint32
    out = np.zeros((len(es), bins, n_feat), dtype=dtype)
    for i, ev in enumerate(es.events):
        if not len(ev):
            continue
        b = np.minimum(ev["t"].astype(np.int64) * bins // es.duration_us, bins - 1)
        b = np.maximum(b, 0)
        pol = ev["p"].astype(np.int64) if polarity else np.zeros(len(ev), dtype=np.int64)
        f = pol * hd * wd + (ev["y"].astype(np.int64) // downsample) * wd + ev["x"].astype(np.int64) // downsample
        if binary:
            out[i, b, f] = 1
        else:
            np.add.at(out[i], (b, f), 1)
    return out
