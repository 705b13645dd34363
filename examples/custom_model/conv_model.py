"""A user's own spiking CNN for the fabric, written the way snntorch's tutorials write one.

The fabric calls ``build(input_shape, n_classes, **params)`` with the flat encoded feature count
(``input_shape == (C*H*W,)``; event frames are polarity-major ``C, H, W``); ``nn.Unflatten`` as the
first layer gives them their frame shape. Supported: Conv2d, AvgPool2d (and
``fabric.model.user.SumPool2d``), Flatten, Linear, Leaky/Synaptic/RLeaky; MaxPool2d is refused (no
kind maps a max). Neurons use ``init_hidden=True`` and ``reset_mechanism="zero"``, the last one
``output=True``.
"""

from __future__ import annotations

import math

import snntorch as snn
from snntorch import surrogate
from torch import nn


def build(input_shape: tuple[int, ...], n_classes: int, channels: int = 8, beta: float = 0.9) -> nn.Sequential:
    """16x16 single-channel event frames -> conv 5x5 stride 2 -> LIF -> conv 3x3 stride 2 -> LIF ->
    Linear -> LIF. Strided convs instead of pooling so every layer maps natively on akida too."""
    side = math.isqrt(input_shape[0])
    if side * side != input_shape[0]:
        raise ValueError(f"expected square single-channel frames, got {input_shape[0]} features")
    grad = surrogate.fast_sigmoid(slope=25)
    h1 = (side - 1) // 2 + 1
    h2 = (h1 - 1) // 2 + 1
    return nn.Sequential(
        nn.Unflatten(1, (1, side, side)),
        nn.Conv2d(1, channels, 5, stride=2, padding=2),
        snn.Leaky(beta=beta, spike_grad=grad, init_hidden=True, reset_mechanism="zero"),
        nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
        snn.Leaky(beta=beta, spike_grad=grad, init_hidden=True, reset_mechanism="zero"),
        nn.Flatten(),
        nn.Linear(2 * channels * h2 * h2, n_classes),
        snn.Leaky(beta=beta, spike_grad=grad, init_hidden=True, reset_mechanism="zero", output=True),
    )
