"""Datasets: built-in sources, ingestion of every supported format, splits, preprocessing, versions."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fabric.data.datasets import (
    DATASETS,
    DataError,
    Dataset,
    dataset_version,
    from_parquet_bytes,
    ingest,
    load_builtin,
    prepare,
    read_ts,
    split,
    to_parquet_bytes,
)
from fabric.data.events import GESTURE_CLASSES, EventSet, generate_gestures


# -- built-in sources ----------------------------------------------------------------------------
def test_builtin_sources_ship_with_packages():
    assert set(DATASETS) == {"digits", "basic_motions", "dvs_gestures"}
    d = load_builtin("digits", limit=100)
    assert d.x.shape == (100, 64) and d.kind == "static" and 0 <= d.x.min() and d.x.max() <= 1
    m = load_builtin("basic_motions")
    assert m.x.shape == (80, 6, 100) and m.kind == "timeseries" and len(m.channels) == 6
    assert m.sampling_rate_hz == 10.0 and len(m.classes) == 4
    with pytest.raises(KeyError, match="unknown dataset 'mnist'; valid"):
        load_builtin("mnist")


def test_gesture_generator_is_seeded_balanced_and_valid():
    es, y = generate_gestures(24, seed=4)
    es2, y2 = generate_gestures(24, seed=4)
    assert isinstance(es, EventSet) and len(es) == 24 and es.shape == (24,)
    assert np.array_equal(y, y2) and all(np.array_equal(a, b) for a, b in zip(es.events, es2.events, strict=True))
    assert np.bincount(y, minlength=len(GESTURE_CLASSES)).tolist() == [4] * 6
    for ev in es.events:
        assert len(ev) > 20 and np.all(np.diff(ev["t"]) >= 0)
        assert ev["x"].max() < 32 and ev["y"].max() < 32 and set(np.unique(ev["p"])) <= {0, 1}
        assert 0 <= ev["t"].min() and ev["t"].max() < es.duration_us
    other, _ = generate_gestures(24, seed=5)
    assert not all(len(a) == len(b) for a, b in zip(es.events, other.events, strict=True))
    # a rightward blob's ON events move right over time
    right = es.events[int(np.flatnonzero(y == 0)[0])]
    on = right[right["p"] == 1]
    half = len(on) // 2
    assert on["x"][half:].mean() > on["x"][:half].mean() + 3
    ds = load_builtin("dvs_gestures", limit=12)
    assert ds.kind == "events" and len(ds.x) == 12 and ds.n_features == 2 * 32 * 32


# -- splits and preprocessing --------------------------------------------------------------------
def test_split_is_seeded_and_optionally_stratified():
    y = np.repeat(np.arange(5), 8)
    a, b = split(40, 0.25, 0.1, 3), split(40, 0.25, 0.1, 3)
    assert np.array_equal(a, b) and (a == "test").sum() == 10 and (a == "val").sum() == 4
    s = split(40, 0.25, 0.0, 3, labels=y)
    assert all((s[y == c] == "test").sum() == 2 for c in range(5))
    with pytest.raises(DataError, match="test \\+ val < 1"):
        split(10, 0.6, 0.5, 0)


def test_prepare_normalizes_with_training_statistics_only():
    x = np.concatenate([np.linspace(0, 10, 30), [100.0] * 10]).reshape(40, 1).astype(np.float32)
    y = np.zeros(40, np.int64)
    splits = np.array(["train"] * 30 + ["test"] * 10, dtype=object)
    ds = Dataset(name="t", x=x, y=y, classes=["a"], splits=splits)
    out, sp = prepare(ds)
    assert np.array_equal(sp, splits) and out.preprocessing["split"] == {"method": "predefined by source"}
    assert out.preprocessing["lo"] == [0.0] and out.preprocessing["hi"] == [10.0]
    assert out.x[:30].max() == 1.0 and np.all(out.x[30:] == 1.0), "test values are clipped, not used for stats"
    with pytest.raises(DataError, match="normalize='none' needs values in \\[0, 1\\]"):
        prepare(Dataset(name="t", x=x, y=y, classes=["a"]), normalize="none")


# -- versions and the Parquet form ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["digits", "basic_motions", "dvs_gestures"])
def test_parquet_round_trip_is_exact_and_deterministic(name):
    ds = load_builtin(name, limit=30)
    sp = split(len(ds.y), 0.3, 0.0, 1)
    data = to_parquet_bytes(ds, sp)
    assert data == to_parquet_bytes(ds, sp), "same content -> same bytes -> same artifact id"
    back, sp2 = from_parquet_bytes(data)
    assert np.array_equal(sp, sp2) and np.array_equal(ds.y, back.y) and back.classes == ds.classes
    assert back.kind == ds.kind and back.channels == ds.channels and back.sampling_rate_hz == ds.sampling_rate_hz
    if isinstance(ds.x, EventSet):
        assert back.x.sensor_size == ds.x.sensor_size and back.x.duration_us == ds.x.duration_us
        assert all(np.array_equal(a, b) for a, b in zip(ds.x.events, back.x.events, strict=True))
    else:
        assert np.array_equal(ds.x, back.x)
    meta = pq.read_schema(io.BytesIO(data)).metadata[b"fabric"]
    assert dataset_version(ds, sp).encode() in meta


def test_split_and_preprocessing_are_part_of_the_version():
    raw = Dataset(name="t", x=np.random.default_rng(0).random((40, 3)).astype(np.float32) * 5,
                  y=np.arange(40) % 2, classes=["a", "b"])
    a, sa = prepare(raw, seed=0)
    b, sb = prepare(raw, seed=1)
    c, sc = prepare(raw, seed=0, normalize="global")
    versions = {dataset_version(a, sa), dataset_version(b, sb), dataset_version(c, sc)}
    assert len(versions) == 3
    assert len({to_parquet_bytes(a, sa), to_parquet_bytes(b, sb), to_parquet_bytes(c, sc)}) == 3
    a2, sa2 = prepare(raw, seed=0)
    assert dataset_version(a2, sa2) == dataset_version(a, sa)


def test_reads_the_first_parquet_metadata_form():
    flat = np.arange(6, dtype=np.float32).reshape(3, 2)
    t = pa.table({"features": pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), 2),
                  "label": pa.array([0, 1, 0], pa.int64()), "split": pa.array(["train", "test", "train"])})
    meta = {"name": "old", "shape": "2", "classes": "a\x1fb", "sampling_rate_hz": "", "source": "s"}
    t = t.replace_schema_metadata({k: v.encode() for k, v in meta.items()})
    buf = io.BytesIO()
    pq.write_table(t, buf)
    ds, sp = from_parquet_bytes(buf.getvalue())
    assert ds.name == "old" and np.array_equal(ds.x, flat) and ds.classes == ["a", "b"] and sp[1] == "test"


# -- ingestion -----------------------------------------------------------------------------------
def test_ingest_npz_static_and_timeseries(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "a.npz"
    np.savez(p, x=rng.random((20, 5)), y=np.array(["cat", "dog"] * 10), sampling_rate_hz=100.0)
    ds = ingest(p)
    assert ds.name == "a" and ds.kind == "static" and ds.classes == ["cat", "dog"] and ds.sampling_rate_hz == 100.0
    assert ds.y.tolist()[:2] == [0, 1]
    p3 = tmp_path / "ts.npz"
    np.savez(p3, X=rng.random((10, 2, 50)), labels=np.arange(10) % 3,
             split=np.array(["train"] * 8 + ["test"] * 2), channels=np.array(["ax", "ay"]))
    ts = ingest(p3)
    assert ts.kind == "timeseries" and ts.x.shape == (10, 2, 50) and ts.channels == ["ax", "ay"]
    assert ts.splits.tolist().count("test") == 2
    assert ingest(p3, layout="static").x.shape == (10, 100)


def test_ingest_npy_needs_labels(tmp_path):
    p, yp = tmp_path / "x.npy", tmp_path / "y.npy"
    np.save(p, np.ones((4, 3)))
    np.save(yp, np.array([0, 1, 1, 0]))
    with pytest.raises(DataError, match="a .npy file holds only samples; pass labels="):
        ingest(p)
    assert ingest(p, labels=yp).classes == ["0", "1"]
    with pytest.raises(DataError, match="3 labels for 4 samples"):
        ingest(p, labels=np.array([0, 1, 1]))


def test_ingest_csv_and_parquet_tables(tmp_path):
    c = tmp_path / "t.csv"
    c.write_text("f1,f2,target,split\n0.1,1,a,train\n0.2,2,b,test\n0.3,3,a,train\n")
    ds = ingest(c)
    assert ds.x.shape == (3, 2) and ds.classes == ["a", "b"] and ds.channels == ["f1", "f2"]
    assert ds.splits.tolist() == ["train", "test", "train"]
    q = tmp_path / "t.parquet"
    pq.write_table(pa.table({"u": [1.0, 2.0], "v": [3, 4], "cls": [1, 2]}), q)
    assert ingest(q, label_column="cls").x.tolist() == [[1.0, 3.0], [2.0, 4.0]]
    with pytest.raises(DataError, match="no label column; expected one of"):
        ingest(q)
    bad = tmp_path / "bad.csv"
    bad.write_text("f1,label\nhello,a\n")
    with pytest.raises(DataError, match="feature column 'f1' is string, not numeric"):
        ingest(bad)
    nan = tmp_path / "nan.csv"
    nan.write_text("f1,label\n1.0,a\n,b\n")
    with pytest.raises(DataError, match="1 missing or non-finite values"):
        ingest(nan)
    # a fabric Parquet file is read back as is
    own = tmp_path / "own.parquet"
    d = load_builtin("digits", limit=10)
    own.write_bytes(to_parquet_bytes(d, split(10, 0.2, 0.0, 0)))
    assert np.array_equal(ingest(own).x, d.x)


TS = """# comment
@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength true
@seriesLength 4
@classLabel true up down
@data
0,1,2,3:3,2,1,0:up
3,2,1,0:0,1,2,3:down
1,2,3,4:4,3,2,1:up
"""


def test_ingest_ts_with_its_own_train_test_split(tmp_path):
    tr, te = tmp_path / "Toy_TRAIN.ts", tmp_path / "Toy_TEST.ts"
    tr.write_text(TS)
    te.write_text(TS.replace("@data\n", "@data\n0,0,0,0:1,1,1,1:down\n"))
    ds = ingest(tr, test=te, sampling_rate_hz=50)
    assert ds.name == "Toy" and ds.x.shape == (7, 2, 4) and ds.classes == ["down", "up"]
    assert ds.splits.tolist() == ["train"] * 3 + ["test"] * 4
    prepared, sp = prepare(ds)
    assert prepared.preprocessing["split"]["method"] == "predefined by source" and sp.tolist().count("test") == 4
    assert prepared.x.min() >= 0 and prepared.x.max() <= 1
    ragged = tmp_path / "r.ts"
    ragged.write_text(TS.replace("1,2,3,4:4,3,2,1:up", "1,2,3:4,3,2:up"))
    with pytest.raises(DataError, match="unequal lengths"):
        ingest(ragged)
    stamps = tmp_path / "s.ts"
    stamps.write_text(TS.replace("@timeStamps false", "@timeStamps true"))
    with pytest.raises(DataError, match="@timeStamps true is not supported"):
        ingest(stamps)


def test_read_ts_matches_sktime_on_basic_motions():
    import os

    import sktime
    from sktime.datasets import load_from_tsfile

    path = os.path.join(os.path.dirname(sktime.__file__), "datasets", "data", "BasicMotions", "BasicMotions_TEST.ts")
    x, y = read_ts(path)
    x_ref, y_ref = load_from_tsfile(path, return_data_type="numpy3D")
    assert x.shape == (40, 6, 100) and np.allclose(x, x_ref)
    assert [v.lower() for v in y] == [str(v).lower() for v in y_ref]  # sktime lower-cases; we keep the file's case


def test_unknown_format_and_missing_file_are_named(tmp_path):
    p = tmp_path / "x.xlsx"
    p.write_text("")
    with pytest.raises(DataError, match="cannot tell the format from the extension '.xlsx'"):
        ingest(p)
    with pytest.raises(DataError, match="no such file"):
        ingest(tmp_path / "nope.npz")


def test_cli_data_ingest_ls_show(tmp_path, capsys):
    from fabric.cli.main import main
    from fabric.store.registry import Registry

    store = str(tmp_path / "store")
    p = tmp_path / "mine.npz"
    np.savez(p, x=np.random.default_rng(0).random((30, 2, 16)) * 7, y=np.arange(30) % 3)
    assert main(["data", "ingest", str(p), "--store", store, "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "mine: 30 samples, timeseries [2, 16], 3 classes" in out
    rec = Registry(store).ls("dataset")[0]
    assert rec.id[:12] in out and rec.extra["splits"] == {"train": 24, "test": 6}
    assert main(["data", "ingest", "builtin:dvs_gestures", "--limit", "12", "--store", store]) == 0
    capsys.readouterr()
    assert main(["data", "ls", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "2 dataset versions" in out and "dvs_gestures" in out and "timeseries" in out
    assert main(["data", "show", rec.id[:8], "--store", store]) == 0
    out = capsys.readouterr().out
    assert "preprocessing" in out and '"seed": 2' in out and "class_counts" in out
    assert main(["data", "show", rec.id[:8], "--store", store, "--tenant", "other"]) == 4
    assert main(["data", "ingest", str(tmp_path / "none.npz"), "--store", store]) == 2
    assert "no such file" in capsys.readouterr().err
