"""`fabric run` on a user's own time-series file (issue #15, "done when" 1), on the session cluster's device
actors: named by its stored version, by its path, and by an ``s3://`` URL on the loopback S3 server.
The three runs see the same bytes, so after the first the data stage is a cache hit: content, not
location, is the dataset's identity."""

from __future__ import annotations

import json

import fsspec
import numpy as np
import pytest
import yaml

from fabric.cli.main import main as cli_main
from fabric.store.registry import Registry
from tests.s3server import s3_endpoint, s3_url

pytestmark = pytest.mark.integration
FIXTURES = (s3_endpoint, s3_url)  # the loopback S3 server; harmless if conftest.py imports them too
KINDS = ["cpu", "loihi", "akida"]


def _write_motions(path, n: int = 90, seed: int = 0) -> None:
    """3 classes x 3 channels x 24 steps, raw units: each class drives one channel harder."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    t = np.arange(24) / 24.0
    x = 10.0 + 5.0 * np.sin(2 * np.pi * t[None, None, :] + rng.uniform(0, 2 * np.pi, (n, 3, 1)))
    x[np.arange(n), y, :] += 25.0
    x += rng.normal(0, 3.0, x.shape)
    np.savez(path, x=x.astype(np.float32), y=np.array(["walk", "run", "jump"])[y], channels=np.array(["ax", "ay", "az"]))


def _run(tmp_path, capsys, store: str, dataset: dict) -> dict:
    spec = {"name": "user-motions", "dataset": dataset, "encoder": {"name": "rate", "timesteps": 16},
            "model": {"hidden": [24]}, "train": {"epochs": 12, "batch_size": 16, "lr": 0.01, "device": "cpu"},
            "targets": KINDS, "golden": {"samples": 0}, "seed": 1}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    rc = cli_main(["run", str(path), "--store", store, "--json", "--quiet"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, out["kpis"]
    rows = {r["kind"]: r for r in out["kpis"]}
    assert sorted(rows) == sorted(KINDS)
    for kind, row in rows.items():
        assert row["status"] == "ok" and row["accuracy"] > 0.6, (kind, row)  # 3 classes: chance is 1/3
    return out


def test_user_npz_by_version_path_and_s3_url(ray_session, s3_endpoint, s3_url, tmp_path, capsys):
    f = tmp_path / "motions.npz"
    _write_motions(f)
    store = str(tmp_path / "store")
    assert cli_main(["data", "ingest", str(f), "--store", store, "--seed", "1"]) == 0
    capsys.readouterr()
    reg = Registry(store)
    (version,) = reg.ls("dataset")

    by_version = _run(tmp_path, capsys, store, {"version": version.id[:8]})
    data = next(s for s in by_version["stages"] if s["stage"] == "data")
    assert data["artifact"] == version.id

    # by path: ingested as the data stage with the spec's seed, the same artifact `fabric data ingest` made
    by_path = _run(tmp_path, capsys, store, {"path": str(f)})
    path_data = next(s for s in by_path["stages"] if s["stage"] == "data")
    assert path_data["artifact"] == version.id

    # by URL: the same bytes in a bucket on the loopback S3 server ($FABRIC_S3_ENDPOINT_URL): a cache hit
    bucket = s3_url.split("/")[2]
    url = f"s3://{bucket}/incoming/motions.npz"
    with fsspec.open(url, "wb", endpoint_url=s3_endpoint) as out:
        out.write(f.read_bytes())
    by_url = _run(tmp_path, capsys, store, {"path": url})
    url_data = next(s for s in by_url["stages"] if s["stage"] == "data")
    assert url_data["cached"] and url_data["artifact"] == version.id
    assert [r["accuracy"] for r in by_url["kpis"]] == [r["accuracy"] for r in by_path["kpis"]]


def test_unreadable_url_and_foreign_version_exit_2_storing_nothing(s3_url, tmp_path, capsys):
    store = tmp_path / "store"
    bucket = s3_url.split("/")[2]
    for dataset, needle in (({"path": f"s3://{bucket}/no/such.parquet"}, "dataset.path: cannot read"),
                            ({"version": "0123456789ab"}, "dataset.version: no dataset version")):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({"name": "bad", "dataset": dataset}))
        assert cli_main(["run", str(path), "--store", str(store), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1
    assert not store.exists() or Registry(str(store)).ls() == []
