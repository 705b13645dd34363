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
    "SPATIAL_HANDLERS",
    "conv2d_matrix",
    "pool2d_matrix",
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

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled by its fields (the node object may not pickle): a refusal on a board actor crosses Ray
        return (_unsupported_from_fields, (type(self), self.kind, self.node_name, self.node_type, str(self)))


def _unsupported_from_fields(cls: type, kind: str, node_name: str, node_type: str, message: str) -> UnsupportedNodeError:
    err = cls.__new__(cls)
    ValueError.__init__(err, message)
    err.kind, err.node_name, err.node_type = kind, node_name, node_type
    return err


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
    shape: tuple[int, ...] | None = None  # shape of the signal at the current node ([C, H, W] or [n])
    pending_spatial: bool = False  # the pending synapse holds a conv/pool expansion (composable)

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
    ctx.shape = tuple(int(s) for s in shape.reshape(-1))


def _output(name: str, node: nir.Output, ctx: LoweringContext) -> None:
    if ctx.pending is not None:
        raise GraphStructureError(f"Affine node {ctx.pending[0]!r} feeds the output without a neuron layer")


def _flatten(name: str, node: nir.Flatten, ctx: LoweringContext) -> None:
    ctx.notes.append(f"{name}: Flatten is a no-op on flat spike vectors")
    if ctx.shape is not None:
        ctx.shape = (int(np.prod(ctx.shape)),)


def _push(name: str, w: np.ndarray, b: np.ndarray, ctx: LoweringContext, *, spatial: bool) -> None:
    """Make ``(w, b)`` the pending synapse; after a pending conv/pool expansion the two linear maps
    compose into one (``W2 W1``, ``W2 b1 + b2``): a pool between a neuron and the next conv/linear
    is part of that layer's synapses, so every kind still sees synapse+neuron pairs."""
    if ctx.pending is not None:
        if not (spatial or ctx.pending_spatial):
            raise GraphStructureError(f"two synapse nodes in a row ({ctx.pending[0]!r}, {name!r})")
        pname, w1, b1 = ctx.pending
        if w.shape[1] != w1.shape[0]:
            raise GraphStructureError(f"node {name!r} takes {w.shape[1]} inputs but {pname!r} gives {w1.shape[0]}")
        name, w, b = f"{pname}+{name}", w @ w1, w @ b1 + b
        spatial = True
    ctx.pending, ctx.pending_spatial = (name, w, b), spatial


def _affine(name: str, node: nir.Affine, ctx: LoweringContext) -> None:
    w = np.asarray(node.weight, dtype=np.float64)
    _push(name, w, np.asarray(node.bias, dtype=np.float64).reshape(-1), ctx, spatial=False)
    ctx.shape = (int(w.shape[0]),)


def _linear(name: str, node: nir.Linear, ctx: LoweringContext) -> None:
    w = np.asarray(node.weight, dtype=np.float64)
    _push(name, w, np.zeros(w.shape[0]), ctx, spatial=False)
    ctx.shape = (int(w.shape[0]),)


def _pair(v: Any) -> tuple[int, int]:
    a = np.asarray(v, dtype=int).reshape(-1)
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def conv2d_matrix(weight: np.ndarray, in_shape: tuple[int, int, int], stride: Any = 1, padding: Any = 0,
                  dilation: Any = 1, groups: int = 1) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The dense ``[C_out*H_o*W_o, C*H*W]`` matrix of a zero-padded 2-D cross-correlation (torch's and
    NIR's ``Conv2d``) on a ``[C, H, W]`` signal flattened row-major, and the output shape.

    Why dense: every kind below maps synapse matrices (crossbars, synapse tables, weight memories), so
    the Toeplitz expansion is the honest first mapping: its fan-in and memory then meet each kind's
    limits exactly as a Linear layer of that size would."""
    w = np.asarray(weight, dtype=np.float64)
    c, h, wd = (int(s) for s in in_shape)
    co, cig, kh, kw = w.shape
    if groups < 1 or c % groups or co % groups or cig != c // groups:
        raise GraphStructureError(f"conv weight {list(w.shape)} with groups={groups} does not take {c} input channels")
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    if isinstance(padding, str):
        if padding == "valid":
            ph = pw = 0
        else:  # 'same' (stride 1): torch pads (k-1)*d // 2 on the leading side
            if (sh, sw) != (1, 1):
                raise GraphStructureError("conv padding='same' needs stride 1")
            ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    else:
        ph, pw = _pair(padding)
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise GraphStructureError(f"conv kernel {kh}x{kw} does not fit the {h}x{wd} input (padding {ph},{pw})")
    m = np.zeros((co * ho * wo, c * h * wd))
    oh, ow = np.meshgrid(np.arange(ho), np.arange(wo), indexing="ij")
    out_pos = (oh * wo + ow).reshape(-1)
    per_group = co // groups
    for i in range(kh):
        for j in range(kw):
            ih, iw = (oh * sh - ph + i * dh).reshape(-1), (ow * sw - pw + j * dw).reshape(-1)
            ok = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < wd)
            rows_pos, cols_pos = out_pos[ok], (ih * wd + iw)[ok]
            for o in range(co):
                g = o // per_group
                for k in range(cig):
                    m[o * ho * wo + rows_pos, (g * cig + k) * h * wd + cols_pos] += w[o, k, i, j]
    return m, (co, ho, wo)


def pool2d_matrix(in_shape: tuple[int, int, int], kernel: Any, stride: Any, padding: Any = 0, *,
                  average: bool) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Sum (or average, dividing by the kernel area as torch's ``AvgPool2d`` does) pooling per channel
    as a dense matrix: a depthwise conv with a constant kernel."""
    c = int(in_shape[0])
    kh, kw = _pair(kernel)
    k = np.full((c, 1, kh, kw), 1.0 / (kh * kw) if average else 1.0)
    return conv2d_matrix(k, in_shape, stride, padding, 1, groups=c)


def _spatial_in(name: str, ctx: LoweringContext, channels: int | None) -> tuple[int, int, int]:
    shape = ctx.shape
    if shape is not None and len(shape) == 3:
        return shape  # type: ignore[return-value]
    raise GraphStructureError(f"node {name!r} needs a [C, H, W] input but receives shape "
                              f"{list(shape) if shape is not None else 'unknown'}")


def _conv2d(name: str, node: nir.Conv2d, ctx: LoweringContext) -> None:
    w = np.asarray(node.weight, dtype=np.float64)
    if ctx.shape is not None and len(ctx.shape) != 3 and node.input_shape is not None:
        c_in = int(w.shape[1]) * int(node.groups)
        if int(np.prod(ctx.shape)) == c_in * int(np.prod(node.input_shape)):
            ctx.shape = (c_in, *(int(s) for s in node.input_shape))  # a flat signal of the declared size
    in_shape = _spatial_in(name, ctx, None)
    m, out_shape = conv2d_matrix(w, in_shape, node.stride, node.padding, node.dilation, int(node.groups))
    bias = np.asarray(node.bias, dtype=np.float64).reshape(-1)
    b = np.repeat(bias if bias.size == out_shape[0] else np.zeros(out_shape[0]), out_shape[1] * out_shape[2])
    _push(name, m, b, ctx, spatial=True)
    ctx.shape = out_shape
    ctx.notes.append(f"{name}: Conv2d {list(in_shape)} -> {list(out_shape)} expanded to a dense "
                     f"{m.shape[0]}x{m.shape[1]} synapse matrix ({int(np.count_nonzero(m))} non-zero)")


def _pool(average: bool) -> Handler:
    def handler(name: str, node: Any, ctx: LoweringContext) -> None:
        in_shape = _spatial_in(name, ctx, None)
        m, out_shape = pool2d_matrix(in_shape, node.kernel_size, node.stride, node.padding, average=average)
        _push(name, m, np.zeros(m.shape[0]), ctx, spatial=True)
        ctx.shape = out_shape

    return handler


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
        ctx.pending_spatial = False
        if ctx.shape is None or int(np.prod(ctx.shape)) != w.shape[0]:
            ctx.shape = (int(w.shape[0]),)
        ctx.layers.append(Layer(name=f"{aname}->{name}", weight=w, bias=b, neuron=kind_name, params=params))

    return handler


DEFAULT_HANDLERS: dict[type, Handler] = {nir.Input: _input, nir.Output: _output, nir.Flatten: _flatten}
SYNAPSE_HANDLERS: dict[type, Handler] = {nir.Affine: _affine, nir.Linear: _linear}
# conv/pool lowered to dense synapse matrices (merged into the next synapse+neuron layer); kinds whose
# synapses are matrices add these to their map; a kind with native convolution maps them itself
SPATIAL_HANDLERS: dict[type, Handler] = {nir.Conv2d: _conv2d, nir.AvgPool2d: _pool(True), nir.SumPool2d: _pool(False)}
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
