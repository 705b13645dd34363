"""The one weight quantizer of the fabric: symmetric, per tensor, ``n`` bits, as a pure function.

Why one: QAT (``compress.qat_bits``, :mod:`fabric.model.compress`) and Tune's ``weight_bits``
(:mod:`tune`) must mean the same grid, or a model tuned at ``b`` bits and one fine-tuned at ``b``
bits would not be comparable. The rules, for ``bits`` in ``1..16``:

* ``bits >= 2``: integer levels ``q`` in ``[-(2^(b-1)-1), 2^(b-1)-1]`` (symmetric: no ``-2^(b-1)``
  level), ``scale = max|w| / (2^(b-1)-1)``, ``w_q = q * scale``; so ``max|w|`` is exactly a level
  and a tensor holds at most ``2^b - 1`` distinct values.
* ``bits == 1``: binary magnitudes, ``w_q = sign(w) * mean|w != 0|`` (the L2-optimal scale for a
  sign code, as in binary-weight networks). A weight that is exactly zero stays zero: a pruned
  synapse is absent, not a level, so pruning and 1-bit weights compose.
* ties: ``w / scale`` exactly halfway between two levels rounds to the even level (IEEE
  round-half-to-even, ``torch.round`` / ``np.rint``), which is symmetric in sign and unbiased.
* all-zero (or empty) tensor: returned as zeros, ``scale = 1`` (no division by zero, no NaN).
* ``bits`` outside ``1..16`` (or not an integer) is a ``ValueError`` naming the caller's field.
"""

from __future__ import annotations

import operator
from typing import TypeVar

import numpy as np
import torch

__all__ = ["MIN_BITS", "MAX_BITS", "check_bits", "symmetric_levels", "quantize_symmetric"]

MIN_BITS, MAX_BITS = 1, 16

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def check_bits(bits: object, field: str = "weight_bits") -> int:
    """``bits`` as an int in ``MIN_BITS..MAX_BITS``, else a one-line ``ValueError`` naming ``field``."""
    bad = ValueError(f"{field} must be an integer in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    if isinstance(bits, bool):
        raise bad
    if isinstance(bits, float):  # a config round-tripped through JSON/YAML may say 4.0
        if not bits.is_integer():
            raise bad
        bits = int(bits)
    try:
        b = operator.index(bits)  # type: ignore[arg-type]
    except TypeError:
        raise bad from None
    if not MIN_BITS <= b <= MAX_BITS:
        raise ValueError(f"{field} must be an integer in {MIN_BITS}..{MAX_BITS}, got {b}")
    return b


def _levels(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    if bits == 1:
        nz = w[w != 0]
        if nz.numel() == 0:
            return torch.zeros_like(w), torch.ones((), dtype=w.dtype)
        return torch.sign(w), nz.abs().mean()
    qmax = 2 ** (bits - 1) - 1
    top = w.abs().max() if w.numel() else torch.zeros((), dtype=w.dtype)
    if top == 0:
        return torch.zeros_like(w), torch.ones((), dtype=w.dtype)
    scale = top / qmax
    return torch.clamp(torch.round(w / scale), -qmax, qmax), scale


def symmetric_levels(w: ArrayT, bits: int, *, field: str = "weight_bits") -> tuple[ArrayT, float]:
    """Integer levels ``q`` (same type and dtype as ``w``, integral values) and the float ``scale``
    with ``w ~ q * scale``, by the rules in the module docstring."""
    b = check_bits(bits, field)
    if isinstance(w, np.ndarray):
        q, scale = _levels(torch.from_numpy(np.ascontiguousarray(w)), b)
        return q.numpy().astype(w.dtype, copy=False), float(scale)
    q, scale = _levels(w.detach(), b)
    return q, float(scale)


def quantize_symmetric(w: ArrayT, bits: int, *, field: str = "weight_bits") -> ArrayT:
    """``w`` snapped to its symmetric ``bits`` grid (``q * scale``), same type, dtype and shape; no
    gradient flows through it (wrap it in a straight-through estimator for QAT)."""
    b = check_bits(bits, field)
    if isinstance(w, np.ndarray):
        q, scale = _levels(torch.from_numpy(np.ascontiguousarray(w)), b)
        return (q * scale).numpy().astype(w.dtype, copy=False)
    q, scale = _levels(w.detach(), b)
    return q * scale
