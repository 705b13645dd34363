"""Validation of a NIR graph at the door, before any kind lowers it.

Every kind compiles through :func:`fabric.ir.lowering.lower` / :func:`fabric.ir.recurrent.lower_recurrent`,
which call :func:`validate_graph` first, so a graph with NaN/inf numbers, a non-positive time constant
or threshold, or sizes that do not agree between connected nodes is refused in one place with a
one-line :class:`~fabric.ir.lowering.GraphValidationError` naming the node and the constraint -
instead of a raw numpy/ZeroDivision/Overflow error deep in one kind's compiler, or a silent compile.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import nir
import numpy as np

from fabric.ir.lowering import GraphValidationError

__all__ = ["validate_graph", "MAX_ABS_VALUE", "MAX_LAYER_SIZE", "TAU_RANGE"]

MAX_ABS_VALUE = 1e12  # |weight|, |bias|, |parameter|: beyond this every kind's fixed/float maths overflows
MAX_LAYER_SIZE = 1_000_000  # neurons (or inputs) of one node
POSITIVE = ("tau", "tau_mem", "tau_syn")  # time constants: the kinds divide by them (dt / tau)
TAU_RANGE = (1e-9, 1e9)  # seconds: outside it dt / tau (or its fixed-point decay) overflows or divides by zero
THRESHOLD_NEURONS = (nir.LIF, nir.CubaLIF, nir.IF)  # spiking neurons: v_threshold > 0
SKIP_FIELDS = {"input_type", "output_type", "metadata"}
SYNAPSES = (nir.Affine, nir.Linear)
NEURONS = (nir.LIF, nir.CubaLIF, nir.IF, nir.LI, nir.I)  # one population: every parameter of one size
PASSTHROUGH = (nir.Flatten, nir.Output)  # size in = size out
OPAQUE = -1  # a node whose output size this module does not model (conv, pooling, ...): not checked


def _refuse(name: str, node: Any, constraint: str) -> GraphValidationError:
    return GraphValidationError(name, type(node).__name__, constraint)


def _numbers(name: str, node: Any, field: str, value: Any) -> np.ndarray | None:
    """``value`` as a float array if it is numeric; refuses non-numeric arrays, NaN/inf and huge numbers."""
    if value is None or isinstance(value, str | bool | dict):
        return None
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise _refuse(name, node, f"{field} is not a numeric array") from None
    if arr.dtype.kind not in "biuf":
        if arr.dtype.kind in "OUSV" and arr.size:
            raise _refuse(name, node, f"{field} is not a numeric array (dtype {arr.dtype})")
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        arr = arr.astype(np.float64)
    if arr.size and not np.isfinite(arr).all():
        raise _refuse(name, node, f"{field} must be finite (holds NaN or inf)")
    if arr.size and float(np.abs(arr).max()) > MAX_ABS_VALUE:
        raise _refuse(name, node, f"{field} must be within +-{MAX_ABS_VALUE:g} (max |value| {np.abs(arr).max():.3g})")
    return arr


def _params(name: str, node: Any) -> dict[str, np.ndarray]:
    if not dataclasses.is_dataclass(node):
        return {}
    out = {}
    for f in dataclasses.fields(node):
        if f.name in SKIP_FIELDS:
            continue
        arr = _numbers(name, node, f.name, getattr(node, f.name, None))
        if arr is not None:
            out[f.name] = arr
    return out


def _sizes(name: str, node: Any, params: dict[str, np.ndarray]) -> tuple[int | None, int | None]:
    """(input size, output size) the node itself declares; None where it passes its input through."""
    if isinstance(node, nir.Input):
        shape = _numbers(name, node, "input_type", node.input_type.get("input"))
        if shape is None or shape.ndim != 1 or (shape < 1).any():
            raise _refuse(name, node, "input shape must be a list of sizes >= 1")
        n = int(np.prod(shape))
        if n > MAX_LAYER_SIZE:
            raise _refuse(name, node, f"input size {n} > {MAX_LAYER_SIZE}")
        return None, n
    if isinstance(node, SYNAPSES):
        w = params.get("weight")
        if w is None or w.ndim != 2 or 0 in w.shape:
            got = "none" if w is None else list(w.shape)
            raise _refuse(name, node, f"weight must be a 2-D [out, in] matrix, got shape {got}")
        if max(w.shape) > MAX_LAYER_SIZE:
            raise _refuse(name, node, f"weight shape {list(w.shape)} exceeds {MAX_LAYER_SIZE} per side")
        if isinstance(node, nir.Affine):
            b = params.get("bias")
            if b is None or b.size != w.shape[0]:
                got = "none" if b is None else list(b.shape)
                raise _refuse(name, node, f"bias must have {w.shape[0]} entries (weight rows), got shape {got}")
        return int(w.shape[1]), int(w.shape[0])
    if isinstance(node, PASSTHROUGH):
        return None, None
    if not isinstance(node, NEURONS):
        return None, OPAQUE
    sized = {k: v.size for k, v in params.items() if v.size > 1}
    if len(set(sized.values())) > 1:
        raise _refuse(name, node, f"parameter sizes disagree: {sized}")
    n = next(iter(sized.values()), None)
    return n, n


def _neuron_rules(name: str, node: Any, params: dict[str, np.ndarray]) -> None:
    for k in POSITIVE:
        if k in params and params[k].size and not (params[k] > 0).all():
            raise _refuse(name, node, f"{k} must be > 0 (min {params[k].min():.3g})")
        if k in params and params[k].size and not ((params[k] >= TAU_RANGE[0]) & (params[k] <= TAU_RANGE[1])).all():
            raise _refuse(name, node, f"{k} must be within [{TAU_RANGE[0]:g}, {TAU_RANGE[1]:g}] s "
                                      f"(got {params[k].min():.3g}..{params[k].max():.3g})")
    if isinstance(node, THRESHOLD_NEURONS) and "v_threshold" in params:
        thr = params["v_threshold"]
        if thr.size and not (thr > 0).all():
            raise _refuse(name, node, f"v_threshold must be > 0 (min {thr.min():.3g})")


def validate_graph(graph: nir.NIRGraph) -> None:
    """Refuse a graph whose numbers or shapes no kind can compile; raises GraphValidationError.

    Checks, per node: every numeric field finite and within ``MAX_ABS_VALUE``; time constants
    (``tau``, ``tau_mem``, ``tau_syn``) > 0; ``v_threshold`` > 0 for spiking neurons; synapse weights
    2-D with a bias per row; neuron parameters of one size. Per edge: the upstream node's output size
    equals what the downstream node takes (a weight's in-dimension, a neuron population's size).
    Structure (chains, cycles, unsupported types) is left to the lowering, which names those itself.
    """
    dt = (graph.metadata or {}).get("dt")
    if dt is not None:
        try:
            ok = math.isfinite(float(dt)) and float(dt) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise GraphValidationError("<graph>", "metadata", f"dt must be a finite number > 0, got {dt!r}")
    declared: dict[str, tuple[int | None, int | None]] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            validate_graph(node)
            declared[name] = (None, OPAQUE)
            continue
        params = _params(name, node)
        _neuron_rules(name, node, params)
        declared[name] = _sizes(name, node, params)
    # sizes flow along edges; a node without its own size passes on what it receives
    out: dict[str, int | None] = {k: None if v[1] == OPAQUE else v[1] for k, v in declared.items()}
    passthrough = {k for k, v in declared.items() if v[1] is None}
    edges = [(a, b) for a, b in graph.edges if a in graph.nodes and b in graph.nodes]
    for _ in range(len(graph.nodes)):
        changed = False
        for a, b in edges:
            if out[a] is not None and b in passthrough and out[b] is None:
                out[b], changed = out[a], True
        if not changed:
            break
    for a, b in edges:
        want, got = declared[b][0], out[a]
        if want is not None and got is not None and want != got:
            what = "weight in-dimension" if isinstance(graph.nodes[b], SYNAPSES) else "population size"
            raise _refuse(b, graph.nodes[b], f"{what} is {want} but upstream node {a!r} gives {got}")
        if b in passthrough and got is not None and out[b] is not None and out[b] != got:
            raise _refuse(b, graph.nodes[b], f"receives {got} from {a!r} but {out[b]} from another input")
