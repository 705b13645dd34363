"""Event-camera recordings from files: a ``.zip`` archive of recordings plus ``labels.csv``.

Why an archive: an event dataset is many recordings (one file each, as cameras write them) and their
labels; one archive is one file, so it is content-addressed, read from any fsspec URL (``s3://``) and
versioned exactly like the other formats. Members, by extension:

* ``.raw``: Prophesee EVT 2.0 (header line ``% evt 2.0`` or ``% format EVT2;...``), decoded by
  ``expelliarmus`` (https://github.com/open-neuromorphic/expelliarmus). EVT 3.0 is refused, with the
  way out: measured with expelliarmus 1.1.12, its EVT3 writer leaves out the TIME_HIGH word when a gap
  crosses a 4096-us boundary (events at 10 and 4200 us decode as 10 and 104 us) and its reader adds a
  second 4096 us when a TIME_HIGH word is followed by a smaller TIME_LOW (an EVT3 stream written to the
  format description, https://docs.prophesee.ai/stable/data/encoding_formats/evt3.html, decodes
  4096 us late after such a change), so EVT3 times cannot be trusted; EVT 2.0 and DAT round-trip exactly;
* ``.dat``: Prophesee DAT (2-D CD events), decoded by ``expelliarmus``;
* ``.npy``: a plain structured array with fields ``x``, ``y``, ``t``, ``p`` (any integer dtypes, any order).

``labels.csv`` (header ``file,label`` and optionally ``split``) names each recording's class; files not
listed are ignored, a listed file missing from the archive is an error. Times are in ``time_unit``
(Prophesee files: microseconds), re-based so each recording starts at 0 and converted to microseconds.
The sensor size comes from ``sensor_size``, else from the files' ``% geometry WxH`` / ``width=``
``height=`` headers; an event outside it is refused. Optional preprocessing uses tonic's own
transforms (tonic 1.7, https://github.com/neuromorphs/tonic): ``denoise`` (``tonic.transforms.Denoise``),
``refractory_period`` (``RefractoryPeriod``), ``decimation`` (``Decimation``), ``center_crop``
(``CenterCrop``, which also sets the new sensor size). The sensor size, time unit, polarity mapping
and transforms are recorded in the dataset's preprocessing, so they are part of its version.
"""

from __future__ import annotations

import csv
import io
import math
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fabric.data.events import EVENT_DTYPE, EventSet

__all__ = ["TIME_UNITS", "TRANSFORMS", "read_event_archive", "write_event_archive", "check_transforms",
           "EventFileError"]

TIME_UNITS = {"us": 1.0, "ms": 1000.0, "ns": 1e-3, "s": 1e6}  # -> microseconds
TRANSFORMS = ("denoise", "refractory_period", "decimation", "center_crop")
MAX_RECORDINGS = 100_000
MAX_EVENTS = 50_000_000  # per archive, after decoding: bounds memory for a hostile archive


class EventFileError(ValueError):
    """An archive or recording that cannot become an event dataset; names the member and the reason."""


def _raw_encoding(head: bytes, member: str) -> str:
    text = head.decode("latin-1")
    m = re.search(r"^%\s*evt\s*([23])\.0", text, re.M | re.I) or re.search(r"^%\s*format\s+EVT([23])", text, re.M | re.I)
    if not m:
        raise EventFileError(f"{member}: a .raw file needs a '% evt 2.0|3.0' or '% format EVT2|EVT3' header line "
                             "(Prophesee EVT 2.0 / 3.0)")
    return f"evt{m.group(1)}"


def _geometry(head: bytes) -> tuple[int, int] | None:
    text = head.decode("latin-1")
    m = re.search(r"^%\s*geometry\s+(\d+)\s*x\s*(\d+)", text, re.M | re.I)
    if m:
        return int(m.group(1)), int(m.group(2))
    w = re.search(r"width=(\d+)", text)
    h = re.search(r"height=(\d+)", text)
    return (int(w.group(1)), int(h.group(1))) if w and h else None


def _decode(name: str, data: bytes, tmp: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    """One member's events as a structured array (fields x, y, t, p) and the geometry its header states."""
    ext = Path(name).suffix.lower()
    if ext == ".npy":
        try:
            a = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy raises ValueError/EOFError/SyntaxError on bad headers
            raise EventFileError(f"{name}: not a readable .npy file ({type(exc).__name__})") from None
        if a.dtype.names is None or not {"x", "y", "t", "p"} <= set(a.dtype.names):
            raise EventFileError(f"{name}: a .npy recording must be a structured array with fields x, y, t, p "
                                 f"(has {a.dtype.names or a.dtype})")
        return a, None
    if ext not in (".raw", ".dat"):
        raise EventFileError(f"{name}: unsupported recording type {ext!r}; use .raw (EVT 2.0/3.0), .dat or .npy (x, y, t, p)")
    from expelliarmus import Wizard

    enc = _raw_encoding(data[:4096], name) if ext == ".raw" else "dat"
    if enc == "evt3":
        raise EventFileError(f"{name}: EVT 3.0 recordings are not accepted (their decoder shifts times by 4096 us "
                             "at some time-high changes); convert to EVT 2.0 .raw, .dat or an x/y/t/p .npy")
    path = tmp / f"rec{ext}"
    path.write_bytes(data)
    try:
        a = Wizard(encoding=enc).read(str(path))
    except Exception as exc:  # noqa: BLE001 - the decoder's own errors (truncated words, bad headers)
        raise EventFileError(f"{name}: not a readable {enc.upper()} recording ({type(exc).__name__}: "
                             f"{str(exc).strip()[:120]})") from None
    return a, _geometry(data[:4096])


def _labels_table(zf: zipfile.ZipFile, where: str) -> list[dict[str, str]]:
    try:
        text = zf.read("labels.csv").decode("utf-8")
    except KeyError:
        raise EventFileError(f"{where}: no labels.csv in the archive (header: file,label[,split])") from None
    except UnicodeDecodeError:
        raise EventFileError(f"{where}: labels.csv is not UTF-8 text") from None
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise EventFileError(f"{where}: labels.csv needs a header with columns file,label (and optionally split)")
    if len(rows) > MAX_RECORDINGS:
        raise EventFileError(f"{where}: {len(rows)} recordings, more than the limit {MAX_RECORDINGS}")
    return rows


def _apply(ev: np.ndarray, transforms: list[dict[str, Any]], sensor: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """tonic's transforms, in order, on one recording (fields x, y, t, p; t in microseconds)."""
    import tonic.transforms as tt

    for step in transforms:
        (name, arg), = step.items()
        if not len(ev):
            if name == "center_crop":
                sensor = (int(arg[0]), int(arg[1]))
            continue
        if name == "denoise":
            ev = tt.Denoise(filter_time=float(arg))(ev)
        elif name == "refractory_period":
            ev = tt.RefractoryPeriod(delta=int(arg))(ev)
        elif name == "decimation":
            ev = tt.Decimation(n=int(arg))(ev)
        elif name == "center_crop":
            size = (int(arg[0]), int(arg[1]))
            ev = tt.CenterCrop(sensor_size=(sensor[0], sensor[1], 2), size=size)(ev.copy())
            sensor = size
    return ev, sensor


def check_transforms(transforms: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The transform list in its canonical form, or EventFileError naming the bad entry."""
    out: list[dict[str, Any]] = []
    for i, step in enumerate(transforms or []):
        where = f"transforms[{i}]"
        if not isinstance(step, dict) or len(step) != 1:
            raise EventFileError(f"{where}: each transform is one mapping such as {{denoise: 10000}}; valid: {list(TRANSFORMS)}")
        (name, arg), = step.items()
        if name not in TRANSFORMS:
            raise EventFileError(f"{where}: unknown transform {name!r}; valid: {list(TRANSFORMS)}")
        if name == "center_crop":
            if not (isinstance(arg, list | tuple) and len(arg) == 2 and all(isinstance(v, int) and 0 < v <= 4096 for v in arg)):
                raise EventFileError(f"{where}.center_crop: must be [width, height], integers in 1..4096")
            out.append({name: [int(arg[0]), int(arg[1])]})
        else:
            integral = name in ("decimation", "refractory_period")
            ok = isinstance(arg, int | float) and not isinstance(arg, bool) and math.isfinite(arg) and arg > 0
            if not ok or arg > 1e12 or (integral and (int(arg) != arg or arg < 1)):
                raise EventFileError(f"{where}.{name}: must be a positive finite number"
                                     + (" (a whole number" + (" of microseconds)" if name != "decimation" else ")")
                                        if integral else " (microseconds)"))
            out.append({name: int(arg) if name in ("decimation", "refractory_period") else float(arg)})
    return out


def read_event_archive(path: str | Path, *, sensor_size: tuple[int, int] | None = None, time_unit: str = "us",
                       duration_us: int | None = None, transforms: list[dict[str, Any]] | None = None,
                       ) -> tuple[EventSet, list[str], np.ndarray | None, dict[str, Any]]:
    """``(events, raw labels, splits or None, layout)`` from an archive; ``layout`` records how the
    events were read (sensor size, time unit, polarity mapping, transforms) for the dataset version."""
    where = str(path)
    if time_unit not in TIME_UNITS:
        raise EventFileError(f"time_unit must be one of {list(TIME_UNITS)}, got {time_unit!r}")
    steps = check_transforms(transforms)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise EventFileError(f"{where}: not a readable .zip archive ({exc})") from None
    with zf, tempfile.TemporaryDirectory(prefix="fabric-events-") as tmp:
        rows = _labels_table(zf, where)
        members = set(zf.namelist())
        recs: list[np.ndarray] = []
        geometries: set[tuple[int, int]] = set()
        total = 0
        for r in rows:
            name = (r.get("file") or "").strip()
            if name not in members:
                raise EventFileError(f"{where}: labels.csv names {name!r}, which is not in the archive")
            info = zf.getinfo(name)
            if info.file_size > 2_000_000_000:
                raise EventFileError(f"{where}: {name} is {info.file_size} bytes uncompressed, over the 2 GB limit")
            a, geo = _decode(name, zf.read(name), Path(tmp))
            total += len(a)
            if total > MAX_EVENTS:
                raise EventFileError(f"{where}: more than {MAX_EVENTS} events in all; split the archive")
            if geo:
                geometries.add(geo)
            recs.append(a)
    if sensor_size is None:
        if len(geometries) != 1:
            raise EventFileError(f"{where}: give sensor_size [width, height] (the recordings' headers state "
                                 f"{sorted(geometries) or 'no geometry'})")
        sensor_size = next(iter(geometries))
    w, h = int(sensor_size[0]), int(sensor_size[1])
    if not (0 < w <= 4096 and 0 < h <= 4096):
        raise EventFileError(f"sensor_size must be [width, height] in 1..4096, got {list(sensor_size)}")
    scale = TIME_UNITS[time_unit]
    events: list[np.ndarray] = []
    sensor = (w, h)
    for r, a in zip(rows, recs, strict=True):
        name = r["file"].strip()
        ev = np.zeros(len(a), dtype=EVENT_DTYPE)
        for f in ("x", "y", "t", "p"):
            col = np.asarray(a[f])
            if col.dtype.kind not in "iub":
                raise EventFileError(f"{name}: field {f!r} must be integer, got {col.dtype}")
        x, y, p = (np.asarray(a[f]).astype(np.int64) for f in ("x", "y", "p"))
        if len(a) and (x.min() < 0 or y.min() < 0 or x.max() >= w or y.max() >= h):
            raise EventFileError(f"{name}: an event at pixel ({int(x.max())}, {int(y.max())}) is outside the {w}x{h} sensor")
        if len(a) and not np.isin(p, (0, 1, -1)).all():
            raise EventFileError(f"{name}: polarity must be 0/1 (or -1/1), got values {sorted(set(p.tolist()))[:5]}")
        t = np.asarray(a["t"]).astype(np.int64)
        if len(a) and np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            x, y, p, t = x[order], y[order], p[order], t[order]
        t = np.rint((t - (t[0] if len(t) else 0)) * scale).astype(np.int64)
        ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, (p > 0).astype(np.int8)
        ev, sensor = _apply(ev, steps, (w, h))
        events.append(np.ascontiguousarray(ev, dtype=EVENT_DTYPE))
    longest = max((int(e["t"][-1]) + 1 for e in events if len(e)), default=1)
    dur = int(duration_us) if duration_us is not None else longest
    if dur <= 0:
        raise EventFileError(f"duration_us must be > 0, got {duration_us}")
    splits = None
    if rows and "split" in rows[0] and any((r.get("split") or "").strip() for r in rows):
        splits = np.asarray([(r.get("split") or "").strip() for r in rows], dtype=object)
        bad = sorted(set(splits) - {"train", "val", "test"})
        if bad:
            raise EventFileError(f"{where}: labels.csv split values must be train/val/test, got {bad[:5]}")
    try:
        es = EventSet(events=events, sensor_size=sensor, duration_us=dur)
    except ValueError as exc:
        raise EventFileError(f"{where}: {exc}") from None
    layout = {"sensor_size": list(sensor), "time_unit": time_unit, "polarity": "p > 0 -> 1 (on), else 0 (off)",
              "transforms": steps, "recording_formats": sorted({Path(r['file']).suffix.lower() for r in rows})}
    return es, [str(r["label"]).strip() for r in rows], splits, layout


def write_event_archive(path: str | Path, es: EventSet, labels: list[str], *, fmt: str = "evt2",
                        splits: list[str] | None = None) -> Path:
    """Write ``es`` as an archive of ``fmt`` recordings (``evt2`` .raw, ``dat``, ``npy``) with
    labels.csv: what a camera user would hand over (used by the example and the tests)."""
    from expelliarmus import Wizard

    p = Path(path)
    w, h = es.sensor_size
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf, \
            tempfile.TemporaryDirectory(prefix="fabric-events-") as tmp:
        table = io.StringIO()
        cols = ["file", "label"] + (["split"] if splits is not None else [])
        wr = csv.writer(table)
        wr.writerow(cols)
        for i, ev in enumerate(es.events):
            ext = {"evt2": ".raw", "dat": ".dat", "npy": ".npy"}[fmt]
            name = f"rec{i:05d}{ext}"
            if fmt == "npy":
                buf = io.BytesIO()
                np.save(buf, ev)
                zf.writestr(name, buf.getvalue())
            else:
                dt = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
                a = np.zeros(len(ev), dtype=dt)
                a["t"], a["x"], a["y"], a["p"] = ev["t"], ev["x"], ev["y"], ev["p"]
                f = Path(tmp) / f"r{ext}"
                Wizard(encoding=fmt).save(str(f), a)
                data = f.read_bytes()
                if fmt != "dat":  # state the geometry as Metavision's headers do
                    data = f"% geometry {w}x{h}\n".encode() + data
                zf.writestr(name, data)
            wr.writerow([name, labels[i]] + ([splits[i]] if splits is not None else []))
        zf.writestr("labels.csv", table.getvalue())
    return p
