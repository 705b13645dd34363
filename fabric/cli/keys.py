"""``fabric keys``: this host's signing key and the trust list that says whose records are accepted.

Why a command: trust must be explicit (a key dropped into a store's ``keys/`` is not trusted by being
there), so adding, rotating and revoking signers has to be a deliberate, visible act of the admin.

Exit codes: 0 ok; 2 bad input (malformed key id, unreadable public key file, trusting a revoked key,
revoking the admin key); 3 not allowed (this host's key is not the trust list's admin, or the trust
list fails its admin signature).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from fabric.cli.options import STORE_HELP, add_store_option, fail
from fabric.store.signing import (
    ENV_TRUST_ADMIN,
    ENV_TRUSTED,
    STORE_TRUST_KEY,
    SignatureError,
    Signer,
    TrustList,
    is_key_id,
    key_id_of,
    load_public_pem,
    sign_document,
    signing_key_path,
    trust_path,
    verify_document,
)

__all__ = ["add_parser", "main", "POLICY_PURPOSE"]

POLICY_PURPOSE = "quota-policy"  # the same purpose actors.cluster.policy checks (fabric does not import actors)

EPILOG = """examples:
  fabric keys show                          this host's key id, the admin, trusted / retired / revoked ids
  fabric keys show --store s3://b/store     ... and every public key in that store with its status
  fabric keys export-public --out me.pub    hand this host's public key to the admin
  fabric keys trust me.pub --store URL      (admin) trust a worker's key and publish it to the store
  fabric keys trust 3f2a...e1               (admin) trust a key id already in the store's keyring
  fabric keys revoke 3f2a...e1              (admin) refuse that key's records, old and new
  fabric keys rotate                        new key for this host; the old one signs nothing more
  fabric keys publish --store URL           (admin) copy the trust list into the store for cluster workers
  fabric keys sign-policy policy.yaml       (admin) sign the quota policy: writes policy.yaml.sig beside it
  fabric keys verify-policy policy.yaml     check that signature against the trust list's admin key

files: the key is $FABRIC_SIGNING_KEY or $FABRIC_HOME/keys/signing-ed25519.pem; the trust list is
$FABRIC_TRUST or $FABRIC_HOME/trust.json ($FABRIC_HOME: $XDG_CONFIG_HOME/fabric or ~/.config/fabric).
The first key used on a host with no trust list becomes its admin. Rotation retires the old key: its
existing records stay valid (so a routine rotation does not invalidate the registry) until it is
revoked; revoke a key that may have leaked."""


class _Refused(Exception):
    """Carries a one-line message and an exit code to :func:`main`."""

    def __init__(self, msg: str, code: int) -> None:
        super().__init__(msg)
        self.code = code


def add_parser(sub: Any) -> None:
    p = sub.add_parser("keys", help="show, trust, revoke and rotate signing keys (the trust list)",
                       description="Manage this host's Ed25519 signing key and the admin-signed trust list. A "
                       "record is accepted only if the trust list names its signer and has not revoked it.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ks = p.add_subparsers(dest="kcmd", metavar="ACTION")
    ks.required = True
    q = ks.add_parser("show", help="this host's key id, the admin and the trusted, retired and revoked ids")
    add_store_option(q, "also list the public keys in this artifact store (a URL as for $FABRIC_STORE; no store is "
                     "looked at unless given) with their trust status")
    q.add_argument("--json", action="store_true")
    q = ks.add_parser("trust", help="(admin) trust a key by id or public key file",
                      description="Add a key to the trust list (signed by this host's admin key).")
    q.add_argument("key", metavar="KEY_ID|PUBFILE", help="32-hex key id, or a PEM public key file (fabric keys export-public)")
    add_store_option(q, "also publish the PUBFILE's key to this store's keyring (a URL as for $FABRIC_STORE; none "
                     "unless given)")
    q = ks.add_parser("revoke", help="(admin) refuse every record of a key, existing and new (final)")
    q.add_argument("key", metavar="KEY_ID|PUBFILE")
    q = ks.add_parser("rotate", help="make a new key for this host; the old one is retired",
                      description="Replace this host's signing key. The old private key is deleted; its existing "
                      "records stay valid (it is 'retired') until an admin revokes it. On the admin host the "
                      "trust list is handed to the new key.")
    add_store_option(q, "also publish the new public key to this store's keyring (a URL as for $FABRIC_STORE; none "
                     "unless given)")
    q = ks.add_parser("export-public", help="print (or write) this host's public key, creating the key if needed")
    q.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    q = ks.add_parser("sign-policy", help="(admin) sign a quota policy file (writes FILE.sig)",
                      description="Sign the exact bytes of a quota policy file (FABRIC_QUOTA_POLICY) with the trust "
                      "list's admin key; the scheduler refuses a policy whose FILE.sig does not verify, and with "
                      "FABRIC_QUOTA_POLICY_SIGNED=1 one without FILE.sig.")
    q.add_argument("file", metavar="FILE")
    q = ks.add_parser("verify-policy", help="check a quota policy file's FILE.sig against the trust list's admin")
    q.add_argument("file", metavar="FILE")
    q = ks.add_parser("publish", help="(admin) copy the signed trust list into a store for cluster workers",
                      description=f"Write the trust list to <store>/{STORE_TRUST_KEY}. Workers with no local trust "
                      f"list read it when ${ENV_TRUST_ADMIN} pins the admin key id.")
    add_store_option(q, STORE_HELP)


# -- helpers ---------------------------------------------------------------------------------------
def _store(url: str | None) -> Any:
    from fabric.store.backend import Store

    try:
        return Store(url)
    except (ValueError, OSError, ImportError) as exc:
        raise _Refused(f"store {url!r}: {exc}", 2) from None


def _trust() -> TrustList | None:
    try:
        return TrustList.read(trust_path())
    except SignatureError as exc:
        raise _Refused(str(exc), 3) from None


def _local_signer() -> Signer:
    """This host's key (created on first use); the first key with no trust list becomes its admin."""
    signer = Signer.load_or_create(signing_key_path())
    if _trust() is None and not os.environ.get(ENV_TRUST_ADMIN):
        TrustList.bootstrap(signer)
    return signer


def _as_admin() -> tuple[Signer, TrustList]:
    signer = _local_signer()
    tl = _trust()
    if tl is None:
        raise _Refused(f"no local trust list at {trust_path()} (this host follows a published one, "
                       f"${ENV_TRUST_ADMIN}); run this on the admin host", 3)
    if tl.admin != signer.key_id:
        raise _Refused(f"this host's key {signer.key_id} is not the trust list's admin ({tl.admin}); run this on "
                       "the admin host", 3)
    return signer, tl


def _key_arg(arg: str) -> tuple[str, Any]:
    """``(key_id, public key or None)`` from a key id or a PEM public key file."""
    if is_key_id(arg.strip().lower()):
        return arg.strip().lower(), None
    p = Path(arg).expanduser()
    if not p.is_file():
        raise _Refused(f"{arg!r} is neither a key id (32 hex characters) nor a readable public key file", 2)
    try:
        pub = load_public_pem(p.read_bytes(), str(p))
    except (SignatureError, OSError) as exc:
        raise _Refused(str(exc), 2) from None
    return key_id_of(pub), pub


# -- commands --------------------------------------------------------------------------------------
def _show(a: argparse.Namespace) -> int:
    kp = signing_key_path()
    mine = Signer.load(kp).key_id if kp.exists() else None  # showing never creates a key
    tl = _trust()
    doc: dict[str, Any] = {"key_path": str(kp), "key_id": mine, "trust_list": str(trust_path()),
                           "admin": tl.admin if tl else None, "serial": tl.serial if tl else None,
                           "trusted": sorted(tl.trusted) if tl else [], "retired": sorted(tl.retired) if tl else [],
                           "revoked": sorted(tl.revoked) if tl else [],
                           "pinned": os.environ.get(ENV_TRUSTED) or None, "pinned_admin": os.environ.get(ENV_TRUST_ADMIN)}
    if a.store:
        from fabric.store.signing import Keyring

        ring = Keyring(_store(a.store))
        doc["store_keys"] = {k: (tl.status(k) if tl else "untrusted") for k in ring.store_key_ids()}
    if a.json:
        print(json.dumps(doc, indent=1))
        return 0
    print(f"this host's key: {mine or 'none yet (made on first write)'}  ({kp})")
    if tl is None:
        print(f"trust list:      none at {trust_path()} (the first key used here becomes admin)")
    else:
        print(f"trust list:      {trust_path()} (serial {tl.serial}, signature ok)")
        print(f"admin:           {tl.admin}" + ("  (this host)" if tl.admin == mine else ""))
        for name in ("trusted", "retired", "revoked"):
            ids = sorted(getattr(tl, name))
            print(f"{name + ':':<16} {', '.join(ids) if ids else '-'}")
    if doc["pinned"]:
        print(f"extra pin:       {ENV_TRUSTED}={doc['pinned']}")
    for k, st in doc.get("store_keys", {}).items():
        print(f"store key {k}: {st}")
    return 0


def _trust_cmd(a: argparse.Namespace) -> int:
    key_id, pub = _key_arg(a.key)
    if a.store and pub is None:
        raise _Refused("--store publishes a public key file: give PUBFILE, not a key id", 2)
    signer, tl = _as_admin()
    if key_id in tl.revoked:
        raise _Refused(f"key {key_id} is revoked, and revocation is final: its owner runs `fabric keys rotate` and "
                       "you trust the new key", 2)
    if pub is not None and a.store:
        from fabric.store.signing import Keyring

        Keyring(_store(a.store)).publish_public(pub)
    if key_id in tl.trusted:
        print(f"key {key_id} is already trusted")
        return 0
    tl.retired.discard(key_id)
    tl.trusted.add(key_id)
    path = tl.save(signer)
    print(f"trusted key {key_id} (trust list {path}, serial {tl.serial})")
    return 0


def _revoke(a: argparse.Namespace) -> int:
    key_id, _ = _key_arg(a.key)
    signer, tl = _as_admin()
    if key_id == tl.admin:
        raise _Refused(f"key {key_id} is the admin key: rotate it first (`fabric keys rotate`), then revoke the old id",
                       2)
    if key_id in tl.revoked:
        print(f"key {key_id} is already revoked")
        return 0
    tl.trusted.discard(key_id)
    tl.retired.discard(key_id)
    tl.revoked.add(key_id)
    path = tl.save(signer)
    print(f"revoked key {key_id}: its records are refused from now on (trust list {path}, serial {tl.serial}); "
          "republish the list to clusters that read it from a store")
    return 0


def _rotate(a: argparse.Namespace) -> int:
    tl = _trust()
    admin_host = tl is not None and signing_key_path().exists() and Signer.load(signing_key_path()).key_id == tl.admin
    pending = signing_key_path().with_name(signing_key_path().name + ".next")
    if tl is not None and not admin_host and pending.exists() and Signer.load(pending).key_id == tl.admin:
        admin_host = True  # finishing a rotation that was cut short after the trust list changed hands

    def commit(old: Signer | None, new: Signer) -> None:
        if admin_host and tl is not None and tl.admin != new.key_id:
            if old is not None:
                tl.trusted.discard(old.key_id)
                tl.retired.add(old.key_id)
            tl.trusted.add(new.key_id)
            tl.admin, tl.admin_public = new.key_id, new.public_pem().decode()
            tl.save(new)
        elif tl is None and not os.environ.get(ENV_TRUST_ADMIN):
            TrustList.bootstrap(new)

    old, new = Signer.rotate(signing_key_path(), commit)
    if a.store:
        from fabric.store.signing import Keyring

        Keyring(_store(a.store)).register(new)
    was = f"; old key {old.key_id} retired (its records stay valid until revoked)" if old else ""
    print(f"new signing key {new.key_id} at {signing_key_path()}{was}")
    if tl is not None and not admin_host:
        print(f"ask the admin ({tl.admin}) to run `fabric keys trust {new.key_id}` (and revoke {old.key_id if old else '-'} "
              "if it may have leaked); until then this host's new records are refused")
    elif admin_host:
        print(f"this host stays admin with the new key: set {ENV_TRUST_ADMIN}={new.key_id} where it is pinned and "
              "republish the trust list (`fabric keys publish`)")
    return 0


def _export(a: argparse.Namespace) -> int:
    pem = _local_signer().public_pem()
    if a.out:
        Path(a.out).expanduser().write_bytes(pem)
        print(f"wrote the public key {key_id_of(load_public_pem(pem, a.out))} to {a.out}")
    else:
        sys.stdout.write(pem.decode())
    return 0


def _publish(a: argparse.Namespace) -> int:
    signer, tl = _as_admin()
    from fabric.store.signing import Keyring

    store = _store(a.store)
    store.write(STORE_TRUST_KEY, tl.signed_bytes(signer))
    Keyring(store).register(signer)
    print(f"published the trust list (serial {tl.serial}) to {store.url}/{STORE_TRUST_KEY}; on workers set "
          f"{ENV_TRUST_ADMIN}={tl.admin}")
    return 0


def _sign_policy(a: argparse.Namespace) -> int:
    import yaml

    p = Path(a.file).expanduser()
    try:
        yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        raise _Refused(f"quota policy {p} is not valid YAML/JSON; not signing it", 2) from None
    signer, _tl = _as_admin()
    out = sign_document(p, signer, POLICY_PURPOSE)
    print(f"signed {p} with admin key {signer.key_id}: {out} (re-sign after every change)")
    return 0


def _verify_policy(a: argparse.Namespace) -> int:
    p = Path(a.file).expanduser()
    key = verify_document(p, POLICY_PURPOSE)
    print(f"{p}: signature ok (admin key {key})")
    return 0


_ACTIONS = {"show": _show, "trust": _trust_cmd, "revoke": _revoke, "rotate": _rotate, "export-public": _export,
            "publish": _publish, "sign-policy": _sign_policy, "verify-policy": _verify_policy}


def main(a: argparse.Namespace) -> int:
    try:
        return _ACTIONS[a.kcmd](a)
    except _Refused as exc:
        return fail(exc, exc.code)
    except SignatureError as exc:
        return fail(exc, 3)
    except OSError as exc:
        return fail(exc, 1)
