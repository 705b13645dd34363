"""A user model for the fabric, written the way snntorch's tutorials write one.

The fabric calls ``build(input_shape, n_classes, **params)`` (``params`` from the spec's
``model.params``) and owns the rest: one call of the Sequential per time step, state reset per batch,
training with the spec's ``train:`` settings, seeding, and the export to NIR. Neurons use
``init_hidden=True`` (the last one ``output=True``) and ``reset_mechanism="zero"`` (NIR's LIF resets to
``v_reset``); ``Synaptic`` and ``RLeaky`` also need ``reset_delay=False``. Supported layers: Linear,
Flatten, Dropout, Identity, Leaky, Synaptic, RLeaky.
"""

from __future__ import annotations

import snntorch as snn
from snntorch import surrogate
from torch import nn


def build(input_shape: tuple[int, ...], n_classes: int, hidden: int = 64, beta: float = 0.9,
          dropout: float = 0.1) -> nn.Sequential:
    """Linear -> Leaky -> Dropout -> Linear -> Leaky (output). ``snn.Synaptic`` (CubaLIF) and
    ``snn.RLeaky`` export too, but not every kind maps them (akida and fpga refuse CubaLIF)."""
    grad = surrogate.fast_sigmoid(slope=25)
    return nn.Sequential(
        nn.Linear(input_shape[0], hidden),
        snn.Leaky(beta=beta, spike_grad=grad, init_hidden=True, reset_mechanism="zero"),
        nn.Dropout(dropout),
        nn.Linear(hidden, n_classes),
        snn.Leaky(beta=beta, spike_grad=grad, init_hidden=True, reset_mechanism="zero", output=True),
    )
