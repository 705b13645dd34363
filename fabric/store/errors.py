"""Errors shared by the registry and the tenant layer (one module, so neither imports the other's)."""

from __future__ import annotations

__all__ = ["IntegrityError", "TenantError"]


class IntegrityError(RuntimeError):
    """An artifact or its record failed verification (altered, truncated, unsigned, wrong tenant)."""


class TenantError(IntegrityError):
    """A tenant's credential is missing, wrong or revoked, or the tenant is not set up in the store.

    A subclass of :class:`IntegrityError` so every caller that already reports refused artifacts as
    one line (CLI, dashboard, serve) reports a refused credential the same way."""
