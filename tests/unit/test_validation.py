"""Validation at the door (issue #18): a NIR graph is checked before any kind lowers it, a spec
before any stage runs. One test per graph rule (the node is named), a seeded mutation run over valid
graphs compiled on every registered kind (only the fabric's own error types, nothing non-finite
compiles), and a hypothesis run over mutated example specs."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric.ir import (
    GraphStructureError,
    GraphValidationError,
    UnsupportedNodeError,
    validate_graph,
)
from fabric.ir.recurrent import build_recurrent_graph
from fabric.kinds import kinds, make_runtime
from fabric.records import FitError
from fabric.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[2]
FABRIC_ERRORS = (FitError, UnsupportedNodeError, GraphStructureError, GraphValidationError)


def _lif(n: int, tau: Any = 0.01, thr: Any = 1.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, tau, dtype=float), r=np.full(n, 10.0), v_leak=np.zeros(n),
                   v_threshold=np.full(n, thr, dtype=float), v_reset=np.zeros(n))


def _chain(n_in: int = 8, hidden: int = 12, n_out: int = 4, seed: int = 0, dt: float = 1e-3) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])}),
             "fc1": nir.Affine(weight=rng.normal(0, 0.5, (hidden, n_in)), bias=np.zeros(hidden)),
             "lif1": _lif(hidden),
             "fc2": nir.Affine(weight=rng.normal(0, 0.5, (n_out, hidden)), bias=np.zeros(n_out)),
             "lif2": _lif(n_out),
             "output": nir.Output(output_type={"output": np.array([n_out])})}
    order = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:], strict=False)), type_check=False,
                        metadata={"dt": dt, "timesteps": 8})


def _raises(g: nir.NIRGraph, node: str, text: str) -> GraphValidationError:
    with pytest.raises(GraphValidationError) as ei:
        validate_graph(g)
    msg = str(ei.value)
    assert f"node {node!r}" in msg and text in msg and "\n" not in msg, msg
    assert ei.value.node_name == node
    return ei.value


def test_a_valid_graph_passes_and_compiles_everywhere():
    g = _chain()
    validate_graph(g)
    for k in kinds():
        make_runtime(k).compile(g)


@pytest.mark.parametrize("node,field", [("fc1", "weight"), ("fc2", "bias"), ("lif1", "tau"), ("lif2", "v_threshold"),
                                        ("lif1", "r"), ("lif2", "v_leak")])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_naming_node_and_field(node, field, bad):
    g = _chain()
    getattr(g.nodes[node], field).flat[0] = bad
    _raises(g, node, f"{field} must be finite")


def test_huge_numbers_are_refused():
    g = _chain()
    g.nodes["fc2"].weight[0, 0] = 1e300
    _raises(g, "fc2", "weight must be within")


@pytest.mark.parametrize("tau", [0.0, -0.01])
def test_tau_must_be_positive(tau):
    g = _chain()
    g.nodes["lif2"].tau[1] = tau
    _raises(g, "lif2", "tau must be > 0")
    g = _chain()
    n = 12
    g.nodes["lif1"] = nir.CubaLIF(tau_mem=np.full(n, 0.01), tau_syn=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n),
                                  v_threshold=np.ones(n), v_reset=np.zeros(n))
    _raises(g, "lif1", "tau_syn must be > 0")


@pytest.mark.parametrize("thr", [0.0, -1.0])
def test_spiking_threshold_must_be_positive(thr):
    g = _chain()
    g.nodes["lif1"].v_threshold[3] = thr
    _raises(g, "lif1", "v_threshold must be > 0")
    g = _chain()
    g.nodes["lif1"] = nir.IF(r=np.ones(12), v_threshold=np.full(12, thr), v_reset=np.zeros(12))
    _raises(g, "lif1", "v_threshold must be > 0")


def test_weight_in_dimension_must_match_the_upstream_node():
    g = _chain()
    g.nodes["fc2"] = nir.Affine(weight=np.ones((4, 10)), bias=np.zeros(4))  # lif1 gives 12
    err = _raises(g, "fc2", "weight in-dimension is 10 but upstream node 'lif1' gives 12")
    assert isinstance(err, GraphStructureError) and isinstance(err, ValueError)  # callers catch it alike
    g = _chain()
    g.nodes["input"] = nir.Input(input_type={"input": np.array([9])})
    _raises(g, "fc1", "upstream node 'input' gives 9")


def test_population_size_must_match_its_synapse():
    g = _chain()
    g.nodes["lif1"] = _lif(11)
    _raises(g, "lif1", "population size is 11 but upstream node 'fc1' gives 12")


def test_bias_and_weight_shapes():
    g = _chain()
    g.nodes["fc1"] = nir.Affine(weight=np.ones((12, 8)), bias=np.zeros(5))
    _raises(g, "fc1", "bias must have 12 entries")
    g = _chain()
    g.nodes["fc1"].weight = np.ones(12)  # NIR's constructor refuses this; a loaded/edited graph may not
    _raises(g, "fc1", "weight must be a 2-D")


def test_parameter_sizes_of_one_population_agree():
    g = _chain()
    g.nodes["lif1"].r = np.ones(7)
    _raises(g, "lif1", "parameter sizes disagree")


def test_graph_dt_must_be_positive_and_finite():
    for dt in (0.0, -1e-3, math.nan, math.inf):
        with pytest.raises(GraphValidationError, match="dt must be a finite number > 0"):
            validate_graph(_chain(dt=dt))


def test_recurrent_synapses_are_validated_too():
    rng = np.random.default_rng(0)
    g = build_recurrent_graph(rng.normal(0, 0.3, (10, 6)), rng.normal(0, 0.1, (10, 10)), rng.normal(0, 0.3, (3, 10)),
                              beta=0.9, threshold=1.0)
    for k in kinds():
        try:
            make_runtime(k).compile(g)
        except FABRIC_ERRORS:
            pass  # some kinds refuse recurrence (FitError); the point is the bad copy below
    rec = [n for n, v in g.nodes.items() if isinstance(v, nir.Affine | nir.Linear)
           and any(a == n and b != "output" for a, b in g.edges) and np.asarray(v.weight).shape == (10, 10)]
    assert rec, "the recurrent synapse"
    g.nodes[rec[0]].weight[2, 2] = math.nan
    for k in kinds():
        with pytest.raises(GraphValidationError, match=f"node '{rec[0]}'"):
            make_runtime(k).compile(g)


def test_program_compile_prints_a_refused_graph_as_one_line(tmp_path, capsys):
    """`fabric program compile` reports a refused graph on one line naming the node (no traceback)."""
    from fabric.cli.program import compile_cmd

    g = _chain()
    g.nodes["lif2"].tau[0] = -1.0
    path = tmp_path / "bad.nir"
    nir.write(str(path), g)
    assert compile_cmd(path, "cpu", tmp_path / "out.prog") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "node 'lif2' (LIF): tau must be > 0" in err, err
    assert not (tmp_path / "out.prog").exists()


# -- seeded mutation run over valid graphs, compiled on every kind -----------------------------------

def _mutations(rng: np.random.Generator) -> list[tuple[str, nir.NIRGraph]]:
    out = []
    for i in range(52):
        g = _chain(seed=int(rng.integers(1 << 30)))
        how = i % 13
        node = ["fc1", "fc2"][int(rng.integers(2))]
        neuron = ["lif1", "lif2"][int(rng.integers(2))]
        if how == 0:
            g.nodes[node].weight.flat[int(rng.integers(g.nodes[node].weight.size))] = math.nan
        elif how == 1:
            g.nodes[node].weight.flat[int(rng.integers(g.nodes[node].weight.size))] = [math.inf, -math.inf][i % 2]
        elif how == 2:
            g.nodes[node].bias[0] = math.inf
        elif how == 3:
            g.nodes[neuron].tau[:] = -g.nodes[neuron].tau
        elif how == 4:
            g.nodes[neuron].tau[int(rng.integers(g.nodes[neuron].tau.size))] = 0.0
        elif how == 5:
            g.nodes[neuron].v_threshold[:] = [0.0, -1.0][i % 2]
        elif how == 6:
            g.nodes[neuron].v_threshold[0] = math.nan
        elif how == 7:  # drop a weight column: in-dimension no longer matches
            w = g.nodes[node].weight
            g.nodes[node] = nir.Affine(weight=w[:, :-1].copy(), bias=g.nodes[node].bias)
        elif how == 8:  # an extra weight row: out-dimension no longer matches the neuron
            w = g.nodes[node].weight
            g.nodes[node] = nir.Affine(weight=np.vstack([w, w[:1]]), bias=np.append(g.nodes[node].bias, 0.0))
        elif how == 9:
            g.nodes[node] = nir.Affine(weight=g.nodes[node].weight, bias=g.nodes[node].bias[:-1].copy())
        elif how == 10:
            g.nodes[node].weight[:] *= 1e300
        elif how == 11:
            g.metadata["dt"] = [0.0, math.nan, -1.0, math.inf][i % 4]
        else:
            g.nodes[neuron].r[:] = math.inf
        out.append((f"m{i}:{how}", g))
    return out


def test_mutated_graphs_fail_only_with_fabric_errors_on_every_kind():
    t0 = time.perf_counter()
    cases = _mutations(np.random.default_rng(18))
    raw: list[str] = []
    compiled: list[str] = []
    n = 0
    for label, g in cases:
        for k in kinds():
            n += 1
            try:
                make_runtime(k).compile(copy.deepcopy(g))
            except FABRIC_ERRORS as exc:
                assert "\n" not in str(exc), f"{label} on {k}: multi-line error {exc!s}"
            except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
                raw.append(f"{label} on {k}: {type(exc).__name__}: {exc}")
            else:
                compiled.append(f"{label} on {k}")
    assert n >= 300 and not raw, raw[:10]
    assert not compiled, f"invalid graphs compiled: {compiled[:10]}"
    assert time.perf_counter() - t0 < 60


# -- spec mutation (hypothesis over the example specs) -----------------------------------------------

EXAMPLES = {p.name: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "examples").glob("*.yaml"))}


def _leaves(d: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(d, dict):
        return [p for k, v in d.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(d, list):
        return [p for i, v in enumerate(d) for p in _leaves(v, (*path, i))] or [path]
    return [path]


EXTRA_PATHS = [("train", "lr"), ("train", "batch_size"), ("model", "threshold"), ("encoder", "params", "threshold"),
               ("eval_batch_size",), ("seed",), ("compress", "finetune_lr"), ("kpis", "max_energy_mj"),
               ("model", "hidden", 0), ("dataset", "test_fraction")]
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.inf, -math.inf, math.nan]),
                   st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from([10**12, 2**63, -1, 0]),
                   st.text(max_size=5), st.none(), st.booleans(), st.lists(st.floats(), max_size=3))


def _set(d: Any, path: tuple, value: Any) -> None:
    for p in path[:-1]:
        if isinstance(d, dict):
            d = d.setdefault(p, {})
        elif isinstance(d, list) and isinstance(p, int) and p < len(d):
            d = d[p]
        else:
            return
    if isinstance(d, dict):
        d[path[-1]] = value
    elif isinstance(d, list) and isinstance(path[-1], int) and path[-1] < len(d):
        d[path[-1]] = value


def _finite_everywhere(x: Any) -> bool:
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(_finite_everywhere(v) for v in x.values())
    if isinstance(x, list):
        return all(_finite_everywhere(v) for v in x)
    return True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(name=st.sampled_from(sorted(EXAMPLES)), pick=st.integers(min_value=0, max_value=10**6), value=values,
       extra=st.booleans())
def test_mutated_specs_are_refused_with_the_field_named_or_are_sane(name, pick, value, extra):
    data = copy.deepcopy(EXAMPLES[name])
    paths = EXTRA_PATHS if extra else [p for p in _leaves(data) if p]
    path = paths[pick % len(paths)]
    _set(data, path, value)
    try:
        spec = parse_spec(data, name)
    except SpecError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith(f"invalid {name}: ") and exc.errors
        return
    dumped = spec.to_dict()
    assert _finite_everywhere(dumped), f"non-finite value passed the door at {path}: {value!r}"
    assert 0 < spec.train.batch_size <= 65_536 and 0 < spec.eval_batch_size <= 65_536
    assert 0 < spec.train.lr <= 10 and 0 < spec.model.threshold <= 1e6


@pytest.mark.parametrize("path,value,where", [
    (("train", "lr"), math.inf, "train.lr"), (("encoder", "params", "threshold"), math.inf, "encoder.params.threshold"),
    (("model", "threshold"), math.inf, "model.threshold"), (("train", "batch_size"), 10**12, "train.batch_size"),
    (("eval_batch_size",), 10**9, "eval_batch_size"), (("kpis", "max_latency_p99_ms"), math.nan, "kpis.max_latency_p99_ms"),
    (("model", "hidden"), [10**9], "model.hidden"), (("train", "lr"), 1e6, "train.lr"),
])
def test_the_issue_examples_are_refused_naming_the_field(path, value, where):
    data = copy.deepcopy(EXAMPLES["har.yaml"])
    _set(data, path, value)
    with pytest.raises(SpecError) as ei:
        parse_spec(data, "har.yaml")
    assert where in str(ei.value), str(ei.value)
