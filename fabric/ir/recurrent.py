"""Recurrent NIR graphs: lowering, a builder, and the float reference that runs them.

Why a separate module: :func:`fabric.ir.lowering.topological_order` refuses cycles on purpose (most kinds
map feed-forward chains only). A recurrent LIF as snntorch's ``RLeaky`` exports it is a cycle
``LIF -> Affine/Linear(rec) -> LIF`` (flat, or wrapped in a nested ``NIRGraph`` node). This module
recognises exactly that self-loop, removes the recurrent synapse from the graph, lowers the remaining
chain with the kind's handlers and fills :attr:`Layer.recurrent`. Any other cycle is still refused.

Semantics (the reference every kind that maps recurrence is checked against): the recurrent input at
step ``t`` is ``W_rec @ s[t-1]`` (the layer's own spikes one step earlier, as snntorch's RLeaky), added
to the feed-forward current ``W_in @ x[t] + b`` before the neuron update. Neuron updates are the
forward-Euler NIR forms used by :mod:`fabric.model.snn` (``v <- (1 - dt/tau) v + dt/tau (v_leak + r I)``;
spike ``v > v_threshold``; reset to ``v_reset``), plus ``li`` (a leaky integrator that never spikes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import nir
import numpy as np

from fabric.ir.lowering import (
    GraphStructureError,
    Handler,
    Layer,
    LoweringContext,
    UnsupportedNodeError,
    lower,
)

__all__ = [
    "LI_HANDLERS",
    "inline_subgraphs",
    "find_self_loops",
    "has_recurrence",
    "lower_recurrent",
    "build_recurrent_graph",
    "simulate_recurrent",
    "readout_counts",
    "train_recurrent",
]

SYNAPSE_TYPES: tuple[type, ...] = (nir.Affine, nir.Linear)
NEURON_TYPES: tuple[type, ...] = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI)


def _li(name: str, node: nir.LI, ctx: LoweringContext) -> None:
    aname, w, b = ctx.take_pending(name)
    params = {
        k: np.broadcast_to(np.asarray(getattr(node, k), dtype=np.float64).reshape(-1), (w.shape[0],)).copy()
        for k in ("tau", "r", "v_leak")
    }
    ctx.layers.append(Layer(name=f"{aname}->{name}", weight=w, bias=b, neuron="li", params=params))


# Leaky-integrator (non-spiking) output units, for kinds with LI readouts (ReckOn-style fpga).
LI_HANDLERS: dict[type, Handler] = {nir.LI: _li}


def _edge_node(graph: nir.NIRGraph, end: str) -> str:
    """An edge end may name a subgraph port (``"sub.input"``); return the node it belongs to."""
    return end if end in graph.nodes or "." not in end else end.rsplit(".", 1)[0]


def inline_subgraphs(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Replace nested ``NIRGraph`` nodes (snntorch's RLeaky/RSynaptic export) by their inner nodes.

    Inner nodes are renamed ``<sub>.<inner>``; the inner Input/Output nodes disappear and edges to and
    from the subgraph are re-attached to what they connected to inside it.
    """
    if not any(isinstance(n, nir.NIRGraph) for n in graph.nodes.values()):
        return graph
    nodes: dict[str, Any] = {}
    entry: dict[str, list[str]] = {}
    exit_: dict[str, list[str]] = {}
    inner_edges: list[tuple[str, str]] = []
    for name, node in graph.nodes.items():
        if not isinstance(node, nir.NIRGraph):
            nodes[name] = node
            continue
        sub = inline_subgraphs(node)
        ins = [k for k, v in sub.nodes.items() if isinstance(v, nir.Input)]
        outs = [k for k, v in sub.nodes.items() if isinstance(v, nir.Output)]
        if len(ins) != 1 or len(outs) != 1:
            raise GraphStructureError(f"subgraph {name!r} must have one Input and one Output node")
        for k, v in sub.nodes.items():
            if k not in (ins[0], outs[0]):
                nodes[f"{name}.{k}"] = v
        entry[name] = [f"{name}.{b}" for a, b in sub.edges if a == ins[0]]
        exit_[name] = [f"{name}.{a}" for a, b in sub.edges if b == outs[0]]
        inner_edges += [(f"{name}.{a}", f"{name}.{b}") for a, b in sub.edges
                        if a != ins[0] and b != outs[0]]
    edges: list[tuple[str, str]] = list(inner_edges)
    for a, b in graph.edges:
        a0, b0 = _edge_node(graph, a), _edge_node(graph, b)
        srcs = exit_.get(a0, [a0])
        dsts = entry.get(b0, [b0])
        edges += [(s, d) for s in srcs for d in dsts]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata or {}), type_check=False)


def find_self_loops(graph: nir.NIRGraph) -> dict[str, str]:
    """Neuron node -> recurrent synapse node for every ``neuron -> Affine/Linear -> same neuron`` loop."""
    pred: dict[str, list[str]] = {k: [] for k in graph.nodes}
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        if a in succ and b in pred:
            succ[a].append(b)
            pred[b].append(a)
    loops: dict[str, str] = {}
    for name, node in graph.nodes.items():
        if not isinstance(node, SYNAPSE_TYPES):
            continue
        if len(pred[name]) == 1 and succ[name] == pred[name]:
            neuron = pred[name][0]
            if isinstance(graph.nodes[neuron], NEURON_TYPES):
                if neuron in loops:
                    raise GraphStructureError(f"neuron {neuron!r} has two recurrent synapse loops")
                loops[neuron] = name
    return loops


def has_recurrence(graph: nir.NIRGraph) -> bool:
    """Whether the graph holds a recurrent self-loop this module maps."""
    return bool(find_self_loops(inline_subgraphs(graph)))


def lower_recurrent(graph: nir.NIRGraph, kind: str, handlers: Mapping[type, Handler]) -> LoweringContext:
    """Lower a graph that may hold recurrent self-loops; a plain chain lowers exactly as :func:`lower`.

    The recurrent synapse's type must be in ``handlers`` too (else :class:`UnsupportedNodeError`); its
    bias (Affine) is folded into the layer bias, since ``W_rec s + b_rec`` enters the same current.
    """
    from fabric.ir.validate import validate_graph

    g = inline_subgraphs(graph)
    validate_graph(g)  # the recurrent synapses too: lower() below sees the graph without them
    loops = find_self_loops(g)
    if not loops:
        return lower(g, kind, handlers)
    supported = sorted(t.__name__ for t in handlers)
    for rec in loops.values():
        if type(g.nodes[rec]) not in handlers:
            raise UnsupportedNodeError(kind, rec, g.nodes[rec], supported)
    rec_nodes = set(loops.values())
    reduced = nir.NIRGraph(
        nodes={k: v for k, v in g.nodes.items() if k not in rec_nodes},
        edges=[(a, b) for a, b in g.edges if a not in rec_nodes and b not in rec_nodes],
        metadata=dict(g.metadata or {}),
        type_check=False,
    )
    ctx = lower(reduced, kind, handlers)
    ctx.graph = graph
    for layer in ctx.layers:
        neuron = layer.name.split("->", 1)[1]
        if neuron not in loops:
            continue
        node = g.nodes[loops[neuron]]
        w = np.asarray(node.weight, dtype=np.float64)
        if w.shape != (layer.n_out, layer.n_out):
            raise GraphStructureError(
                f"recurrent synapse {loops[neuron]!r} has shape {list(w.shape)}, "
                f"expected [{layer.n_out}, {layer.n_out}] for neuron {neuron!r}"
            )
        layer.recurrent = w
        if isinstance(node, nir.Affine):
            layer.bias = layer.bias + np.asarray(node.bias, dtype=np.float64).reshape(-1)
        ctx.notes.append(f"{neuron}: recurrent self-loop through {loops[neuron]!r} (input at t is W_rec @ s[t-1])")
    return ctx


def _lif_node(n: int, beta: float, threshold: float, dt: float) -> nir.LIF:
    tau = dt / (1.0 - beta)
    return nir.LIF(tau=np.full(n, tau, dtype=np.float32), r=np.full(n, tau / dt, dtype=np.float32),
                   v_leak=np.zeros(n, dtype=np.float32), v_threshold=np.full(n, threshold, dtype=np.float32),
                   v_reset=np.zeros(n, dtype=np.float32))


def build_recurrent_graph(
    w_in: np.ndarray,
    w_rec: np.ndarray,
    w_out: np.ndarray,
    *,
    b_in: np.ndarray | None = None,
    b_out: np.ndarray | None = None,
    beta: float = 0.9,
    threshold: float = 1.0,
    beta_out: float | None = None,
    threshold_out: float | None = None,
    output: str = "lif",
    dt: float = 1e-3,
    nested: bool = False,
) -> nir.NIRGraph:
    """``Input -> fc_in -> rlif (self-loop via w_rec) -> fc_out -> out -> Output``.

    The snntorch convention (``tau = dt / (1 - beta)``, ``r = tau / dt``, ``v_leak = 0``) is used so
    the discrete update is ``v <- beta v + I``. ``output="li"`` makes the readout a leaky integrator
    (ReckOn's output units). ``nested=True`` wraps the recurrent LIF in a subgraph node the way
    snntorch's RLeaky export does.
    """
    w_in, w_rec, w_out = (np.asarray(w, dtype=np.float32) for w in (w_in, w_rec, w_out))
    n_hid, n_in = w_in.shape
    n_out = w_out.shape[0]
    if w_rec.shape != (n_hid, n_hid) or w_out.shape[1] != n_hid:
        raise ValueError(f"shapes do not chain: w_in {w_in.shape}, w_rec {w_rec.shape}, w_out {w_out.shape}")
    if output not in ("lif", "li"):
        raise ValueError(f"output must be 'lif' or 'li', got {output!r}")
    b_in = np.zeros(n_hid, np.float32) if b_in is None else np.asarray(b_in, np.float32)
    b_out = np.zeros(n_out, np.float32) if b_out is None else np.asarray(b_out, np.float32)
    beta_out = beta if beta_out is None else beta_out
    thr_out = threshold if threshold_out is None else threshold_out
    lif = _lif_node(n_hid, beta, threshold, dt)
    if output == "lif":
        out_node: nir.NIRNode = _lif_node(n_out, beta_out, thr_out, dt)
    else:
        tau_o = dt / (1.0 - beta_out)
        out_node = nir.LI(tau=np.full(n_out, tau_o, np.float32), r=np.full(n_out, tau_o / dt, np.float32),
                          v_leak=np.zeros(n_out, np.float32))
    nodes: dict[str, nir.NIRNode] = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "fc_in": nir.Affine(weight=w_in, bias=b_in),
        "fc_out": nir.Affine(weight=w_out, bias=b_out),
        "out": out_node,
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    if nested:
        nodes["rlif"] = nir.NIRGraph(
            nodes={"input": nir.Input(input_type={"input": np.array([n_hid])}), "lif": lif,
                   "w_rec": nir.Linear(weight=w_rec), "output": nir.Output(output_type={"output": np.array([n_hid])})},
            edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        )
        edges = [("input", "fc_in"), ("fc_in", "rlif"), ("rlif", "fc_out"), ("fc_out", "out"), ("out", "output")]
    else:
        nodes["rlif"] = lif
        nodes["w_rec"] = nir.Linear(weight=w_rec)
        edges = [("input", "fc_in"), ("fc_in", "rlif"), ("rlif", "w_rec"), ("w_rec", "rlif"),
                 ("rlif", "fc_out"), ("fc_out", "out"), ("out", "output")]
    meta = {"dt": dt, "reset": "zero", "readout": "spike_count" if output == "lif" else "mean_membrane",
            "producer": "fabric.ir.recurrent.build_recurrent_graph"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _float_coeffs(layer: Layer, dt: float) -> dict[str, np.ndarray]:
    p = layer.params
    ones = np.ones(layer.n_out)
    if layer.neuron in ("lif", "li"):
        tau = p["tau"]
        return {"decay": 1 - dt / tau, "gain": dt / tau * p["r"], "leak": dt / tau * p["v_leak"],
                "thr": p.get("v_threshold", ones * np.inf), "reset": p.get("v_reset", 0 * ones)}
    if layer.neuron == "cubalif":
        tau = p["tau_mem"]
        return {"decay": 1 - dt / tau, "gain": dt / tau * p["r"], "leak": dt / tau * p["v_leak"],
                "syn_decay": 1 - dt / p["tau_syn"], "w_in": p.get("w_in", ones), "thr": p["v_threshold"],
                "reset": p["v_reset"]}
    if layer.neuron == "if":
        return {"decay": ones, "gain": p["r"], "leak": 0 * ones, "thr": p["v_threshold"], "reset": p["v_reset"]}
    raise ValueError(f"float reference has no model for neuron type {layer.neuron!r}")


def simulate_recurrent(
    layers: list[Layer], spikes: np.ndarray, dt: float, state: dict[str, list[np.ndarray]] | None = None
) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, float]]]:
    """Float reference for lowered layers with optional ``recurrent`` weights and ``li`` units.

    Same contract as :func:`fabric.model.snn.simulate_layers` (raster ``[B, T, n_out]``, last layer's
    membrane ``[B, T, n_out]``, per-layer stats with NeuroBench-style effective synaptic ops, now
    including recurrent ones). An ``li`` layer never spikes: its raster is zero, read its membrane.
    ``state`` (streaming): read for the starting ``v``/``syn``/``prev`` spikes per layer (empty: at rest)
    and overwritten with the end values, as in :func:`fabric.model.snn.simulate_layers`.
    """
    x = np.asarray(spikes, dtype=np.float64)
    bsz, steps, _ = x.shape
    co = [_float_coeffs(layer, dt) for layer in layers]
    nz = [(layer.weight != 0).astype(np.float64) for layer in layers]
    nzr = [None if layer.recurrent is None else (layer.recurrent != 0).astype(np.float64) for layer in layers]
    v = [np.zeros((bsz, layer.n_out)) for layer in layers]
    syn = [np.zeros((bsz, layer.n_out)) for layer in layers]
    prev = [np.zeros((bsz, layer.n_out)) for layer in layers]
    if state:
        v, syn, prev = ([np.array(a, dtype=np.float64) for a in state[k]] for k in ("v", "syn", "prev"))
    stats = {layer.name: {"spikes": 0.0, "synaptic_ops": 0.0, "neuron_updates": 0.0} for layer in layers}
    raster, mem = np.zeros((bsz, steps, layers[-1].n_out)), np.zeros((bsz, steps, layers[-1].n_out))
    for t in range(steps):
        h = x[:, t]
        for i, layer in enumerate(layers):
            c, st = co[i], stats[layer.name]
            st["synaptic_ops"] += float(((h != 0) @ nz[i].T).sum())
            cur = h @ layer.weight.T + layer.bias
            if layer.recurrent is not None:
                st["synaptic_ops"] += float(((prev[i] != 0) @ nzr[i].T).sum())
                cur = cur + prev[i] @ layer.recurrent.T
            if layer.neuron == "cubalif":
                syn[i] = c["syn_decay"] * syn[i] + c["w_in"] * cur
                cur = syn[i]
            v[i] = c["decay"] * v[i] + c["gain"] * cur + c["leak"]
            s = (v[i] > c["thr"]).astype(np.float64)
            v[i] = np.where(s > 0, c["reset"], v[i])
            st["spikes"] += float(s.sum())
            st["neuron_updates"] += float(bsz * layer.n_out)
            prev[i] = s
            h = s
        raster[:, t] = h
        mem[:, t] = v[-1]
    if state is not None:
        state.update(v=[a.copy() for a in v], syn=[a.copy() for a in syn], prev=[a.copy() for a in prev])
    return raster, mem, stats


def readout_counts(layer: Layer, raster: np.ndarray, mem: np.ndarray) -> np.ndarray:
    """Per-sample scores ``[B, n_out]``: spike counts, or the time-averaged membrane of an ``li`` layer
    (ReckOn's classification readout: the output with the highest output averaged over timesteps)."""
    return mem.mean(axis=1) if layer.neuron == "li" else raster.sum(axis=1)


def train_recurrent(
    spikes: np.ndarray,
    labels: np.ndarray,
    *,
    n_hidden: int = 32,
    epochs: int = 3,
    lr: float = 5e-3,
    beta: float = 0.9,
    threshold: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    output: str = "lif",
    dt: float = 1e-3,
    init_gain: float = 1.0,
) -> nir.NIRGraph:
    """Train a one-hidden-layer recurrent LIF network (BPTT, fast-sigmoid surrogate) and export it with
    :func:`build_recurrent_graph`.

    Why here: the recurrent model every kind is checked on should be a trained one, and its forward pass
    is exactly the reference semantics of this module (``v <- beta v + W_in x + b + W_rec s[t-1]``, spike
    if ``v > threshold``, reset to zero); the loss is cross-entropy on output spike counts (``lif``) or on
    the time-averaged output membrane (``li``). Seeded; CPU; meant for small models.
    """
    import torch
    from torch import nn

    x_all = torch.as_tensor(np.asarray(spikes), dtype=torch.float32)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if x_all.ndim != 3 or len(x_all) != len(y_all):
        raise ValueError(f"spikes must be [B, T, n_in] with one label per sample, got {list(x_all.shape)} and "
                         f"{len(y_all)} labels")
    n_in, n_out = int(x_all.shape[2]), int(y_all.max()) + 1
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    fc_in, fc_out = nn.Linear(n_in, n_hidden), nn.Linear(n_hidden, n_out)
    with torch.no_grad():  # start near firing: torch's default init leaves sparse spike inputs sub-threshold
        fc_in.weight.mul_(init_gain)
        fc_out.weight.mul_(init_gain)
    w_rec = nn.Parameter(torch.randn(n_hidden, n_hidden, generator=gen) * (0.2 / np.sqrt(n_hidden)))
    params = [*fc_in.parameters(), *fc_out.parameters(), w_rec]
    opt = torch.optim.Adam(params, lr=lr)

    def spike(v: torch.Tensor) -> torch.Tensor:
        sg = v / (1 + 25 * v.abs())  # fast sigmoid surrogate (slope 25), straight-through forward
        return (v > 0).float() + (sg - sg.detach())

    def forward(xb: torch.Tensor) -> torch.Tensor:
        b = xb.shape[0]
        v_h, s_h = torch.zeros(b, n_hidden), torch.zeros(b, n_hidden)
        v_o, score = torch.zeros(b, n_out), torch.zeros(b, n_out)
        for t in range(xb.shape[1]):
            v_h = beta * v_h + fc_in(xb[:, t]) + s_h @ w_rec.T
            s_h = spike(v_h - threshold)
            v_h = v_h * (1 - s_h.detach())
            v_o = beta * v_o + fc_out(s_h)
            if output == "lif":
                s_o = spike(v_o - threshold)
                v_o = v_o * (1 - s_o.detach())
                score = score + s_o
            else:
                score = score + v_o / xb.shape[1]
        return score

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: intra-op threads only add contention
    try:
        for _ in range(int(epochs)):
            perm = torch.randperm(len(x_all), generator=gen)
            for i in range(0, len(perm), batch_size):
                idx = perm[i:i + batch_size]
                loss = nn.functional.cross_entropy(forward(x_all[idx]), y_all[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        return build_recurrent_graph(fc_in.weight.numpy(), w_rec.detach().numpy(), fc_out.weight.numpy(),
                                     b_in=fc_in.bias.numpy(), b_out=fc_out.bias.numpy(), beta=beta,
                                     threshold=threshold, output=output, dt=dt)
