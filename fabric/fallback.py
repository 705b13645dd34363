"""Hybrid partitioning (000 paper §III.6): when a kind lacks a node type, offload the graph from that
node on to another kind (the host ``cpu`` kind) instead of refusing the whole model.

Pure graph surgery, no runtimes here. The cut is placed so that synapse+neuron pairs stay together:
if the first unsupported node is a neuron, its synapse goes to the tail with it. Everything after the
cut runs on the fallback kind (so an unsupported node in the middle of a chain also moves the rest of
the chain; the common case the paper names, a trailing operator the device lacks, moves only that).
Feed-forward chains only: recurrent graphs and graphs whose first layer is unsupported are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np

from fabric.compile import GraphStructureError, topological_order

__all__ = ["Partition", "split_for_fallback", "FALLBACK_MODES"]

FALLBACK_MODES = (None, "none", "hybrid")
_SYNAPSES: tuple[type, ...] = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)
_STRUCTURAL: tuple[type, ...] = (nir.Input, nir.Output)
_NEURONS: tuple[type, ...] = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I)


@dataclass(kw_only=True)
class Partition:
    """``head`` runs on the device kind, ``tail`` (None when everything is supported) on the fallback."""

    head: nir.NIRGraph
    tail: nir.NIRGraph | None
    cut_node: str | None = None
    tail_nodes: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


def _shape_of(node: nir.NIRNode) -> np.ndarray:
    out = getattr(node, "output_type", None) or {}
    if "output" in out and out["output"] is not None and np.asarray(out["output"]).size:
        return np.asarray(out["output"]).astype(int)
    for attr in ("tau", "tau_mem", "r", "v_threshold", "bias"):
        val = getattr(node, attr, None)
        if val is not None:
            return np.array(np.asarray(val).shape, dtype=int)
    raise GraphStructureError(f"cannot infer the output size of node {type(node).__name__} for a fallback cut")


def split_for_fallback(graph: nir.NIRGraph, supported: set[type], kind: str) -> Partition:
    """Cut ``graph`` before the first node whose type is not in ``supported``."""
    order = topological_order(graph)
    nodes = graph.nodes
    bad = [k for k in order if not isinstance(nodes[k], _STRUCTURAL) and type(nodes[k]) not in supported]
    if not bad:
        return Partition(head=graph, tail=None)
    i = order.index(bad[0])
    cut = i
    while cut > 1 and isinstance(nodes[order[cut - 1]], _SYNAPSES) and type(nodes[order[cut - 1]]) in supported:
        cut -= 1
    if not any(isinstance(nodes[k], _NEURONS) for k in order[1:cut]):
        raise GraphStructureError(
            f"fallback='hybrid' needs at least one layer on kind {kind!r} before node {bad[0]!r} "
            f"({type(nodes[bad[0]]).__name__}); nothing would run on the device"
        )
    last = order[cut - 1]
    shape = _shape_of(nodes[last])
    head_nodes = {k: nodes[k] for k in order[:cut]}
    head_nodes["fallback_output"] = nir.Output(output_type={"output": shape})
    head_edges = [(a, b) for a, b in zip(order[: cut - 1], order[1:cut], strict=False)] + [(last, "fallback_output")]
    tail_nodes = {"fallback_input": nir.Input(input_type={"input": shape})}
    tail_nodes.update({k: nodes[k] for k in order[cut:]})
    tail_order = ["fallback_input", *order[cut:]]
    tail_edges = list(zip(tail_order[:-1], tail_order[1:], strict=False))
    meta = dict(graph.metadata or {})
    head = nir.NIRGraph(nodes=head_nodes, edges=head_edges, metadata=meta, type_check=False)
    tail = nir.NIRGraph(nodes=tail_nodes, edges=tail_edges, metadata=meta, type_check=False)
    return Partition(head=head, tail=tail, cut_node=order[cut], tail_nodes=list(order[cut:]), unsupported=bad)
