import nir
import numpy as np
import pytest

from actors.cpu.runtime import HANDLERS
from fabric.ir.lowering import (
    DEFAULT_HANDLERS,
    SYNAPSE_HANDLERS,
    GraphStructureError,
    UnsupportedNodeError,
    lower,
    merge_handlers,
)
from fabric.kinds import UnknownKindError, make_runtime, runtime_class
from fabric.records import FitReport, Program


def _lif(n):
    return nir.LIF(tau=np.full(n, 0.01), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n))


def _chain(*pairs, n_in=4):
    nodes = {"input": nir.Input(input_type={"input": np.array([n_in])})}
    edges, prev = [], "input"
    for name, node in pairs:
        nodes[name] = node
        edges.append((prev, name))
        prev = name
    nodes["output"] = nir.Output(output_type={"output": np.array([3])})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_lowering_pairs_affine_with_neuron():
    g = _chain(("fc", nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3))), ("lif", _lif(3)))
    ctx = lower(g, "cpu", HANDLERS)
    assert [(layer.name, layer.neuron, layer.n_in, layer.n_out) for layer in ctx.layers] == [("fc->lif", "lif", 4, 3)]


def test_unmapped_node_type_names_node_type_and_kind():
    g = _chain(("fc", nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3))), ("lif", _lif(3)))
    only_affine = merge_handlers(DEFAULT_HANDLERS, SYNAPSE_HANDLERS)
    with pytest.raises(UnsupportedNodeError) as ei:
        lower(g, "mykind", only_affine)
    msg = str(ei.value)
    assert "'lif'" in msg and "LIF" in msg and "'mykind'" in msg and "Affine" in msg


def test_structure_errors_are_explicit():
    g = _chain(("lif", _lif(4)))
    with pytest.raises(GraphStructureError, match="not preceded by an Affine"):
        lower(g, "cpu", HANDLERS)
    g = _chain(("fc", nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3))))
    with pytest.raises(GraphStructureError, match="without a neuron layer"):
        lower(g, "cpu", HANDLERS)
    nodes = {"input": nir.Input(input_type={"input": np.array([4])}),
             "a": nir.Affine(weight=np.ones((4, 4)), bias=np.zeros(4)), "l": _lif(4)}
    cyc = nir.NIRGraph(nodes=nodes, edges=[("input", "a"), ("a", "l"), ("l", "a")], type_check=False)
    with pytest.raises(GraphStructureError, match="merges|cycle"):
        lower(cyc, "cpu", HANDLERS)


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(UnknownKindError) as ei:
        runtime_class("tpu")
    assert "'tpu'" in str(ei.value) and "cpu" in str(ei.value)


def test_program_round_trips_bytes():
    g = _chain(("fc", nir.Affine(weight=np.arange(12.0).reshape(3, 4), bias=np.ones(3))), ("lif", _lif(3)))
    rt = make_runtime("cpu")
    prog = rt.compile(g)
    again = Program.from_bytes(prog.to_bytes())
    assert again.kind == "cpu" and again.meta == prog.meta
    np.testing.assert_array_equal(again.arrays["l0.weight"], prog.arrays["l0.weight"])
    assert again.fit.to_dict() == prog.fit.to_dict()
    assert prog.to_bytes() == again.to_bytes()  # deterministic bytes -> stable content address


def test_fit_report_flags_violations():
    r = FitReport(kind="x")
    r.add("neurons", 10, 20)
    assert r.ok
    r.add("fan-in", 65, 64, scope="core 0")
    assert not r.ok and [i.name for i in r.violations] == ["fan-in"]
    assert "fan-in (core 0): 65" in r.violations[0].describe()


def test_cpu_runtime_rejects_bad_input():
    g = _chain(("fc", nir.Affine(weight=np.ones((3, 4)), bias=np.zeros(3))), ("lif", _lif(3)))
    rt = make_runtime("cpu")
    with pytest.raises(RuntimeError, match="no program loaded"):
        rt.run(np.zeros((1, 2, 4)))
    rt.load(rt.compile(g))
    with pytest.raises(ValueError, match="last dimension must be 4"):
        rt.run(np.zeros((1, 2, 5)))
    with pytest.raises(ValueError, match=r"shape \[batch, timesteps, 4\]"):
        rt.run(np.zeros((2, 4)))
    bad = np.zeros((1, 2, 4))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rt.run(bad)
