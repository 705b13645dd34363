"""NIR -> device compilation framework shared by every kind.

Each kind declares a node-type -> handler map which is merged over the structural defaults
(Input, Output, Flatten). Walking a graph calls one handler per node in topological order; a node
type that is not in the map raises :class:`UnsupportedNodeError` naming the node, its type and the
kind (the NIRTorch ``nir_to_torch`` shape). Handlers lower NIR into :class:`Layer` records, the small
intermediate form that kind compilers quantize and check against their limits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np

__all__ = [
    "Layer",
    "LoweringContext",
    "Handler",
    "UnsupportedNodeError",
    "GraphStructureError",
    "GraphValidationError",
    "DEFAULT_HANDLERS",
    "NEURON_HANDLERS",
    "SYNAPSE_HANDLERS",
    "lower",
    "merge_handlers",
    "graph_dt",
    "topological_order",
]


class UnsupportedNodeError(ValueError):
    """A graph node whose type the target kind has no handler for."""

    def __init__(self, kind: str, node_name: str, node: Any, supported: list[str]) -> None:
        self.kind, self.node_name, self.node_type = kind, node_name, type(node).__name__
        super().__init__(
            f"node {node_name!r} of type {self.node_type} is not supported by kind {kind!r}; "
            f"supported node types: {supported}"
        )


class GraphStructureError(ValueError):
    """The graph's shape (branches, cycles, dangling affine) is not one the compiler maps."""


class GraphValidationError(GraphStructureError):
    """A node's numbers or sizes no kind can compile (NaN/inf, tau <= 0, threshold <= 0, a shape that
    does not match its neighbour); raised by :func:`fabric.ir.validate.validate_graph` before lowering.
    A GraphStructureError, so every caller that reports compile errors reports it alike, on one line."""

    def __init__(self, node_name: str, node_type: str, constraint: str) -> None:
        self.node_name, self.node_type, self.constraint = node_name, node_type, constraint
        super().__init__(f"node {node_name!r} ({node_type}): {constraint}")


@dataclass(kw_only=True)
class Layer:
    """One synapse+neuron population: ``y = neuron(W @ x + b)``.

    ``neuron`` is one of ``lif``, ``cubalif``, ``if``, ``li`` and ``params`` holds its NIR parameters
    as float arrays of shape ``[n_out]`` (tau, r, v_leak, v_threshold, v_reset, tau_syn as present).
    ``recurrent`` is an optional ``[n_out, n_out]`` weight for kinds that support recurrence.
    """

    name: str
    weight: np.ndarray  # [n_out, n_in]
    bias: np.ndarray  # [n_out]
    neuron: str
    params: dict[str, np.ndarray]
    recurrent: np.ndarray | None = None

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])


@dataclass(kw_only=True)
class LoweringContext:
    kind: str
    graph: nir.NIRGraph
    dt: float
    layers: list[Layer] = field(default_factory=list)
    pending: tuple[str, np.ndarray, np.ndarray] | None = None  # (affine name, W, b)
    input_size: int | None = None
    notes: list[str] = field(default_factory=list)

    def take_pending(self, node_name: str) -> tuple[str, np.ndarray, np.ndarray]:
        if self.pending is None:
            raise GraphStructureError(
                f"neuron node {node_name!r} is not preceded by an Affine/Linear node; "
                f"kind {self.kind!r} maps synapse+neuron pairs"
            )
        p, self.pending = self.pending, None
        return p


Handler = Callable[[str, Any, LoweringContext], None]


def _input(name: str, node: nir.Input, ctx: LoweringContext) -> None:
    shape = np.asarray(node.input_type["input"]).astype(int)
    ctx.input_size = int(np.prod(shape))


def _output(name: str, node: nir.Output, ctx: LoweringContext) -> None:
    if ctx.pending is not None:
        raise GraphStructureError(f"Affine node {ctx.pending[0]!r} feeds the output without a neuron layer")


def _flatten(name: str, node: nir.Flatten, ctx: LoweringContext) -> None:
    ctx.notes.append(f"{name}: Flatten is a no-op on flat spike vectors")


def _affine(name: str, node: nir.Affine, ctx: LoweringContext) -> None:
    if ctx.pending is not None:
        raise GraphStructureError(f"two synapse nodes in a row ({ctx.pending[0]!r}, {name!r})")
    w = np.asarray(node.weight, dtype=np.float64)
    ctx.pending = (name, w, np.asarray(node.bias, dtype=np.float64).reshape(-1))


def _linear(name: str, node: nir.Linear, ctx: LoweringContext) -> None:
    if ctx.pending is not None:
        raise GraphStructureError(f"two synapse nodes in a row ({ctx.pending[0]!r}, {name!r})")
    w = np.asarray(node.weight, dtype=np.float64)
    ctx.pending = (name, w, np.zeros(w.shape[0]))


def _neuron(kind_name: str, keys: tuple[str, ...]) -> Handler:
    def handler(name: str, node: Any, ctx: LoweringContext) -> None:
        aname, w, b = ctx.take_pending(name)
        params = {}
        for k in keys:
            val = getattr(node, k, None)
            if val is None and k == "v_reset":
                val = np.zeros(w.shape[0])
            if val is not None:
                params[k] = np.broadcast_to(np.asarray(val, dtype=np.float64).reshape(-1), (w.shape[0],)).copy()
        ctx.layers.append(Layer(name=f"{aname}->{name}", weight=w, bias=b, neuron=kind_name, params=params))

    return handler


DEFAULT_HANDLERS: dict[type, Handler] = {nir.Input: _input, nir.Output: _output, nir.Flatten: _flatten}
SYNAPSE_HANDLERS: dict[type, Handler] = {nir.Affine: _affine, nir.Linear: _linear}
NEURON_HANDLERS: dict[type, Handler] = {
    nir.LIF: _neuron("lif", ("tau", "r", "v_leak", "v_threshold", "v_reset")),
    nir.CubaLIF: _neuron("cubalif", ("tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in")),
    nir.IF: _neuron("if", ("r", "v_threshold", "v_reset")),
}


def merge_handlers(*maps: Mapping[type, Handler]) -> dict[type, Handler]:
    """Defaults first, later maps override: ``merge_handlers(DEFAULT_HANDLERS, mine)``."""
    out: dict[type, Handler] = {}
    for m in maps:
        out.update(m)
    return out


def graph_dt(graph: nir.NIRGraph) -> float:
    """Simulation step the graph was exported with (metadata ``dt``; NIR's own default is 1e-4... we
    write it explicitly, and assume 1 ms for foreign graphs that do not say)."""
    return float((graph.metadata or {}).get("dt", 1e-3))


def topological_order(graph: nir.NIRGraph) -> list[str]:
    """Nodes of a feed-forward chain from its Input to its Output; branches and cycles are refused."""
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    pred: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        if a not in graph.nodes or b not in graph.nodes:
            raise GraphStructureError(f"edge ({a!r}, {b!r}) names a node that is not in the graph")
        succ[a].append(b)
        pred[b].append(a)
    roots = [k for k in graph.nodes if not pred[k]]
    if len(roots) != 1:
        raise GraphStructureError(f"expected exactly one input node, found {sorted(roots)}")
    order, node, seen = [], roots[0], set()
    while True:
        if node in seen:
            raise GraphStructureError(f"cycle through node {node!r}: recurrent graphs need a kind that maps recurrence")
        seen.add(node)
        order.append(node)
        if not succ[node]:
            break
        if len(succ[node]) > 1:
            raise GraphStructureError(f"node {node!r} branches to {succ[node]}; only chains are mapped")
        node = succ[node][0]
        if len(pred[node]) > 1:
            raise GraphStructureError(f"node {node!r} merges {pred[node]}; only chains are mapped")
    if len(order) != len(graph.nodes):
        missing = sorted(set(graph.nodes) - set(order))
        raise GraphStructureError(f"nodes not reachable from the input: {missing}")
    return order


def lower(graph: nir.NIRGraph, kind: str, handlers: Mapping[type, Handler]) -> LoweringContext:
    """Walk ``graph`` with ``handlers`` and return the context holding the lowered layers.

    The graph is validated first (:func:`fabric.ir.validate.validate_graph`), so no kind sees NaN/inf
    numbers, non-positive time constants or mismatched shapes.
    """
    from fabric.ir.validate import validate_graph

    validate_graph(graph)
    ctx = LoweringContext(kind=kind, graph=graph, dt=graph_dt(graph))
    supported = sorted(t.__name__ for t in handlers)
    for name in topological_order(graph):
        node = graph.nodes[name]
        handler = handlers.get(type(node))
        if handler is None:
            raise UnsupportedNodeError(kind, name, node, supported)
        handler(name, node, ctx)
    if ctx.pending is not None:
        raise GraphStructureError(f"Affine node {ctx.pending[0]!r} is not followed by a neuron layer")
    if not ctx.layers:
        raise GraphStructureError("graph has no synapse+neuron layer to compile")
    for prev, nxt in zip(ctx.layers, ctx.layers[1:], strict=False):
        if prev.n_out != nxt.n_in:
            raise GraphStructureError(f"layer {nxt.name!r} expects {nxt.n_in} inputs but {prev.name!r} gives {prev.n_out}")
    return ctx
