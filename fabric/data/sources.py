"""Dataset files from anywhere: a local path or any fsspec URL (``s3://``, ``gs://``, ``https://`` ...).

Why: a spec's ``dataset.path`` is ingested by the data stage, and its cache key must be the file's
*content*, not its name, so the bytes are read once up front (hashed, then parsed from a private
temporary copy by :func:`fabric.data.datasets.ingest`). S3 endpoints follow the store's rule:
``$FABRIC_S3_ENDPOINT_URL`` for MinIO-style servers.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabric.data.datasets import DataError, Dataset, ingest

__all__ = ["SourceFile", "read_source", "ingest_files", "is_url"]


def is_url(ref: str) -> bool:
    """True for ``proto://...`` references (anything fsspec resolves), False for plain paths."""
    return "://" in ref and not ref.startswith("file://")


def _options(ref: str) -> dict[str, Any]:
    if not ref.startswith(("s3://", "s3a://")):
        return {}
    endpoint = os.environ.get("FABRIC_S3_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


@dataclass(frozen=True, kw_only=True)
class SourceFile:
    """One file's bytes as read, with what identifies it (basename and sha256 of the content)."""

    ref: str
    data: bytes

    @property
    def filename(self) -> str:
        return self.ref.rstrip("/").rsplit("/", 1)[-1] or "data"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def read_source(ref: str) -> SourceFile:
    """The bytes of a local file or fsspec URL; :class:`DataError` naming the reference if unreadable."""
    import fsspec

    try:
        if not is_url(ref):
            p = Path(ref.removeprefix("file://")).expanduser()
            if not p.is_file():
                raise DataError(f"cannot read {ref!r}: no such file")
            return SourceFile(ref=ref, data=p.read_bytes())
        with fsspec.open(ref, "rb", **_options(ref)) as f:
            return SourceFile(ref=ref, data=f.read())
    except DataError:
        raise
    except Exception as exc:  # fsspec backends raise their own types (botocore, aiohttp, OSError ...)
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = "no such file" if isinstance(exc, FileNotFoundError) and "bucket" not in text.lower() else text
        raise DataError(f"cannot read {ref!r}: {reason}") from None


def ingest_files(main: SourceFile, *, labels: SourceFile | None = None, test: SourceFile | None = None,
                 **options: Any) -> Dataset:
    """:func:`~fabric.data.datasets.ingest` on bytes already read: they are written to a private
    temporary directory under their own basenames (the format and the dataset name come from those)."""
    with tempfile.TemporaryDirectory(prefix="fabric-ingest-") as d:
        def put(sf: SourceFile, sub: str) -> Path:
            p = Path(d) / sub / sf.filename
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(sf.data)
            return p

        paths = {sub: (put(sf, sub), sf.ref) for sf, sub in ((main, "main"), (labels, "labels"), (test, "test"))
                 if sf is not None}
        try:
            return ingest(paths["main"][0], labels=paths["labels"][0] if "labels" in paths else None,
                          test=paths["test"][0] if "test" in paths else None, **options)
        except DataError as exc:  # name the user's file, not the temporary copy
            msg = str(exc)
            for tmp, ref in paths.values():
                msg = msg.replace(str(tmp), ref)
            raise DataError(msg) from None
