"""The integer frame program of Akida 1.0: what the chip computes for one input frame, in int64 numpy.

Why a module of its own: the emulator (:mod:`actors.akida.runtime`) runs exactly this arithmetic, and the
reference adapter (:mod:`actors.akida.reference`) programs the same numbers into a real ``akida.Model``
and checks the two bit for bit. The activation is the v1 FullyConnected one documented by BrainChip for
``akida`` 2.19.3 (``akida.FullyConnected``: step-wise ReLU with a threshold and an ``act_step`` floored
to 1/16; 2- and 1-bit activations stretch the step by ``2**(4 - act_bits)``)::

    act = clip(ceil(16 * (pot - threshold) / (floor(16 * act_step) * 2**(4 - act_bits))), 0, 2**act_bits - 1)

A layer without activation returns its raw integer potential (the threshold is ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FrameLayer", "input_frame", "v1_activation", "frame_forward", "INT32_MIN", "INT32_MAX", "STEP16_MAX"]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
STEP16_MAX = 2**24  # act_step = step16/16 stays exact in the engine's float32


@dataclass(kw_only=True)
class FrameLayer:
    """One FullyConnected layer as programmed for a window of ``T`` steps (all integers but the readout)."""

    name: str
    weights: np.ndarray  # int [n_out, n_in], in the weight-bit range of the layer
    weight_bits: int
    threshold: np.ndarray  # int64 [n_out] (int32 range)
    step16: np.ndarray  # int64 [n_out]: act_step = step16 / 16, >= 1
    act_bits: int
    activation: bool  # False: the layer outputs its raw potential (a potential readout)
    level: float  # spikes per output activation level (host-side meaning of one step)
    score_threshold: np.ndarray  # float [n_out]: potential readout score = (pot - score_threshold) / score_step
    score_step: np.ndarray
    # a Conv2d layer: {"kernel": int [F, C, kh, kw] (NIR cross-correlation layout), "shape": (C, H, W) input,
    # "stride": (sy, sx), "same": True (zero "Same" padding) | False ("Valid") | None (neither: the engine
    # cannot express it)}; ``weights`` is then its exact dense Toeplitz matrix, channel-major (c, h, w)
    conv: dict[str, Any] | None = None

    @property
    def act_step(self) -> np.ndarray:
        """The engine's ``act_step`` variable (exact in float32)."""
        return (self.step16 / 16.0).astype(np.float32)

    def score(self, out: np.ndarray) -> np.ndarray:
        """The runtime's readout score from this (last) layer's integer output."""
        if self.activation:
            return out.astype(np.float64) * self.level
        return (out - self.score_threshold) / self.score_step


def input_frame(x: np.ndarray, input_bits: int) -> tuple[np.ndarray, float]:
    """Spike raster ``[B, T, n]`` -> integer input frame ``[B, n]`` in ``[0, 2^bits - 1]`` and spikes per level."""
    levels = 2**input_bits - 1
    steps = x.shape[1]
    s = max(1.0, steps / levels)
    counts = x.sum(axis=1).astype(np.float64)
    return np.clip(np.rint(counts / s), 0, levels).astype(np.int64), s


def v1_activation(pot: np.ndarray, threshold: np.ndarray, step16: np.ndarray, bits: int) -> np.ndarray:
    """Akida v1 step-wise ReLU (exact integer ceil division)."""
    sq = np.asarray(step16, dtype=np.int64) * 2 ** (4 - bits)
    return np.clip(-((-16 * (pot - threshold)) // sq), 0, 2**bits - 1)


def frame_forward(layers: list[FrameLayer], a: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Run a frame through the layers: per layer (input activations, output) with output = potential
    (no activation) or activation, all int64."""
    out = []
    for lay in layers:
        pot = a @ lay.weights.astype(np.int64).T
        y = v1_activation(pot, lay.threshold, lay.step16, lay.act_bits) if lay.activation else pot
        out.append((a, y))
        a = y
    return out
