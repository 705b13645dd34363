"""``fabric tenants``: the admin issues, lists and revokes tenant credentials.

Why a command: naming a tenant must not be enough to read it. The admin (the host whose key is the
trust list's admin) creates a tenant's secret here, hands it to the tenant, and publishes an
admin-signed entry naming the credential's id in the store; a Registry opened as that tenant without
the matching credential is refused, and the tenant's data is stored encrypted with a key derived from
it (see :mod:`fabric.store.tenants`).

Exit codes: 0 ok; 2 bad input (invalid name, tenant already issued with another credential, unknown
tenant); 3 not allowed (this host is not the admin, or a tenant entry fails its signature).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fabric.cli.keys import _as_admin, _Refused
from fabric.cli.options import STORE_HELP, add_store_option, fail
from fabric.store.backend import Store
from fabric.store.errors import TenantError
from fabric.store.registry import DEFAULT_TENANT
from fabric.store.signing import Keyring, SignatureError
from fabric.store.tenants import (
    ENV_TENANT_KEY,
    TENANT_NAME_RE,
    TenantCredential,
    credential_path,
    find_credential,
    read_tenant_doc,
    store_tenants,
    tenant_doc_key,
    write_tenant_doc,
)

__all__ = ["add_parser", "main"]

EPILOG = f"""examples:
  fabric tenants create lab-a --store s3://b/store            (admin) issue lab-a's credential
  fabric tenants create lab-a --store URL --out lab-a.key     ... written to a file to hand over
  fabric tenants ls --store URL                               tenants, their status and credential ids
  fabric tenants revoke lab-a --store URL                     (admin) refuse lab-a's credential from now on

the tenant then sets {ENV_TENANT_KEY}=<the token or the file's path> (or keeps the file at
$FABRIC_HOME/tenants/<name>.key) and uses `--tenant lab-a`. The secret is never printed and never
stored in the store. The default tenant needs no credential and is not encrypted."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("tenants", help="(admin) issue, list and revoke tenant credentials",
                       description="Tenant credentials: a non-default tenant's artifacts are readable and writable "
                       "only with the credential the admin issues here, and are encrypted at rest with a key "
                       "derived from it.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ts = p.add_subparsers(dest="tcmd", metavar="ACTION")
    ts.required = True
    q = ts.add_parser("create", help="(admin) issue a tenant's credential and publish its entry in the store")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--out", metavar="FILE", help=f"write the credential here (default {credential_path('NAME')})")
    add_store_option(q, STORE_HELP)
    q = ts.add_parser("ls", help="tenants in the store, their status, and whether this host holds a credential")
    q.add_argument("--json", action="store_true")
    add_store_option(q, STORE_HELP)
    q = ts.add_parser("revoke", help="(admin) refuse a tenant's credential from now on")
    q.add_argument("name", metavar="NAME")
    add_store_option(q, STORE_HELP)


def _name(name: str) -> str:
    if name == DEFAULT_TENANT or not TENANT_NAME_RE.match(name):
        raise _Refused(f"tenant {name!r} is invalid: use 1-63 of a-z, 0-9, '_' or '-', starting with a letter or digit, "
                       f"and not {DEFAULT_TENANT!r} (the default tenant needs no credential)", 2)
    return name


def _store(url: str | None) -> Store:
    try:
        return Store(url)
    except (ValueError, OSError, ImportError) as exc:
        raise _Refused(f"store {url!r}: {exc}", 2) from None


def _open_as_admin(a: argparse.Namespace) -> tuple[str, Any, Store, dict[str, Any] | None]:
    """The tenant name, the admin signer, the store and the tenant's verified entry (None if none)."""
    name = _name(a.name)
    signer, _tl = _as_admin()
    store = _store(a.store)
    ring = Keyring(store)
    ring.register(signer)  # readers verify the entry with the admin's public key from the store's keyring
    return name, signer, store, read_tenant_doc(store, ring, name)


def _create(a: argparse.Namespace) -> int:
    name, signer, store, doc = _open_as_admin(a)
    out = Path(a.out).expanduser() if a.out else None
    cred = find_credential(name, out) if out is not None and out.exists() else find_credential(name)
    if doc is not None and doc["status"] == "revoked":
        raise _Refused(f"tenant {name!r} is revoked in {store.url}; its data stays encrypted under the revoked "
                       "credential: use a new tenant name", 2)
    if doc is not None and (cred is None or cred.credential_id != doc["credential"]):
        raise _Refused(f"tenant {name!r} already has a credential (id {doc['credential']}) in {store.url}, and this "
                       "host holds another or none: revoke it first, or run this where that credential is", 2)
    if cred is None:
        cred = TenantCredential.generate(name)
    serial = int(doc.get("serial", 1)) + 1 if doc is not None else 1
    write_tenant_doc(store, signer, cred.credential_id, name, serial=serial)
    path = cred.save(out)
    print(f"tenant {name!r}: credential {cred.credential_id} saved to {path} (mode 0600; not printed); entry "
          f"{tenant_doc_key(name)} in {store.url} signed by admin {signer.key_id}. Hand the file to the tenant, who "
          f"sets {ENV_TENANT_KEY}=<its path or content>")
    return 0


def _ls(a: argparse.Namespace) -> int:
    store = _store(a.store)
    ring = Keyring(store)
    rows = []
    for name in store_tenants(store):
        row: dict[str, Any] = {"tenant": name, "status": None, "credential": None, "local": None, "error": None}
        try:
            doc = read_tenant_doc(store, ring, name)
            assert doc is not None
            row.update(status=doc["status"], credential=doc["credential"])
            cred = find_credential(name)
            row["local"] = None if cred is None else ("match" if cred.credential_id == doc["credential"] else "other")
        except TenantError as exc:
            row.update(status="refused", error=str(exc))
        rows.append(row)
    if a.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            local = {"match": "held here", "other": "a different one held here", None: "not held here"}[r["local"]]
            print(f"{r['tenant']:<20} {r['status']:<8} {r['credential'] or '-'}  ({r['error'] or local})")
        print(f"{len(rows)} tenants in {store.url}")
    return 3 if any(r["status"] == "refused" for r in rows) else 0


def _revoke(a: argparse.Namespace) -> int:
    name, signer, store, doc = _open_as_admin(a)
    if doc is None:
        raise _Refused(f"tenant {name!r} has no entry in {store.url} (see `fabric tenants ls`)", 2)
    if doc["status"] == "revoked":
        print(f"tenant {name!r} is already revoked")
        return 0
    write_tenant_doc(store, signer, doc["credential"], name, status="revoked", serial=int(doc.get("serial", 1)) + 1)
    print(f"revoked tenant {name!r}'s credential {doc['credential']} in {store.url}: every registry call with it is "
          "refused from now on (the data stays encrypted under it; revocation does not re-encrypt)")
    return 0


_ACTIONS = {"create": _create, "ls": _ls, "revoke": _revoke}


def main(a: argparse.Namespace) -> int:
    try:
        return _ACTIONS[a.tcmd](a)
    except _Refused as exc:
        return fail(exc, exc.code)
    except (TenantError, SignatureError) as exc:
        return fail(exc, 3)
    except OSError as exc:
        return fail(exc, 1)
