"""Built-in model templates written as user factories (issue #15).

``model: {template: conv_snn, params: {...}}`` is the same as ``model: {module:
"fabric.model.templates:conv_snn", params: {...}}``: the spec turns one into the other, so a template
is built, checked (:func:`fabric.model.user.check_layers`), trained and exported on exactly the code
path of a user's own factory. Each factory is ``build(input_shape, n_classes, **params)`` returning an
snntorch ``nn.Sequential`` (``init_hidden=True``, zero reset, the last neuron ``output=True``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import snntorch as snn
from snntorch import surrogate
from torch import nn

__all__ = ["TEMPLATES", "template_ref", "conv_snn", "recurrent", "cuba_mlp"]

TEMPLATES = ("conv_snn", "recurrent", "cuba_mlp")


def template_ref(name: str) -> str:
    """The ``model.module`` reference a template name stands for."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; valid: {['lif_mlp', *TEMPLATES]}")
    return f"{__name__}:{name}"


def _neuron(beta: float, threshold: float, *, output: bool = False, slope: float = 25.0) -> snn.Leaky:
    return snn.Leaky(beta=beta, threshold=threshold, spike_grad=surrogate.fast_sigmoid(slope=slope),
                     init_hidden=True, reset_mechanism="zero", output=output)


def _frame(input_shape: Sequence[int], in_channels: int, frame: Sequence[int] | None) -> tuple[int, int, int]:
    """``[C, H, W]`` of the flat encoded features (event frames are ``P * H * W``, polarity first)."""
    if len(input_shape) == 3:
        return tuple(int(v) for v in input_shape)  # type: ignore[return-value]
    n = int(math.prod(input_shape))
    if frame is not None:
        c, h, w = (int(v) for v in frame)
        if c * h * w != n:
            raise ValueError(f"conv_snn: params.frame {list(frame)} has {c * h * w} values, the features are {n}")
        return c, h, w
    side = math.isqrt(n // in_channels) if n % in_channels == 0 else 0
    if side * side * in_channels != n:
        raise ValueError(f"conv_snn: {n} features are not {in_channels} square frames; give params.frame [C, H, W]")
    return in_channels, side, side


def conv_snn(input_shape: Sequence[int], n_classes: int, channels: Sequence[int] = (8, 16), kernel: int = 3,
             pool: int = 2, in_channels: int = 2, frame: Sequence[int] | None = None, beta: float = 0.9,
             threshold: float = 1.0, pooling: str = "avg", stride: int = 1) -> nn.Sequential:
    """Spiking CNN: per entry of ``channels`` a ``kernel``x``kernel`` conv (zero padding ``kernel // 2``,
    ``stride``) -> LIF -> ``pool``x``pool`` pooling, then flatten -> linear -> LIF readout. ``pooling``
    is ``avg`` or ``sum``; ``pool: 1`` leaves pooling out (a strided conv then downsamples, which kinds
    without a pooling node, such as akida here, map natively)."""
    from fabric.model.user import SumPool2d

    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"conv_snn: params.kernel must be an odd integer >= 1, got {kernel}")
    if pooling not in ("avg", "sum"):
        raise ValueError(f"conv_snn: params.pooling must be 'avg' or 'sum', got {pooling!r}")
    if not channels or any(int(c) < 1 for c in channels):
        raise ValueError(f"conv_snn: params.channels must be a non-empty list of sizes >= 1, got {channels}")
    if int(stride) < 1:
        raise ValueError(f"conv_snn: params.stride must be an integer >= 1, got {stride}")
    c, h, w = _frame(input_shape, in_channels, frame)
    layers: list[nn.Module] = [nn.Unflatten(1, (c, h, w))]
    for ch in channels:
        layers += [nn.Conv2d(c, int(ch), kernel, stride=int(stride), padding=kernel // 2), _neuron(beta, threshold)]
        c = int(ch)
        h, w = (h - 1) // int(stride) + 1, (w - 1) // int(stride) + 1
        if pool > 1:
            if h < pool or w < pool:
                raise ValueError(f"conv_snn: a {h}x{w} map cannot be pooled by {pool}; use fewer channels entries")
            layers.append(nn.AvgPool2d(pool) if pooling == "avg" else SumPool2d(pool))
            h, w = h // pool, w // pool
    layers += [nn.Flatten(), nn.Linear(c * h * w, n_classes), _neuron(beta, threshold, output=True)]
    return nn.Sequential(*layers)


def recurrent(input_shape: Sequence[int], n_classes: int, hidden: int = 64, beta: float = 0.9,
              threshold: float = 1.0) -> nn.Sequential:
    """Linear -> recurrent LIF (``RLeaky``, all-to-all ``hidden``x``hidden`` recurrence) -> Linear -> LIF."""
    n = int(math.prod(input_shape))
    rec = snn.RLeaky(beta=beta, threshold=threshold, linear_features=int(hidden), reset_delay=False,
                     spike_grad=surrogate.fast_sigmoid(slope=25), init_hidden=True, reset_mechanism="zero")
    return nn.Sequential(nn.Linear(n, int(hidden)), rec, nn.Linear(int(hidden), n_classes),
                         _neuron(beta, threshold, output=True))


def cuba_mlp(input_shape: Sequence[int], n_classes: int, hidden: Sequence[int] = (64,), alpha: float = 0.8,
             beta: float = 0.9, threshold: float = 1.0) -> nn.Sequential:
    """Current-based LIF (``Synaptic``: synaptic current decay ``alpha``, membrane ``beta``) MLP."""
    sizes = [int(math.prod(input_shape)), *(int(h) for h in hidden), n_classes]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        layers += [nn.Linear(a, b), snn.Synaptic(alpha=alpha, beta=beta, threshold=threshold, reset_delay=False,
                                                 spike_grad=surrogate.fast_sigmoid(slope=25), init_hidden=True,
                                                 reset_mechanism="zero", output=i == len(sizes) - 2)]
    return nn.Sequential(*layers)
