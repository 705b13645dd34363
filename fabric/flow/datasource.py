"""The data stage's input, resolved and validated before any work: a built-in source, a stored dataset
version, or a file / fsspec URL that the data stage ingests.

Why here (and not in the spec): a version is resolved in the registry the run uses (its tenant), and a
file is only known to have labels once it is read. :func:`check_dataset` does both without storing
anything and raises a :class:`~fabric.spec.SpecError` naming the field (``dataset.version: ...``), so
``fabric run`` exits 2 before a single artifact is written. What it read is kept on the returned
:class:`DatasetSource`, whose ``key`` is the data stage's cache key: the spec's dataset section for a
built-in (unchanged), the full version id for a version, and the file's sha256 (not its location) for
a path, so the same bytes give the same dataset artifact wherever they are read from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fabric.data.datasets import DataError, Dataset, dataset_version, load_builtin, prepare, split
from fabric.data.sources import SourceFile, ingest_files, read_source
from fabric.flow.codecs import dataset_from_bytes, dataset_to_bytes
from fabric.spec import Spec, SpecError
from fabric.store.registry import ArtifactNotFound, ArtifactRecord, IntegrityError, Registry

__all__ = ["DatasetSource", "check_dataset", "store_dataset"]


@dataclass(kw_only=True)
class DatasetSource:
    """A spec's dataset after validation: which field named it, the data stage's cache key, and (for a
    version or a path) the data already read, split and normalized."""

    field: Literal["name", "version", "path"]
    key: list[Any]
    name: str
    parents: list[str] = field(default_factory=list)
    record: ArtifactRecord | None = None  # the stored version named by ``dataset.version``
    ds: Dataset | None = None
    splits: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def load(self, spec: Spec) -> tuple[Dataset, np.ndarray]:
        """The dataset and its split; a built-in is loaded (and split with the spec's seed) on first use."""
        if self.ds is None or self.splits is None:
            d = spec.dataset
            ds = load_builtin(str(d.name), d.limit)
            self.ds, self.splits = ds, split(len(ds.y), d.test_fraction, d.val_fraction, spec.seed)
        return self.ds, self.splits


def _err(fld: str, msg: str, source: str) -> SpecError:
    return SpecError([(f"dataset.{fld}", msg)], source)


def _read(ref: str, fld: str, source: str) -> SourceFile:
    try:
        return read_source(ref)
    except DataError as exc:
        raise _err(fld, str(exc), source) from None


def _check_splits(splits: np.ndarray, source: str) -> None:
    if not (splits == "train").any():
        raise _err("test_fraction", "leaves no training samples; lower it or give more samples", source)
    if not (splits == "test").any():
        raise _err("test_fraction", "leaves no test samples; raise it or give more samples", source)


def _version(registry: Registry | None, spec: Spec, source: str) -> DatasetSource:
    d = spec.dataset
    ref = str(d.version)
    if registry is None:
        raise _err("version", "a dataset version is resolved in a registry; none was given", source)
    try:
        rec = registry.record(ref)
    except ArtifactNotFound as exc:
        msg = str(exc)
        if msg.startswith("artifact prefix") and " is ambiguous" in msg:
            raise _err("version", f"prefix {ref!r} is ambiguous in {registry.url}; give more characters",
                       source) from None
        raise _err("version", f"no dataset version {ref!r} in {registry.url}", source) from None
    except IntegrityError as exc:
        raise _err("version", f"{ref!r} refused: {exc}", source) from None
    if rec.kind != "dataset":
        raise _err("version", f"artifact {rec.id[:12]} is a {rec.kind} ({rec.name!r}), not a dataset", source)
    try:
        ds, splits = dataset_from_bytes(registry.get(rec.id))
    except IntegrityError as exc:
        raise _err("version", f"{rec.id[:12]} refused: {exc}", source) from None
    except Exception as exc:  # not a dataset parquet (foreign or damaged bytes)
        raise _err("version", f"{rec.id[:12]} is not a readable dataset ({exc})", source) from None
    if d.limit is not None:
        ds, splits = ds.take(slice(0, d.limit)), splits[:d.limit]
    _check_splits(splits, source)
    key = [spec.dataset.model_dump() | {"version": rec.id}]
    return DatasetSource(field="version", key=key, name=ds.name, parents=[rec.id] if d.limit is not None else [],
                         record=rec, ds=ds, splits=splits, extra={"version_of": rec.id})


def _ingest_field(msg: str, labels_given: bool) -> str:
    """The spec field an ingest error is about (the file itself unless an option is named)."""
    for needle, fld in (("label_column '", "label_column"), ("split values", "split_column"),
                        ("normalize", "normalize"), ("layout=", "layout"), ("channel names", "channels"),
                        ("split fractions", "test_fraction"), ("sensor_size", "sensor_size"),
                        ("duration_us", "duration_us"), ("time_unit", "time_unit"), ("transforms[", "transforms")):
        if needle in msg:
            return fld
    return "labels" if labels_given and "label" in msg else "path"


def _path(spec: Spec, source: str) -> DatasetSource:
    d = spec.dataset
    main = _read(str(d.path), "path", source)
    labels = _read(d.labels, "labels", source) if d.labels is not None else None
    test = _read(d.test, "test", source) if d.test is not None else None
    try:
        ds = ingest_files(main, labels=labels, test=test, fmt=d.format, label_column=d.label_column,
                          split_column=d.split_column, sampling_rate_hz=d.sampling_rate_hz, channels=d.channels,
                          layout=d.layout, sensor_size=tuple(d.sensor_size) if d.sensor_size else None,
                          time_unit=d.time_unit, duration_us=d.duration_us, transforms=d.transforms)
        if d.limit is not None:
            ds = ds.take(slice(0, d.limit))
        ds, splits = prepare(ds, test_fraction=d.test_fraction, val_fraction=d.val_fraction, seed=spec.seed,
                             normalize=d.normalize)
    except DataError as exc:
        msg = str(exc).replace("pass labels=", "give dataset.labels").replace("give label_column",
                                                                               "give dataset.label_column")
        raise _err(_ingest_field(msg, labels is not None), msg, source) from None
    _check_splits(splits, source)
    files: dict[str, Any] = {"file": main.filename, "sha256": main.sha256}
    if labels is not None:
        files |= {"labels_file": labels.filename, "labels_sha256": labels.sha256}
    if test is not None:
        files |= {"test_file": test.filename, "test_sha256": test.sha256}
    dump = {k: v for k, v in spec.dataset.model_dump().items() if k not in ("path", "labels", "test")}
    return DatasetSource(field="path", key=[dump | files, spec.seed], name=ds.name, ds=ds, splits=splits,
                         extra={"path": d.path, **files, "version": dataset_version(ds, splits)})


def check_dataset(registry: Registry | None, spec: Spec, source: str = "spec") -> DatasetSource:
    """Resolve and validate ``spec.dataset`` against ``registry`` (nothing is stored).

    Raises :class:`SpecError` naming the field: an unknown, ambiguous or foreign-tenant version, a
    version that is not a dataset, a path or URL that cannot be read, a file without labels, a split
    that leaves no train or test samples."""
    d = spec.dataset
    if d.version is not None:
        return _version(registry, spec, source)
    if d.path is not None:
        return _path(spec, source)
    return DatasetSource(field="name", key=[spec.dataset.model_dump(), spec.seed], name=str(d.name))


def store_dataset(registry: Registry, spec: Spec, src: DatasetSource, ds: Dataset | None = None,
                  splits: np.ndarray | None = None) -> ArtifactRecord:
    """Store the data stage's artifact: a version named as is (no ``limit``) is returned as is; otherwise
    the dataset (``ds``/``splits`` when the caller already holds them, i.e. ``src.load``'s result) as a
    parquet ``dataset`` artifact."""
    if src.field == "version" and not src.parents:  # the whole version, as stored: no copy
        assert src.record is not None
        return src.record
    if ds is None or splits is None:
        ds, splits = src.load(spec)
    extra = {"samples": len(ds.y), "shape": list(ds.x.shape[1:]), "classes": ds.classes, "source": ds.source,
             "format": "parquet"} | src.extra
    return registry.put(dataset_to_bytes(ds, splits), kind="dataset", name=src.name, parents=src.parents,
                        spec_hash=spec.hash, seeds={"seed": spec.seed}, extra=extra)
