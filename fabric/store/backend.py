"""Byte store under a URL: a local directory by default, any fsspec URL otherwise.

Writes are atomic: local files are written to a temporary name (``.tmp-*``) in the same directory,
fsynced and renamed, so a reader (or a writer killed with SIGKILL half-way) never leaves a partial
file under a real name; object stores (s3://) publish an object only when its upload completes,
and streamed writes are spooled to a local temporary file first. Listing skips temporary names.

S3-compatible stores (MinIO, Ceph, moto): the endpoint comes from ``endpoint_url=`` or
``$FABRIC_S3_ENDPOINT_URL``; listings are not cached, because other processes write concurrently.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import fsspec

__all__ = ["Store", "default_store_url", "TMP_PREFIX"]

TMP_PREFIX = ".tmp-"
_CHUNK = 1 << 20


def default_store_url() -> str:
    """``$FABRIC_STORE`` or ``./.fabric/store`` under the working directory."""
    return os.environ.get("FABRIC_STORE") or str(Path.cwd() / ".fabric" / "store")


def _s3_options(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """Defaults for S3 URLs: endpoint from the environment, no stale listing cache."""
    if not url.startswith(("s3://", "s3a://")):
        return options
    out = dict(options)
    endpoint = os.environ.get("FABRIC_S3_ENDPOINT_URL")
    if endpoint and "endpoint_url" not in out and "endpoint_url" not in out.get("client_kwargs", {}):
        out["endpoint_url"] = endpoint
    out.setdefault("use_listings_cache", False)
    return out


def _fsync_dir(d: str) -> None:
    """Make a rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Store:
    """Keys (``a/b/c``) to bytes under ``url``; see the module docstring for the atomicity contract."""

    def __init__(self, url: str | None = None, **storage_options: Any) -> None:
        self.url = url or default_store_url()
        self.storage_options = _s3_options(self.url, storage_options)
        self.fs, root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else tuple(self.fs.protocol)
        self.local = any(p in ("file", "local") for p in protocols)
        self.root = root.rstrip("/")
        if self.local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _p(self, key: str) -> str:
        return f"{self.root}/{key}"

    def path(self, key: str) -> str:
        """Backend path of ``key`` (a filesystem path for local stores)."""
        return self._p(key)

    def exists(self, key: str) -> bool:
        return self.fs.exists(self._p(key))

    def read(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self._p(key))
        except FileNotFoundError:
            raise FileNotFoundError(f"not in store {self.url}: {key}") from None

    def size(self, key: str) -> int | None:
        try:
            return int(self.fs.size(self._p(key)))
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes) -> None:
        """Publish ``data`` under ``key`` atomically (all or nothing, last writer wins)."""
        path = self._p(key)
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        d = os.path.dirname(path)
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        _fsync_dir(d)

    def write_hashed(self, tmp_dir: str, chunks: Iterable[bytes], key_for: Callable[[str], str]) -> tuple[str, int]:
        """Stream ``chunks`` to a temporary object while hashing, then publish it under ``key_for(sha256)``.

        For artifacts too large to hold in memory; returns ``(sha256 hex, size)``. Until the final
        rename (local) or upload (object store) nothing is visible under a real key.
        """
        h = hashlib.sha256()
        size = 0
        if self.local:
            d = self._p(tmp_dir)
            os.makedirs(d, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=TMP_PREFIX)
        else:
            fd, tmp = tempfile.mkstemp(prefix="fabric-upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    h.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            path = self._p(key_for(h.hexdigest()))
            if self.local:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(tmp, path)
                _fsync_dir(os.path.dirname(path))
            else:
                self.fs.put_file(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return h.hexdigest(), size

    def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (recursive), without temporary files of writes in progress."""
        base = self._p(prefix).rstrip("/")
        try:
            entries = self.fs.find(base)
        except FileNotFoundError:
            return []
        out = []
        for e in entries:
            name = e.rsplit("/", 1)[-1]
            if not name.startswith(TMP_PREFIX):
                out.append(e[len(self.root) + 1:] if e.startswith(self.root) else e)
        return sorted(out)

    def stale_temporaries(self, prefix: str = "") -> list[str]:
        """Leftover ``.tmp-*`` files of killed writers (local stores); safe to delete when old."""
        if not self.local:
            return []
        base = Path(self._p(prefix))
        return sorted(str(p) for p in base.rglob(f"{TMP_PREFIX}*")) if base.exists() else []
