"""Hybrid partitioning (Urgese et al., IEEE IoT J. 2026, DOI 10.1109/JIOT.2026.3663902, §III.6): when a kind lacks a node type (or recurrence), run that part
of the graph on another kind (the host ``cpu`` kind) instead of refusing the whole model.

Pure graph surgery, no runtimes here. The graph is cut between *layers* (synapse [+ Flatten] + neuron,
plus the neuron's recurrent self-loop synapse if it has one), so synapse+neuron pairs and recurrent
loops stay together. A layer is unsupported when one of its nodes' types is not in the kind's map, or
when it is recurrent and the kind maps no recurrence. Three segments at most, in chain order:

* ``prefix`` (cpu) — the leading unsupported layers, when the graph starts with one (e.g. a recurrent
  LIF in front of a feed-forward readout on a kind without recurrence);
* ``head`` (the device) — the supported layers that follow;
* ``tail`` (cpu) — everything from the next unsupported layer on (so an unsupported layer in the middle
  also moves the rest of the chain; the common case the paper names, a trailing operator the device
  lacks, moves only that).

A graph with no supported layer at all is refused: nothing would run on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import nir
import numpy as np

from fabric.ir.lowering import GraphStructureError, topological_order
from fabric.ir.recurrent import find_self_loops, inline_subgraphs

__all__ = ["Partition", "split_for_fallback", "FALLBACK_MODES"]

FALLBACK_MODES = (None, "none", "hybrid")
_SYNAPSES: tuple[type, ...] = (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d)
_STRUCTURAL: tuple[type, ...] = (nir.Input, nir.Output)
_NEURONS: tuple[type, ...] = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.CubaLI, nir.I)


@dataclass(kw_only=True)
class Partition:
    """``head`` runs on the device kind; ``prefix`` (before it) and ``tail`` (after it) on the fallback.

    Either is ``None`` when not needed; both ``None`` means the whole graph is supported.
    """

    head: nir.NIRGraph
    tail: nir.NIRGraph | None
    cut_node: str | None = None
    tail_nodes: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    prefix: nir.NIRGraph | None = None
    prefix_nodes: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # unsupported node -> why


def _shape_of(node: nir.NIRNode) -> np.ndarray:
    out = getattr(node, "output_type", None) or {}
    if "output" in out and out["output"] is not None and np.asarray(out["output"]).size:
        return np.asarray(out["output"]).astype(int)
    for attr in ("tau", "tau_mem", "r", "v_threshold", "bias"):
        val = getattr(node, attr, None)
        if val is not None:
            return np.array(np.asarray(val).shape, dtype=int)
    raise GraphStructureError(f"cannot infer the output size of node {type(node).__name__} for a fallback cut")


def _layers(order: list[str], nodes: dict[str, nir.NIRNode]) -> list[list[str]]:
    """Group the chain between Input and Output into layers that each end with a neuron node (plus a last
    group of trailing operators, if any)."""
    groups: list[list[str]] = []
    cur: list[str] = []
    for k in order:
        if isinstance(nodes[k], _STRUCTURAL):
            continue
        cur.append(k)
        if isinstance(nodes[k], _NEURONS):
            groups.append(cur)
            cur = []
    if cur:  # trailing non-neuron nodes (an operator after the last neuron) form a group of their own
        groups.append(cur)
    return groups


def _segment(g: nir.NIRGraph, chain: list[str], loops: dict[str, str], first: bool, last: bool,
             order: list[str]) -> nir.NIRGraph:
    """Sub-graph of the chain nodes ``chain`` (+ their loop synapses), with an Input/Output added at cuts."""
    nodes = g.nodes
    names = list(chain) + [loops[k] for k in chain if k in loops]
    sub: dict[str, nir.NIRNode] = {k: nodes[k] for k in names}
    members = set(names)
    edges = [(a, b) for a, b in g.edges if a in members and b in members]
    if first:
        start = order[0]
        sub[start] = nodes[start]
        edges.insert(0, (start, chain[0]))
    else:
        prev = order[order.index(chain[0]) - 1]
        sub["fallback_input"] = nir.Input(input_type={"input": _shape_of(nodes[prev])})
        edges.insert(0, ("fallback_input", chain[0]))
    if last:
        end = order[-1]
        sub[end] = nodes[end]
        edges.append((chain[-1], end))
    else:
        sub["fallback_output"] = nir.Output(output_type={"output": _shape_of(nodes[chain[-1]])})
        edges.append((chain[-1], "fallback_output"))
    return nir.NIRGraph(nodes=sub, edges=edges, metadata=dict(g.metadata or {}), type_check=False)


def split_for_fallback(graph: nir.NIRGraph, supported: set[type], kind: str, *,
                       recurrence: bool = True) -> Partition:
    """Partition ``graph`` around its unsupported layers (see the module doc).

    ``recurrence=False`` marks every layer with a recurrent self-loop unsupported (kinds that run
    feed-forward frames only, e.g. akida).
    """
    g = inline_subgraphs(graph)
    loops = find_self_loops(g)
    rec_nodes = set(loops.values())
    reduced = nir.NIRGraph(nodes={k: v for k, v in g.nodes.items() if k not in rec_nodes},
                           edges=[(a, b) for a, b in g.edges if a not in rec_nodes and b not in rec_nodes],
                           metadata=dict(g.metadata or {}), type_check=False)
    order = topological_order(reduced)
    nodes = g.nodes
    reasons: dict[str, str] = {}
    for k in order:
        if isinstance(nodes[k], _STRUCTURAL):
            continue
        if type(nodes[k]) not in supported:
            reasons[k] = f"node type {type(nodes[k]).__name__} not supported by {kind!r}"
        elif k in loops:
            rec = loops[k]
            if not recurrence:
                reasons[k] = f"recurrent self-loop through {rec!r}: kind {kind!r} maps no recurrence"
            elif type(nodes[rec]) not in supported:
                reasons[k] = f"recurrent synapse {rec!r} of type {type(nodes[rec]).__name__} not supported by {kind!r}"
    if not reasons:
        return Partition(head=graph, tail=None)
    groups = _layers(order, nodes)
    bad = [any(k in reasons for k in grp) for grp in groups]
    if all(bad):
        first_bad = next(k for k in order if k in reasons)
        raise GraphStructureError(
            f"fallback='hybrid' needs at least one layer on kind {kind!r}; every layer is unsupported "
            f"(first: node {first_bad!r}, {reasons[first_bad]}); nothing would run on the device"
        )
    n_pre = 0
    while bad[n_pre]:
        n_pre += 1
    n_dev = n_pre
    while n_dev < len(groups) and not bad[n_dev]:
        n_dev += 1
    pre = [k for grp in groups[:n_pre] for k in grp]
    dev = [k for grp in groups[n_pre:n_dev] for k in grp]
    post = [k for grp in groups[n_dev:] for k in grp]
    head = _segment(g, dev, loops, first=not pre, last=not post, order=order)
    prefix = _segment(g, pre, loops, first=True, last=False, order=order) if pre else None
    tail = _segment(g, post, loops, first=False, last=True, order=order) if post else None
    unsupported = [k for k in order if k in reasons]
    prefix_nodes = [order[0], *pre] + [loops[k] for k in pre if k in loops]
    tail_nodes = [*post, order[-1]] + [loops[k] for k in post if k in loops] if post else []
    return Partition(head=head, tail=tail, cut_node=post[0] if post else None, tail_nodes=tail_nodes,
                     unsupported=unsupported, prefix=prefix, prefix_nodes=prefix_nodes if pre else [],
                     reasons={k: reasons[k] for k in unsupported})
