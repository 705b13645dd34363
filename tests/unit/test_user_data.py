"""A dataset from anywhere (issue #15, item 1): a user's own file, named by its stored version or by its
path / URL, validated before any work and run through the stages on cpu, loihi and akida without Ray.

Bad inputs each get one line naming the field and store nothing."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
import yaml

from fabric.cli.main import main
from fabric.flow import stages
from fabric.flow.pipeline import run_pipeline
from fabric.spec import SpecError, parse_spec
from fabric.store.registry import Registry
from tests.unit.local_pool import LocalPool


def _write_motions(path, n: int = 90, seed: int = 0) -> None:
    """A 3-class, 3-channel x 24-step time series no built-in has: each class drives one channel harder
    (a slow sine of random phase on every channel, noise), in raw, unnormalized units."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    t = np.arange(24) / 24.0
    x = 10.0 + 5.0 * np.sin(2 * np.pi * t[None, None, :] + rng.uniform(0, 2 * np.pi, (n, 3, 1)))
    x[np.arange(n), y, :] += 25.0
    x += rng.normal(0, 3.0, x.shape)
    np.savez(path, x=x.astype(np.float32), y=np.array(["walk", "run", "jump"])[y],
             channels=np.array(["ax", "ay", "az"]), sampling_rate_hz=np.float64(24.0))


@pytest.fixture
def local_pools(monkeypatch):
    import fabric.kinds

    monkeypatch.setattr(fabric.kinds, "device_pool", LocalPool)


def _spec(dataset: dict[str, Any], **over: Any):
    doc = {"name": "user-motions", "dataset": dataset, "encoder": {"name": "rate", "timesteps": 16},
           "model": {"hidden": [24]}, "train": {"epochs": 12, "batch_size": 16, "lr": 0.01, "device": "cpu"},
           "targets": ["cpu", "loihi", "akida"], "golden": {"samples": 0}, "seed": 1} | over
    return parse_spec(doc)


def _store_ids(reg: Registry) -> set[str]:
    return {r.id for r in reg.ls()}


# -- the built-in key is unchanged ---------------------------------------------------------------------
def test_builtin_spec_dumps_and_keys_as_before():
    spec = parse_spec({"name": "d", "dataset": {"name": "digits", "limit": 50}})
    assert spec.dataset.model_dump() == {"name": "digits", "test_fraction": 0.25, "val_fraction": 0.0, "limit": 50}
    src = stages.check_dataset(None, spec)
    assert src.field == "name" and src.key == [spec.dataset.model_dump(), spec.seed]


# -- end to end: version, path, URL --------------------------------------------------------------------
def test_user_npz_by_version_runs_on_cpu_loihi_akida(tmp_path, capsys, local_pools):
    f = tmp_path / "motions.npz"
    _write_motions(f)
    store = str(tmp_path / "store")
    assert main(["data", "ingest", str(f), "--store", store, "--seed", "1"]) == 0
    assert "motions: 90 samples, timeseries [3, 24], 3 classes" in capsys.readouterr().out
    reg = Registry(store)
    (version,) = reg.ls("dataset")

    spec = _spec({"version": version.id[:10]})
    summary = run_pipeline(spec, reg, progress=False, log=lambda s: None)
    data_stage = next(o for o in summary.stages if o.stage == "data")
    assert data_stage.artifact == version.id  # the version named is the run's dataset, not a copy
    by_kind = {r.kind: r for r in summary.kpis}
    assert sorted(by_kind) == ["akida", "cpu", "loihi"]
    for kind, row in by_kind.items():
        assert row.status == "ok", (kind, row.reason)
        assert row.accuracy is not None and row.accuracy > 0.6, (kind, row.accuracy)  # chance is 1/3
    # lineage: the encoding was made from the ingested version
    enc = next(o for o in summary.stages if o.stage == "encode")
    assert reg.record(enc.artifact).parents == [version.id]

    # a rerun reuses everything, the data stage included
    again = run_pipeline(spec, reg, progress=False, log=lambda s: None)
    assert all(o.cached for o in again.stages)

    # limit: a new dataset artifact whose parent is the version
    lim = stages.data(reg, _spec({"version": version.id, "limit": 30}))
    assert lim.id != version.id and lim.parents == [version.id] and lim.extra["samples"] == 30


def test_path_is_ingested_as_the_data_stage_and_keyed_by_content(tmp_path, local_pools):
    import fsspec

    f = tmp_path / "motions.npz"
    _write_motions(f)
    store = str(tmp_path / "store")
    reg = Registry(store)
    spec = _spec({"path": str(f)}, targets=["cpu"])
    summary = run_pipeline(spec, reg, progress=False, log=lambda s: None)
    assert summary.kpis[0].status == "ok" and summary.kpis[0].accuracy > 0.6
    data_id = next(o.artifact for o in summary.stages if o.stage == "data")
    rec = reg.record(data_id)
    assert rec.kind == "dataset" and rec.name == "motions"
    assert rec.extra["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()

    # the same bytes under an fsspec URL: the same key, so the data stage (and all after it) is cached
    with fsspec.open("memory://user-data/motions.npz", "wb") as out:
        out.write(f.read_bytes())
    by_url = run_pipeline(_spec({"path": "memory://user-data/motions.npz"}, targets=["cpu"]), reg,
                          progress=False, log=lambda s: None)
    url_data = next(o for o in by_url.stages if o.stage == "data")
    assert url_data.cached and url_data.artifact == data_id

    # what `fabric data ingest` stores for the same file and seed is the same artifact (same version)
    assert main(["data", "ingest", str(f), "--store", store, "--seed", str(spec.seed)]) == 0
    assert {r.id for r in reg.ls("dataset")} == {data_id}

    # different bytes at the same path: a new version, not a stale cache hit
    _write_motions(f, seed=5)
    src = stages.check_dataset(reg, spec)
    assert src.key != stages.check_dataset(reg, _spec({"path": "memory://user-data/motions.npz"})).key


# -- bad inputs: one line naming the field, nothing stored --------------------------------------------
def _colliding_payloads() -> tuple[bytes, bytes]:
    """Two byte strings whose sha256 (the artifact id) share the first 6 hex chars."""
    seen: dict[str, bytes] = {}
    i = 0
    while True:
        b = f"payload {i}".encode()
        p = hashlib.sha256(b).hexdigest()[:6]
        if p in seen:
            return seen[p], b
        seen[p] = b
        i += 1


@pytest.mark.parametrize("dataset, field, message", [
    ({}, "dataset", "give exactly one of name (built-in), version (stored dataset) or path"),
    ({"name": "digits", "version": "abcdef12"}, "dataset", "got name and version"),
    ({"version": "abc"}, "dataset.version", "hex prefix of >= 6 chars, got 'abc'"),
    ({"version": "not-hex-at-all"}, "dataset.version", "hex prefix"),
    ({"path": "data.xlsx"}, "dataset.format", "cannot tell the format of 'data.xlsx'"),
    ({"path": ""}, "dataset.path", "empty string"),
    ({"version": "abcdef12", "format": "npz"}, "dataset.format", "applies to dataset.path only"),
    ({"name": "digits", "labels": "y.npy"}, "dataset.labels", "applies to dataset.path only"),
    ({"version": "abcdef12", "test_fraction": 0.4}, "dataset.test_fraction", "carries the split"),
])
def test_spec_level_dataset_errors_name_the_field(dataset, field, message):
    with pytest.raises(SpecError) as e:
        _spec(dataset)
    assert f"{field}: " in str(e.value) and message in str(e.value) and "\n" not in str(e.value)


def test_unknown_ambiguous_and_non_dataset_versions(tmp_path):
    reg = Registry(str(tmp_path / "store"))
    with pytest.raises(SpecError, match=r"dataset\.version: no dataset version 'abcdef12' in "):
        stages.check_dataset(reg, _spec({"version": "abcdef12"}))
    a, b = _colliding_payloads()
    ra = reg.put(a, kind="report", name="a")
    reg.put(b, kind="report", name="b")
    with pytest.raises(SpecError, match=rf"dataset\.version: prefix '{ra.id[:6]}' is ambiguous"):
        stages.check_dataset(reg, _spec({"version": ra.id[:6]}))
    with pytest.raises(SpecError, match=rf"dataset\.version: artifact {ra.id[:12]} is a report \('a'\), not a dataset"):
        stages.check_dataset(reg, _spec({"version": ra.id[:12]}))


def test_version_of_another_tenant_is_not_found(tmp_path, capsys):
    f = tmp_path / "motions.npz"
    _write_motions(f, n=30)
    store = str(tmp_path / "store")
    assert main(["data", "ingest", str(f), "--store", store, "--tenant", "lab-a"]) == 0
    vid = Registry(store, tenant="lab-a").ls("dataset")[0].id
    with pytest.raises(SpecError, match=r"dataset\.version: no dataset version .* \(tenant lab-b\)"):
        stages.check_dataset(Registry(store, tenant="lab-b"), _spec({"version": vid}))
    assert stages.check_dataset(Registry(store, tenant="lab-a"), _spec({"version": vid})).record.id == vid


def test_paths_that_cannot_be_read_or_have_no_labels(tmp_path):
    reg = Registry(str(tmp_path / "store"))
    with pytest.raises(SpecError, match=r"dataset\.path: cannot read '.*missing\.npz': no such file"):
        stages.check_dataset(reg, _spec({"path": str(tmp_path / "missing.npz")}))
    with pytest.raises(SpecError, match=r"dataset\.path: cannot read 'memory://nowhere/x\.parquet'"):
        stages.check_dataset(reg, _spec({"path": "memory://nowhere/x.parquet"}))
    nolab = tmp_path / "nolabels.npz"
    np.savez(nolab, x=np.zeros((10, 4)))
    with pytest.raises(SpecError, match=r"dataset\.path: .*nolabels\.npz: no labels array.*give dataset\.labels"):
        stages.check_dataset(reg, _spec({"path": str(nolab)}))
    npy = tmp_path / "samples.npy"
    np.save(npy, np.zeros((10, 4)))
    with pytest.raises(SpecError, match=r"dataset\.path: .*samples\.npy: a \.npy file holds only samples"):
        stages.check_dataset(reg, _spec({"path": str(npy)}))
    with pytest.raises(SpecError, match=r"dataset\.labels: cannot read '.*nope\.npy'"):
        stages.check_dataset(reg, _spec({"path": str(npy), "labels": str(tmp_path / "nope.npy")}))
    csv = tmp_path / "table.csv"
    csv.write_text("a,b\n1,2\n3,4\n")
    with pytest.raises(SpecError, match=r"dataset\.path: .*table\.csv: no label column"):
        stages.check_dataset(reg, _spec({"path": str(csv)}))
    with pytest.raises(SpecError, match=r"dataset\.label_column: .*label_column 'cls' not found"):
        stages.check_dataset(reg, _spec({"path": str(csv), "label_column": "cls"}))
    assert reg.ls() == []


def test_fabric_run_exits_2_with_one_line_and_stores_nothing(tmp_path, capsys):
    store = tmp_path / "store"
    for dataset, needle in (({"version": "abcdef1234"}, "dataset.version: no dataset version 'abcdef1234'"),
                            ({"path": str(tmp_path / "gone.csv")}, "dataset.path: cannot read")):
        spec_file = tmp_path / "spec.yaml"
        spec_file.write_text(yaml.safe_dump({"name": "bad", "dataset": dataset}))
        assert main(["run", str(spec_file), "--store", str(store), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1
    assert not store.exists() or Registry(str(store)).ls() == []


def test_example_spec_names_the_version_its_script_ingests_to(tmp_path, capsys):
    """examples/custom_data: make_data.py + `fabric data ingest` give the version motions.yaml names (the
    artifact id is the Parquet bytes' sha256: a pyarrow that writes other bytes changes it, see its README)."""
    import importlib.util
    from pathlib import Path

    ex = Path(__file__).resolve().parents[2] / "examples" / "custom_data"
    mod_spec = importlib.util.spec_from_file_location("make_data", ex / "make_data.py")
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    f = mod.main(str(tmp_path / "motions.npz"))
    store = str(tmp_path / "store")
    assert main(["data", "ingest", str(f), "--store", store]) == 0
    (rec,) = Registry(store).ls("dataset")
    named = yaml.safe_load((ex / "motions.yaml").read_text())["dataset"]["version"]
    assert rec.id.startswith(named), f"re-ingested as {rec.id[:12]}; update examples/custom_data/motions.yaml"
    path_spec = yaml.safe_load((ex / "motions_path.yaml").read_text())
    parse_spec(path_spec | {"dataset": path_spec["dataset"] | {"path": str(f)}})  # the path spec validates
