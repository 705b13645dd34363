"""Golden and deploy stage builders without Ray: what they store is what the report and Serve read."""

from __future__ import annotations

import numpy as np
import pytest

from fabric.flow.pipeline import KPIRow, _gates
from fabric.flow.stages import deploy, golden
from fabric.kinds import make_runtime
from fabric.model.snn import LifMLP, export_nir
from fabric.spec import parse_spec
from fabric.store.registry import Registry


@pytest.fixture
def reg(tmp_path) -> Registry:
    return Registry(str(tmp_path / "store"))


def _ids(reg: Registry, n: int) -> list[str]:
    """Stored stand-ins for parents (a record's parents must exist)."""
    return [reg.put(f"parent {i}".encode(), kind="report", name=f"p{i}").id for i in range(n)]


def _program(kind: str):
    return make_runtime(kind).compile(export_nir(LifMLP(8, [6], 3, 0.9, 1.0)))


def test_golden_without_lava_records_unavailable_not_a_pass(reg, monkeypatch, tmp_path):
    monkeypatch.setenv("FABRIC_LAVA_PYTHON", str(tmp_path / "no-such-python"))
    x = np.random.default_rng(0).integers(0, 2, (2, 5, 8)).astype(np.uint8)
    p, e = _ids(reg, 2)
    rec = golden(reg, _program("loihi"), p, e, "loihi", x, "s" * 64)
    out = reg.get_json(rec.id)
    assert out["status"] == "unavailable" and "no Lava python" in out["reason"]
    row = KPIRow(kind="loihi", status="ok", accuracy=0.9)
    spec = parse_spec({"name": "t", "dataset": {"name": "digits"}, "kpis": {"min_accuracy": 0.5}})
    assert _gates(spec, row, out) == {"accuracy": True}  # unavailable: recorded, not gated, not passed silently
    assert _gates(spec, row, {"status": "mismatch"}) == {"accuracy": True, "golden": False}


def test_golden_for_kinds_without_reference(reg):
    p, e = _ids(reg, 2)
    # fpga: a kind with no reference engine (akida now has BrainChip's, see test_akida_reference.py)
    rec = golden(reg, _program("fpga"), p, e, "fpga", np.zeros((1, 4, 8), np.uint8), "s" * 64)
    assert reg.get_json(rec.id) == {"kind": "fpga", "status": "no reference", "summary": "no golden reference for fpga",
                                    "samples": 0}


def test_golden_for_akida_is_bit_exact_against_the_engine(reg):
    p, e = _ids(reg, 2)
    x = np.random.default_rng(0).integers(0, 2, (4, 6, 8)).astype(np.uint8)
    out = reg.get_json(golden(reg, _program("akida"), p, e, "akida", x, "s" * 64).id)
    assert out["kind"] == "akida" and out["status"] == "bit-exact" and out["samples"] == 4


def test_deployment_record_fields_and_versions(reg):
    spec = parse_spec({"name": "dep", "dataset": {"name": "digits"}, "kpis": {"min_accuracy": 0.8}})
    meta = {"encoder": "rate", "timesteps": 25, "params": {"gain": 1.0}, "seed": 0, "classes": ["a", "b", "c"]}
    ids = _ids(reg, 6)
    r1 = deploy(reg, spec, "loihi", ids[0], ids[1], ids[2], ids[3], meta, ids[4], 8, 3)
    d1 = reg.get_json(r1.id)
    assert d1 == {"kind": "loihi", "program_id": ids[0], "model_id": ids[2], "nir_id": ids[3], "encoding_id": ids[4],
                  "encoder": {"name": "rate", "timesteps": 25, "params": {"gain": 1.0}, "seed": 0}, "n_in": 8,
                  "n_out": 3, "classes": ["a", "b", "c"], "kpis": spec.kpis.model_dump(), "spec_name": "dep",
                  "spec_hash": spec.hash, "version": 1}
    assert r1.kind == "deployment" and r1.parents == [ids[0], ids[1]]
    r2 = deploy(reg, spec, "loihi", ids[5], ids[1], ids[2], ids[3], meta, ids[4], 8, 3)
    assert reg.get_json(r2.id)["version"] == 2  # a new program for the same spec and kind is the next version
