"""Tenant credentials and encryption at rest for every tenant but the default one.

Why: a tenant named on the command line is only a claim; anyone who can name it (or read the store's
files, local or S3) could read its artifacts. So a non-default tenant's artifacts are bound to a
secret the admin issues (``fabric tenants create NAME``) and that never enters the store:

* the credential is a token ``fabric-tenant-v1.<tenant>.<32 random bytes, base64url>``, kept in
  ``$FABRIC_HOME/tenants/<tenant>.key`` (mode 0600) or given by ``$FABRIC_TENANT_KEY`` (the token itself
  or the path of a file holding it, e.g. a mounted secret);
* from it HKDF-SHA256 derives (a) the credential id, which the admin-signed tenant entry
  ``tenants/<tenant>/tenant.json`` in the store names (so a wrong or replaced credential, and a revoked
  one, is refused before anything is read), and (b) an AES-256-GCM key that encrypts the tenant's
  artifact bytes, records and stage-cache entries (see :class:`TenantCipher`).

Artifact ids stay the sha256 of the *plaintext* (so stage caching and lineage work as before); the
store holds ciphertext, and a reader verifies the hash after decrypting. What a store reader still
sees: ids, sizes (roughly) and timestamps of the files, not their content.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fabric.store.backend import Store
from fabric.store.errors import IntegrityError, TenantError
from fabric.store.signing import (
    Keyring,
    SignatureError,
    Signer,
    _write_atomic,
    fabric_home,
    split_signed,
)

__all__ = ["ENV_TENANT_KEY", "TenantCredential", "TenantCipher", "TenantError", "credential_path",
           "find_credential", "tenant_doc_key", "read_tenant_doc", "write_tenant_doc", "store_tenants",
           "is_sealed", "sealed_tenant", "TENANT_NAME_RE"]

ENV_TENANT_KEY = "FABRIC_TENANT_KEY"
TOKEN_PREFIX = "fabric-tenant-v1"
DOC_FORMAT = "fabric-tenant/v1"
TENANT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_MAGIC = b"FTE1"  # fabric tenant encryption, format 1
_SEGMENT = 1 << 20  # plaintext bytes per AES-GCM segment (bounded memory for streamed artifacts)
_TAG = 16
_SALT = b"fabric-tenant-credential-v1"


def tenant_doc_key(tenant: str) -> str:
    """Store key of the admin-signed entry that names a tenant's credential id and status."""
    return f"tenants/{tenant}/tenant.json"


def credential_path(tenant: str) -> Path:
    """Where this user's credential for ``tenant`` lives: ``$FABRIC_HOME/tenants/<tenant>.key``."""
    return fabric_home() / "tenants" / f"{tenant}.key"


def _derive(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=info).derive(secret)


@dataclass(frozen=True)
class TenantCredential:
    """One tenant's secret; ``source`` says where it was read from (for messages, never the secret)."""

    tenant: str
    secret: bytes = field(repr=False)
    source: str = ""

    @classmethod
    def generate(cls, tenant: str) -> TenantCredential:
        if not TENANT_NAME_RE.match(tenant):
            raise TenantError(f"tenant {tenant!r} is invalid: use 1-63 of a-z, 0-9, '_' or '-', starting with a "
                              "letter or digit")
        return cls(tenant, os.urandom(32), "new")

    @classmethod
    def parse(cls, token: str, source: str) -> TenantCredential:
        """A credential from its token; TenantError naming ``source`` if it is malformed."""
        parts = token.strip().split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not TENANT_NAME_RE.match(parts[1]):
            raise TenantError(f"tenant credential from {source} is malformed: expected "
                              f"'{TOKEN_PREFIX}.<tenant>.<secret>' (as `fabric tenants create` writes it)")
        try:
            secret = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        except ValueError:
            secret = b""
        if len(secret) != 32:
            raise TenantError(f"tenant credential from {source} is malformed: its secret is not 32 bytes of base64url")
        return cls(parts[1], secret, source)

    def token(self) -> str:
        return f"{TOKEN_PREFIX}.{self.tenant}.{base64.urlsafe_b64encode(self.secret).decode().rstrip('=')}"

    @property
    def credential_id(self) -> str:
        """Public id of the credential (32 hex): what the tenant entry in the store names."""
        return _derive(self.secret, b"fabric-tenant-id:" + self.tenant.encode(), 16).hex()

    def cipher(self) -> TenantCipher:
        return TenantCipher(self.tenant, _derive(self.secret, b"fabric-tenant-enc:" + self.tenant.encode(), 32))

    def save(self, path: Path | None = None) -> Path:
        """Write the token (mode 0600, directory 0700), replacing a file there; returns the path."""
        p = path or credential_path(self.tenant)
        _write_atomic(p, (self.token() + "\n").encode(), exclusive=False)
        return p


def _from_value(value: str, source: str) -> TenantCredential:
    """A token, or the path of a file that holds one."""
    if value.strip().startswith(TOKEN_PREFIX + "."):
        return TenantCredential.parse(value, source)
    p = Path(value).expanduser()
    try:
        return TenantCredential.parse(p.read_text(encoding="utf-8"), f"{source} ({p})")
    except (OSError, UnicodeDecodeError) as exc:
        raise TenantError(f"tenant credential file {p} (from {source}) cannot be read: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None


def find_credential(tenant: str, explicit: str | os.PathLike[str] | None = None) -> TenantCredential | None:
    """This caller's credential for ``tenant``: ``explicit`` (token or file), else ``$FABRIC_TENANT_KEY``
    when it is for this tenant, else :func:`credential_path`; None if there is none.

    An explicit credential for another tenant is refused; the environment's is skipped (one process may
    hold one tenant's key in the environment and open other tenants from files)."""
    if explicit is not None:
        cred = _from_value(os.fspath(explicit), "tenant_key")
        if cred.tenant != tenant:
            raise TenantError(f"the given credential is for tenant {cred.tenant!r}, not {tenant!r}")
        return cred
    env = os.environ.get(ENV_TENANT_KEY)
    if env:
        cred = _from_value(env, f"${ENV_TENANT_KEY}")
        if cred.tenant == tenant:
            return cred
    p = credential_path(tenant)
    if p.exists():
        cred = _from_value(str(p), "the credential file")
        if cred.tenant != tenant:
            raise TenantError(f"credential file {p} holds a credential for tenant {cred.tenant!r}, not {tenant!r}")
        return cred
    return None


# -- encryption ----------------------------------------------------------------------------------------
def is_sealed(blob: bytes) -> bool:
    return blob[:4] == _MAGIC


def sealed_tenant(blob: bytes) -> str | None:
    """The tenant named in a sealed blob's header (unauthenticated until decrypted), or None."""
    if not is_sealed(blob) or len(blob) < 5:
        return None
    n = blob[4]
    try:
        return blob[5:5 + n].decode("ascii")
    except UnicodeDecodeError:
        return None


class TenantCipher:
    """AES-256-GCM in segments of 1 MiB (a STREAM-like layout): header ``FTE1 | len | tenant | 8-byte
    random nonce prefix``, then per segment ciphertext+tag with nonce ``prefix | counter`` and the
    header, the purpose (``object``/``record``/``cache``), the counter and a last-segment flag as
    associated data, so a segment cannot be reordered, dropped, truncated or moved between tenants or
    between kinds of document without failing authentication."""

    def __init__(self, tenant: str, key: bytes) -> None:
        self.tenant = tenant
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return f"TenantCipher({self.tenant!r})"

    def _header(self, prefix: bytes) -> bytes:
        name = self.tenant.encode("ascii")
        return _MAGIC + bytes([len(name)]) + name + prefix

    @staticmethod
    def _aad(header: bytes, purpose: str, index: int, last: bool) -> bytes:
        return header + purpose.encode() + struct.pack(">IB", index, int(last))

    def seal_stream(self, purpose: str, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Encrypt a stream of plaintext chunks; yields the header, then one sealed segment at a time."""
        prefix = os.urandom(8)
        header = self._header(prefix)
        yield header
        buf = bytearray()
        index = 0
        for chunk in chunks:
            buf += chunk
            while len(buf) > _SEGMENT:  # keep the last segment back: only the end of input marks it last
                seg = bytes(buf[:_SEGMENT])
                del buf[:_SEGMENT]
                yield self._aead.encrypt(prefix + struct.pack(">I", index), seg,
                                         self._aad(header, purpose, index, False))
                index += 1
        yield self._aead.encrypt(prefix + struct.pack(">I", index), bytes(buf), self._aad(header, purpose, index, True))

    def seal(self, purpose: str, data: bytes) -> bytes:
        return b"".join(self.seal_stream(purpose, [data]))

    def open(self, purpose: str, blob: bytes, what: str) -> bytes:
        """Decrypt and authenticate; IntegrityError naming ``what`` if the blob is not this tenant's
        sealed ``purpose`` document or was altered or truncated."""
        owner = sealed_tenant(blob)
        if owner is None:
            raise IntegrityError(f"{what} is corrupt: it is not encrypted for a tenant (written outside the registry, "
                                 "or altered)")
        if owner != self.tenant:
            raise IntegrityError(f"{what} refused: it belongs to tenant {owner!r}, not {self.tenant!r}")
        hlen = 5 + len(owner) + 8
        header, body = blob[:hlen], blob[hlen:]
        if len(header) < hlen or not body:
            raise IntegrityError(f"{what} is corrupt: encrypted data truncated")
        prefix = header[-8:]
        out = []
        step = _SEGMENT + _TAG
        nseg = max(1, -(-len(body) // step))
        try:
            for index in range(nseg):
                seg = body[index * step:(index + 1) * step]
                out.append(self._aead.decrypt(prefix + struct.pack(">I", index), seg,
                                              self._aad(header, purpose, index, index == nseg - 1)))
        except InvalidTag:
            raise IntegrityError(f"{what} is corrupt: its encrypted bytes fail authentication (altered, truncated, "
                                 f"or sealed with another credential of tenant {self.tenant!r})") from None
        return b"".join(out)


# -- the admin-signed tenant entry in the store ------------------------------------------------------
def write_tenant_doc(store: Store, signer: Signer, cred_id: str, tenant: str, status: str = "active",
                     serial: int = 1) -> dict[str, Any]:
    """Publish the entry that names ``tenant``'s credential id and status, signed by ``signer``."""
    body: dict[str, Any] = {"format": DOC_FORMAT, "tenant": tenant, "credential": cred_id, "status": status,
                            "issued": time.time(), "serial": serial}
    body["signature"] = signer.sign("tenant", body)
    store.write(tenant_doc_key(tenant), json.dumps(body, sort_keys=True, indent=1).encode())
    return body


def read_tenant_doc(store: Store, keyring: Keyring, tenant: str) -> dict[str, Any] | None:
    """The verified tenant entry, or None if there is none; TenantError if it is forged, altered or
    not signed by the trust list's admin (fail closed: a bad entry never means 'no checks')."""
    key = tenant_doc_key(tenant)
    try:
        raw = store.read(key)
    except FileNotFoundError:
        return None
    what = f"tenant entry {key} in {store.url} refused"
    d, sig = split_signed(raw, DOC_FORMAT, what, TenantError)
    try:
        key_id = keyring.verify("tenant", d, sig)
    except SignatureError as exc:
        raise TenantError(f"{what}: {exc}") from None
    tl = keyring.trust_list()
    if tl is not None and key_id != tl.admin:
        raise TenantError(f"{what}: signed by key {key_id}, not by the trust list's admin {tl.admin} (the admin "
                          f"re-issues it with `fabric tenants create {tenant}`)")
    if d.get("tenant") != tenant or d.get("status") not in ("active", "revoked") \
            or not isinstance(d.get("credential"), str) or len(d["credential"]) != 32:
        raise TenantError(f"{what}: it is for tenant {d.get('tenant')!r} or has a bad status/credential field")
    return d


def store_tenants(store: Store) -> list[str]:
    """Names of the tenants that have an entry in ``store`` (verified by the caller)."""
    out = []
    for k in store.list("tenants"):
        parts = k.split("/")
        if len(parts) == 3 and parts[2] == "tenant.json" and TENANT_NAME_RE.match(parts[1]):
            out.append(parts[1])
    return sorted(out)
