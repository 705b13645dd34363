"""Compression (NMLOps stage 5): pruning, quantization-aware training and state quantization.

Pure functions over :class:`fabric.model.snn.LifMLP` plus :func:`compress_variants`, a small driver that
applies what the spec's ``compress`` section asks for, in a fixed order, each step producing a new
model variant that the pipeline stores and measures against the baseline:

1. ``structured`` — remove whole hidden neurons (lowest L1 norm of incoming weights first); the model
   gets smaller, so every target needs fewer neurons and synapses.
2. ``pruned`` — unstructured magnitude pruning to sparsity ``s`` per weight matrix; masks stay applied
   during fine-tuning, so pruned weights remain exactly zero.
3. ``qat`` — quantization-aware fine-tuning: weights pass through a symmetric per-layer fake-quantizer
   (straight-through estimator for the gradient) and are snapped to that grid at the end, so each layer
   holds at most ``2^bits - 1`` distinct values. ``auto`` takes the lowest weight precision among the
   spec's targets (each kind's declared ``Capabilities.weight_bits``), so one model suits every kind.
4. ``state`` — membrane (state) quantization: the membrane is kept as a saturating signed fixed-point
   number of ``state_bits`` bits (range +-4 thresholds) at every step, as a device with a narrow state
   register would; measured with the same forward pass (devices quantize state on their own; the NIR
   graph carries no state width).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from fabric.model.quantize import quantize_symmetric
from fabric.model.snn import LifMLP
from fabric.model.train import train_loop

__all__ = [
    "STATE_RANGE_THRESHOLDS",
    "Variant",
    "magnitude_prune",
    "prune_masks",
    "structured_prune",
    "fake_quant",
    "quantize_weights",
    "StateQuantized",
    "quantize_state",
    "finetune",
    "target_weight_bits",
    "compress_variants",
    "nonzero_weights",
    "distinct_weight_values",
    "base_model",
    "clone",
    "measure",
]

STATE_RANGE_THRESHOLDS = 4.0  # quantized membrane saturates at +-4 x threshold


@dataclass(kw_only=True)
class Variant:
    """One compressed model: ``name`` (structured|pruned|qat|state), the model and how it was made."""

    name: str
    model: nn.Module
    params: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    masks: dict[int, torch.Tensor] | None = None


def clone(model: LifMLP) -> LifMLP:
    """A fresh copy by state dict (deepcopy fails on snntorch layers holding a graph from training)."""
    out = LifMLP(model.fcs[0].in_features, [fc.out_features for fc in model.fcs[:-1]], model.fcs[-1].out_features,
                 model.beta, model.threshold)
    out.load_state_dict(model.state_dict())
    return out.eval()


def _weights(model: LifMLP) -> list[torch.Tensor]:
    return [fc.weight for fc in model.fcs]


def nonzero_weights(model: LifMLP) -> int:
    """Non-zero synaptic weights (biases not counted): what a sparse device has to store."""
    return int(sum(int((w != 0).sum()) for w in _weights(model)))


def distinct_weight_values(model: LifMLP) -> list[int]:
    """Distinct weight values per layer (a QAT model holds at most ``2^bits - 1`` per layer)."""
    return [int(torch.unique(w.detach()).numel()) for w in _weights(model)]


# -- pruning -------------------------------------------------------------------------------------
def prune_masks(model: LifMLP, sparsity: float) -> dict[int, torch.Tensor]:
    """Per weight matrix, a 0/1 mask keeping the ``1 - sparsity`` largest-magnitude weights."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"compress.prune must be in [0, 1), got {sparsity}")
    masks = {}
    for i, w in enumerate(_weights(model)):
        k = int(round(sparsity * w.numel()))  # weights to remove
        mask = torch.ones_like(w)
        if k > 0:
            order = torch.argsort(w.detach().abs().flatten(), stable=True)
            mask.view(-1)[order[:k]] = 0.0
        masks[i] = mask
    return masks


def magnitude_prune(model: LifMLP, sparsity: float) -> tuple[LifMLP, dict[int, torch.Tensor]]:
    """A copy of ``model`` with the smallest ``sparsity`` fraction of each weight matrix set to zero."""
    out = clone(model)
    masks = prune_masks(out, sparsity)
    with torch.no_grad():
        for i, fc in enumerate(out.fcs):
            fc.weight.mul_(masks[i])
    return out, masks


def structured_prune(model: LifMLP, fraction: float) -> LifMLP:
    """A smaller model: each hidden layer loses ``fraction`` of its neurons (lowest L1 norm of incoming
    weights), with the matching columns of the next layer removed. Output neurons are kept."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"compress.structured must be in (0, 1), got {fraction}")
    fcs = list(model.fcs)
    keep_in = torch.arange(fcs[0].in_features)
    new_sizes, kept = [], []
    for i, fc in enumerate(fcs):
        w = fc.weight.detach()[:, keep_in]
        if i < len(fcs) - 1:
            n = fc.out_features
            n_keep = max(1, n - int(round(fraction * n)))
            score = w.abs().sum(1)
            keep_out = torch.sort(torch.argsort(score, descending=True, stable=True)[:n_keep]).values
            new_sizes.append(n_keep)
        else:
            keep_out = torch.arange(fc.out_features)
        kept.append((keep_in, keep_out))
        keep_in = keep_out
    out = LifMLP(fcs[0].in_features, new_sizes, fcs[-1].out_features, model.beta, model.threshold)
    with torch.no_grad():
        for fc_new, fc_old, (ki, ko) in zip(out.fcs, fcs, kept, strict=True):
            fc_new.weight.copy_(fc_old.weight[ko][:, ki])
            fc_new.bias.copy_(fc_old.bias[ko])
    return out.eval()


# -- weight quantization -------------------------------------------------------------------------
_QAT_FIELD = "compress.qat_bits"  # the spec field a bad QAT precision is reported against


def fake_quant(w: torch.Tensor, bits: int, *, field: str = _QAT_FIELD) -> torch.Tensor:
    """:func:`fabric.model.quantize.quantize_symmetric` (the fabric's one weight grid) with a
    straight-through gradient: forward sees the grid, backward passes the gradient unchanged."""
    return w + (quantize_symmetric(w, bits, field=field) - w).detach()


class _FakeQuant(nn.Module):
    def __init__(self, bits: int, mask: torch.Tensor | None) -> None:
        super().__init__()
        self.bits = bits
        self.register_buffer("mask", mask if mask is not None else torch.tensor(1.0))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        w = w * self.mask
        return fake_quant(w, self.bits) if self.bits else w


def quantize_weights(model: LifMLP, bits: int) -> LifMLP:
    """A copy whose weight matrices are snapped to the symmetric ``bits`` grid (post-training; the
    grid of :func:`fabric.model.quantize.quantize_symmetric`)."""
    out = clone(model)
    with torch.no_grad():
        for fc in out.fcs:
            fc.weight.copy_(quantize_symmetric(fc.weight, bits))
    return out


# -- state quantization --------------------------------------------------------------------------
def quantize_state(v: torch.Tensor, bits: int, threshold: float) -> torch.Tensor:
    """Round the membrane to a signed fixed-point grid of ``bits`` bits spanning +-4 thresholds
    (saturating), with a straight-through gradient."""
    lim = STATE_RANGE_THRESHOLDS * threshold
    lsb = 2 * lim / (2**bits)
    q = torch.clamp(torch.round(v / lsb) * lsb, -lim, lim - lsb)
    return v + (q - v).detach()


class StateQuantized(nn.Module):
    """``model``'s forward pass with every membrane quantized after each update (same signature)."""

    def __init__(self, model: LifMLP, bits: int) -> None:
        super().__init__()
        self.model, self.bits = model, int(bits)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        mems = [lif.init_leaky() for lif in m.lifs]
        spk_rec, mem_rec = [], []
        for t in range(x.shape[0]):
            h = x[t]
            for i, (fc, lif) in enumerate(zip(m.fcs, m.lifs, strict=True)):
                h, mem = lif(fc(h), mems[i])
                mems[i] = quantize_state(mem, self.bits, m.thresholds[i])  # each layer its own range
            spk_rec.append(h)
            mem_rec.append(mems[-1])
        return torch.stack(spk_rec), torch.stack(mem_rec)


# -- fine-tuning ---------------------------------------------------------------------------------
def finetune(model: nn.Module, spikes: np.ndarray, labels: np.ndarray, *, epochs: int, lr: float, seed: int,
             batch_size: int = 64, masks: dict[int, torch.Tensor] | None = None, qat_bits: int | None = None,
             progress: bool = False, desc: str = "finetune") -> tuple[nn.Module, list[dict[str, float]]]:
    """Short fine-tune: :func:`fabric.model.train.train_loop` (the training loop, same loss).

    ``masks`` keep pruned weights at zero (the mask is part of the forward pass, so they get no
    update); ``qat_bits`` adds the fake-quantizer. Both are weight parametrizations registered for
    the loop and baked into the weights at the end. ``model`` may be a :class:`StateQuantized`
    wrapper (then the state is quantized while training).
    """
    base: LifMLP = model.model if isinstance(model, StateQuantized) else model  # type: ignore[assignment]
    torch.manual_seed(seed)
    for i, fc in enumerate(base.fcs):
        m = None if masks is None else masks[i]
        if m is not None or qat_bits:
            parametrize.register_parametrization(fc, "weight", _FakeQuant(qat_bits or 0, m))
    history = train_loop(model, spikes, labels, epochs=epochs, lr=lr, seed=seed, batch_size=batch_size,
                         progress=progress, desc=desc)
    for fc in base.fcs:
        if parametrize.is_parametrized(fc, "weight"):
            parametrize.remove_parametrizations(fc, "weight", leave_parametrized=True)
        if qat_bits:  # exactly on the grid (the STE sum w + (q - w) can be off by an ulp)
            with torch.no_grad():
                fc.weight.copy_(quantize_symmetric(fc.weight, qat_bits, field=_QAT_FIELD))
    return model.eval(), history


# -- the driver ----------------------------------------------------------------------------------
def target_weight_bits(targets: list[str]) -> tuple[int, str]:
    """The lowest weight precision among ``targets`` and why (``auto`` QAT); 8 if none declares one."""
    from fabric.kinds import capabilities

    known = [(capabilities(k).weight_bits, k) for k in targets if capabilities(k).weight_bits is not None]
    if not known:
        return 8, "no target declares a weight precision; 8 bits"
    bits, kind = min(known)
    return int(bits), f"lowest among targets: {kind} ({capabilities(kind).weight_bits_source})"


def compress_variants(model: LifMLP, spikes: np.ndarray, labels: np.ndarray, cfg: Any, targets: list[str], *,
                      seed: int, batch_size: int = 64, progress: bool = False,
                      log: Callable[[str], None] = lambda s: None) -> list[Variant]:
    """Apply ``cfg`` (a :class:`fabric.spec.CompressSpec`) to a copy of ``model``, in order
    structured -> pruned -> qat -> state; each applied step returns a variant built on the previous."""
    cur: LifMLP = clone(model).eval()
    masks: dict[int, torch.Tensor] | None = None
    out: list[Variant] = []
    ft = {"epochs": cfg.finetune_epochs, "lr": cfg.finetune_lr, "seed": seed, "batch_size": batch_size,
          "progress": progress}
    if cfg.structured:
        cur = structured_prune(cur, cfg.structured)
        cur, hist = finetune(cur, spikes, labels, desc="finetune structured", **ft)
        out.append(Variant(name="structured", model=cur, params={"structured": cfg.structured,
                                                                 "hidden": [fc.out_features for fc in cur.fcs[:-1]]},
                           history=hist))
        log(f"[compress] structured: hidden {out[-1].params['hidden']}")
    if cfg.prune:
        cur, masks = magnitude_prune(cur, cfg.prune)
        cur, hist = finetune(cur, spikes, labels, masks=masks, desc="finetune pruned", **ft)
        out.append(Variant(name="pruned", model=cur, params={"sparsity": cfg.prune}, history=hist, masks=masks))
        log(f"[compress] pruned: {nonzero_weights(cur)} non-zero weights")
    if cfg.qat_bits is not None:
        bits, why = target_weight_bits(targets) if cfg.qat_bits == "auto" else (int(cfg.qat_bits), "spec")
        cur = clone(cur)
        cur, hist = finetune(cur, spikes, labels, masks=masks, qat_bits=bits, desc=f"QAT {bits}-bit", **ft)
        out.append(Variant(name="qat", model=cur, params={"weight_bits": bits, "bits_from": why}, history=hist,
                           masks=masks))
        log(f"[compress] qat: {bits}-bit weights ({why})")
    if cfg.state_bits is not None:
        wrapped = StateQuantized(clone(cur), cfg.state_bits)
        prev_bits = out[-1].params.get("weight_bits") if out else None
        wrapped, hist = finetune(wrapped, spikes, labels, masks=masks, qat_bits=prev_bits, desc="state-quant", **ft)
        params = {"state_bits": cfg.state_bits, "state_range": f"+-{STATE_RANGE_THRESHOLDS:g} x threshold"}
        if prev_bits:
            params["weight_bits"] = prev_bits
        out.append(Variant(name="state", model=wrapped, params=params, history=hist, masks=masks))
        log(f"[compress] state: {cfg.state_bits}-bit membrane")
    return out


# -- measurement ---------------------------------------------------------------------------------
def base_model(model: nn.Module) -> LifMLP:
    """The exportable :class:`LifMLP` inside a variant (unwraps :class:`StateQuantized`)."""
    return model.model if isinstance(model, StateQuantized) else model  # type: ignore[return-value]


def measure(model: nn.Module, spikes: np.ndarray, labels: np.ndarray, batch_size: int = 128,
            weight_bits: int | None = None) -> dict[str, Any]:
    """NeuroBench metrics of ``model`` on the test split plus what compression changes: non-zero
    weights and the footprint of those weights at ``weight_bits`` (float32 when None)."""
    from fabric.model.neurobench import neurobench_metrics

    nb = neurobench_metrics(model, spikes, labels, batch_size)  # type: ignore[arg-type]
    m = base_model(model)
    nnz = nonzero_weights(m)
    n_bias = sum(fc.bias.numel() for fc in m.fcs)
    bits = weight_bits or 32
    return {
        "accuracy": float(nb["ClassificationAccuracy"]),
        "parameters": int(nb["ParameterCount"]),
        "nonzero_weights": nnz,
        "hidden": [fc.out_features for fc in m.fcs[:-1]],
        "footprint_bytes": float(nb["Footprint"]),
        "weights_bytes_at_precision": (nnz * bits + n_bias * 32) / 8,
        "weight_bits": weight_bits,
        "synops": float(nb["SynapticOperations"]["Effective_ACs"]),
        "activation_sparsity": float(nb["ActivationSparsity"]),
        "neurobench": nb,
    }
