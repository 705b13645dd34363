"""Byte store under a URL: a local directory by default, any fsspec URL otherwise.

Writes are atomic: local files are written to a temporary name in the same directory and renamed;
object stores (s3://) publish an object only when its upload completes. Content-addressed objects
are never overwritten, so two writers of the same bytes cannot corrupt each other.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import fsspec

__all__ = ["Store", "default_store_url"]


def default_store_url() -> str:
    """``$FABRIC_STORE`` or ``./.fabric/store`` under the working directory."""
    return os.environ.get("FABRIC_STORE") or str(Path.cwd() / ".fabric" / "store")


class Store:
    def __init__(self, url: str | None = None, **storage_options: object) -> None:
        self.url = url or default_store_url()
        self.fs, root = fsspec.core.url_to_fs(self.url, **storage_options)
        self.local = self.fs.protocol in ("file", "local") or "file" in tuple(self.fs.protocol)
        self.root = root.rstrip("/")
        if self.local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def _p(self, key: str) -> str:
        return f"{self.root}/{key}"

    def exists(self, key: str) -> bool:
        return self.fs.exists(self._p(key))

    def read(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self._p(key))
        except FileNotFoundError:
            raise FileNotFoundError(f"not in store {self.url}: {key}") from None

    def write(self, key: str, data: bytes) -> None:
        path = self._p(key)
        if self.local:
            d = os.path.dirname(path)
            os.makedirs(d, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
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
        else:
            self.fs.pipe_file(path, data)

    def list(self, prefix: str) -> list[str]:
        base = self._p(prefix).rstrip("/")
        try:
            entries = self.fs.find(base)
        except FileNotFoundError:
            return []
        out = []
        for e in entries:
            name = e.rsplit("/", 1)[-1]
            if not name.startswith(".tmp-"):
                out.append(e[len(self.root) + 1:] if e.startswith(self.root) else e)
        return sorted(out)
