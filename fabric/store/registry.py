"""Artifact registry (NMLOps stage 11): content-addressed, immutable, signed artifacts with lineage.

An artifact's id is the sha256 of its bytes. Bytes live at ``objects/<id[:2]>/<id>``, the record at
``records/<id>.json`` and is written last, so an artifact is visible only once its bytes are
complete (a writer killed half-way leaves nothing visible). Every record and stage-cache entry is
signed with Ed25519 (see :mod:`fabric.store.signing`); every load verifies the record's signature, its
tenant and id, and re-hashes the bytes, so a tampered or truncated artifact or record is refused
with an :class:`IntegrityError` naming what is wrong. ``cache/<key>`` maps a stage's input-hash key
to the artifact it produced, which is how reruns skip finished stages.

Tenants: ``Registry(store, tenant="a")`` keeps everything under ``tenants/a/``; the default tenant
uses the store root (the original layout). Ids are validated as hex and keys are built only from
the tenant prefix, so no API call reaches another tenant's artifacts; records carry their tenant
(signed), so a record copied into another namespace is refused too. A non-default tenant is opened
only with its credential (see :mod:`fabric.store.tenants`): its bytes, records and cache entries are
stored encrypted (AES-GCM) and ids stay the sha256 of the plaintext, verified after decrypting. The
first write to a tenant not yet set up in the store issues its credential when this host holds the
trust list's admin key (as ``fabric tenants create`` does); anyone else is refused.

Concurrency: every write is atomic (see :mod:`fabric.store.backend`); same bytes give the same id and the
same object, so concurrent writers of one artifact cannot corrupt it (the last valid record wins).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import subprocess
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import IO, Any

from fabric.store.backend import Store
from fabric.store.errors import IntegrityError, TenantError
from fabric.store.signing import Keyring, SignatureError, Signer, canonical
from fabric.store.tenants import (
    ENV_TENANT_KEY,
    TENANT_NAME_RE,
    TenantCipher,
    TenantCredential,
    credential_path,
    find_credential,
    read_tenant_doc,
    tenant_doc_key,
    write_tenant_doc,
)

__all__ = ["Registry", "ArtifactRecord", "IntegrityError", "TenantError", "ArtifactNotFound", "code_version", "sbom",
           "KINDS", "DEFAULT_TENANT"]

KINDS = ("dataset", "encoding", "model", "nir", "program", "report", "pareto", "sbom", "run", "deployment", "rollout",
         "served-inputs", "drift", "zoo", "checkpoint")
DEFAULT_TENANT = "default"
_TENANT_RE = TENANT_NAME_RE
_CACHE_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_HEX = frozenset("0123456789abcdef")
log = logging.getLogger(__name__)


_EMPTY = object()  # a tenant that is not set up and holds nothing: reads see no artifacts


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
    tenant: str = DEFAULT_TENANT
    signature: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def payload(self) -> dict[str, Any]:
        """What the signature covers: every field but the signature."""
        d = self.to_dict()
        d.pop("signature")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArtifactRecord:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown record field(s) {unknown}")
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


def _is_hex(s: str) -> bool:
    return bool(s) and all(c in _HEX for c in s)


def _chunks(data: Iterable[bytes] | IO[bytes]) -> Iterator[bytes]:
    if hasattr(data, "read"):
        while chunk := data.read(1 << 20):  # type: ignore[union-attr]
            yield chunk
    else:
        yield from data  # type: ignore[misc]


class Registry:
    """Signed, content-addressed artifacts of one tenant in a :class:`~fabric.store.backend.Store`."""

    def __init__(self, store: Store | str | None = None, tenant: str | None = None, *,
                 signing_key: str | Path | None = None, trusted_keys: Iterable[str] | None = None,
                 tenant_key: str | Path | None = None) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        self.tenant = tenant or os.environ.get("FABRIC_TENANT") or DEFAULT_TENANT
        if not _TENANT_RE.match(self.tenant):
            raise ValueError(f"tenant {self.tenant!r} is invalid: use 1-63 of a-z, 0-9, '_' or '-', starting with a "
                             "letter or digit")
        self._prefix = "" if self.tenant == DEFAULT_TENANT else f"tenants/{self.tenant}/"
        self._signing_key = signing_key
        self.keyring = Keyring(self.store, None if trusted_keys is None else set(trusted_keys))
        self._signer: Signer | None = None
        self._sbom_id: str | None = None
        self._tenant_key = tenant_key  # a token or a file path; None = $FABRIC_TENANT_KEY or the credential file
        self._cipher: TenantCipher | None = None

    def __getstate__(self) -> dict[str, Any]:
        # private keys are not pickled into Ray tasks: a worker loads the key from its configured path,
        # and the tenant credential from its own environment (a file path given here travels, a token not)
        state = dict(self.__dict__)
        state["_signer"] = None
        state["_cipher"] = None
        if not isinstance(self._tenant_key, Path):
            state["_tenant_key"] = None
        return state

    @property
    def url(self) -> str:
        return self.store.url if self.tenant == DEFAULT_TENANT else f"{self.store.url} (tenant {self.tenant})"

    @property
    def signer(self) -> Signer:
        """The signing key (kept outside the store), loaded or generated once on first write; its public
        key is published to the store's keyring. On first use with no trust list it becomes the admin;
        a retired or revoked key is refused here (see :meth:`Keyring.adopt`)."""
        if self._signer is None:
            signer = Signer.for_store(self.store, self._signing_key)
            self.keyring.adopt(signer)
            self.keyring.register(signer)
            self._signer = signer
        return self._signer

    def _k(self, key: str) -> str:
        return self._prefix + key

    # -- tenant credential ---------------------------------------------------------------------
    def _access(self, write: bool = False) -> Any:
        """The tenant's cipher (None for the default tenant, :data:`_EMPTY` for a tenant that is not set
        up and holds nothing yet); TenantError if this caller may not open the tenant."""
        if self.tenant == DEFAULT_TENANT:
            return None
        if self._cipher is not None:
            return self._cipher
        doc = read_tenant_doc(self.store, self.keyring, self.tenant)
        cred = find_credential(self.tenant, self._tenant_key)
        if doc is None:
            if not write:
                if not self.store.list(self._k("records")):
                    return _EMPTY
                raise TenantError(f"tenant {self.tenant!r} has artifacts in {self.store.url} but no admin-signed "
                                  f"entry ({tenant_doc_key(self.tenant)}): refusing them; the admin re-issues it with "
                                  f"`fabric tenants create {self.tenant} --store URL`")
            cred = self._issue(cred)
        elif doc["status"] == "revoked":
            raise TenantError(f"tenant {self.tenant!r} in {self.store.url}: credential {doc['credential']} is revoked "
                              "by the admin; ask the admin for access")
        elif cred is None:
            raise TenantError(f"tenant {self.tenant!r} in {self.store.url} needs its credential: set ${ENV_TENANT_KEY} "
                              f"(the token or a file holding it) or put it at {credential_path(self.tenant)}; the admin "
                              f"issues it with `fabric tenants create {self.tenant}`")
        elif cred.credential_id != doc["credential"]:
            raise TenantError(f"tenant {self.tenant!r} in {self.store.url}: the credential from {cred.source} (id "
                              f"{cred.credential_id}) is not the one issued for it (id {doc['credential']})")
        self._cipher = cred.cipher()
        return self._cipher

    def _issue(self, cred: TenantCredential | None) -> TenantCredential:
        """First write to a tenant the store does not know: only the trust list's admin may set it up."""
        signer = self.signer
        tl = self.keyring.trust_list()
        if tl is None or tl.admin != signer.key_id:
            raise TenantError(f"tenant {self.tenant!r} is not set up in {self.store.url}: the admin issues its "
                              f"credential with `fabric tenants create {self.tenant} --store URL`")
        if cred is None:
            cred = TenantCredential.generate(self.tenant)
            path = cred.save()
            log.warning("issued a credential for new tenant %r at %s (this host holds the admin key); hand it to "
                        "the tenant via $%s", self.tenant, path, ENV_TENANT_KEY)
        write_tenant_doc(self.store, signer, cred.credential_id, self.tenant)
        return cred

    def _seal(self, purpose: str, data: bytes) -> bytes:
        c = self._access(write=True)
        return data if c is None else c.seal(purpose, data)

    def _unseal(self, purpose: str, raw: bytes, what: str) -> bytes:
        c = self._access()
        return raw if c is None or c is _EMPTY else c.open(purpose, raw, what)

    def _rkey(self, aid: str) -> str:
        return self._k(f"records/{aid}.json")

    def _okey(self, aid: str) -> str:
        return self._k(f"objects/{aid[:2]}/{aid}")

    # -- writing -------------------------------------------------------------------------------
    def put(self, data: bytes | Iterable[bytes] | IO[bytes], *, kind: str, name: str,
            parents: list[str] | tuple[str, ...] = (), spec_hash: str | None = None,
            seeds: dict[str, int] | None = None, device_id: str | None = None,
            extra: dict[str, Any] | None = None, replace_invalid: bool = False) -> ArtifactRecord:
        """Store ``data`` (bytes, or chunks / a binary file for large artifacts) and its signed record.

        Idempotent: same bytes -> same id; the first valid record is kept. The bytes are (re)written
        every time, atomically, so a re-put repairs a damaged object. A record that no longer verifies
        (tampered, or signed by a key that is not trusted) is *refused* with an IntegrityError, never
        silently re-signed: re-signing it is an explicit admin action (``replace_invalid=True`` with
        the trust list's admin key), logged as a warning.
        """
        if kind not in KINDS:
            raise ValueError(f"artifact kind {kind!r} is not one of {KINDS}")
        if not isinstance(name, str) or not name:
            raise ValueError("artifact name must be a non-empty string")
        self._access(write=True)  # a tenant's credential is checked (or issued) before anything is written
        parent_ids = [self.record(p).id for p in parents]  # must exist and verify in this tenant
        signer = self.signer
        if kind != "sbom" and self._sbom_id is None:
            self._sbom_id = self.put(sbom(), kind="sbom", name="environment", replace_invalid=replace_invalid).id
        if isinstance(data, (bytes, bytearray, memoryview)):
            blob = bytes(data)
            aid, size = hashlib.sha256(blob).hexdigest(), len(blob)
            self.store.write(self._okey(aid), self._seal("object", blob))
        elif (cipher := self._access(write=True)) is None:
            aid, size = self.store.write_hashed(self._k("objects"), _chunks(data), self._okey)
        else:  # streamed and encrypted: the id is the plaintext's hash, known once the last chunk is sealed
            plain = hashlib.sha256()
            counted = [0]

            def hashed(chunks: Iterator[bytes]) -> Iterator[bytes]:
                for chunk in chunks:
                    plain.update(chunk)
                    counted[0] += len(chunk)
                    yield chunk

            self.store.write_hashed(self._k("objects"), cipher.seal_stream("object", hashed(_chunks(data))),
                                    lambda _: self._okey(plain.hexdigest()))
            aid, size = plain.hexdigest(), counted[0]
        try:
            return self._load_record(aid)
        except ArtifactNotFound:
            pass
        except IntegrityError as exc:
            self._check_replace(exc, replace_invalid)
        rec = ArtifactRecord(id=aid, kind=kind, name=name, size=size, parents=parent_ids, spec_hash=spec_hash,
                             code_version=code_version(), sbom=self._sbom_id if kind != "sbom" else None,
                             seeds=dict(seeds or {}), device_id=device_id, extra=dict(extra or {}), tenant=self.tenant)
        # normalise through JSON first so the signed form is exactly what a reader will parse
        body = json.loads(json.dumps(rec.payload(), default=_jsonable))
        body["signature"] = signer.sign("record", body)
        rec = ArtifactRecord.from_dict(body)
        # the record is written last: an artifact is visible only once its bytes are complete
        self.store.write(self._rkey(aid), self._seal("record", json.dumps(body, sort_keys=True, indent=1).encode()))
        return rec

    def _check_replace(self, exc: IntegrityError, replace_invalid: bool) -> None:
        """Allow re-signing a record that failed verification only when asked and by the admin key."""
        if not replace_invalid:
            raise IntegrityError(f"{exc}; not replacing it (an admin re-signs with put(..., replace_invalid=True) "
                                 "after checking the artifact)") from None
        tl = self.keyring.trust_list()
        if tl is None or tl.admin != self.signer.key_id:
            admin = tl.admin if tl is not None else "none"
            raise IntegrityError(f"{exc}; replace_invalid needs the trust list's admin key ({admin}), this host signs "
                                 f"with {self.signer.key_id}") from None
        log.warning("admin key %s re-signs a record that failed verification in %s: %s", self.signer.key_id,
                    self.url, exc)

    def put_json(self, obj: Any, **kw: Any) -> ArtifactRecord:
        return self.put(json.dumps(obj, sort_keys=True, indent=1, default=_jsonable).encode(), **kw)

    # -- reading -------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """Full id from an id or a unique prefix (>= 6 hex chars), like git."""
        ref = ref.strip().lower()
        if len(ref) == 64 and _is_hex(ref):
            return ref  # existence is checked by the read that follows
        if len(ref) < 6 or not _is_hex(ref):
            raise ArtifactNotFound(f"no artifact {ref!r} in {self.url} (give an id or a hex prefix of >= 6 chars)")
        hits = [n[:-5] for n in self._record_names() if n.startswith(ref)]
        if not hits:
            raise ArtifactNotFound(f"no artifact {ref!r} in {self.url}")
        if len(hits) > 1:
            raise ArtifactNotFound(f"artifact prefix {ref!r} is ambiguous: {hits[:5]}")
        return hits[0]

    def _record_names(self) -> list[str]:
        if self._access() is _EMPTY:
            return []
        names = (k.rsplit("/", 1)[-1] for k in self.store.list(self._k("records")))
        return [n for n in names if n.endswith(".json") and len(n) == 69 and _is_hex(n[:-5])]

    def _load_record(self, aid: str) -> ArtifactRecord:
        """Read and verify one record; ArtifactNotFound if absent, IntegrityError if it fails."""
        if self._access() is _EMPTY:
            raise ArtifactNotFound(f"no artifact {aid!r} in {self.url}")
        try:
            raw = self.store.read(self._rkey(aid))
        except FileNotFoundError:
            raise ArtifactNotFound(f"no artifact {aid!r} in {self.url}") from None
        what = f"record of artifact {aid[:12]} in {self.url}"
        raw = self._unseal("record", raw, what)
        try:
            d = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"{what} refused: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}); "
                                 f"the record is truncated or altered") from None
        if not isinstance(d, dict):
            raise IntegrityError(f"{what} refused: not a JSON object")
        sig = d.pop("signature", None)
        try:
            self.keyring.verify("record", d, sig)
        except SignatureError as exc:
            raise IntegrityError(f"{what} refused: {exc}") from None
        try:
            rec = ArtifactRecord.from_dict(d | {"signature": sig})
        except (TypeError, ValueError) as exc:
            raise IntegrityError(f"{what} refused: {exc}") from None
        if rec.id != aid:
            raise IntegrityError(f"{what} refused: it describes artifact {rec.id[:12]} (record file moved or copied)")
        if rec.tenant != self.tenant:
            raise IntegrityError(f"{what} refused: it belongs to tenant {rec.tenant!r}, not {self.tenant!r}")
        return rec

    def record(self, ref: str) -> ArtifactRecord:
        """The verified record of ``ref`` (id or unique prefix)."""
        return self._load_record(self.resolve(ref))

    def get(self, ref: str) -> bytes:
        """The artifact's bytes, verified against its signed record and its id."""
        rec = self.record(ref)
        aid = rec.id
        try:
            data = self.store.read(self._okey(aid))
        except FileNotFoundError:
            raise IntegrityError(f"artifact {aid[:12]} in {self.url} refused: its record exists but its bytes are "
                                 "missing") from None
        data = self._unseal("object", data, f"artifact {aid[:12]} in {self.url}")
        got = hashlib.sha256(data).hexdigest()
        if got != aid or len(data) != rec.size:
            raise IntegrityError(
                f"artifact {aid[:12]} in {self.url} is corrupt: stored bytes hash to {got[:12]} ({len(data)} bytes, "
                f"record says {rec.size}); refusing to use it"
            )
        return data

    def get_json(self, ref: str) -> Any:
        return json.loads(self.get(ref))

    def verify(self, ref: str) -> dict[str, Any]:
        """Full check of one artifact: signed record, bytes, parents. Never raises for a bad artifact."""
        self._access()  # a refused credential refuses the call, it is not one failing artifact
        aid = self.resolve(ref)
        out: dict[str, Any] = {"id": aid, "ok": False, "reason": "", "kind": None, "size": None, "signed_by": None}
        try:
            rec = self._load_record(aid)
            out.update(kind=rec.kind, size=rec.size, signed_by=(rec.signature or {}).get("key"))
            self.get(aid)
        except IntegrityError as exc:
            out["reason"] = str(exc)
            return out
        bad = []
        for p in rec.parents:
            try:
                self._load_record(p)
            except (ArtifactNotFound, IntegrityError) as exc:
                bad.append(f"{p[:12]} ({exc})")
        if bad:
            out["reason"] = f"parents missing or invalid: {bad}"
            return out
        out.update(ok=True, reason="ok (signature, bytes and parents verified)")
        return out

    def verify_all(self) -> list[dict[str, Any]]:
        """:meth:`verify` for every record of this tenant."""
        return [self.verify(n[:-5]) for n in self._record_names()]

    def scan(self, kind: str | None = None) -> tuple[list[ArtifactRecord], list[tuple[str, str]]]:
        """Verified records (oldest first) and ``(id, reason)`` for every record that was refused."""
        good: list[ArtifactRecord] = []
        bad: list[tuple[str, str]] = []
        for n in self._record_names():
            try:
                rec = self._load_record(n[:-5])
            except (IntegrityError, ArtifactNotFound) as exc:
                bad.append((n[:-5], str(exc)))
                continue
            if kind is None or rec.kind == kind:
                good.append(rec)
        return sorted(good, key=lambda r: r.created), bad

    def ls(self, kind: str | None = None) -> list[ArtifactRecord]:
        """Verified records of this tenant; refused ones are left out with a warning."""
        good, bad = self.scan(kind)
        for _, reason in bad:
            warnings.warn(f"left out of listing: {reason}", stacklevel=2)
        return good

    def lineage(self, ref: str) -> dict[str, Any]:
        """Nested ``{"record": ..., "parents": [...]}`` tree down to the roots (every record verified)."""
        seen: dict[str, ArtifactRecord] = {}

        def node(aid: str) -> dict[str, Any]:
            if aid not in seen:  # shared ancestors are read and verified once
                seen[aid] = self._load_record(aid)
            rec = seen[aid]
            return {"record": rec, "parents": [node(p) for p in rec.parents]}

        return node(self.resolve(ref))

    # -- stage cache ---------------------------------------------------------------------------
    def _cache_key(self, key: str) -> str:
        if not _CACHE_KEY_RE.match(key):
            raise ValueError(f"cache key {key!r} is invalid: use 1-200 of A-Z, a-z, 0-9, '.', '_' or '-'")
        return self._k(f"cache/{key}")

    def cache_get(self, key: str) -> str | None:
        """Artifact id cached under ``key``, or None. An entry or artifact record that fails
        verification is a miss (with a warning): the stage recomputes and the put repairs it."""
        k = self._cache_key(key)
        if self._access() is _EMPTY:
            return None
        try:
            raw = self.store.read(k)
        except FileNotFoundError:
            return None
        try:
            d = json.loads(self._unseal("cache", raw, f"stage-cache entry {key[:16]}"))
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            sig = d.pop("signature", None)
            self.keyring.verify("cache", d, sig)
            if d.get("key") != key or d.get("tenant") != self.tenant or not _is_hex(str(d.get("id", ""))):
                raise ValueError("entry is for another key or tenant")
            aid = str(d["id"])
            self._load_record(aid)
        except ArtifactNotFound:
            return None
        except (ValueError, SignatureError, IntegrityError, UnicodeDecodeError) as exc:
            warnings.warn(f"ignoring stage-cache entry {key[:16]} in {self.url}: {exc}", stacklevel=2)
            return None
        return aid

    def cache_put(self, key: str, artifact_id: str) -> None:
        body: dict[str, Any] = {"key": key, "id": self.record(artifact_id).id, "tenant": self.tenant}
        body["signature"] = self.signer.sign("cache", body)
        self.store.write(self._cache_key(key), self._seal("cache", canonical(body)))


def _jsonable(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
