"""The admin's quota policy: per-tenant limits and weights the board scheduler applies.

Why: a quota a caller passes to ``DevicePool(quota=...)`` is chosen by the very tenant it limits, so on
its own it limits nobody. The limits that hold come from a file the cluster's admin writes and names
with ``FABRIC_QUOTA_POLICY`` in the environment of the head node (where the scheduler actor runs)::

    default: {max_concurrent: 2, device_seconds: 3600}
    tenants:
      lab-a: {max_concurrent: 4, weight: 2}
      batch: {device_seconds: 600}

YAML or JSON. A field left out (or ``null``) is unlimited; ``weight`` (integer >= 1, default 1) is how
many grants in a row a tenant gets per round of the scheduler's round robin. A tenant not listed gets
``default`` (a listed tenant's entry replaces ``default`` as a whole). A caller may still pass a quota, but only to *lower* its own limits
(:meth:`QuotaPolicy.check_lower`): an attempt to raise one above the policy is refused with
:class:`QuotaRefused`, never silently clipped, so the caller learns which limit holds.

A policy file that cannot be read or has a bad field is a one-line :class:`PolicyError` naming the
field; the scheduler then grants no new ticket until the file is fixed (fail closed: an unreadable
policy must not turn into "unlimited").

Signed policies: whoever can write the file on the head node could otherwise grant itself any quota.
The admin signs the exact file bytes with ``fabric keys sign-policy FILE`` (the trust list's admin key,
see :mod:`fabric.store.signing`), which writes ``FILE.sig`` beside it. With
``FABRIC_QUOTA_POLICY_SIGNED=1`` on the head node an unsigned policy is refused; a ``FILE.sig`` that is
present is always checked. A forged, stale (file changed after signing) or non-admin signature, or a
missing trust list, is a :class:`PolicyError`, so the scheduler grants nothing (fail closed).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fabric.store.signing import SignatureError, signature_path, verify_document

__all__ = ["POLICY_ENV", "POLICY_SIGNED_ENV", "POLICY_PURPOSE", "PolicyError", "QuotaRefused", "TenantLimits",
           "QuotaPolicy", "load_policy", "parse_policy", "PolicyFile", "signature_required"]

POLICY_ENV = "FABRIC_QUOTA_POLICY"
POLICY_SIGNED_ENV = "FABRIC_QUOTA_POLICY_SIGNED"
POLICY_PURPOSE = "quota-policy"  # what `fabric keys sign-policy` signs for; a signature for another use is refused


def signature_required(env: dict[str, str] | None = None) -> bool:
    """Whether ``$FABRIC_QUOTA_POLICY_SIGNED`` asks for a signed policy (1/true/yes)."""
    return (os.environ if env is None else env).get(POLICY_SIGNED_ENV, "").strip().lower() in ("1", "true", "yes")
_FIELDS = ("max_concurrent", "device_seconds", "weight")


class PolicyError(ValueError):
    """The quota policy file is missing, unreadable or has a bad field (one line naming it)."""


class QuotaRefused(PermissionError):
    """A caller asked for a quota above the admin policy's (one line naming tenant, field and value)."""


@dataclass(frozen=True, kw_only=True)
class TenantLimits:
    """One tenant's limits from the policy; ``None`` = unlimited."""

    max_concurrent: int | None = None
    device_seconds: float | None = None
    weight: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _limits(d: Any, where: str) -> TenantLimits:
    """Validate one ``{max_concurrent, device_seconds, weight}`` mapping; errors name ``where.field``."""
    if d is None:
        return TenantLimits()
    if not isinstance(d, dict):
        raise PolicyError(f"{where} must be a mapping of {list(_FIELDS)}, got {type(d).__name__}")
    unknown = sorted(set(map(str, d)) - set(_FIELDS))
    if unknown:
        raise PolicyError(f"{where}.{unknown[0]} is not a policy field (valid: {', '.join(_FIELDS)})")
    mc, ds, w = d.get("max_concurrent"), d.get("device_seconds"), d.get("weight", 1)
    if mc is not None and (not _is_int(mc) or mc < 1):
        raise PolicyError(f"{where}.max_concurrent must be an integer >= 1 or null, got {mc!r}")
    if ds is not None and (not isinstance(ds, int | float) or isinstance(ds, bool) or not math.isfinite(ds)
                           or ds <= 0):
        raise PolicyError(f"{where}.device_seconds must be a finite number > 0 or null, got {ds!r}")
    if not _is_int(w) or w < 1:
        raise PolicyError(f"{where}.weight must be an integer >= 1, got {w!r}")
    return TenantLimits(max_concurrent=mc, device_seconds=None if ds is None else float(ds), weight=w)


@dataclass(frozen=True, kw_only=True)
class QuotaPolicy:
    """Limits per tenant plus the default for unlisted ones; the empty policy limits nobody."""

    tenants: dict[str, TenantLimits] = field(default_factory=dict)
    default: TenantLimits = field(default_factory=TenantLimits)
    source: str = ""  # the file it was read from ("" = no policy configured)

    def limits(self, tenant: str) -> TenantLimits:
        return self.tenants.get(tenant, self.default)

    def check_lower(self, tenant: str, max_concurrent: int | None, device_seconds: float | None) -> None:
        """Raise :class:`QuotaRefused` when a caller's value is above this policy's for ``tenant``."""
        lim = self.limits(tenant)
        src = f"admin policy {self.source}" if self.source else "admin policy"
        for name, asked, cap in (("max_concurrent", max_concurrent, lim.max_concurrent),
                                 ("device_seconds", device_seconds, lim.device_seconds)):
            if asked is not None and cap is not None and asked > cap:
                raise QuotaRefused(f"tenant {tenant!r}: quota.{name}={asked} is above the {src}'s {cap}; a caller "
                                   f"can only lower its own quota (ask the cluster admin to raise it)")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "default": self.default.to_dict(),
                "tenants": {t: v.to_dict() for t, v in sorted(self.tenants.items())}}


def parse_policy(doc: Any, source: str = "") -> QuotaPolicy:
    """A :class:`QuotaPolicy` from a parsed document; :class:`PolicyError` names a bad field."""
    pre = f"quota policy {source}: " if source else "quota policy: "
    try:
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise PolicyError(f"the document must be a mapping with 'tenants' and 'default', got {type(doc).__name__}")
        unknown = sorted(set(map(str, doc)) - {"tenants", "default"})
        if unknown:
            raise PolicyError(f"{unknown[0]} is not a policy key (valid: tenants, default)")
        tenants = doc.get("tenants") or {}
        if not isinstance(tenants, dict):
            raise PolicyError(f"tenants must be a mapping of tenant name to limits, got {type(tenants).__name__}")
        for name in tenants:
            if not isinstance(name, str) or not name:
                raise PolicyError(f"tenants: tenant names must be non-empty strings, got {name!r}")
        return QuotaPolicy(tenants={t: _limits(v, f"tenants.{t}") for t, v in tenants.items()},
                           default=_limits(doc.get("default"), "default"), source=source)
    except PolicyError as exc:
        raise PolicyError(pre + str(exc)) from None


def load_policy(path: str | os.PathLike[str], require_signature: bool = False) -> QuotaPolicy:
    """Read and validate a YAML/JSON policy file (one-line :class:`PolicyError` on any problem).

    Its admin signature (``<path>.sig``) is checked when ``require_signature`` or when the file is
    there; the checked bytes are the parsed bytes."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"quota policy {p}: cannot read it ({type(exc).__name__}: "
                          f"{getattr(exc, 'strerror', None) or exc})") from None
    if require_signature or signature_path(p).exists():
        try:
            verify_document(p, POLICY_PURPOSE, data=raw)
        except SignatureError as exc:
            raise PolicyError(str(exc).replace(f"{POLICY_PURPOSE} {p} refused", f"quota policy {p}: refused", 1)
                              ) from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"quota policy {p}: not valid YAML/JSON{at}") from None
    return parse_policy(doc, str(p))


class PolicyFile:
    """The policy named by ``FABRIC_QUOTA_POLICY`` (or ``path``), re-read when the file changes.

    ``current()`` returns the policy as the file is now: the empty policy when none is configured, and
    :class:`PolicyError` while the file is missing or bad, so the caller can fail closed.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
                 require_signature: bool | None = None) -> None:
        raw = str(path) if path is not None else (os.environ if env is None else env).get(POLICY_ENV, "")
        self.path = Path(raw).expanduser() if raw else None
        self.require_signature = signature_required(env) if require_signature is None else require_signature
        self._stamp: tuple[int, ...] | None = None
        self._policy = QuotaPolicy()

    def current(self) -> QuotaPolicy:
        if self.path is None:
            return self._policy
        try:
            st = self.path.stat()
        except OSError:
            self._stamp = None
            return load_policy(self.path, self.require_signature)  # raises the one-line "cannot read it" error
        try:
            sst = signature_path(self.path).stat()
            sig: tuple[int, ...] = (sst.st_mtime_ns, sst.st_size, sst.st_ino)
        except OSError:
            sig = ()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino, *sig)
        if stamp != self._stamp:
            self._stamp = None  # a policy that fails is checked again on the next call
            self._policy = load_policy(self.path, self.require_signature)
            self._stamp = stamp
        return self._policy
