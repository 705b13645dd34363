"""Models from anywhere (issue #15): a pre-trained NIR graph written with the ``nir`` API, and a user's
snntorch factory, run through the stage graph without Ray (an in-process pool stand-in); the user
exporter's round trip is proven spike for spike against the cpu kind; bad models are one line each
naming the field, with nothing stored."""

from __future__ import annotations

import hashlib
import textwrap

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from fabric.data.datasets import load_builtin
from fabric.data.encode import encode_with_meta
from fabric.flow.codecs import checkpoint_from_bytes, nir_from_bytes, nir_to_bytes
from fabric.flow.pipeline import run_pipeline
from fabric.kinds import make_runtime
from fabric.model.user import SUPPORTED_LAYERS, SequentialSNN, UserModelError, export_sequential
from fabric.spec import SpecError, parse_spec
from fabric.store.registry import Registry
from tests.unit.local_pool import LocalPool

STEPS, LIMIT = 10, 240


@pytest.fixture
def local(monkeypatch, tmp_path):
    """Stages without Ray: the pool is in-process; Lava is absent (golden records 'unavailable')."""
    import fabric.kinds

    monkeypatch.setattr(fabric.kinds, "device_pool", LocalPool)
    monkeypatch.setenv("FABRIC_LAVA_PYTHON", str(tmp_path / "no-such-python"))
    return Registry(str(tmp_path / "store"))


def _spec(model: dict, **kw) -> object:
    d = {"name": "user", "dataset": {"name": "digits", "limit": LIMIT}, "encoder": {"timesteps": STEPS},
         "model": model, "targets": ["cpu", "loihi"], "train": {"epochs": 2, "device": "cpu"},
         "golden": {"samples": 2}, "seed": 3} | kw
    return parse_spec(d)


def _quiet(_: str) -> None:
    pass


# -- a pre-trained NIR graph -----------------------------------------------------------------------------
def _prototype_graph(n_hidden_gain: float = 1.0) -> nir.NIRGraph:
    """Input(64) -> Affine -> LIF -> Affine -> LIF -> Output(10), written with the nir API: the hidden
    units are the digits' class prototypes (mean-centred, on the rate-coded spikes), the output copies
    them one to one, so the graph classifies by the nearest prototype with no training."""
    ds = load_builtin("digits", LIMIT)
    spikes, _ = encode_with_meta("rate", ds.x, STEPS, 3, {})
    rates = spikes.mean(1)
    protos = np.stack([rates[ds.y == c].mean(0) for c in range(10)])
    w1 = (protos - protos.mean(0)) * 4.0 * n_hidden_gain
    dt, beta = 1e-3, 0.9
    tau = dt / (1 - beta)

    def lif(n: int) -> nir.LIF:
        return nir.LIF(tau=np.full(n, tau, np.float32), r=np.full(n, tau / dt, np.float32),
                       v_leak=np.zeros(n, np.float32), v_threshold=np.full(n, 1.0, np.float32),
                       v_reset=np.zeros(n, np.float32))

    nodes = {"in": nir.Input(input_type={"input": np.array([64])}),
             "w1": nir.Affine(weight=w1.astype(np.float32), bias=np.zeros(10, np.float32)), "l1": lif(10),
             "w2": nir.Affine(weight=np.eye(10, dtype=np.float32) * 1.5, bias=np.zeros(10, np.float32)), "l2": lif(10),
             "out": nir.Output(output_type={"output": np.array([10])})}
    edges = [("in", "w1"), ("w1", "l1"), ("l1", "w2"), ("w2", "l2"), ("l2", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": dt, "producer": "test (nir API)"})


def test_pretrained_nir_graph_runs_through_the_stages_on_cpu_and_loihi(local, tmp_path):
    path = tmp_path / "pretrained.nir"
    nir.write(path, _prototype_graph())
    spec = _spec({"nir": str(path)})
    s = run_pipeline(spec, local, progress=False, log=_quiet)
    names = [o.stage for o in s.stages]
    assert "import" in names and not {"train", "neurobench", "compress", "export"} & set(names)
    assert {"compile[cpu]", "evaluate[cpu]", "golden[cpu]", "compile[loihi]", "evaluate[loihi]"} <= set(names)
    rows = {r.kind: r for r in s.kpis}
    assert rows["cpu"].status == "ok" and rows["loihi"].status == "ok"
    assert rows["cpu"].accuracy > 0.5 and rows["loihi"].accuracy > 0.5  # chance is 0.1
    assert s.golden["cpu"]["status"] == "no reference" and s.golden["loihi"]["status"] == "unavailable"  # no Lava here
    nir_id = next(o.artifact for o in s.stages if o.stage == "import")
    assert nir_id == hashlib.sha256(path.read_bytes()).hexdigest()  # content-addressed: the file's own bytes
    assert local.record(nir_id).kind == "nir" and set(s.deployments) == {"cpu", "loihi"}
    again = run_pipeline(spec, local, progress=False, log=_quiet)
    assert next(o for o in again.stages if o.stage == "import").cached


def test_pretrained_nir_by_artifact_id(local, tmp_path):
    from fabric.flow.stages import import_nir

    spec = _spec({"nir": str(tmp_path / "unused.nir")})
    rec = import_nir(local, spec, nir_to_bytes(_prototype_graph()), 64, 10)
    spec2 = _spec({"nir": rec.id[:10]}, targets=["cpu"])
    s = run_pipeline(spec2, local, progress=False, log=_quiet)
    assert next(o.artifact for o in s.stages if o.stage == "import") == rec.id
    with pytest.raises(SpecError, match=r"model\.nir: artifact .* is a 'report' artifact, not 'nir'"):
        run_pipeline(_spec({"nir": s.report_id[:12]}), local, progress=False, log=_quiet)


@pytest.mark.parametrize("content,match", [
    (b"not an hdf5 file", r"model\.nir: .* fails nir\.read/type inference"),
    (None, r"model\.nir: no such file, URL or nir artifact"),
])
def test_unreadable_nir_is_one_line_and_stores_nothing(local, tmp_path, content, match):
    path = tmp_path / "bad.nir"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SpecError, match=match) as exc:
        run_pipeline(_spec({"nir": str(path)}), local, progress=False, log=_quiet)
    assert "\n" not in str(exc.value) and local.ls() == []


def test_nir_that_fails_type_inference(local, tmp_path):
    g = _prototype_graph()
    g.nodes["w2"] = nir.Affine(weight=np.ones((10, 7), np.float32), bias=np.zeros(10, np.float32))
    path = tmp_path / "mismatch.nir"
    nir.write(path, nir.NIRGraph(nodes=g.nodes, edges=g.edges, type_check=False))
    with pytest.raises(SpecError, match=r"model\.nir: .* fails nir\.read/type inference"):
        run_pipeline(_spec({"nir": str(path)}), local, progress=False, log=_quiet)
    assert local.ls() == []


@pytest.mark.parametrize("n_in,n_out,match", [
    (32, 10, "the graph's input size is 32 but the encoded dataset has 64 features"),
    (64, 4, "the graph's output size is 4 but the dataset has 10 classes"),
])
def test_nir_sizes_must_match_the_data(local, tmp_path, n_in, n_out, match):
    rng = np.random.default_rng(0)
    g = _prototype_graph()
    nodes = dict(g.nodes)
    nodes["in"] = nir.Input(input_type={"input": np.array([n_in])})
    nodes["w1"] = nir.Affine(weight=rng.normal(size=(10, n_in)).astype(np.float32), bias=np.zeros(10, np.float32))
    nodes["w2"] = nir.Affine(weight=rng.normal(size=(n_out, 10)).astype(np.float32), bias=np.zeros(n_out, np.float32))
    nodes["l2"] = nir.LIF(tau=np.full(n_out, 0.01, np.float32), r=np.full(n_out, 10.0, np.float32),
                          v_leak=np.zeros(n_out, np.float32), v_threshold=np.ones(n_out, np.float32),
                          v_reset=np.zeros(n_out, np.float32))
    nodes["out"] = nir.Output(output_type={"output": np.array([n_out])})
    path = tmp_path / "sized.nir"
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=g.edges, metadata=g.metadata))
    with pytest.raises(SpecError, match=rf"model\.nir: {match}"):
        run_pipeline(_spec({"nir": str(path)}), local, progress=False, log=_quiet)
    assert local.ls("nir") == [] and local.ls("model") == []


# -- a user factory ----------------------------------------------------------------------------------------
MODEL_FILE = '''
import snntorch as snn
from torch import nn


def build(input_shape, n_classes, hidden=32, beta=0.9):
    """As snntorch's tutorials write one: init_hidden neurons, the last with output=True."""
    n_in = input_shape[0]
    return nn.Sequential(
        nn.Linear(n_in, hidden), snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(hidden, n_classes), snn.Leaky(beta=beta, init_hidden=True, reset_mechanism="zero", output=True),
    )
'''


def _write(tmp_path, body: str, name: str = "mymodel.py") -> str:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return str(p)


def test_user_factory_trains_exports_and_runs_on_cpu_and_loihi(local, tmp_path):
    ref = _write(tmp_path, MODEL_FILE) + ":build"
    spec = _spec({"module": ref, "params": {"hidden": 24}}, train={"epochs": 3, "device": "cpu", "lr": 0.01})
    s = run_pipeline(spec, local, progress=False, log=_quiet)
    names = [o.stage for o in s.stages]
    assert {"train", "neurobench", "export", "compile[cpu]", "compile[loihi]"} <= set(names) and "compress" not in names
    rows = {r.kind: r for r in s.kpis}
    assert rows["cpu"].accuracy > 0.3 and rows["loihi"].status == "ok"
    assert s.neurobench["ParameterCount"] > 0 and set(s.golden) == {"cpu", "loihi"}
    model_id = next(o.artifact for o in s.stages if o.stage == "train")
    ck = checkpoint_from_bytes(local.get(model_id))
    assert ck["factory"] == ref and ck["params"] == {"hidden": 24} and ck["n_in"] == 64 and ck["n_out"] == 10
    assert ck["module_sha256"] == hashlib.sha256((tmp_path / "mymodel.py").read_bytes()).hexdigest()
    graph = nir_from_bytes(local.get(next(o.artifact for o in s.stages if o.stage == "export")))
    assert graph.nodes["fc0"].weight.shape == (24, 64) and isinstance(graph.nodes["lif1"], nir.LIF)
    assert all(o.cached for o in run_pipeline(spec, local, progress=False, log=_quiet).stages if o.stage == "train")
    (tmp_path / "mymodel.py").write_text(MODEL_FILE + "\n# edited\n")  # editing the file re-trains
    edited = run_pipeline(spec, local, progress=False, log=_quiet)
    assert not next(o for o in edited.stages if o.stage == "train").cached


def _net(kind: str) -> nn.Sequential:
    z = {"init_hidden": True, "reset_mechanism": "zero"}
    first = {"leaky": snn.Leaky(beta=0.85, **z),
             "leaky_delay_false": snn.Leaky(beta=0.85, reset_delay=False, **z),
             "synaptic": snn.Synaptic(alpha=0.7, beta=0.85, reset_delay=False, **z),
             "rleaky": snn.RLeaky(beta=0.85, linear_features=16, reset_delay=False, **z),
             "rleaky_one_to_one": snn.RLeaky(beta=0.85, all_to_all=False, V=0.5, reset_delay=False, **z)}[kind]
    return nn.Sequential(nn.Flatten(), nn.Linear(20, 16), first, nn.Dropout(0.2), nn.Linear(16, 5),
                         snn.Leaky(beta=torch.linspace(0.7, 0.9, 5), threshold=0.8, output=True, **z))


@pytest.mark.parametrize("kind", ["leaky", "leaky_delay_false", "synaptic", "rleaky", "rleaky_one_to_one"])
def test_user_export_round_trip_reproduces_snntorch_spikes(tmp_path, kind):
    torch.manual_seed(4)
    net = _net(kind)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(3.0)
    model = SequentialSNN(net, factory="m.py:build", params={}, n_in=20, n_out=5).eval()
    x = (torch.rand(30, 6, 20, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    with torch.no_grad():
        ref, _ = model(x)
        again, _ = model(x)  # state is reset per call
    assert torch.equal(ref, again) and ref.sum() > 0, "test net must spike"
    path = tmp_path / "g.nir"
    nir.write(path, export_sequential(model))
    g = nir.read(path)  # type checks on
    g.infer_types()
    rt = make_runtime("cpu")
    rt.load(rt.compile(g))
    out = rt.run(x.permute(1, 0, 2).numpy(), record_raster=True)
    np.testing.assert_array_equal(out.raster, ref.permute(1, 0, 2).numpy())


def test_user_model_trains_with_the_fabric_loop_and_seed():
    from fabric.model.train import train_model

    ref = "tests.unit.test_user_model:tiny_factory"
    spec = parse_spec({"name": "t", "dataset": {"name": "digits"}, "model": {"module": ref}, "seed": 5,
                       "train": {"epochs": 2, "device": "cpu", "batch_size": 16}})
    x = (np.random.default_rng(0).random((40, 6, 12)) < 0.4).astype(np.uint8)
    y = np.arange(40) % 3
    a, b = train_model(spec, x, y, 3, progress=False), train_model(spec, x, y, 3, progress=False)
    assert isinstance(a.model, SequentialSNN) and len(a.history) == 2
    for (ka, va), (_, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka  # seeded: same weights twice


def tiny_factory(input_shape, n_classes, **params):
    """A factory importable as ``pkg.mod:build`` (this test module)."""
    z = {"init_hidden": True, "reset_mechanism": "zero"}
    return nn.Sequential(nn.Linear(input_shape[0], 8), snn.Leaky(beta=0.9, **z), nn.Linear(8, n_classes),
                         snn.Leaky(beta=0.9, output=True, **z))


@pytest.mark.parametrize("body,match", [
    ("import numpy_nonexistent_pkg\ndef build(s, n): pass\n",
     r"model\.module: '.*bad\.py' does not import: ModuleNotFoundError: No module named 'numpy_nonexistent_pkg'"),
    ("def build(s, n:\n", r"model\.module: '.*bad\.py' does not import: SyntaxError"),
    ("def other(s, n): pass\n", r"model\.module: '.*bad\.py' has no callable 'build'"),
    ("def build(s, n, **kw):\n    raise ValueError('hidden must be even')\n",
     r"model\.module: .*bad\.py:build raised ValueError: hidden must be even"),
    ("import torch\ndef build(s, n): return torch.nn.Linear(s[0], n)\n",
     r"model\.module: the factory returned Linear, expected a torch\.nn\.Sequential"),
    ("import snntorch as snn\nfrom torch import nn\ndef build(s, n):\n"
     "    return nn.Sequential(nn.Linear(s[0], 7), snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism='zero', output=True))\n",
     r"model\.module: the model's output size is 7 but the dataset has 10 classes"),
    ("import snntorch as snn\nfrom torch import nn\ndef build(s, n):\n"
     "    return nn.Sequential(nn.Linear(30, n), snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism='zero', output=True))\n",
     r"model\.module: layer 0 \(Linear\) takes 30 inputs but the encoded dataset has 64 features"),
    ("import snntorch as snn\nfrom torch import nn\ndef build(s, n):\n"
     "    return nn.Sequential(nn.Linear(s[0], 16), nn.ReLU(), nn.Linear(16, n),"
     " snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism='zero', output=True))\n",
     r"model\.module: layer 1 \(ReLU\) is not supported; supported layers: \['Linear', 'Flatten'"),
    ("import snntorch as snn\nfrom torch import nn\ndef build(s, n):\n"
     "    return nn.Sequential(nn.Linear(s[0], n), snn.Leaky(beta=0.9, init_hidden=True, output=True))\n",
     r"model\.module: layer 1 \(Leaky\) uses reset_mechanism='subtract'; .* reset_mechanism='zero'"),
])
def test_bad_user_models_are_one_line_and_store_no_model(local, tmp_path, body, match):
    ref = _write(tmp_path, body, "bad.py") + ":build"
    with pytest.raises(SpecError, match=match) as exc:
        run_pipeline(_spec({"module": ref}), local, progress=False, log=_quiet)
    assert "\n" not in str(exc.value)
    assert local.ls("model") == [] and local.ls("nir") == []


def test_module_that_does_not_exist(local, tmp_path):
    for ref, match in [(str(tmp_path / "nope.py") + ":build", "no such file"),
                       ("no_such_pkg_xyz.models:build", "'no_such_pkg_xyz.models' does not import")]:
        with pytest.raises(SpecError, match=rf"model\.module: .*{match}"):
            run_pipeline(_spec({"module": ref}), local, progress=False, log=_quiet)
    assert local.ls() == []  # refused before the first stage


def test_layer_refusals_name_position_and_list():
    z = {"init_hidden": True, "reset_mechanism": "zero"}
    cases = [
        (nn.Sequential(nn.GRU(8, 3), snn.Leaky(beta=0.9, output=True, **z)), "layer 0 (GRU) is not supported"),
        (nn.Sequential(nn.Linear(8, 4), nn.Linear(4, 3), snn.Leaky(beta=0.9, output=True, **z)),
         "layer 1 (Linear) follows the Linear at layer 0 without a neuron"),
        (nn.Sequential(nn.Linear(8, 3), snn.Synaptic(alpha=0.5, beta=0.9, output=True, **z)),
         "layer 1 (Synaptic) needs reset_delay=False"),
        (nn.Sequential(nn.Linear(8, 3), snn.Leaky(beta=0.9, output=True, reset_mechanism="zero")),
         "layer 1 (Leaky) needs init_hidden=True"),
        (nn.Sequential(nn.Linear(8, 3)), "the Linear at layer 0 feeds the output without a neuron"),
    ]
    from fabric.model.user import check_layers

    for net, msg in cases:
        with pytest.raises(UserModelError) as exc:
            check_layers(net, 8, 3)
        assert msg in str(exc.value) and str(exc.value).startswith("invalid spec: model.module: ")
    assert "RLeaky" in SUPPORTED_LAYERS and "Synaptic" in SUPPORTED_LAYERS


# -- the spec --------------------------------------------------------------------------------------------
def test_template_spec_dump_and_hash_are_unchanged():
    spec = parse_spec({"name": "a", "dataset": {"name": "digits"}})
    assert spec.model.model_dump() == {"template": "lif_mlp", "hidden": [64], "beta": 0.9, "threshold": 1.0}
    assert "nir" not in spec.to_dict()["model"] and spec.model.source == "template"


@pytest.mark.parametrize("extra,match", [
    ({"model": {"nir": "g.nir", "module": "m.py:build"}}, "give one of model.nir"),
    ({"model": {"nir": "g.nir", "hidden": [8]}}, "hidden: settings of the lif_mlp template, not of a model.nir model"),
    ({"model": {"module": "m.py"}}, r"model\.module: expected 'path/to/file\.py:build'"),
    ({"model": {"params": {"h": 3}}}, "params: only for model.module"),
    ({"model": {"module": "m.py:build"}, "compress": {"prune": 0.5}},
     "compress: works on the lif_mlp template only, not on a model.module model"),
    ({"model": {"nir": "g.nir"}, "search_space": {"hidden": [[8]]}}, "search_space.hidden: a lif_mlp template setting"),
])
def test_spec_refuses_mixed_or_unsupported_model_settings(extra, match):
    with pytest.raises(SpecError, match=match):
        parse_spec({"name": "a", "dataset": {"name": "digits"}} | extra)


def test_custom_model_example_spec_and_factory():
    from pathlib import Path

    from fabric.flow.stages import check_model
    from fabric.model.user import build_user_model as build
    from fabric.spec import load_spec

    repo = Path(__file__).resolve().parents[2]
    spec = load_spec(repo / "examples" / "custom_model" / "spec.yaml")
    assert spec.model.source == "module" and spec.model.module == "examples/custom_model/model.py:build"
    import os

    cwd = os.getcwd()
    os.chdir(repo)  # the module path is relative to where `fabric run` starts: the repository root
    try:
        assert check_model(None, spec).digest == hashlib.sha256(
            (repo / "examples" / "custom_model" / "model.py").read_bytes()).hexdigest()
        model = build(spec.model.module, spec.model.params, 64, 10, spec.seed)
    finally:
        os.chdir(cwd)
    assert isinstance(model, SequentialSNN) and export_sequential(model.eval()).nodes["fc3"].weight.shape == (10, 64)


def test_a_node_type_a_kind_cannot_map_is_a_row_not_a_crash(local, tmp_path):
    """A user graph with CubaLIF neurons: akida has no CubaLIF handler, so its row says so; cpu runs."""
    g = _prototype_graph()
    n = 10
    dt = 1e-3
    g.nodes["l1"] = nir.CubaLIF(tau_syn=np.full(n, 5e-3, np.float32), tau_mem=np.full(n, 1e-2, np.float32),
                                r=np.full(n, 10.0, np.float32), v_leak=np.zeros(n, np.float32),
                                v_threshold=np.full(n, 1.0, np.float32), v_reset=np.zeros(n, np.float32),
                                w_in=np.full(n, 1.0, np.float32))
    g.metadata["dt"] = dt
    path = tmp_path / "cuba.nir"
    nir.write(path, g)
    s = run_pipeline(_spec({"nir": str(path)}, targets=["cpu", "akida"], golden={"samples": 0}), local,
                     progress=False, log=_quiet)
    rows = {r.kind: r for r in s.kpis}
    assert rows["cpu"].status == "ok"
    assert rows["akida"].status == "does not fit" and "unsupported" in rows["akida"].reason
    assert "CubaLIF" in rows["akida"].reason and not rows["akida"].passed


@pytest.mark.parametrize("model", [{"module": "examples/custom_model/model.py:build", "params": {"hidden": 16}},
                                   {"nir": "graph.nir"}])
def test_user_model_spec_survives_the_round_trip_to_ray_workers(model):
    """Training on the cluster sends Spec.to_dict() to a Ray task that parses it again."""
    from fabric.spec import Spec

    s = parse_spec({"name": "t", "dataset": {"name": "digits"}, "model": model})
    again = Spec.from_dict(s.to_dict())
    assert again.model.source == s.model.source and again.hash == s.hash
