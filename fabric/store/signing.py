"""Ed25519 signatures over registry records and cache entries, and the pinned trust list.

Why: content addressing already catches altered artifact *bytes*, but a record (kind, lineage, spec
hash, SBOM, ...) or a cache entry could be rewritten to point at other valid bytes. Every such
document is signed; readers verify before use and refuse anything else.

Keys (the private key never lives in, or is readable through, a store):

* signing key: ``$FABRIC_SIGNING_KEY`` (a PEM PKCS8 Ed25519 private key path, e.g. a mounted
  secret; generated there on first use if missing), else ``$FABRIC_HOME/keys/signing-ed25519.pem``
  where ``FABRIC_HOME`` defaults to ``$XDG_CONFIG_HOME/fabric`` or ``~/.config/fabric``. Generated
  once, mode 0600, race-free across concurrent processes. A key path inside a local store is refused.
* public keys: ``keys/<key_id>.pub`` inside the store, where ``key_id`` is the first 32 hex of
  sha256(raw public key), so a key file cannot be swapped for another key under the same id. A key
  found there is only a public key: it is *not* trusted by being there.

Trust (who may sign): a trust list, ``$FABRIC_TRUST`` or ``$FABRIC_HOME/trust.json``, names the
trusted, retired and revoked key ids and is signed by an admin key. The first key this host uses
becomes admin and trusted on first use (a single-user setup needs no steps). Records signed by a key
the list does not name, or by a revoked key, are refused with the key id in the message. A retired key
(``fabric keys rotate``) no longer signs, but the records it signed stay valid until it is revoked.
A cluster member may instead read the list the admin published in the store (``trust.json``) when
``$FABRIC_TRUST_ADMIN`` pins the admin key id. ``$FABRIC_TRUSTED_KEYS`` (or ``trusted_keys=``) is an
extra pin on top: when set, only those ids are accepted (and with no trust list, they are the trust).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fabric.store.backend import Store

__all__ = ["Signer", "Keyring", "SignatureError", "TrustList", "TrustError", "canonical", "default_key_path",
           "fabric_home", "signing_key_path", "trust_path", "key_id_of", "is_key_id", "load_public_pem",
           "ENV_KEY", "ENV_TRUSTED", "ENV_HOME", "ENV_TRUST", "ENV_TRUST_ADMIN", "STORE_TRUST_KEY", "sign_document",
           "verify_document", "signature_path", "split_signed"]

ENV_KEY = "FABRIC_SIGNING_KEY"
ENV_TRUSTED = "FABRIC_TRUSTED_KEYS"
ENV_HOME = "FABRIC_HOME"
ENV_TRUST = "FABRIC_TRUST"
ENV_TRUST_ADMIN = "FABRIC_TRUST_ADMIN"
STORE_TRUST_KEY = "trust.json"  # where `fabric keys publish` puts the admin's list in a store
ALG = "ed25519"
KEY_FILE = "signing-ed25519.pem"
TRUST_FORMAT = "fabric-trust/v1"


class SignatureError(ValueError):
    """A signature is missing, malformed, made by an unknown/untrusted key, or does not verify."""


class TrustError(SignatureError):
    """The trust list is missing where needed, unreadable, or fails its admin signature."""


def canonical(obj: Any) -> bytes:
    """The exact bytes that are signed: sorted keys, no whitespace, ASCII."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _message(domain: str, payload: dict[str, Any]) -> bytes:
    # the domain keeps a signature for one kind of document from being replayed as another
    return f"fabric:{domain}:v1\n".encode() + canonical(payload)


def key_id_of(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def is_key_id(s: str) -> bool:
    return len(s) == 32 and all(c in "0123456789abcdef" for c in s)


def load_public_pem(pem: bytes, what: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM, or SignatureError naming ``what``."""
    try:
        pub = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise SignatureError(f"{what} is not a PEM public key ({exc})") from None
    if not isinstance(pub, Ed25519PublicKey):
        raise SignatureError(f"{what}: expected an Ed25519 public key, got {type(pub).__name__}")
    return pub


def split_signed(raw: bytes, fmt: str, what: str, error: type[Exception]) -> tuple[dict[str, Any], Any]:
    """A signed JSON document's body and its ``signature`` field, or ``error`` saying what is wrong.

    Why one function: trust lists, admin document signatures and tenant entries are all JSON objects
    tagged with a ``format`` and carrying a ``signature``; parsing them one way keeps the refusals alike.
    """
    try:
        d = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise error(f"{what}: not valid JSON (truncated or altered)") from None
    if not isinstance(d, dict) or d.get("format") != fmt:
        raise error(f"{what}: not a {fmt} document")
    sig = d.pop("signature", None)
    return d, sig


def fabric_home() -> Path:
    """This user's fabric config directory: ``$FABRIC_HOME``, else ``$XDG_CONFIG_HOME/fabric``, else
    ``~/.config/fabric``. Read at call time, so Ray workers on the same machine find the same one."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".config") / "fabric"


def default_key_path(store: Store | None = None) -> Path:
    """Where the signing key lives when ``$FABRIC_SIGNING_KEY`` is not set (the same for every store:
    keys live with the user, not with the data)."""
    return fabric_home() / "keys" / KEY_FILE


def signing_key_path() -> Path:
    """The configured signing key path: ``$FABRIC_SIGNING_KEY``, else :func:`default_key_path`."""
    env = os.environ.get(ENV_KEY)
    return Path(env).expanduser() if env else default_key_path()


def trust_path() -> Path:
    """The local trust list: ``$FABRIC_TRUST``, else ``$FABRIC_HOME/trust.json``."""
    env = os.environ.get(ENV_TRUST)
    return Path(env).expanduser() if env else fabric_home() / "trust.json"


def _write_atomic(path: Path, data: bytes, *, exclusive: bool) -> bool:
    """Write ``path`` atomically (mode 0600). ``exclusive``: only if it does not exist yet (the first
    of racing writers wins); else replace it. Returns whether this call's bytes were written."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # a key directory is private
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _create_exclusive(path: Path, data: bytes) -> None:
    _write_atomic(path, data, exclusive=True)


def _new_private_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


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
    def load(cls, path: str | Path) -> Signer:
        """Load the PEM key at ``path`` (SignatureError if it is not an unencrypted Ed25519 key)."""
        p = Path(path).expanduser()
        try:
            key = serialization.load_pem_private_key(p.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise SignatureError(f"signing key {p}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SignatureError(f"signing key {p}: expected an Ed25519 key, got {type(key).__name__}")
        return cls(key, p)

    @classmethod
    def load_or_create(cls, path: str | Path) -> Signer:
        """Load the PEM key at ``path``; generate it there first if there is none."""
        p = Path(path).expanduser()
        if not p.exists():
            _create_exclusive(p, _new_private_pem())
        return cls.load(p)

    @classmethod
    def for_store(cls, store: Store | None = None, path: str | Path | None = None) -> Signer:
        """The configured signer (``path``, else :func:`signing_key_path`); refused if it would live
        inside ``store`` (anyone who can read the store could then sign)."""
        p = Path(path).expanduser() if path else signing_key_path()
        if store is not None and store.local and _inside(p, Path(store.root)):
            raise SignatureError(f"signing key {p} is inside the store {store.root}; keep it outside "
                                 f"(${ENV_KEY} or ${ENV_HOME}/keys/)")
        return cls.load_or_create(p)

    @classmethod
    def rotate(cls, path: str | Path | None = None,
               commit: Callable[[Signer | None, Signer], None] | None = None) -> tuple[Signer | None, Signer]:
        """Replace the key at ``path`` (default :func:`signing_key_path`) with a new one. The new key is
        made beside it first (``<path>.next``), ``commit(old, new)`` runs (e.g. hands the trust list to
        the new key), and only then the new key replaces the old file, atomically; the old private key is
        gone afterwards (it signs nothing more). A rotation cut short after ``commit`` is finished by the
        next call, which reuses the pending ``.next`` key. Returns ``(old or None, new)``."""
        p = Path(path).expanduser() if path else signing_key_path()
        nxt = p.with_name(p.name + ".next")
        old = cls.load(p) if p.exists() else None
        new = cls.load_or_create(nxt)
        if commit is not None:
            commit(old, new)
        os.replace(nxt, p)
        return old, cls(new.key, p)

    def public_pem(self) -> bytes:
        return self.public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, domain: str, payload: dict[str, Any]) -> dict[str, str]:
        sig = self.key.sign(_message(domain, payload))
        return {"alg": ALG, "key": self.key_id, "sig": base64.b64encode(sig).decode()}


def _verify_sig(public: Ed25519PublicKey, key_id: str, domain: str, payload: dict[str, Any], signature: Any) -> None:
    if not isinstance(signature, dict) or signature.get("alg") != ALG or not isinstance(signature.get("sig"), str):
        raise SignatureError(f"malformed signature {signature!r:.80}")
    if signature.get("key") != key_id:
        raise SignatureError(f"signed by key {signature.get('key')}, expected {key_id}")
    try:
        sig = base64.b64decode(signature["sig"], validate=True)
    except ValueError:
        raise SignatureError("signature is not valid base64") from None
    try:
        public.verify(sig, _message(domain, payload))
    except InvalidSignature:
        raise SignatureError(f"signature by key {key_id} does not match the content (altered after signing)") from None


@dataclass
class TrustList:
    """Which key ids may sign: ``trusted`` sign and verify, ``retired`` only verify (rotated out),
    ``revoked`` are refused everywhere (final). Signed as a whole by ``admin``."""

    admin: str
    admin_public: str
    trusted: set[str] = field(default_factory=set)
    retired: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)
    serial: int = 1
    source: str = ""  # where it was read from, for messages

    def payload(self) -> dict[str, Any]:
        return {"format": TRUST_FORMAT, "admin": self.admin, "admin_public": self.admin_public,
                "trusted": sorted(self.trusted), "retired": sorted(self.retired), "revoked": sorted(self.revoked),
                "serial": self.serial}

    def accepts(self, key_id: str) -> bool:
        return key_id not in self.revoked and (key_id in self.trusted or key_id in self.retired)

    def status(self, key_id: str) -> str:
        if key_id in self.revoked:
            return "revoked"
        if key_id == self.admin:
            return "admin"
        if key_id in self.trusted:
            return "trusted"
        if key_id in self.retired:
            return "retired"
        return "untrusted"

    @classmethod
    def new(cls, admin: Signer) -> TrustList:
        return cls(admin=admin.key_id, admin_public=admin.public_pem().decode(), trusted={admin.key_id})

    def signed_bytes(self, admin: Signer) -> bytes:
        """The list signed by ``admin`` (which must be this list's admin), as file bytes."""
        if admin.key_id != self.admin:
            raise TrustError(f"only the admin key {self.admin} can sign the trust list (this key is {admin.key_id})")
        body = self.payload()
        body["signature"] = admin.sign("trust", body)
        return json.dumps(body, sort_keys=True, indent=1).encode() + b"\n"

    @classmethod
    def parse(cls, raw: bytes, source: str, pinned_admin: str | None = None) -> TrustList:
        """Parse and verify a signed trust list; TrustError saying what is wrong."""
        what = f"trust list {source} refused"
        d, sig = split_signed(raw, TRUST_FORMAT, what, TrustError)
        admin = d.get("admin")
        if not isinstance(admin, str) or not is_key_id(admin) or not isinstance(d.get("admin_public"), str):
            raise TrustError(f"{what}: no valid admin key")
        if pinned_admin and admin != pinned_admin:
            raise TrustError(f"{what}: signed for admin {admin}, but the pinned admin is {pinned_admin} "
                             f"(${ENV_TRUST_ADMIN})")
        try:
            pub = load_public_pem(d["admin_public"].encode(), "its admin key")
            if key_id_of(pub) != admin:
                raise SignatureError(f"its admin key does not have id {admin}")
            if not sig:
                raise SignatureError("unsigned")
            _verify_sig(pub, admin, "trust", d, sig)
        except SignatureError as exc:
            raise TrustError(f"{what}: bad admin signature: {exc}") from None
        lists: dict[str, set[str]] = {}
        for name in ("trusted", "retired", "revoked"):
            ids = d.get(name)
            if not isinstance(ids, list) or not all(isinstance(i, str) and is_key_id(i) for i in ids):
                raise TrustError(f"{what}: {name!r} must be a list of key ids")
            lists[name] = set(ids)
        serial = d.get("serial")
        if not isinstance(serial, int) or serial < 1:
            raise TrustError(f"{what}: 'serial' must be a positive integer")
        return cls(admin=admin, admin_public=d["admin_public"], serial=serial, source=source, **lists)

    @classmethod
    def read(cls, path: Path, pinned_admin: str | None = None) -> TrustList | None:
        """The verified list at ``path``, or None if there is none."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        return cls.parse(raw, str(path), pinned_admin or os.environ.get(ENV_TRUST_ADMIN) or None)

    def save(self, admin: Signer, path: Path | None = None) -> Path:
        """Bump the serial, sign with ``admin`` and replace the file atomically."""
        p = path or trust_path()
        self.serial += 1
        _write_atomic(p, self.signed_bytes(admin), exclusive=False)
        self.source = str(p)
        return p

    @classmethod
    def bootstrap(cls, signer: Signer, path: Path | None = None) -> TrustList:
        """Make ``signer`` the admin of a new local trust list unless one exists (race-free: the first
        writer wins; everyone then reads the winner's list)."""
        p = path or trust_path()
        _write_atomic(p, cls.new(signer).signed_bytes(signer), exclusive=True)
        tl = cls.read(p)
        assert tl is not None
        return tl


class Keyring:
    """Public keys kept in the store (``keys/<key_id>.pub``) plus the trust list that says which of them
    may sign; optionally pinned further to a set of ids (``trusted``, else ``$FABRIC_TRUSTED_KEYS``)."""

    def __init__(self, store: Store, trusted: set[str] | None = None) -> None:
        self.store = store
        env = os.environ.get(ENV_TRUSTED)
        if trusted is None and env:
            trusted = {k.strip() for k in env.split(",") if k.strip()}
        self.trusted = trusted
        self._cache: dict[str, Ed25519PublicKey] = {}
        self._trust: tuple[Any, TrustList | None] | None = None
        self._warned: set[str] = set()

    def __getstate__(self) -> dict[str, Any]:
        # a Ray worker re-reads the trust list from its own environment
        return {"store": self.store, "trusted": self.trusted, "_cache": {}, "_trust": None, "_warned": set()}

    # -- the trust list ------------------------------------------------------------------------
    def trust_list(self) -> TrustList | None:
        """The verified trust list in force (local file, else the store's published copy when
        ``$FABRIC_TRUST_ADMIN`` pins its admin), or None if there is none. TrustError if it fails."""
        path = trust_path()
        try:
            st = path.stat()
            stamp: Any = ("file", str(path), st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = ("store", str(path), os.environ.get(ENV_TRUST_ADMIN))
        if self._trust is not None and self._trust[0] == stamp:
            return self._trust[1]
        if stamp[0] == "file":
            tl = TrustList.read(path)
        elif os.environ.get(ENV_TRUST_ADMIN):
            try:
                raw = self.store.read(STORE_TRUST_KEY)
            except FileNotFoundError:
                raise TrustError(f"${ENV_TRUST_ADMIN} is set but there is no trust list at {path} nor a published "
                                 f"one in {self.store.url} ({STORE_TRUST_KEY}); the admin runs `fabric keys publish`"
                                 ) from None
            tl = TrustList.parse(raw, f"{STORE_TRUST_KEY} in {self.store.url}", os.environ[ENV_TRUST_ADMIN])
        else:
            tl = None
        if stamp[0] == "file" or tl is not None:  # a missing list is looked for again next time
            self._trust = (stamp, tl)
        return tl

    def adopt(self, signer: Signer) -> TrustList | None:
        """Called when ``signer`` is about to sign: on first use with no trust list (and no pinned admin)
        it becomes the admin of a new local one; a retired or revoked key is refused; a key the list
        does not name signs with a warning (its records are refused until an admin trusts it)."""
        tl = self.trust_list()
        if tl is None and not os.environ.get(ENV_TRUST_ADMIN):
            tl = TrustList.bootstrap(signer)
            self._trust = None
        if tl is None:
            return None
        st = tl.status(signer.key_id)
        if st in ("revoked", "retired"):
            raise SignatureError(f"signing key {signer.key_id} ({signer.path}) is {st} in {tl.source}; it signs "
                                 "nothing new: use `fabric keys rotate` for a new key")
        if st == "untrusted" and signer.key_id not in self._warned:
            self._warned.add(signer.key_id)
            warnings.warn(f"signing key {signer.key_id} is not in the trust list {tl.source}: its records will be "
                          f"refused until the admin ({tl.admin}) runs `fabric keys trust {signer.key_id}`", stacklevel=3)
        return tl

    # -- public keys ---------------------------------------------------------------------------
    def register(self, signer: Signer) -> None:
        """Publish the signer's public key (idempotent; the file name is derived from the key)."""
        self.publish_public(signer.public)

    def publish_public(self, public: Ed25519PublicKey) -> str:
        key_id = key_id_of(public)
        key = f"keys/{key_id}.pub"
        if not self.store.exists(key):
            self.store.write(key, public.public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
        self._cache[key_id] = public
        return key_id

    def store_key_ids(self) -> list[str]:
        """Ids of the public keys present in the store's ``keys/`` (trusted or not)."""
        names = (k.rsplit("/", 1)[-1] for k in self.store.list("keys"))
        return sorted(n[:-4] for n in names if n.endswith(".pub") and is_key_id(n[:-4]))

    def public_key(self, key_id: str) -> Ed25519PublicKey:
        if key_id in self._cache:
            return self._cache[key_id]
        if not is_key_id(key_id):
            raise SignatureError(f"malformed key id {key_id!r}")
        try:
            pem = self.store.read(f"keys/{key_id}.pub")
        except FileNotFoundError:
            raise SignatureError(f"signed by key {key_id}, which is not in the store's keyring (keys/)") from None
        pub = load_public_pem(pem, f"keyring entry keys/{key_id}.pub")
        if key_id_of(pub) != key_id:
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
        if not is_key_id(key_id):
            raise SignatureError(f"malformed key id {key_id!r:.40}")
        tl = self.trust_list()
        if tl is not None and key_id in tl.revoked:
            raise SignatureError(f"signed by key {key_id}, which is revoked (trust list {tl.source})")
        if self.trusted is not None and key_id not in self.trusted:
            raise SignatureError(f"signed by key {key_id}, which is not a trusted key ({ENV_TRUSTED})")
        public = self.public_key(key_id)
        if tl is None and self.trusted is None:
            raise SignatureError(f"signed by key {key_id}, but there is no trust list ({trust_path()}); this host "
                                 f"has signed nothing yet: get the admin's list or set {ENV_TRUSTED}")
        if tl is not None and not tl.accepts(key_id):
            raise SignatureError(f"signed by key {key_id}, which is not in the trust list {tl.source} (an admin "
                                 f"can run `fabric keys trust {key_id}`)")
        _verify_sig(public, key_id, domain, payload, signature)
        return key_id


# -- detached signatures over admin documents (e.g. the quota policy) -------------------------------
DOC_SIG_FORMAT = "fabric-docsig/v1"


def signature_path(path: str | os.PathLike[str]) -> Path:
    """Where a document's detached signature lives: ``<path>.sig`` beside it."""
    p = Path(path)
    return p.with_name(p.name + ".sig")


def sign_document(path: str | os.PathLike[str], admin: Signer, purpose: str) -> Path:
    """Sign the file's exact bytes for ``purpose`` with ``admin`` (which must be the trust list's admin);
    writes and returns :func:`signature_path`."""
    p = Path(path)
    body = {"format": DOC_SIG_FORMAT, "purpose": purpose, "file": p.name,
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
    body["signature"] = admin.sign("document", body)
    out = signature_path(p)
    _write_atomic(out, json.dumps(body, sort_keys=True, indent=1).encode() + b"\n", exclusive=False)
    out.chmod(0o644)  # a signature is public
    return out


def verify_document(path: str | os.PathLike[str], purpose: str, trust: TrustList | None = None,
                    data: bytes | None = None) -> str:
    """Check ``<path>.sig`` against the file's bytes (or ``data``, the bytes the caller already read and
    will use, so the checked and the used content are the same) and the trust list's admin key (not just
    any trusted key: admin documents are the admin's); returns the admin key id. SignatureError naming
    what fails."""
    p = Path(path)
    sp = signature_path(p)
    what = f"{purpose} {p} refused"
    tl = trust if trust is not None else TrustList.read(trust_path())
    if tl is None:
        raise SignatureError(f"{what}: there is no trust list ({trust_path()}) to check its signature against")
    try:
        raw = sp.read_bytes()
    except OSError:
        raise SignatureError(f"{what}: unsigned (no {sp.name}; the admin runs `fabric keys sign-policy {p}`)") from None
    d, sig = split_signed(raw, DOC_SIG_FORMAT, f"{what}: {sp.name}", SignatureError)
    if d.get("purpose") != purpose:
        raise SignatureError(f"{what}: {sp.name} signs a {d.get('purpose')!r} document, not a {purpose!r}")
    key = sig.get("key") if isinstance(sig, dict) else None
    if key != tl.admin:
        raise SignatureError(f"{what}: signed by key {key}, not by the trust list's admin {tl.admin}")
    pub = load_public_pem(tl.admin_public.encode(), "the trust list's admin key")
    _verify_sig(pub, tl.admin, "document", d, sig)
    if data is None:
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise SignatureError(f"{what}: cannot read it ({exc.strerror or exc})") from None
    if hashlib.sha256(data).hexdigest() != d.get("sha256"):
        raise SignatureError(f"{what}: its content does not match {sp.name} (changed after the admin signed it)")
    return tl.admin
