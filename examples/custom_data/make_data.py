"""Write a time-series dataset the fabric does not ship: 4 activities x 3 accelerometer axes x 32 steps
(25 Hz), raw units, labels as strings; the kind of .npz a user exports from their own recordings.

    python examples/custom_data/make_data.py [OUT.npz]      (default: examples/custom_data/motions.npz)

Each activity shakes one axis harder (or none, "rest"), over a slow sway with random phase and sensor
noise. Seeded, so the file (and the dataset version it ingests to) is the same on every machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ACTIVITIES = ["rest", "sway_x", "sway_y", "sway_z"]


def make(n: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``[n, 3, 32]`` (m/s^2) and their activity names."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(ACTIVITIES)
    t = np.arange(32) / 25.0
    x = 9.81 / 3 + 0.5 * np.sin(2 * np.pi * 0.8 * t[None, None, :] + rng.uniform(0, 2 * np.pi, (n, 3, 1)))
    moving = y > 0
    x[np.flatnonzero(moving), y[moving] - 1, :] += 3.0 + 2.0 * np.abs(np.sin(2 * np.pi * 2.0 * t))[None, :]
    x += rng.normal(0, 0.25, x.shape)
    return x.astype(np.float32), np.array(ACTIVITIES)[y]


def main(out: str | None = None) -> Path:
    path = Path(out) if out else Path(__file__).with_name("motions.npz")
    x, y = make()
    np.savez(path, x=x, y=y, channels=np.array(["acc_x", "acc_y", "acc_z"]), sampling_rate_hz=np.float64(25.0))
    print(f"wrote {path}: {len(y)} samples, {x.shape[1]} channels x {x.shape[2]} steps, classes {ACTIVITIES}")
    return path


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
