"""Artifact registry (NMLOps stage 11): content-addressed, immutable artifacts with lineage.

An artifact's id is the sha256 of its bytes. Bytes live at ``objects/<id[:2]>/<id>``, the record at
``records/<id>.json``. Every read re-hashes the bytes and refuses a mismatch, so a tampered or
truncated artifact never reaches a stage. ``cache/<key>`` maps a stage's input-hash key to the
artifact it produced, which is how reruns skip finished stages.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from fabric.store import Store

__all__ = ["Registry", "ArtifactRecord", "IntegrityError", "ArtifactNotFound", "code_version", "sbom"]

KINDS = ("dataset", "encoding", "model", "nir", "program", "report", "pareto", "sbom", "run")


class IntegrityError(RuntimeError):
    """Stored bytes do not hash to the artifact id: the artifact was altered or truncated."""


class ArtifactNotFound(KeyError):
    def __str__(self) -> str:
        return self.args[0]


@dataclass(kw_only=True)
class ArtifactRecord:
    id: str
    kind: str
    name: str
    size: int
    parents: list[str] = field(default_factory=list)
    spec_hash: str | None = None
    code_version: str | None = None
    sbom: str | None = None
    seeds: dict[str, int] = field(default_factory=dict)
    device_id: str | None = None
    created: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArtifactRecord:
        return cls(**d)


@cache
def code_version() -> str:
    """git commit of the project (``+dirty`` when the tree has changes), or the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        try:
            return "pkg:" + importlib_metadata.version("neuromorphic-fabric")
        except importlib_metadata.PackageNotFoundError:
            return "unknown"


@cache
def sbom() -> bytes:
    """Installed distributions and versions (+ Python and platform), canonical JSON."""
    dists = sorted({(d.metadata["Name"] or "?", d.version) for d in importlib_metadata.distributions()})
    doc = {"python": platform.python_version(), "platform": platform.platform(),
           "distributions": [{"name": n, "version": v} for n, v in dists]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class Registry:
    def __init__(self, store: Store | str | None = None) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self._sbom_id: str | None = None

    @property
    def url(self) -> str:
        return self.store.url

    # -- writing -------------------------------------------------------------------------------
    def put(self, data: bytes, *, kind: str, name: str, parents: list[str] | tuple[str, ...] = (),
            spec_hash: str | None = None, seeds: dict[str, int] | None = None, device_id: str | None = None,
            extra: dict[str, Any] | None = None) -> ArtifactRecord:
        """Store ``data`` (idempotent: same bytes -> same id, the first record is kept)."""
        if kind not in KINDS:
            raise ValueError(f"artifact kind {kind!r} is not one of {KINDS}")
        for p in parents:
            if not self.store.exists(f"records/{p}.json"):
                raise ArtifactNotFound(f"parent artifact {p} is not in the registry at {self.url}")
        aid = hashlib.sha256(data).hexdigest()
        rkey = f"records/{aid}.json"
        if self.store.exists(rkey):
            return self.record(aid)
        if kind != "sbom" and self._sbom_id is None:
            self._sbom_id = self.put(sbom(), kind="sbom", name="environment").id
        okey = f"objects/{aid[:2]}/{aid}"
        if not self.store.exists(okey):
            self.store.write(okey, data)
        rec = ArtifactRecord(id=aid, kind=kind, name=name, size=len(data), parents=list(parents),
                             spec_hash=spec_hash, code_version=code_version(),
                             sbom=self._sbom_id if kind != "sbom" else None, seeds=dict(seeds or {}),
                             device_id=device_id, extra=dict(extra or {}))
        # the record is written last: an artifact is visible only once its bytes are complete
        self.store.write(rkey, json.dumps(rec.to_dict(), sort_keys=True, indent=1).encode())
        return rec

    def put_json(self, obj: Any, **kw: Any) -> ArtifactRecord:
        return self.put(json.dumps(obj, sort_keys=True, indent=1, default=_jsonable).encode(), **kw)

    # -- reading -------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """Full id from an id or a unique prefix (>= 6 hex chars), like git."""
        ref = ref.strip().lower()
        if len(ref) == 64 and self.store.exists(f"records/{ref}.json"):
            return ref
        if len(ref) < 6 or any(c not in "0123456789abcdef" for c in ref):
            raise ArtifactNotFound(f"no artifact {ref!r} in {self.url} (give an id or a hex prefix of >= 6 chars)")
        hits = [k.rsplit("/", 1)[-1][:-5] for k in self.store.list("records") if k.rsplit("/", 1)[-1].startswith(ref)]
        if not hits:
            raise ArtifactNotFound(f"no artifact {ref!r} in {self.url}")
        if len(hits) > 1:
            raise ArtifactNotFound(f"artifact prefix {ref!r} is ambiguous: {hits[:5]}")
        return hits[0]

    def record(self, ref: str) -> ArtifactRecord:
        aid = self.resolve(ref)
        return ArtifactRecord.from_dict(json.loads(self.store.read(f"records/{aid}.json")))

    def get(self, ref: str) -> bytes:
        """The artifact's bytes, verified against its id."""
        aid = self.resolve(ref)
        data = self.store.read(f"objects/{aid[:2]}/{aid}")
        got = hashlib.sha256(data).hexdigest()
        if got != aid:
            raise IntegrityError(
                f"artifact {aid[:12]} is corrupt: stored bytes hash to {got[:12]} ({len(data)} bytes); refusing to use it"
            )
        return data

    def get_json(self, ref: str) -> Any:
        return json.loads(self.get(ref))

    def verify(self, ref: str) -> dict[str, Any]:
        aid = self.resolve(ref)
        rec = self.record(aid)
        try:
            data = self.get(aid)
            ok, reason = len(data) == rec.size, "ok" if len(data) == rec.size else "size differs from record"
        except IntegrityError as exc:
            ok, reason = False, str(exc)
        missing = [p for p in rec.parents if not self.store.exists(f"records/{p}.json")]
        if missing:
            ok, reason = False, f"missing parents {missing}"
        return {"id": aid, "ok": ok, "reason": reason, "kind": rec.kind, "size": rec.size}

    def ls(self, kind: str | None = None) -> list[ArtifactRecord]:
        recs = [ArtifactRecord.from_dict(json.loads(self.store.read(k))) for k in self.store.list("records")
                if k.endswith(".json")]
        recs = [r for r in recs if kind is None or r.kind == kind]
        return sorted(recs, key=lambda r: r.created)

    def lineage(self, ref: str) -> dict[str, Any]:
        """Nested ``{"record": ..., "parents": [...]}`` tree down to the roots."""
        rec = self.record(ref)
        return {"record": rec, "parents": [self.lineage(p) for p in rec.parents]}

    # -- stage cache ---------------------------------------------------------------------------
    def cache_get(self, key: str) -> str | None:
        k = f"cache/{key}"
        if not self.store.exists(k):
            return None
        aid = self.store.read(k).decode().strip()
        return aid if self.store.exists(f"records/{aid}.json") else None

    def cache_put(self, key: str, artifact_id: str) -> None:
        self.store.write(f"cache/{key}", artifact_id.encode())


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
