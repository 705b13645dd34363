"""The house rules, checked: a device kind is one folder + one registry line; the core never imports
device code; nothing outside ``actors/`` compares a kind's name; no room imports another's
underscore names; ``fabric/`` keeps about a dozen top-level modules."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fabric import kinds as K

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("fabric", "actors", "tune", "serve", "apps")

TOY_RUNTIME = '''
"""A toy device kind: float LIF layers, a made-up 1 nJ per synaptic event, 1 ms per step."""
from typing import Any, ClassVar

import numpy as np

from actors.base import DeviceRun, EmulatedRuntime, arrays_to_layers, layers_to_arrays, modelled_energy
from fabric.ir.lowering import DEFAULT_HANDLERS, NEURON_HANDLERS, SYNAPSE_HANDLERS, lower, merge_handlers
from fabric.kinds import Capabilities
from fabric.model.snn import simulate_layers
from fabric.records import FitReport, Program


class ToyRuntime(EmulatedRuntime):
    kind: ClassVar[str] = "toy"
    capabilities: ClassVar[Capabilities] = Capabilities(embedded_boards=1, weight_bits=6,
                                                        weight_bits_source="toy constants.yaml")
    handlers: ClassVar[dict] = merge_handlers(DEFAULT_HANDLERS, SYNAPSE_HANDLERS, NEURON_HANDLERS)
    emulation: ClassVar[str] = "float LIF"

    def _compile_device(self, graph: Any, options: dict[str, Any]) -> Program:
        ctx = lower(graph, self.kind, self.handlers)
        fit = FitReport(kind=self.kind)
        fit.add("neurons", sum(lay.n_out for lay in ctx.layers), self.constants.limits["neurons"])
        if not fit.ok:
            from fabric.records import FitError
            raise FitError(fit)
        arrays, meta = layers_to_arrays(ctx.layers)
        return Program(kind=self.kind, arrays=arrays, fit=fit,
                       meta={"layers": meta, "dt": ctx.dt, "n_in": ctx.layers[0].n_in,
                             "n_out": ctx.layers[-1].n_out, "footprint_bytes": 4 * sum(a.size for a in arrays.values())})

    def _load_device(self, program: Program) -> None:
        self._layers = arrays_to_layers(program.arrays, program.meta["layers"])
        self._dt = program.meta["dt"]

    def _run_device(self, x: np.ndarray) -> DeviceRun:
        raster, _, stats = simulate_layers(self._layers, x, self._dt)
        t = x.shape[0] * x.shape[1] * self.constants.value("t_step_s")
        ops = sum(v["synaptic_ops"] for v in stats.values())
        return DeviceRun(counts=raster.sum(axis=1), host_raster=raster, raster=raster, layer_stats=stats,
                         device_time_s=t, energy=modelled_energy(acs=ops, e_syn_j=self.constants.value("e_syn_j"),
                                                                 device_time_s=t),
                         spikes_out=int(raster.sum()))
'''

TOY_CONSTANTS = '''
kind: toy
name: "Toy device (test only)"
limits:
  neurons: 64
constants:
  e_syn_j: {value: 1.0e-9, low: 1.0e-9, high: 1.0e-9, unit: J, source: "made up for the registry test", confidence: low}
  t_step_s: {value: 1.0e-3, low: 1.0e-3, high: 1.0e-3, unit: s, source: "made up for the registry test", confidence: low}
'''


@pytest.fixture
def toy_kind(tmp_path, monkeypatch):
    """A device folder outside the repo plus ONE registry line naming it."""
    pkg = tmp_path / "plugins" / "toykind"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "runtime.py").write_text(textwrap.dedent(TOY_RUNTIME))
    (pkg / "constants.yaml").write_text(TOY_CONSTANTS)
    reg = tmp_path / "kinds.toml"
    reg.write_text('[kinds]\ntoy = "toykind.runtime:ToyRuntime"\n')  # the one line
    monkeypatch.setenv(K.REGISTRY_ENV, str(reg))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    for name in [m for m in sys.modules if m == "toykind" or m.startswith("toykind.")]:
        monkeypatch.delitem(sys.modules, name)  # a toy kind imported by an earlier test lives in another tmp dir
    K.code_digest.cache_clear()
    env = {**os.environ, K.REGISTRY_ENV: str(reg),
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "plugins"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return env


def _fabric(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fabric.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_a_kind_from_a_temporary_folder_is_one_registry_line(toy_kind, tmp_path):
    assert "toy" in K.kinds() and K.capabilities("toy").weight_bits == 6
    assert K.embedded_resources()["toy"] == 1  # advertised by the embedded fabric like any board

    # spec validation knows it (and still rejects what is not registered)
    from fabric.spec import SpecError, parse_spec

    spec = parse_spec({"name": "t", "dataset": {"name": "digits"}, "targets": ["cpu", "toy"]})
    assert spec.targets == ["cpu", "toy"]
    with pytest.raises(SpecError, match=r"targets\[0\].*'tiy'.*'toy'"):
        parse_spec({"name": "t", "dataset": {"name": "digits"}, "targets": ["tiy"]})

    # `fabric devices` lists it with its constants and their sources
    r = _fabric(["devices", "--json"], toy_kind, tmp_path)
    assert r.returncode == 0, r.stderr
    toy = {d["kind"]: d for d in json.loads(r.stdout)}["toy"]
    assert toy["resource"] == "toy" and "made up for the registry test" in json.dumps(toy["constants"])

    # `fabric compare` runs a model on it next to cpu
    from fabric.model.snn import LifMLP, export_nir

    rng = np.random.default_rng(0)
    nir_path = tmp_path / "m.nir"
    import nir

    nir.write(str(nir_path), export_nir(LifMLP(8, [12], 3, 0.9, 1.0)))
    np.save(tmp_path / "x.npy", (rng.random((10, 6, 8)) < 0.4).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 10))
    r = _fabric(["compare", str(nir_path), "--kinds", "cpu,toy", "--input", str(tmp_path / "x.npy"), "--labels",
                 str(tmp_path / "y.npy"), "--store", str(tmp_path / "store"), "--json", "--quiet"], toy_kind, tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {row["kind"]: row for row in json.loads(r.stdout)["rows"]}
    assert rows["toy"]["status"] == "ok" and rows["toy"]["mode"] == "modelled" and rows["toy"]["energy_mj"] > 0
    assert rows["cpu"]["status"] == "ok"


def test_toy_kind_limit_is_enforced_one_step_over(toy_kind):
    from fabric.model.snn import LifMLP, export_nir
    from fabric.records import FitError

    rt = K.make_runtime("toy")
    rt.compile(export_nir(LifMLP(4, [61], 3, 0.9, 1.0)))  # 64 neurons: at the limit
    with pytest.raises(FitError, match="neurons.*65.*64"):
        rt.compile(export_nir(LifMLP(4, [62], 3, 0.9, 1.0)))


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(K.UnknownKindError, match=r"unknown device kind 'tpu'; valid kinds: \['cpu', 'loihi'"):
        K.runtime_class("tpu")


def test_a_bad_registry_line_is_a_one_line_error(tmp_path, monkeypatch):
    reg = tmp_path / "kinds.toml"
    reg.write_text('[kinds]\ntoy = "no colon here"\n')
    monkeypatch.setenv(K.REGISTRY_ENV, str(reg))
    with pytest.raises(ValueError, match=r"\[kinds\] toy must be \"module:Class\""):
        K.kinds()


def _py_files(room: str) -> list[Path]:
    return sorted(p for p in (ROOT / room).rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
    return out


def test_the_core_never_imports_device_code():
    offenders = [f"{p.relative_to(ROOT)}: {mod}" for p in _py_files("fabric") for mod, _ in _imports(p)
                 if mod == "actors" or mod.startswith("actors.")]
    assert offenders == []


def test_no_room_imports_another_rooms_underscore_names():
    offenders = []
    for room in ROOMS:
        for p in _py_files(room):
            for mod, names in _imports(p):
                top = mod.split(".")[0]
                if top not in ROOMS or top == room:
                    continue
                private = [part for part in mod.split(".") if part.startswith("_")]
                private += [n for n in names if n.startswith("_")]
                if private:
                    offenders.append(f"{p.relative_to(ROOT)}: from {mod} import {names}")
    assert offenders == []


def test_no_kind_name_comparisons_outside_actors():
    names = set(K.kinds())
    offenders = []
    for room in ("fabric", "tune", "serve", "apps"):
        for p in _py_files(room):
            for node in ast.walk(ast.parse(p.read_text())):
                if isinstance(node, ast.Compare):
                    consts = [c for c in [node.left, *node.comparators] if isinstance(c, ast.Constant)]
                    consts += [e for c in [node.left, *node.comparators] if isinstance(c, (ast.Tuple, ast.List, ast.Set))
                               for e in c.elts if isinstance(e, ast.Constant)]
                    hit = [c.value for c in consts if c.value in names]
                    if hit:
                        offenders.append(f"{p.relative_to(ROOT)}:{node.lineno} compares with {hit}")
    assert offenders == []


def test_fabric_has_about_a_dozen_top_level_modules():
    top = sorted(p.name for p in (ROOT / "fabric").glob("*.py"))
    assert len(top) <= 12, top


def test_declared_weight_bits_come_from_each_kinds_constants_file():
    """A kind's declared precision is read from its constants.yaml, not copied by hand."""
    import yaml

    for kind in K.kinds():
        caps = K.capabilities(kind)
        if caps.weight_bits is None:
            continue
        limits = yaml.safe_load((ROOT / K.kind_package(kind).replace(".", "/") / "constants.yaml").read_text())["limits"]
        declared = limits.get("weight_bits", limits.get("dense_weight_bits"))
        declared = declared["value"] if isinstance(declared, dict) else declared
        assert caps.weight_bits == (max(declared) if isinstance(declared, list) else declared), kind


def test_code_digest_covers_the_shared_base_outside_the_kind_folder(tmp_path, monkeypatch):
    """A change in a base class the runtime inherits from (like actors/base) re-keys the device stages."""
    import importlib

    plugins = tmp_path / "p"
    (plugins / "basekind").mkdir(parents=True)
    (plugins / "sharedbase.py").write_text("class Base:\n    X = 1\n")
    (plugins / "basekind" / "__init__.py").write_text("")
    (plugins / "basekind" / "runtime.py").write_text("from sharedbase import Base\n\nclass R(Base):\n    kind = 'bk'\n")
    reg = tmp_path / "k.toml"
    reg.write_text('[kinds]\nbk = "basekind.runtime:R"\n')
    monkeypatch.setenv(K.REGISTRY_ENV, str(reg))
    monkeypatch.syspath_prepend(str(plugins))
    K.code_digest.cache_clear()
    before = K.code_digest("bk")
    (plugins / "sharedbase.py").write_text("class Base:\n    X = 2\n")
    K.code_digest.cache_clear()
    importlib.invalidate_caches()
    assert K.code_digest("bk") != before
    K.code_digest.cache_clear()
