"""Mismatch-aware training (noise injection) for analog kinds such as DYNAP-SE.

Why: a mixed-signal chip scales every circuit current of every neuron by a fixed random factor
(CV ~20 %, ARCANA, Quintana et al., arXiv:2409.14918 §3, citing Zendrikov et al. 2023, DOI 10.1088/2634-4386/ace64c); the DYNAP-SE emulator (``actors.dynapse.dpi.apply_mismatch``) draws
one log-normal factor per neuron for each of its currents: the excitatory and inhibitory synaptic
weight currents, threshold, leak. For a LIF neuron those all act as a per-neuron gain on its input
weights, separately for positive and negative weights. Training with a fresh draw of such gains for
every batch makes the learnt weights robust to the chip instance the network is deployed on. Both
draw from one law, :func:`lognormal_factors` (numpy for the emulator's chips, torch for training).

:func:`weight_mismatch` perturbs the weights of every ``nn.Linear`` of a model in place for one
forward/backward pass and restores them afterwards, so the optimizer step applies gradients taken at
the perturbed point to the clean weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, overload

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the DYNAP-SE emulator draws with numpy only
    import torch
    from torch import nn

__all__ = ["weight_mismatch", "lognormal_params", "lognormal_factors", "mismatch_schedule"]


def lognormal_params(cv: float) -> tuple[float, float]:
    """``(mu, sigma)`` of the log-normal with mean 1 and coefficient of variation ``cv``: the one
    mismatch law (``sigma^2 = ln(1 + cv^2)``, ``mu = -sigma^2 / 2``, so ``E[exp(N(mu, sigma))] = 1``)."""
    sigma = float(np.sqrt(np.log1p(cv**2)))
    return -sigma**2 / 2, sigma


@overload
def lognormal_factors(shape: tuple[int, ...] | int, cv: float, gen: np.random.Generator) -> np.ndarray: ...
@overload
def lognormal_factors(shape: tuple[int, ...] | int, cv: float, gen: torch.Generator) -> torch.Tensor: ...
def lognormal_factors(shape: tuple[int, ...] | int, cv: float,
                      gen: np.random.Generator | torch.Generator) -> np.ndarray | torch.Tensor:
    """Log-normal factors of :func:`lognormal_params` (mean 1, CV ``cv``) drawn from ``gen``.

    A numpy ``Generator`` gives float64 ``gen.lognormal(mu, sigma, shape)`` (the DYNAP-SE emulator's
    chip instances, :func:`actors.dynapse.dpi.apply_mismatch`); a ``torch.Generator`` gives float32
    ``exp(mu + sigma z)`` with ``z`` drawn in float64 (mismatch-aware training)."""
    mu, sigma = lognormal_params(cv)
    if isinstance(gen, np.random.Generator):
        return gen.lognormal(mu, sigma, size=shape)
    import torch

    z = torch.randn(shape, generator=gen, dtype=torch.float64)
    return torch.exp(z * sigma + mu).float()


def mismatch_schedule(cv: float, epoch: int, epochs: int) -> float:
    """CV used in ``epoch`` (0-based): a linear ramp from ``cv / ramp`` to ``cv`` over the first half of
    training, then ``cv``. Why: per-sign gain noise of CV 0.2 from the first batch keeps an untrained
    network from learning at all (measured: train accuracy 0.18 vs 0.47 after 2 epochs on digits); the
    ramp learns the task first and its robustness second."""
    ramp = max(1, (epochs + 1) // 2)
    return float(cv) * min(1.0, (epoch + 1) / ramp)


@contextmanager
def weight_mismatch(model: nn.Module, cv: float, gen: torch.Generator) -> Iterator[None]:
    """Within the block, each Linear's weight row is scaled by one factor for its positive and one for
    its negative entries (per output neuron and synapse sign), drawn fresh; ``cv <= 0`` is a no-op."""
    if cv <= 0:
        yield
        return
    import torch
    from torch import nn

    saved: list[tuple[nn.Parameter, torch.Tensor]] = []
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Linear):
                w = mod.weight
                n_out = w.shape[0]
                f = lognormal_factors((2, n_out, 1), cv, gen).to(w.device)
                saved.append((w, w.detach().clone()))
                w.copy_(torch.where(w >= 0, w * f[0], w * f[1]))
    try:
        yield
    finally:
        with torch.no_grad():
            for w, clean in saved:
                w.copy_(clean)
