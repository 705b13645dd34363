"""The SNN model template, its NIR export, and the float reference simulation of lowered layers.

Why our own exporter: snntorch 1.0's ``export_to_nir`` writes graphs that nir 1.0.8 rejects in type
inference for plain Linear->Leaky stacks. We write Input -> (Affine -> LIF)* -> Output ourselves with
explicit types, and tests prove the round trip (write, ``nir.read`` with type checks, infer types,
simulate) reproduces the snntorch model's spikes.

Discretisation (dt from graph metadata): NIR's LIF ``tau dv/dt = (v_leak - v) + r I`` with forward
Euler gives ``v <- (1 - dt/tau) v + dt/tau (v_leak + r I)``; snntorch's ``mem <- beta mem + I`` is the
same with ``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``. Reset is to zero after a spike
(``v > v_threshold``), which is what Loihi does too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import nir
import numpy as np
import snntorch as snn
import torch
from torch import nn

from fabric.ir.lowering import Layer

__all__ = ["LifMLP", "export_nir", "simulate_layers", "LayerStats"]

DEFAULT_DT = 1e-3


class LifMLP(nn.Module):
    """Linear -> Leaky stack (reset to zero, no reset delay); output = last layer's spikes.

    ``beta`` and ``threshold`` are one value for every layer, or one per layer (hidden layers, then
    the output layer): each layer is its own LIF population, so a per-layer leak and threshold is
    the same network with different constants, exported per layer to NIR."""

    def __init__(self, n_in: int, hidden: list[int], n_out: int, beta: float | Sequence[float],
                 threshold: float | Sequence[float]) -> None:
        super().__init__()
        sizes = [n_in, *hidden, n_out]
        n_layers = len(sizes) - 1
        self.betas = _per_layer(beta, n_layers, "beta")
        self.thresholds = _per_layer(threshold, n_layers, "threshold")
        # one value when uniform (the checkpoint format and every cache key stay as they were), else the list
        self.beta = self.betas[0] if len(set(self.betas)) == 1 else list(self.betas)
        self.threshold = self.thresholds[0] if len(set(self.thresholds)) == 1 else list(self.thresholds)
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:], strict=False))
        grad = snn.surrogate.fast_sigmoid(slope=25)
        self.lifs = nn.ModuleList(
            snn.Leaky(beta=b, threshold=th, spike_grad=grad, reset_mechanism="zero", reset_delay=False)
            for b, th in zip(self.betas, self.thresholds, strict=True)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [T, B, n_in] spikes -> (output spikes [T, B, n_out], output membrane [T, B, n_out])."""
        mems = [lif.init_leaky() for lif in self.lifs]
        spk_rec, mem_rec = [], []
        for t in range(x.shape[0]):
            h = x[t]
            for i, (fc, lif) in enumerate(zip(self.fcs, self.lifs, strict=False)):
                h, mems[i] = lif(fc(h), mems[i])
            spk_rec.append(h)
            mem_rec.append(mems[-1])
        return torch.stack(spk_rec), torch.stack(mem_rec)


def _per_layer(value: float | Sequence[float], n_layers: int, what: str) -> tuple[float, ...]:
    """``value`` for each of ``n_layers`` layers; a list must have exactly one entry per layer."""
    if isinstance(value, int | float):
        return (float(value),) * n_layers
    vals = tuple(float(v) for v in value)
    if len(vals) != n_layers:
        raise ValueError(f"{what}: {len(vals)} values for {n_layers} layers (hidden layers + output: one each)")
    return vals


def export_nir(model: LifMLP, dt: float = DEFAULT_DT, metadata: dict[str, Any] | None = None) -> nir.NIRGraph:
    """Write a type-checked NIR graph for a :class:`LifMLP`."""
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    n_in = model.fcs[0].in_features
    nodes["input"] = nir.Input(input_type={"input": np.array([n_in])})
    prev = "input"
    for i, fc in enumerate(model.fcs):
        n = fc.out_features
        tau_val = dt / (1.0 - model.betas[i])
        w = fc.weight.detach().cpu().numpy().astype(np.float32)
        b = fc.bias.detach().cpu().numpy().astype(np.float32)
        nodes[f"fc{i}"] = nir.Affine(weight=w, bias=b)
        nodes[f"lif{i}"] = nir.LIF(
            tau=np.full(n, tau_val, dtype=np.float32),
            r=np.full(n, tau_val / dt, dtype=np.float32),
            v_leak=np.zeros(n, dtype=np.float32),
            v_threshold=np.full(n, model.thresholds[i], dtype=np.float32),
            v_reset=np.zeros(n, dtype=np.float32),
        )
        edges += [(prev, f"fc{i}"), (f"fc{i}", f"lif{i}")]
        prev = f"lif{i}"
    nodes["output"] = nir.Output(output_type={"output": np.array([model.fcs[-1].out_features])})
    edges.append((prev, "output"))
    meta = {"dt": dt, "reset": "zero", "readout": "spike_count", "producer": "fabric.model.snn.export_nir"}
    meta.update(metadata or {})
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    graph.infer_types()
    return graph


class LayerStats(dict):
    """Per-layer counts from :func:`simulate_layers` (spikes, synaptic_ops, neuron_updates)."""


def _coeffs(layer: Layer, dt: float) -> dict[str, torch.Tensor]:
    p = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in layer.params.items()}
    if layer.neuron == "lif":
        return {"decay": 1 - dt / p["tau"], "gain": dt / p["tau"] * p["r"], "leak": dt / p["tau"] * p["v_leak"],
                "thr": p["v_threshold"], "reset": p["v_reset"]}
    if layer.neuron == "cubalif":
        return {"decay": 1 - dt / p["tau_mem"], "gain": dt / p["tau_mem"] * p["r"],
                "leak": dt / p["tau_mem"] * p["v_leak"], "syn_decay": 1 - dt / p["tau_syn"],
                "w_in": p.get("w_in", torch.ones_like(p["r"])), "thr": p["v_threshold"], "reset": p["v_reset"]}
    if layer.neuron == "if":
        return {"decay": torch.ones_like(p["r"]), "gain": p["r"], "leak": torch.zeros_like(p["r"]),
                "thr": p["v_threshold"], "reset": p["v_reset"]}
    raise ValueError(f"float reference has no model for neuron type {layer.neuron!r}")


@torch.no_grad()
def simulate_layers(layers: list[Layer], spikes: np.ndarray | torch.Tensor, dt: float,
                    state: dict[str, list[np.ndarray]] | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, float]]]:
    """Float reference simulation of lowered layers.

    spikes: ``[B, T, n_in]``. Returns (output raster ``[B, T, n_out]``, per-layer membrane of the last
    layer ``[B, T, n_out]``, per-layer stats). Synaptic ops are counted the NeuroBench way: non-zero
    input x non-zero weight pairs (effective ACs for binary inputs).

    ``state`` (streaming): a dict read for the starting ``v``/``syn`` of every layer (empty: at rest)
    and overwritten with their end values, so chunk after chunk equals one run over the whole input.
    """
    x = torch.as_tensor(np.asarray(spikes), dtype=torch.float32)
    bsz, steps, _ = x.shape
    coeffs = [_coeffs(layer, dt) for layer in layers]
    ws = [torch.as_tensor(layer.weight, dtype=torch.float32) for layer in layers]
    nz = [(w != 0).to(torch.float32) for w in ws]
    bs = [torch.as_tensor(layer.bias, dtype=torch.float32) for layer in layers]
    v = [torch.zeros(bsz, layer.n_out) for layer in layers]
    syn = [torch.zeros(bsz, layer.n_out) for layer in layers]
    if state:
        v = [torch.as_tensor(np.array(a, dtype=np.float32)) for a in state["v"]]
        syn = [torch.as_tensor(np.array(a, dtype=np.float32)) for a in state["syn"]]
    stats = {layer.name: {"spikes": 0.0, "synaptic_ops": 0.0, "neuron_updates": 0.0} for layer in layers}
    raster, mem = [], []
    for t in range(steps):
        h = x[:, t]
        for i, layer in enumerate(layers):
            c = coeffs[i]
            st = stats[layer.name]
            st["synaptic_ops"] += float(((h != 0).to(torch.float32) @ nz[i].T).sum())
            cur = h @ ws[i].T + bs[i]
            if layer.neuron == "cubalif":
                syn[i] = c["syn_decay"] * syn[i] + c["w_in"] * cur
                cur = syn[i]
            v[i] = c["decay"] * v[i] + c["gain"] * cur + c["leak"]
            s = (v[i] > c["thr"]).to(torch.float32)
            v[i] = torch.where(s > 0, c["reset"].expand_as(v[i]), v[i])
            st["spikes"] += float(s.sum())
            st["neuron_updates"] += float(bsz * layer.n_out)
            h = s
        raster.append(h)
        mem.append(v[-1].clone())
    if state is not None:
        state.update(v=[t.numpy().copy() for t in v], syn=[t.numpy().copy() for t in syn])
    return torch.stack(raster, 1).numpy(), torch.stack(mem, 1).numpy(), stats
