"""Fuzzing the NIR door (issue #18 items 5 and 6): seeded mutations of small valid graphs (NaN/inf and
huge numbers, tau <= 0, thresholds <= 0, shapes that disagree, missing/extra edges and nodes, huge
sizes, wrong dtypes, bad dt) compiled on every registered kind in-process, and garbled .nir files
through ``fabric program compile``. Each case compiles or raises the fabric's own one-line error
(FitError / GraphValidationError / GraphStructureError / UnsupportedNodeError) - never a raw numpy,
ZeroDivision or Overflow error - and a graph known to be invalid never compiles. ``--fuzz-long``: 10x."""

from __future__ import annotations

import contextlib
import copy
import io
import math
import random
from collections.abc import Callable
from typing import Any

import nir
import numpy as np

from fabric.cli.program import compile_cmd
from fabric.flow.codecs import nir_to_bytes
from fabric.ir import GraphStructureError, GraphValidationError, UnsupportedNodeError
from fabric.ir.recurrent import build_recurrent_graph
from fabric.kinds import kinds, make_runtime
from fabric.records import FitError

FABRIC_ERRORS = (FitError, UnsupportedNodeError, GraphStructureError, GraphValidationError)
GRAPH_CASES = 200  # graphs; each compiled on every kind (x10 with --fuzz-long)
FILE_CASES = 240  # garbled .nir files through `fabric program compile`


def _neuron(rng: random.Random, n: int) -> Any:
    tau = np.full(n, rng.choice([0.005, 0.01, 0.02]))
    kind = rng.randrange(4)
    if kind == 0:
        return nir.LIF(tau=tau, r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
    if kind == 1:
        return nir.CubaLIF(tau_mem=tau, tau_syn=np.full(n, 0.005), r=np.ones(n), v_leak=np.zeros(n),
                           v_threshold=np.ones(n), v_reset=np.zeros(n))
    if kind == 2:
        return nir.IF(r=np.ones(n), v_threshold=np.ones(n), v_reset=np.zeros(n))
    return nir.LIF(tau=tau, r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5), v_reset=np.zeros(n))


def _valid(rng: random.Random) -> nir.NIRGraph:
    """A small feed-forward chain (1-2 hidden layers, Affine or Linear) or a recurrent graph."""
    npr = np.random.default_rng(rng.randrange(1 << 30))
    if rng.random() < 0.15:
        h = rng.randint(3, 8)
        return build_recurrent_graph(npr.normal(0, 0.4, (h, 5)), npr.normal(0, 0.1, (h, h)), npr.normal(0, 0.4, (3, h)),
                                     beta=0.9, threshold=1.0)
    sizes = [rng.randint(2, 10) for _ in range(rng.randint(2, 3))] + [rng.randint(2, 5)]
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array([sizes[0]])})}
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        w = npr.normal(0, 0.6, (b, a))
        nodes[f"fc{i}"] = nir.Affine(weight=w, bias=npr.normal(0, 0.1, b)) if rng.random() < 0.7 else nir.Linear(weight=w)
        nodes[f"n{i}"] = _neuron(rng, b)
    nodes["output"] = nir.Output(output_type={"output": np.array([sizes[-1]])})
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:], strict=False)), type_check=False,
                        metadata={"dt": 1e-3, "timesteps": 8})


def _of(g: nir.NIRGraph, types: tuple[type, ...]) -> list[str]:
    return [k for k, v in g.nodes.items() if isinstance(v, types)]


SYN = (nir.Affine, nir.Linear)
NEU = (nir.LIF, nir.CubaLIF, nir.IF)


def _set_param(rng: random.Random, g: nir.NIRGraph, names: list[str], fields: tuple[str, ...], value: Any,
               every: bool = False) -> bool:
    cands = [(n, f) for n in names for f in fields if isinstance(getattr(g.nodes[n], f, None), np.ndarray)]
    if not cands:
        return False
    n, f = rng.choice(cands)
    arr = np.array(getattr(g.nodes[n], f), dtype=float)
    if every:
        arr[...] = value
    else:
        arr.flat[rng.randrange(arr.size)] = value
    setattr(g.nodes[n], f, arr)
    return True


# each mutation edits the graph in place and returns True when the result must be refused,
# False when it may compile, None when it did not apply to this graph
Mutation = Callable[[random.Random, nir.NIRGraph], bool | None]


def _m_nonfinite_weight(rng, g):
    return _set_param(rng, g, _of(g, SYN), ("weight",), rng.choice([math.nan, math.inf, -math.inf])) or None


def _m_huge_weight(rng, g):
    return _set_param(rng, g, _of(g, SYN), ("weight", "bias"), rng.choice([1e300, -1e300, 1e13, 1.7e308])) or None


def _m_nonfinite_bias(rng, g):
    return _set_param(rng, g, _of(g, (nir.Affine,)), ("bias",), rng.choice([math.nan, math.inf])) or None


def _m_bad_tau(rng, g):
    return _set_param(rng, g, _of(g, NEU + (nir.LI,)), ("tau", "tau_mem", "tau_syn"),
                      rng.choice([0.0, -0.01, -1e9, math.nan, math.inf]), every=rng.random() < 0.5) or None


def _m_bad_threshold(rng, g):
    return _set_param(rng, g, _of(g, NEU), ("v_threshold",), rng.choice([0.0, -1.0, -1e-12, math.nan, -math.inf]),
                      every=rng.random() < 0.5) or None


def _m_nonfinite_other(rng, g):
    return _set_param(rng, g, _of(g, NEU), ("r", "v_leak", "v_reset"), rng.choice([math.nan, math.inf, -math.inf])) \
        or None


def _m_tiny_tau(rng, g):  # positive but extreme: may compile (or be refused), must not crash
    ok = _set_param(rng, g, _of(g, NEU), ("tau", "tau_mem", "tau_syn"), rng.choice([1e-300, 5e-324, 1e-12, 1e12]))
    return False if ok else None


def _m_extreme_finite(rng, g):  # finite, within bounds: compile or FitError, never a crash
    ok = _set_param(rng, g, _of(g, SYN + NEU), ("weight", "bias", "r", "v_leak", "v_reset"),
                    rng.choice([1e11, -1e11, 1e-300, 0.0, 65535.0, 2.0**31]), every=rng.random() < 0.3)
    return False if ok else None


def _m_drop_column(rng, g):
    names = _of(g, SYN)
    if not names:
        return None
    n = rng.choice(names)
    node = g.nodes[n]
    w = np.asarray(node.weight)
    if w.ndim != 2 or w.shape[1] < 2:
        return None
    w = w[:, :-1].copy()
    g.nodes[n] = nir.Affine(weight=w, bias=np.asarray(node.bias)) if isinstance(node, nir.Affine) else nir.Linear(weight=w)
    return True


def _m_extra_row(rng, g):
    names = _of(g, SYN)
    if not names:
        return None
    n = rng.choice(names)
    node = g.nodes[n]
    w = np.asarray(node.weight)
    if w.ndim != 2:
        return None
    w = np.vstack([w, w[:1]])
    g.nodes[n] = nir.Affine(weight=w, bias=np.append(node.bias, 0.0)) if isinstance(node, nir.Affine) \
        else nir.Linear(weight=w)
    return True


def _m_short_bias(rng, g):
    names = _of(g, (nir.Affine,))
    if not names:
        return None
    n = rng.choice(names)
    g.nodes[n].bias = np.asarray(g.nodes[n].bias)[:-1].copy()
    return True


def _m_weight_rank(rng, g):
    names = _of(g, SYN)
    if not names:
        return None
    n = rng.choice(names)
    w = np.asarray(g.nodes[n].weight)
    g.nodes[n].weight = rng.choice([w.ravel(), w[None], np.zeros((0, w.shape[-1])), np.float64(1.0), w.T.copy()
                                    if w.shape[0] != w.shape[1] else w.ravel()])
    return True


def _m_weight_dtype(rng, g):
    names = _of(g, SYN)
    if not names:
        return None
    n = rng.choice(names)
    w = np.asarray(g.nodes[n].weight)
    bad = rng.random() < 0.5
    g.nodes[n].weight = np.full(w.shape, "x", dtype=object) if bad else (w > 0)  # strings / booleans
    return True if bad else False


def _m_population(rng, g):
    names = _of(g, NEU)
    if not names:
        return None
    n = rng.choice(names)
    size = np.asarray(g.nodes[n].v_threshold).size
    # never size 1: a one-entry parameter broadcasts over any population (NIR convention), so it is no mismatch
    g.nodes[n] = _neuron(rng, size + rng.choice([-1, 1, 5]) if size > 2 else size + 1)
    return True


def _m_param_sizes(rng, g):
    names = _of(g, NEU)
    if not names:
        return None
    n = rng.choice(names)
    g.nodes[n].r = np.ones(np.asarray(g.nodes[n].r).size + 3)
    return True


def _m_input_shape(rng, g):
    n = _of(g, (nir.Input,))[0]
    bad = rng.choice([[0], [-1], [10**9], [10**7, 10**7], [math.nan], [], ["a"], [2.5]])
    g.nodes[n] = nir.Input.__new__(nir.Input)
    g.nodes[n].input_type = {"input": np.array(bad)}
    g.nodes[n].metadata = {}
    return True


def _m_drop_edge(rng, g):
    if not g.edges:
        return None
    g.edges = [e for e in g.edges if e != rng.choice(g.edges)]
    return False  # a recurrent graph may keep a path; the compilers judge the rest


def _m_dangling_edge(rng, g):
    a = rng.choice(list(g.nodes))
    g.edges = list(g.edges) + [rng.choice([(a, "ghost"), ("ghost", a)])]
    return False


def _m_drop_node(rng, g):
    n = rng.choice([k for k in g.nodes if k not in ("input", "output")] or list(g.nodes))
    del g.nodes[n]  # edges to it stay: a missing node
    return True


def _m_extra_edge(rng, g):
    a, b = rng.choice(list(g.nodes)), rng.choice(list(g.nodes))
    g.edges = list(g.edges) + [(a, b)]
    return False


def _m_reverse(rng, g):
    g.edges = [(b, a) for a, b in g.edges]
    return False


def _m_no_edges(rng, g):
    g.edges = []
    return False


def _m_swap_node(rng, g):
    n = rng.choice(list(g.nodes))
    g.nodes[n] = rng.choice([nir.Output(output_type={"output": np.array([3])}), nir.Input(input_type={"input": np.array([3])}),
                             nir.Delay(delay=np.ones(3)), nir.Threshold(threshold=np.ones(3)), nir.Scale(scale=np.ones(3))])
    return False


def _m_dt(rng, g):
    g.metadata = dict(g.metadata or {}, dt=rng.choice([0.0, -1e-3, math.nan, math.inf, "x", [1e-3], 1e-320]))
    return g.metadata["dt"] != 1e-320  # a tiny positive dt may compile


def _m_huge_layer(rng, g):  # sizes past the bound, declared without allocating a matrix
    names = _of(g, NEU)
    if not names or rng.random() < 0.75:  # rare: each copy costs ~24 MB of parameters
        return None
    n = rng.choice(names)
    big = 1_000_001  # MAX_LAYER_SIZE + 1
    g.nodes[n] = nir.IF(r=np.broadcast_to(1.0, big), v_threshold=np.broadcast_to(1.0, big), v_reset=np.broadcast_to(0.0, big))
    return True


MUTATIONS: list[Mutation] = [
    _m_nonfinite_weight, _m_huge_weight, _m_nonfinite_bias, _m_bad_tau, _m_bad_threshold, _m_nonfinite_other,
    _m_tiny_tau, _m_extreme_finite, _m_drop_column, _m_extra_row, _m_short_bias, _m_weight_rank, _m_weight_dtype,
    _m_population, _m_param_sizes, _m_input_shape, _m_drop_edge, _m_dangling_edge, _m_drop_node, _m_extra_edge,
    _m_reverse, _m_no_edges, _m_swap_node, _m_dt, _m_huge_layer]


def _names_a_node(exc: Exception, g: nir.NIRGraph) -> bool:
    """A validation/structure/unsupported-node error names one of the graph's nodes (or the graph);
    a FitError names the device constraint instead (its own report)."""
    if isinstance(exc, FitError):
        return True
    name = getattr(exc, "node_name", None)
    if name is not None:
        return name in g.nodes or name == "<graph>"
    msg = str(exc)
    return any(repr(k) in msg or f" {k}" in msg for k in g.nodes) or "graph" in msg or "edge" in msg


def _compile(kind: str, g: nir.NIRGraph) -> tuple[str, Exception | None]:
    try:
        make_runtime(kind).compile(g)
    except FABRIC_ERRORS as exc:
        return "refused", exc
    except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
        return "raw", exc
    return "compiled", None


def test_mutated_graphs_on_every_kind(fuzz):
    rng = random.Random(18)
    failures: list[str] = []
    n = 0
    ks = kinds()
    for i in range(fuzz.n(GRAPH_CASES)):
        g = _valid(rng)
        must_refuse = False
        applied = []
        for _ in range(rng.choice([1, 1, 1, 2])):
            m = rng.choice(MUTATIONS)
            got = m(rng, g)
            if got is not None:
                applied.append(m.__name__)
                must_refuse |= got
        label = f"graph {i} {'+'.join(applied) or 'valid'}"
        for k in ks:
            n += 1
            what, exc = _compile(k, copy.deepcopy(g))
            if what == "raw":
                failures.append(f"{label} on {k}: raw {type(exc).__name__}: {str(exc)[:160]}")
            elif what == "refused":
                assert exc is not None
                if "\n" in str(exc) or not _names_a_node(exc, g):
                    failures.append(f"{label} on {k}: error not one line naming a node: {str(exc)[:200]!r}")
            elif must_refuse:
                failures.append(f"{label} on {k}: an invalid graph compiled")
    fuzz.record("nir", n, len(failures))
    assert not failures, f"{len(failures)} of {n}: " + " | ".join(failures[:8])


def _garble(rng: random.Random, data: bytes) -> bytes:
    op = rng.randrange(4)
    if op == 0:
        return data[:rng.randrange(len(data))]
    b = bytearray(data)
    if op == 1:  # flips in the superblock only: flips deep inside the file can make HDF5 itself hang (see report)
        for _ in range(rng.randint(1, 16)):
            b[rng.randrange(min(len(b), 96))] = rng.randrange(256)
        return bytes(b)
    if op == 2:
        i = rng.randrange(len(b))
        return bytes(b[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 512))) + b[i:])
    return rng.choice([b"", b"\x89HDF\r\n\x1a\n", b"not a nir file", bytes(4096)])


def test_garbled_nir_files_through_program_compile(fuzz, tmp_path):
    rng = random.Random(1818)
    blobs = [nir_to_bytes(_valid(random.Random(s))) for s in range(6)]
    failures: list[str] = []
    n = fuzz.n(FILE_CASES)
    path, out = tmp_path / "g.nir", tmp_path / "g.prog"
    ks = kinds()
    for i in range(n):
        path.write_bytes(_garble(rng, rng.choice(blobs)))
        kind = ks[i % len(ks)]
        err, std = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
                rc = compile_cmd(path, kind, out)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"file {i} on {kind}: raw {type(exc).__name__}: {str(exc)[:160]}")
            continue
        lines = [ln for ln in err.getvalue().splitlines() if not ln.startswith("  violated: ")]
        if rc != 0 and (len(lines) != 1 or not lines[0].startswith("fabric: error: ") or "Traceback" in err.getvalue()):
            failures.append(f"file {i} on {kind}: rc {rc}, stderr {err.getvalue()[:200]!r}")
        if rc != 0 and out.exists():
            failures.append(f"file {i} on {kind}: a refused file left a program behind")
        out.unlink(missing_ok=True)
    fuzz.record("nir", n, len(failures))
    assert not failures, f"{len(failures)} of {n}: " + " | ".join(failures[:8])


def test_every_mutation_applies_somewhere():
    """The generator exercises every mutation (a mutation that never applies would fuzz nothing)."""
    rng = random.Random(7)
    hit = {m.__name__: 0 for m in MUTATIONS}
    for _ in range(200):
        for m in MUTATIONS:
            if m(rng, _valid(rng)) is not None:
                hit[m.__name__] += 1
    assert all(v > 0 for v in hit.values()), hit
