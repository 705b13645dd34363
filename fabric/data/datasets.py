"""Datasets (NMLOps stage 2): built-in sources that ship inside installed packages, file ingestion
(.npy/.npz, Parquet, CSV, UEA/UCR ``.ts``), and one Arrow/Parquet form whose bytes are the version.

Nothing downloads: digits ships with scikit-learn, BasicMotions with sktime, and the DVS-like gesture
set is generated from a seed. A dataset artifact holds the samples, labels, the split of every sample
and, in the schema metadata, kind, shape (channels x time), class names, channel names, sampling
rate, preprocessing (with its statistics) and how the split was made; so the split and the
preprocessing are part of the content and therefore of the version (sha256 of the content).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fabric.data.events import EVENT_DTYPE, EventSet, generate_gestures

__all__ = [
    "Dataset",
    "DATASETS",
    "FORMATS",
    "DataError",
    "load_builtin",
    "split",
    "prepare",
    "ingest",
    "read_ts",
    "dataset_version",
    "dataset_summary",
    "to_parquet_bytes",
    "from_parquet_bytes",
]

SCHEMA = "fabric.dataset/1"
Normalize = Literal["per_channel", "global", "none"]
Layout = Literal["auto", "static", "timeseries"]


class DataError(ValueError):
    """A source that cannot become a dataset; the message names the file, field or constraint."""


@dataclass(kw_only=True)
class Dataset:
    """Samples ``x`` in [0, 1]: ``[N, features]`` (static), ``[N, channels, time]`` (time series) or an
    :class:`~fabric.data.events.EventSet` (event streams); integer labels ``y`` indexing ``classes``."""

    name: str
    x: np.ndarray | EventSet
    y: np.ndarray
    classes: list[str]
    sampling_rate_hz: float | None = None
    source: str = ""
    channels: list[str] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    splits: np.ndarray | None = None  # a split the source itself defines (e.g. UEA TRAIN/TEST files)

    @property
    def kind(self) -> str:
        """``static``, ``timeseries`` or ``events``."""
        if isinstance(self.x, EventSet):
            return "events"
        return "timeseries" if self.x.ndim == 3 else "static"

    @property
    def n_features(self) -> int:
        if isinstance(self.x, EventSet):
            return self.x.n_features
        return int(np.prod(self.x.shape[1:]))

    def take(self, idx: np.ndarray | slice) -> Dataset:
        """A copy restricted to samples ``idx`` (same metadata)."""
        return Dataset(name=self.name, x=self.x[idx], y=self.y[idx], classes=list(self.classes),
                       sampling_rate_hz=self.sampling_rate_hz, source=self.source, channels=list(self.channels),
                       preprocessing=dict(self.preprocessing),
                       splits=None if self.splits is None else self.splits[idx])


# -- built-in sources ----------------------------------------------------------------------------
def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Dataset(name="digits", x=(d.data / 16.0).astype(np.float32), y=d.target.astype(np.int64),
                   classes=[str(c) for c in d.target_names], source="scikit-learn load_digits (UCI optdigits, 8x8)",
                   preprocessing={"normalize": "divide by 16 (pixel range 0..16)"})


def _basic_motions() -> Dataset:
    from sktime.datasets import load_basic_motions

    x, y = load_basic_motions(return_type="numpy3D")
    classes = sorted(set(y))
    lo = x.min(axis=(0, 2), keepdims=True)
    hi = x.max(axis=(0, 2), keepdims=True)
    xn = ((x - lo) / np.maximum(hi - lo, 1e-9)).astype(np.float32)
    return Dataset(name="basic_motions", x=xn, y=np.array([classes.index(v) for v in y], dtype=np.int64),
                   classes=list(classes), sampling_rate_hz=10.0,
                   source="sktime load_basic_motions (UEA BasicMotions, 6-axis IMU, min-max per channel)",
                   channels=["acc_x", "acc_y", "acc_z", "gyr_x", "gyr_y", "gyr_z"],
                   preprocessing={"normalize": "per_channel", "lo": lo.ravel().tolist(), "hi": hi.ravel().tolist()})


def _dvs_gestures() -> Dataset:
    es, y = generate_gestures(360, seed=0)
    from fabric.data.events import GESTURE_CLASSES

    return Dataset(name="dvs_gestures", x=es, y=y, classes=list(GESTURE_CLASSES),
                   source="fabric.data.events.generate_gestures(360, seed=0): simulated 32x32 DVS, moving Gaussian blob",
                   preprocessing={"generator": "generate_gestures", "seed": 0, "n": 360})


DATASETS: dict[str, Callable[[], Dataset]] = {"digits": _digits, "basic_motions": _basic_motions,
                                              "dvs_gestures": _dvs_gestures}


def load_builtin(name: str, limit: int | None = None) -> Dataset:
    """A built-in dataset, optionally only its first ``limit`` samples."""
    try:
        make = DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; valid: {sorted(DATASETS)}") from None
    ds = make()
    if limit is not None:
        if limit <= 0:
            raise DataError(f"dataset limit must be > 0, got {limit}")
        ds = ds.take(slice(0, limit))
    return ds


# -- splits and preprocessing --------------------------------------------------------------------
def split(n: int, test_fraction: float, val_fraction: float, seed: int, *,
          labels: np.ndarray | None = None) -> np.ndarray:
    """A seeded split: array of 'train'|'val'|'test' per sample.

    Without ``labels`` it is stratification-free (the historical behaviour); with ``labels`` each
    class is split in the same proportions, so small sets keep every class in every split.
    """
    if not (0.0 <= test_fraction < 1.0 and 0.0 <= val_fraction < 1.0 and test_fraction + val_fraction < 1.0):
        raise DataError(f"split fractions must be in [0, 1) with test + val < 1, got test={test_fraction}, "
                        f"val={val_fraction}")
    rng = np.random.default_rng(seed)
    out = np.full(n, "train", dtype=object)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for g in groups:
        order = g[rng.permutation(len(g))]
        n_test, n_val = int(round(len(g) * test_fraction)), int(round(len(g) * val_fraction))
        out[order[:n_test]] = "test"
        out[order[n_test:n_test + n_val]] = "val"
    return out


def _normalize(ds: Dataset, splits: np.ndarray, mode: Normalize) -> Dataset:
    """Min-max to [0, 1] with statistics from the training split only (no test leakage)."""
    if isinstance(ds.x, EventSet):
        return ds
    x = ds.x.astype(np.float32)
    if mode == "none":
        lo_v, hi_v = float(np.nanmin(x)), float(np.nanmax(x))
        if lo_v < 0.0 or hi_v > 1.0:
            raise DataError(f"normalize='none' needs values in [0, 1], got [{lo_v:g}, {hi_v:g}]; "
                            "use normalize='per_channel' or 'global'")
        return ds
    train = x[splits == "train"] if (splits == "train").any() else x
    axes: tuple[int, ...] = (0,) if x.ndim == 2 else (0, 2)
    if mode == "global":
        axes = tuple(range(x.ndim))
    elif mode != "per_channel":
        raise DataError(f"normalize must be one of ['per_channel', 'global', 'none'], got {mode!r}")
    lo = train.min(axis=axes, keepdims=True)
    hi = train.max(axis=axes, keepdims=True)
    with np.errstate(over="ignore", invalid="ignore"):
        xn = np.clip((x - lo) / np.maximum(hi - lo, 1e-12), 0.0, 1.0).astype(np.float32)
    if not np.isfinite(xn).all():  # a range wider than float32 holds (|x| near 3.4e38) overflows hi - lo
        raise DataError(f"samples span [{float(train.min()):g}, {float(train.max()):g}], too wide to normalize "
                        "in float32; rescale them before ingesting")
    out = ds.take(slice(None))
    out.x = xn
    out.preprocessing = dict(ds.preprocessing) | {"normalize": mode, "stats_from": "train split",
                                                  "lo": lo.ravel().tolist(), "hi": hi.ravel().tolist()}
    return out


def prepare(ds: Dataset, *, test_fraction: float = 0.25, val_fraction: float = 0.0, seed: int = 0,
            normalize: Normalize = "per_channel", stratify: bool = True) -> tuple[Dataset, np.ndarray]:
    """Split (the source's own split if it has one, else seeded) and normalize with train statistics.

    The split parameters and normalization statistics go into ``preprocessing``, so they are part
    of the stored content and of the version.
    """
    if ds.splits is not None:
        splits = np.asarray(ds.splits, dtype=object)
        how: dict[str, Any] = {"method": "predefined by source"}
    else:
        splits = split(len(ds.y), test_fraction, val_fraction, seed, labels=ds.y if stratify else None)
        how = {"method": "stratified" if stratify else "random", "test_fraction": test_fraction,
               "val_fraction": val_fraction, "seed": seed}
    out = _normalize(ds, splits, normalize)
    out.preprocessing = dict(out.preprocessing) | {"split": how}
    out.splits = None
    return out, splits


# -- ingestion -----------------------------------------------------------------------------------
FORMATS = ("npz", "npy", "parquet", "csv", "ts", "events")
_X_KEYS = ("x", "X", "data", "features")
_Y_KEYS = ("y", "Y", "labels", "label", "target")
_LABEL_COLUMNS = ("label", "labels", "y", "target", "class")


def _labels(raw: np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    raw = np.asarray(raw)
    if raw.ndim != 1:
        raise DataError(f"{where}: labels must be one value per sample (1-D), got shape {raw.shape}")
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)) or not np.all(raw == np.round(raw)):
            raise DataError(f"{where}: float labels must be whole numbers (class ids)")
        raw = raw.astype(np.int64)
    values, y = np.unique(raw, return_inverse=True)
    return y.astype(np.int64), [str(v) for v in values]


def _layout(x: np.ndarray, layout: Layout, where: str) -> np.ndarray:
    if x.ndim < 2:
        raise DataError(f"{where}: samples must be at least 2-D [N, F], got shape {x.shape}")
    if layout == "timeseries":
        if x.ndim != 3:
            raise DataError(f"{where}: layout='timeseries' needs [N, channels, time], got shape {x.shape}")
        return x
    if layout == "static" or x.ndim > 3:
        return x.reshape(len(x), -1)
    if layout != "auto":
        raise DataError(f"layout must be 'auto', 'static' or 'timeseries', got {layout!r}")
    return x


def _finite(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{where}: samples must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32)
    bad = int((~np.isfinite(x)).sum())
    if bad:
        raise DataError(f"{where}: {bad} missing or non-finite values; impute them before ingesting")
    return x


def _split_column(values: Any, n: int, where: str) -> np.ndarray:
    s = np.asarray([str(v) for v in values], dtype=object)
    bad = sorted(set(s) - {"train", "val", "test"})
    if bad:
        raise DataError(f"{where}: split values must be train/val/test, got {bad[:5]}")
    if len(s) != n:
        raise DataError(f"{where}: {len(s)} split values for {n} samples")
    return s


def _from_table(table: pa.Table, where: str, label_column: str | None, split_column: str) -> tuple[
        np.ndarray, np.ndarray, list[str], np.ndarray | None, list[str]]:
    names = table.column_names
    if label_column is None:
        label_column = next((c for c in _LABEL_COLUMNS if c in names), None)
        if label_column is None:
            raise DataError(f"{where}: no label column; expected one of {list(_LABEL_COLUMNS)} or give label_column "
                            f"(columns: {names[:20]})")
    elif label_column not in names:
        raise DataError(f"{where}: label_column {label_column!r} not found; columns: {names[:20]}")
    y, classes = _labels(np.asarray(table.column(label_column).to_pylist()), f"{where} column {label_column!r}")
    splits = _split_column(table.column(split_column).to_pylist(), len(y), f"{where} column {split_column!r}") \
        if split_column in names else None
    feats = [c for c in names if c not in (label_column, split_column)]
    if not feats:
        raise DataError(f"{where}: no feature columns besides {label_column!r}")
    cols = []
    for c in feats:
        col = table.column(c)
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
            raise DataError(f"{where}: feature column {c!r} is {col.type}, not numeric")
        cols.append(col.to_numpy(zero_copy_only=False).astype(np.float64))
    x = _finite(np.stack(cols, axis=1), where)
    return x, y, classes, splits, feats


def read_ts(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse a UEA/UCR ``.ts`` file into ``x [N, C, T]`` (float32) and raw string labels.

    Supports equal-length series without timestamps (the common case); anything else is refused
    with the header field or line that is not supported.
    """
    p = Path(path)
    header: dict[str, str] = {}
    rows: list[list[list[float]]] = []
    labels: list[str] = []
    in_data = False
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if line.lower().startswith("@data"):
                    in_data = True
                    continue
                if line.startswith("@"):
                    key, _, val = line[1:].partition(" ")
                    header[key.lower()] = val.strip()
                    continue
                raise DataError(f"{p}:{lineno}: expected a @header or @data before samples")
            if header.get("timestamps", "false").lower() == "true":
                raise DataError(f"{p}: @timeStamps true is not supported (resample to equal steps first)")
            parts = line.split(":")
            declared = header.get("classlabel", "false").split()
            if not declared or declared[0].lower() != "true":
                raise DataError(f"{p}: @classLabel false: a dataset needs class labels")
            dims, label = parts[:-1], parts[-1].strip()
            if len(declared) > 1 and label not in declared[1:]:
                raise DataError(f"{p}:{lineno}: class label {label[:40]!r} is not among the declared "
                                f"@classLabel values {declared[1:][:20]}")
            try:
                series = [[float("nan") if v.strip() in ("?", "NaN", "") else float(v) for v in d.split(",")]
                          for d in dims]
            except ValueError as exc:
                raise DataError(f"{p}:{lineno}: not a number ({exc})") from None
            rows.append(series)
            labels.append(label)
    if not rows:
        raise DataError(f"{p}: no samples after @data")
    n_dims = {len(r) for r in rows}
    lengths = {len(s) for r in rows for s in r}
    if len(n_dims) != 1:
        raise DataError(f"{p}: samples have different numbers of dimensions {sorted(n_dims)}")
    if len(lengths) != 1:
        raise DataError(f"{p}: series have unequal lengths {sorted(lengths)[:5]}; only equal-length series are "
                        "supported (pad or resample first)")
    return np.asarray(rows, dtype=np.float32), np.asarray(labels)


def _detect(path: Path, fmt: str) -> str:
    if fmt != "auto":
        if fmt not in FORMATS:
            raise DataError(f"format must be 'auto' or one of {list(FORMATS)}, got {fmt!r}")
        return fmt
    ext = path.suffix.lower().lstrip(".")
    if ext in ("pq", "parquet"):
        return "parquet"
    if ext == "zip":  # an archive of event-camera recordings + labels.csv (fabric.data.eventfiles)
        return "events"
    if ext in FORMATS:
        return ext
    raise DataError(f"{path}: cannot tell the format from the extension {path.suffix!r}; give format= one of "
                    f"{list(FORMATS)}")


def ingest(source: str | Path, *, name: str | None = None, fmt: str = "auto",
           labels: str | Path | np.ndarray | None = None, label_column: str | None = None,
           split_column: str = "split", test: str | Path | None = None, sampling_rate_hz: float | None = None,
           channels: list[str] | None = None, layout: Layout = "auto", sensor_size: tuple[int, int] | None = None,
           time_unit: str = "us", duration_us: int | None = None,
           transforms: list[dict[str, Any]] | None = None) -> Dataset:
    """Read a file into a raw :class:`Dataset` (values not yet normalized; use :func:`prepare`).

    A file the parsers cannot read (truncated zip, garbled Parquet footer, a .npy header that is not
    one) is refused as a :class:`DataError` naming the file and the parser's reason in one line,
    never the parser's own exception (tests/unit/test_fuzz_datasets.py).

    * ``.npz``: samples under x/X/data/features, labels under y/labels/target; optional ``split``,
      ``classes``, ``channels``, ``sampling_rate_hz`` entries.
    * ``.npy``: samples only; labels from ``labels`` (array or .npy path).
    * Parquet/CSV: one row per sample, a label column (``label_column`` or label/y/target/class),
      an optional ``split`` column, all other columns numeric features. A Parquet file written by
      :func:`to_parquet_bytes` is read back as is.
    * ``.ts`` (UEA/UCR): equal-length series ``[N, C, T]``; ``test`` names the matching _TEST file,
      which makes the split the source's own.
    * ``.zip`` (format ``events``): event-camera recordings (Prophesee EVT 2/3 ``.raw``, ``.dat``, or
      x/y/t/p ``.npy``) + ``labels.csv``; ``sensor_size``, ``time_unit``, ``duration_us`` and tonic
      ``transforms`` apply (see :mod:`fabric.data.eventfiles`).

    ``[N, C, T]`` arrays are time series unless ``layout='static'``; more dims are flattened.
    """
    where = str(source)
    try:
        return _ingest(Path(source), name=name, fmt=fmt, labels=labels, label_column=label_column,
                       split_column=split_column, test=test, sampling_rate_hz=sampling_rate_hz, channels=channels,
                       layout=layout, sensor_size=sensor_size, time_unit=time_unit, duration_us=duration_us,
                       transforms=transforms)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - parsers raise BadZipFile, EOFError, OSError, ArrowInvalid, TokenError ...
        text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        fmt_name = fmt if fmt != "auto" else Path(source).suffix.lstrip(".") or "data"
        raise DataError(f"{where}: not a readable {fmt_name} file ({type(exc).__name__}"
                        + (f": {text[:200]}" if text else "") + ")") from None


def _ingest(path: Path, *, name: str | None, fmt: str, labels: str | Path | np.ndarray | None,
            label_column: str | None, split_column: str, test: str | Path | None, sampling_rate_hz: float | None,
            channels: list[str] | None, layout: Layout, sensor_size: tuple[int, int] | None = None,
            time_unit: str = "us", duration_us: int | None = None,
            transforms: list[dict[str, Any]] | None = None) -> Dataset:
    if not path.is_file():
        raise DataError(f"no such file: {path}")
    kind = _detect(path, fmt)
    where = str(path)
    if kind == "events":
        from fabric.data.eventfiles import EventFileError, read_event_archive

        try:
            es, raw_labels, ev_splits, ev_layout = read_event_archive(path, sensor_size=sensor_size, time_unit=time_unit,
                                                                      duration_us=duration_us, transforms=transforms)
        except EventFileError as exc:
            raise DataError(str(exc)) from None
        y, found = _labels(np.asarray(raw_labels), where)
        ds = Dataset(name=name or path.stem, x=es, y=y, classes=found, sampling_rate_hz=None,
                     source=f"event archive {path.name} ({', '.join(ev_layout['recording_formats'])})", channels=[],
                     splits=ev_splits)
        ds.preprocessing = dict(ds.preprocessing) | {"events": ev_layout}  # the layout is part of the version
        return ds
    if sensor_size is not None or transforms:
        raise DataError(f"{where}: sensor_size and transforms apply to event archives (.zip, format events) only")
    splits: np.ndarray | None = None
    rate = sampling_rate_hz
    classes: list[str] | None = None
    if kind == "npz":
        with np.load(path, allow_pickle=False) as z:
            xk = next((k for k in _X_KEYS if k in z.files), None)
            yk = next((k for k in _Y_KEYS if k in z.files), None)
            if xk is None:
                raise DataError(f"{where}: no samples array; expected one of {list(_X_KEYS)} (has {z.files})")
            if yk is None and labels is None:
                raise DataError(f"{where}: no labels array; expected one of {list(_Y_KEYS)} or pass labels= "
                                f"(has {z.files})")
            x = z[xk]
            raw_y = z[yk] if yk is not None and labels is None else None
            if "split" in z.files:
                splits = _split_column(z["split"].tolist(), len(x), f"{where} entry 'split'")
            if "classes" in z.files:
                classes = [str(c) for c in z["classes"].tolist()]
            if "channels" in z.files and channels is None:
                channels = [str(c) for c in z["channels"].tolist()]
            if "sampling_rate_hz" in z.files and rate is None:
                rate = float(z["sampling_rate_hz"])
    elif kind == "npy":
        x = np.load(path, allow_pickle=False)
        raw_y = None
        if labels is None:
            raise DataError(f"{where}: a .npy file holds only samples; pass labels= (an array or a .npy file) or use "
                            ".npz with x and y")
    elif kind in ("parquet", "csv"):
        if kind == "parquet":
            table = pq.read_table(path)
            if b"fabric" in (table.schema.metadata or {}):
                ds, sp = from_parquet_bytes(path.read_bytes())
                ds.splits = sp
                if isinstance(ds.x, np.ndarray):
                    ds.x = _finite(ds.x, where)
                return ds
        else:
            import pyarrow.csv as pacsv

            try:
                table = pacsv.read_csv(path)
            except pa.ArrowInvalid as exc:
                raise DataError(f"{where}: not a readable CSV ({exc})") from None
        x, y, classes, splits, feat_names = _from_table(table, where, label_column, split_column)
        return Dataset(name=name or path.stem, x=_finite(_layout(np.asarray(x), layout, where), where), y=y, classes=classes, sampling_rate_hz=rate,
                       source=f"{kind} file {path.name}", channels=channels or feat_names, splits=splits)
    else:  # ts
        x, raw = read_ts(path)
        raw_y = raw
        if test is not None:
            xt, rt = read_ts(test)
            if xt.shape[1:] != x.shape[1:]:
                raise DataError(f"{test}: shape {xt.shape[1:]} differs from {where} {x.shape[1:]}")
            splits = np.array(["train"] * len(x) + ["test"] * len(xt), dtype=object)
            x, raw_y = np.concatenate([x, xt]), np.concatenate([raw, rt])
    if labels is not None:
        raw_y = np.load(labels, allow_pickle=False) if isinstance(labels, (str, Path)) else np.asarray(labels)
    assert raw_y is not None
    x = _finite(_layout(np.asarray(x), layout, where), where)
    if len(raw_y) != len(x):
        raise DataError(f"{where}: {len(raw_y)} labels for {len(x)} samples")
    y, found = _labels(raw_y, where)
    if classes is not None:
        if raw_y.dtype.kind not in "iu" or raw_y.max(initial=0) >= len(classes) or raw_y.min(initial=0) < 0:
            raise DataError(f"{where}: 'classes' given, so labels must be integer indices below {len(classes)}")
        y = raw_y.astype(np.int64)
    else:
        classes = found
    if channels is not None and x.ndim == 3 and len(channels) != x.shape[1]:
        raise DataError(f"{where}: {len(channels)} channel names for {x.shape[1]} channels")
    return Dataset(name=name or path.stem.removesuffix("_TRAIN"), x=x, y=y, classes=classes, sampling_rate_hz=rate,
                   source=f"{kind} file {path.name}" + (f" + {Path(test).name}" if test else ""),
                   channels=list(channels or []), splits=splits)


# -- versioning and the Parquet form -------------------------------------------------------------
def _meta(ds: Dataset) -> dict[str, Any]:
    m: dict[str, Any] = {"schema": SCHEMA, "name": ds.name, "kind": ds.kind, "classes": list(ds.classes),
                         "channels": list(ds.channels), "sampling_rate_hz": ds.sampling_rate_hz, "source": ds.source,
                         "preprocessing": ds.preprocessing}
    if isinstance(ds.x, EventSet):
        m |= {"shape": [], "sensor_size": list(ds.x.sensor_size), "duration_us": ds.x.duration_us}
    else:
        m["shape"] = [int(d) for d in ds.x.shape[1:]]
    return m


def dataset_version(ds: Dataset, splits: np.ndarray) -> str:
    """sha256 over the canonical content: metadata (incl. preprocessing), samples, labels, splits.

    Independent of the Parquet encoder, so the same data written by another pyarrow has the same
    version even if the file bytes (the artifact id) differ.
    """
    h = hashlib.sha256(json.dumps(_meta(ds), sort_keys=True, separators=(",", ":")).encode())
    if isinstance(ds.x, EventSet):
        for ev in ds.x.events:
            h.update(len(ev).to_bytes(8, "little"))
            h.update(np.ascontiguousarray(ev).tobytes())
    else:
        h.update(np.ascontiguousarray(ds.x, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(ds.y, dtype="<i8").tobytes())
    h.update("\x1f".join(str(s) for s in splits).encode())
    return h.hexdigest()


def to_parquet_bytes(ds: Dataset, splits: np.ndarray) -> bytes:
    """One row per sample (features or events, label, split); dataset facts in schema metadata."""
    splits = np.asarray(splits, dtype=object)
    if len(splits) != len(ds.y):
        raise DataError(f"{len(splits)} split values for {len(ds.y)} samples")
    cols: dict[str, pa.Array] = {}
    if isinstance(ds.x, EventSet):
        evs = ds.x.events
        offsets = pa.array(np.concatenate([[0], np.cumsum([len(e) for e in evs])]).astype(np.int32))
        cat = np.concatenate(evs) if evs else np.zeros(0, EVENT_DTYPE)
        for f, t in (("x", pa.uint16()), ("y", pa.uint16()), ("t", pa.int64()), ("p", pa.int8())):
            cols[f"ev_{f}"] = pa.ListArray.from_arrays(offsets, pa.array(cat[f], t))
    else:
        flat = np.ascontiguousarray(ds.x.reshape(len(ds.x), -1), dtype=np.float32)
        cols["features"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), pa.float32()), flat.shape[1])
    cols["label"] = pa.array(ds.y, pa.int64())
    cols["split"] = pa.array([str(s) for s in splits], pa.string())
    table = pa.table(cols)
    meta = _meta(ds) | {"version": dataset_version(ds, splits)}
    table = table.replace_schema_metadata({b"fabric": json.dumps(meta, sort_keys=True).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def from_parquet_bytes(data: bytes) -> tuple[Dataset, np.ndarray]:
    """Inverse of :func:`to_parquet_bytes` (also reads the earlier key-per-field metadata form)."""
    table = pq.read_table(io.BytesIO(data))
    raw = table.schema.metadata or {}
    if b"fabric" in raw:
        m = json.loads(raw[b"fabric"])
    else:  # first format: one metadata key per field
        old = {k.decode(): v.decode() for k, v in raw.items()}
        m = {"name": old["name"], "shape": [int(s) for s in old["shape"].split(",")],
             "classes": old["classes"].split("\x1f"), "source": old["source"],
             "sampling_rate_hz": float(old["sampling_rate_hz"]) if old["sampling_rate_hz"] else None}
    x: np.ndarray | EventSet
    if "ev_t" in table.column_names:
        def col(f: str) -> tuple[np.ndarray, np.ndarray]:
            c = table.column(f"ev_{f}").combine_chunks()
            return c.offsets.to_numpy(), c.values.to_numpy(zero_copy_only=False)

        off, _ = col("t")
        parts = {f: col(f)[1] for f in ("x", "y", "t", "p")}
        events = []
        for i in range(len(table)):
            ev = np.zeros(int(off[i + 1] - off[i]), dtype=EVENT_DTYPE)
            for f in ("x", "y", "t", "p"):
                ev[f] = parts[f][off[i]:off[i + 1]]
            events.append(ev)
        x = EventSet(events=events, sensor_size=tuple(m["sensor_size"]), duration_us=int(m["duration_us"]))
    else:
        feats = table.column("features").combine_chunks()
        x = feats.values.to_numpy(zero_copy_only=False).reshape((len(table), *m["shape"])).astype(np.float32)
    ds = Dataset(name=m["name"], x=x, y=table.column("label").to_numpy(), classes=list(m["classes"]),
                 sampling_rate_hz=m.get("sampling_rate_hz"), source=m.get("source", ""),
                 channels=list(m.get("channels", [])), preprocessing=dict(m.get("preprocessing", {})))
    return ds, np.array(table.column("split").to_pylist(), dtype=object)


def dataset_summary(ds: Dataset, splits: np.ndarray) -> dict[str, Any]:
    """JSON-able facts for a registry record and ``fabric data show``."""
    counts = {s: int((splits == s).sum()) for s in ("train", "val", "test") if (splits == s).any()}
    per_class = {c: int((ds.y == i).sum()) for i, c in enumerate(ds.classes)}
    out: dict[str, Any] = {"samples": len(ds.y), "kind": ds.kind, "shape": _meta(ds)["shape"], "classes": ds.classes,
                           "class_counts": per_class, "splits": counts, "channels": ds.channels,
                           "sampling_rate_hz": ds.sampling_rate_hz, "source": ds.source, "format": "parquet",
                           "preprocessing": ds.preprocessing, "version": dataset_version(ds, splits)}
    if isinstance(ds.x, EventSet):
        ev = ds.x.counts()
        out |= {"sensor_size": list(ds.x.sensor_size), "duration_us": ds.x.duration_us,
                "events_per_sample_mean": float(ev.mean()) if len(ev) else 0.0}
    return out

