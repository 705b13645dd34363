"""Ed25519 signatures over registry records and cache entries.

Why: content addressing already catches altered artifact *bytes*, but a record (kind, lineage, spec
hash, SBOM, ...) or a cache entry could be rewritten to point at other valid bytes. Every such
document is signed; readers verify before use and refuse anything else.

Keys:

* signing key: ``$FABRIC_SIGNING_KEY`` (a PEM PKCS8 Ed25519 private key path; generated there on
  first use if missing) or, by default, ``<store>/keys/signing-ed25519.pem`` for a local store and
  ``~/.fabric/keys/signing-ed25519.pem`` for a remote one (a private key is never uploaded to an
  object store). Generated once, mode 0600, race-free across concurrent processes.
* verification keys: ``keys/<key_id>.pub`` inside the store (shared by all tenants), where
  ``key_id`` is the first 32 hex of sha256(raw public key), so a key file cannot be swapped for
  another key under the same id. By default every key in the store's keyring is trusted; pin the
  accepted signers with ``$FABRIC_TRUSTED_KEYS`` (comma-separated key ids) or ``trusted_keys=``,
  which also defeats an attacker who can write to the store and add their own key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fabric.store.backend import Store

__all__ = ["Signer", "Keyring", "SignatureError", "canonical", "default_key_path", "key_id_of", "ENV_KEY",
           "ENV_TRUSTED"]

ENV_KEY = "FABRIC_SIGNING_KEY"
ENV_TRUSTED = "FABRIC_TRUSTED_KEYS"
ALG = "ed25519"
KEY_FILE = "signing-ed25519.pem"


class SignatureError(ValueError):
    """A signature is missing, malformed, made by an unknown/untrusted key, or does not verify."""


def canonical(obj: Any) -> bytes:
    """The exact bytes that are signed: sorted keys, no whitespace, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _message(domain: str, payload: dict[str, Any]) -> bytes:
    # the domain keeps a signature for one kind of document from being replayed as another
    return f"fabric:{domain}:v1\n".encode() + canonical(payload)


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def default_key_path(store: Store) -> Path:
    """Where the signing key lives when ``$FABRIC_SIGNING_KEY`` is not set."""
    if store.local:
        return Path(store.root) / "keys" / KEY_FILE
    return Path.home() / ".fabric" / "keys" / KEY_FILE


def _create_exclusive(path: Path, data: bytes) -> None:
    """Write ``path`` only if it does not exist, atomically: the first of racing writers wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


class Signer:
    """An Ed25519 private key with its id."""

    def __init__(self, key: Ed25519PrivateKey, path: Path | None = None) -> None:
        self.key = key
        self.path = path
        self.public = key.public_key()
        self.key_id = key_id_of(self.public)

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: str | Path) -> Signer:
        """Load the PEM key at ``path``; generate it there first if there is none."""
        p = Path(path).expanduser()
        if not p.exists():
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            _create_exclusive(p, pem)
        try:
            key = serialization.load_pem_private_key(p.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise SignatureError(f"signing key {p}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureError(f"signing key {p}: expected an Ed25519 key, got {type(key).__name__}")
        return cls(key, p)

    @classmethod
    def for_store(cls, store: Store, path: str | Path | None = None) -> Signer:
        """The configured signer: ``path``, else ``$FABRIC_SIGNING_KEY``, else the default location."""
        return cls.load_or_create(path or os.environ.get(ENV_KEY) or default_key_path(store))

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, domain: str, payload: dict[str, Any]) -> dict[str, str]:
        sig = self.key.sign(_message(domain, payload))
        return {"alg": ALG, "key": self.key_id, "sig": base64.b64encode(sig).decode()}


class Keyring:
    """Verification keys kept in the store (``keys/<key_id>.pub``), optionally pinned to a trusted set."""

    def __init__(self, store: Store, trusted: set[str] | None = None) -> None:
        self.store = store
        env = os.environ.get(ENV_TRUSTED)
        if trusted is None and env:
            trusted = {k.strip() for k in env.split(",") if k.strip()}
        self.trusted = trusted
        self._cache: dict[str, Ed25519PublicKey] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self.store, "trusted": self.trusted, "_cache": {}}

    def register(self, signer: Signer) -> None:
        """Publish the signer's public key (idempotent; the file name is derived from the key)."""
        key = f"keys/{signer.key_id}.pub"
        if not self.store.exists(key):
            self.store.write(key, signer.public_pem())
        self._cache[signer.key_id] = signer.public

    def public_key(self, key_id: str) -> Ed25519PublicKey:
        if key_id in self._cache:
            return self._cache[key_id]
        if not (len(key_id) == 32 and all(c in "0123456789abcdef" for c in key_id)):
            raise SignatureError(f"malformed key id {key_id!r}")
        try:
            pem = self.store.read(f"keys/{key_id}.pub")
        except FileNotFoundError:
            raise SignatureError(f"signed by key {key_id}, which is not in the store's keyring (keys/)") from None
        try:
            pub = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise SignatureError(f"keyring entry keys/{key_id}.pub is not a PEM public key ({exc})") from None
        if not isinstance(pub, Ed25519PublicKey) or key_id_of(pub) != key_id:
            raise SignatureError(f"keyring entry keys/{key_id}.pub does not hold the key with that id (altered)")
        self._cache[key_id] = pub
        return pub

    def verify(self, domain: str, payload: dict[str, Any], signature: Any) -> str:
        """Check ``signature`` over ``payload``; return the signer's key id or raise SignatureError."""
        if not signature:
            raise SignatureError("unsigned (no signature field)")
        if not isinstance(signature, dict) or signature.get("alg") != ALG or not isinstance(signature.get("sig"), str):
            raise SignatureError(f"malformed signature {signature!r:.80}")
        key_id = str(signature.get("key", ""))
        if self.trusted is not None and key_id not in self.trusted:
            raise SignatureError(f"signed by key {key_id}, which is not a trusted key ({ENV_TRUSTED})")
        try:
            sig = base64.b64decode(signature["sig"], validate=True)
        except ValueError:
            raise SignatureError("signature is not valid base64") from None
        try:
            self.public_key(key_id).verify(sig, _message(domain, payload))
        except InvalidSignature:
            raise SignatureError(f"signature by key {key_id} does not match the content (altered after signing)") from None
        return key_id
