"""Datasets (NMLOps stage 2): built-in sources that ship inside installed packages, ingested into one
Arrow/Parquet form whose bytes are the dataset's version.

Nothing downloads: digits ships with scikit-learn, BasicMotions with sktime.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["Dataset", "DATASETS", "load_builtin", "split", "to_parquet_bytes", "from_parquet_bytes"]


@dataclass(kw_only=True)
class Dataset:
    """Samples ``x`` as float32 in [0, 1] shaped ``[N, features]`` or ``[N, channels, time]``."""

    name: str
    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    sampling_rate_hz: float | None = None
    source: str = ""

    @property
    def n_features(self) -> int:
        return int(np.prod(self.x.shape[1:]))


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    return Dataset(name="digits", x=(d.data / 16.0).astype(np.float32), y=d.target.astype(np.int64),
                   classes=[str(c) for c in d.target_names], source="scikit-learn load_digits (UCI optdigits, 8x8)")


def _basic_motions() -> Dataset:
    from sktime.datasets import load_basic_motions

    x, y = load_basic_motions(return_type="numpy3D")
    classes = sorted(set(y))
    lo = x.min(axis=(0, 2), keepdims=True)
    hi = x.max(axis=(0, 2), keepdims=True)
    xn = ((x - lo) / np.maximum(hi - lo, 1e-9)).astype(np.float32)
    return Dataset(name="basic_motions", x=xn, y=np.array([classes.index(v) for v in y], dtype=np.int64),
                   classes=list(classes), sampling_rate_hz=10.0,
                   source="sktime load_basic_motions (UEA BasicMotions, 6-axis IMU, min-max per channel)")


DATASETS: dict[str, Callable[[], Dataset]] = {"digits": _digits, "basic_motions": _basic_motions}


def load_builtin(name: str, limit: int | None = None) -> Dataset:
    try:
        ds = DATASETS[name]()
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; valid: {sorted(DATASETS)}") from None
    if limit is not None:
        ds.x, ds.y = ds.x[:limit], ds.y[:limit]
    return ds


def split(n: int, test_fraction: float, val_fraction: float, seed: int) -> np.ndarray:
    """A seeded, stratification-free split: array of 'train'|'val'|'test' per sample."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    out = np.full(n, "train", dtype=object)
    out[order[:n_test]] = "test"
    out[order[n_test:n_test + n_val]] = "val"
    return out


def to_parquet_bytes(ds: Dataset, splits: np.ndarray) -> bytes:
    """One row per sample: flattened features, shape, label, split; dataset facts in schema metadata."""
    flat = ds.x.reshape(len(ds.x), -1)
    table = pa.table({
        "features": pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), pa.float32()), flat.shape[1]),
        "label": pa.array(ds.y, pa.int64()),
        "split": pa.array(list(splits), pa.string()),
    })
    meta = {"name": ds.name, "shape": ",".join(map(str, ds.x.shape[1:])), "classes": "\x1f".join(ds.classes),
            "sampling_rate_hz": "" if ds.sampling_rate_hz is None else str(ds.sampling_rate_hz), "source": ds.source}
    table = table.replace_schema_metadata({k: v.encode() for k, v in meta.items()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def from_parquet_bytes(data: bytes) -> tuple[Dataset, np.ndarray]:
    table = pq.read_table(io.BytesIO(data))
    m = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    shape = tuple(int(s) for s in m["shape"].split(","))
    feats = table.column("features").combine_chunks()
    x = feats.values.to_numpy(zero_copy_only=False).reshape((len(table), *shape)).astype(np.float32)
    ds = Dataset(name=m["name"], x=x, y=table.column("label").to_numpy(), classes=m["classes"].split("\x1f"),
                 sampling_rate_hz=float(m["sampling_rate_hz"]) if m["sampling_rate_hz"] else None,
                 source=m["source"])
    return ds, np.array(table.column("split").to_pylist(), dtype=object)
