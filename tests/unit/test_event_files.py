"""Event-camera recordings from files (issue #15 item 1): a .zip of Prophesee EVT 2.0 .raw,
.dat or plain x/y/t/p .npy recordings with labels.csv, decoded by expelliarmus, preprocessed with
tonic's own transforms, stored as a dataset version whose layout (sensor, time unit, transforms) is
part of its content; its frames agree with tonic's ToFrame; bad archives get one line and store
nothing; a spec names the archive by path and runs on cpu and loihi. No Ray."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import tonic.transforms as tt

from fabric.cli.main import main
from fabric.data.datasets import from_parquet_bytes
from fabric.data.eventfiles import read_event_archive, write_event_archive
from fabric.data.events import EventSet, events_to_frames, generate_gestures
from fabric.flow.pipeline import run_pipeline
from fabric.spec import SpecError, parse_spec
from fabric.store.registry import Registry
from tests.unit.local_pool import LocalPool

GESTURES, LABELS = generate_gestures(24, seed=3)
NAMES = [str(v) for v in LABELS]


def _same_events(a: EventSet, b: EventSet) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all((x[f] == y[f]).all() for f in "xyp") and ((x["t"] - x["t"][0]) == y["t"]).all()
        for x, y in zip(a.events, b.events, strict=True))


def _ingest(store: Path, path: Path, *extra: str) -> int:
    return main(["data", "ingest", str(path), "--store", str(store), *extra])


@pytest.mark.parametrize("fmt", ["evt2", "dat", "npy"])
def test_each_recording_format_round_trips_through_fabric_data_ingest(fmt: str, tmp_path: Path, capsys) -> None:
    arc = write_event_archive(tmp_path / f"g_{fmt}.zip", GESTURES, NAMES, fmt=fmt)
    store = tmp_path / "store"
    geometry = [] if fmt == "evt2" else ["--sensor-size", "32x32"]  # .dat/.npy state no geometry
    assert _ingest(store, arc, *geometry, "--duration-us", str(GESTURES.duration_us)) == 0, capsys.readouterr().err
    assert "24 samples, events" in capsys.readouterr().out
    (rec,) = Registry(str(store)).ls("dataset")
    ds, _ = from_parquet_bytes(Registry(str(store)).get(rec.id))
    assert isinstance(ds.x, EventSet) and ds.x.sensor_size == (32, 32) and ds.x.duration_us == GESTURES.duration_us
    assert _same_events(GESTURES, ds.x)  # bit-exact, times re-based to each recording's first event
    assert [ds.classes[i] for i in ds.y] == NAMES
    assert ds.preprocessing["events"]["time_unit"] == "us" and ds.preprocessing["events"]["sensor_size"] == [32, 32]


def test_tonic_transforms_apply_in_order_and_change_the_version(tmp_path: Path, capsys) -> None:
    arc = write_event_archive(tmp_path / "g.zip", GESTURES, NAMES, fmt="evt2")
    es, _, _, layout = read_event_archive(arc, transforms=[{"denoise": 5000}, {"center_crop": [24, 24]}])
    assert es.sensor_size == (24, 24) and layout["transforms"] == [{"denoise": 5000.0}, {"center_crop": [24, 24]}]
    plain, _, _, _ = read_event_archive(arc)
    for got, raw in zip(es.events, plain.events, strict=True):  # the fabric applies tonic's own transforms
        want = tt.CenterCrop(sensor_size=(32, 32, 2), size=(24, 24))(tt.Denoise(filter_time=5000)(raw).copy())
        assert len(got) == len(want) and all((got[f] == want[f]).all() for f in "xytp")
    assert sum(map(len, es.events)) < sum(map(len, plain.events))
    store = tmp_path / "store"
    assert _ingest(store, arc) == 0
    assert _ingest(store, arc, "--transform", "denoise=5000") == 0
    recs = Registry(str(store)).ls("dataset")
    assert len({r.id for r in recs}) == 2  # same bytes, other preprocessing: another version
    capsys.readouterr()


def test_frames_agree_with_tonic_to_frame() -> None:
    """The fabric bins fixed windows from 0 to duration_us (the device's clocked time); tonic's ToFrame
    with the same window, start and end gives the same counts per pixel, polarity and bin."""
    es, _ = generate_gestures(6, seed=9, duration_us=200_000)
    bins = 20
    ours = events_to_frames(es, bins, binary=False)
    for i, ev in enumerate(es.events):
        ref = tt.ToFrame(sensor_size=(32, 32, 2), time_window=es.duration_us / bins, start_time=0,
                         end_time=es.duration_us, include_incomplete=True)(ev)[:bins]  # [T, P, H, W]
        assert ref.shape == (bins, 2, 32, 32)
        assert (ours[i] == ref.reshape(bins, -1)).all()


def _archive(tmp_path: Path, members: dict[str, bytes]) -> Path:
    p = tmp_path / "bad.zip"
    with zipfile.ZipFile(p, "w") as zf:
        for k, v in members.items():
            zf.writestr(k, v)
    return p


def _npy(ev: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, ev)
    return buf.getvalue()


@pytest.mark.parametrize("case, extra, message", [
    ("no_labels", [], "no labels.csv in the archive"),
    ("missing_member", [], "labels.csv names 'gone.npy', which is not in the archive"),
    ("outside_sensor", ["--sensor-size", "31x32"], "outside the 31x32 sensor"),
    ("no_geometry", [], "give sensor_size [width, height]"),
    ("raw_without_header", ["--sensor-size", "32x32"], "needs a '% evt 2.0|3.0'"),
    ("evt3", ["--sensor-size", "32x32"], "EVT 3.0 recordings are not accepted"),
    ("unknown_member", ["--sensor-size", "32x32"], "unsupported recording type '.aedat'"),
    ("bad_transform", ["--sensor-size", "32x32", "--transform", "blur=3"], "unknown transform 'blur'"),
    ("not_zip", [], "not a readable .zip archive"),
])
def test_bad_archives_get_one_line_and_store_nothing(case: str, extra: list[str], message: str, tmp_path: Path,
                                                     capsys) -> None:
    ev = GESTURES.events[0]
    edge = ev.copy()
    edge["x"][0] = 31  # max x = 31: fits a 32-wide sensor, one column over a 31-wide one
    members = {
        "no_labels": {"a.npy": _npy(ev)},
        "missing_member": {"a.npy": _npy(ev), "labels.csv": b"file,label\na.npy,up\ngone.npy,up\n"},
        "outside_sensor": {"a.npy": _npy(edge), "labels.csv": b"file,label\na.npy,up\n"},
        "no_geometry": {"a.npy": _npy(ev), "labels.csv": b"file,label\na.npy,up\n"},
        "raw_without_header": {"a.raw": b"\x00" * 64, "labels.csv": b"file,label\na.raw,up\n"},
        "evt3": {"a.raw": b"% evt 3.0\n% end\n\x00\x80", "labels.csv": b"file,label\na.raw,up\n"},
        "unknown_member": {"a.aedat": b"x", "labels.csv": b"file,label\na.aedat,up\n"},
        "bad_transform": {"a.npy": _npy(ev), "labels.csv": b"file,label\na.npy,up\n"},
    }
    path = _archive(tmp_path, members[case]) if case != "not_zip" else tmp_path / "bad.zip"
    if case == "not_zip":
        path.write_bytes(b"PK\x03\x04 truncated")
    store = tmp_path / "store"
    assert _ingest(store, path, *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fabric: error:") and message in err[0], err
    assert Registry(str(store)).ls("dataset") == []
    if case == "outside_sensor":  # one column wider fits
        assert _ingest(store, path, "--sensor-size", "32x32") == 0


def test_spec_door_names_the_event_fields() -> None:
    base = {"name": "e", "dataset": {"path": "g.zip"}}
    with pytest.raises(SpecError, match=r"dataset.transforms.*unknown transform 'blur'"):
        parse_spec(base | {"dataset": {"path": "g.zip", "transforms": [{"blur": 1}]}})
    with pytest.raises(SpecError, match=r"dataset.sensor_size"):
        parse_spec(base | {"dataset": {"path": "g.zip", "sensor_size": [0, 32]}})
    with pytest.raises(SpecError, match=r"dataset.transforms.*applies to dataset.path only"):
        parse_spec({"name": "e", "dataset": {"name": "digits", "transforms": [{"denoise": 10}]}})
    assert parse_spec(base).dataset.format == "auto"  # .zip is recognised as an event archive


def test_a_spec_runs_an_event_archive_on_cpu_and_loihi(tmp_path: Path, monkeypatch) -> None:
    import fabric.kinds

    monkeypatch.setattr(fabric.kinds, "device_pool", LocalPool)
    es, y = generate_gestures(96, seed=4)
    arc = write_event_archive(tmp_path / "cam.zip", es, [["right", "left", "up", "down", "cw", "ccw"][v] for v in y])
    spec = parse_spec({"name": "cam", "dataset": {"path": str(arc), "duration_us": es.duration_us,
                                                   "transforms": [{"refractory_period": 1000}]},
                       "encoder": {"name": "event_frames", "timesteps": 12, "params": {"downsample": 4}},
                       "model": {"hidden": [32]}, "train": {"epochs": 8, "batch_size": 16, "lr": 0.01, "device": "cpu"},
                       "targets": ["cpu", "loihi"], "golden": {"samples": 0}, "seed": 2})
    reg = Registry(str(tmp_path / "store"))
    summary = run_pipeline(spec, reg, progress=False, log=lambda s: None)
    rows = {r.kind: r for r in summary.kpis}
    for kind in ("cpu", "loihi"):
        assert rows[kind].status == "ok" and rows[kind].accuracy > 0.4, (kind, rows[kind])  # chance 1/6
    data = next(o for o in summary.stages if o.stage == "data")
    ds, _ = from_parquet_bytes(reg.get(data.artifact))
    assert ds.preprocessing["events"]["transforms"] == [{"refractory_period": 1000}]
