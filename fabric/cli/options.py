"""Options and error exits shared by every ``fabric`` sub-command (core, tune, serve, dashboard).

Why: the ``--store``/``--tenant``/``--address`` flags and the one-line error exit were written into
each room's parser; one definition keeps their flags, defaults and help texts, and the error line
format, the same everywhere. The exit code is always the caller's: each command documents its own
(``2`` bad input, ``3`` a gate or trigger, ``4`` a missing or failing artifact, ``1`` anything else).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["STORE_HELP", "TENANT_HELP", "ADDRESS_HELP", "fail", "add_store_option", "add_tenant_option",
           "add_address_option"]

STORE_HELP = "artifact store (default $FABRIC_STORE or ./.fabric/store)"
TENANT_HELP = "registry namespace (default $FABRIC_TENANT, else the default tenant)"
ADDRESS_HELP = "Ray cluster address (default $RAY_ADDRESS, else a local fabric)"


def fail(msg: object, code: int) -> int:
    """Print ``fabric: error: MSG`` as one line on stderr (line breaks in ``msg`` become ``"; "``)
    and return ``code``, for ``return fail(...)`` from a command."""
    line = "; ".join(part.strip() for part in str(msg).splitlines() if part.strip())
    print(f"fabric: error: {line}", file=sys.stderr)
    return code


def add_store_option(p: argparse.ArgumentParser, help: str = STORE_HELP) -> None:
    """``--store URL``: the artifact store (a directory or an fsspec URL); default ``None`` = the
    store's own default (``$FABRIC_STORE`` or ``./.fabric/store``)."""
    p.add_argument("--store", metavar="URL", help=help)


def add_tenant_option(p: argparse.ArgumentParser, help: str = TENANT_HELP) -> None:
    """``--tenant``: the registry namespace; default ``None`` = ``$FABRIC_TENANT`` or the default tenant."""
    p.add_argument("--tenant", help=help)


def add_address_option(p: argparse.ArgumentParser, help: str = ADDRESS_HELP) -> None:
    """``--address``: the Ray cluster to join; default ``None`` = ``$RAY_ADDRESS`` or a local fabric."""
    p.add_argument("--address", help=help)
