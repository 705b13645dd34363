"""``fabric dashboard``: launch the Streamlit dashboard (apps/dashboard.py) on loopback, headless."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from fabric.cli.options import add_store_option, add_tenant_option, fail

__all__ = ["add_parser", "main", "streamlit_command"]

APP = Path(__file__).resolve().with_name("dashboard.py")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "dashboard", help="open the Streamlit dashboard: runs, KPIs, devices, AutoML, serving, drift",
        description="Serve the dashboard (Streamlit) that reads the registry and live Serve/actor telemetry: "
        "runs and KPI gates, model lineage and fit reports, cross-device comparison, Pareto fronts, serving "
        "and rollouts, device pools, drift. It binds 127.0.0.1 unless --host says otherwise. Same as "
        "`streamlit run apps/dashboard.py -- --store URL`.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  fabric dashboard                                  local store, http://127.0.0.1:8501\n"
        "  fabric dashboard --store s3://bucket/store --serve-url http://127.0.0.1:8000 --ray-address auto")
    add_store_option(p)
    add_tenant_option(p)
    p.add_argument("--port", type=int, default=8501, help="HTTP port (default 8501)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--serve-url", metavar="URL", help="Ray Serve ingress for live status, e.g. http://127.0.0.1:8000 "
                   "(default $FABRIC_SERVE_URL or the URL `fabric serve deploy` saved in .fabric/serve.json)")
    p.add_argument("--serve-token", metavar="TOKEN", help="Serve admin token for /admin/status (default "
                   "$FABRIC_SERVE_TOKEN or the saved one); passed to the app in its environment, not its arguments")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to read device-pool health from (default: $RAY_ADDRESS; none: no live pools)")


def _saved_serve() -> dict[str, Any]:
    """What `fabric serve deploy` saved (URL and admin token), if anything."""
    try:
        d = json.loads((Path(".fabric") / "serve.json").read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def streamlit_command(a: argparse.Namespace) -> list[str]:
    """The streamlit invocation for these arguments (headless, no usage stats, no file watcher)."""
    from fabric.store.backend import default_store_url

    cmd = [sys.executable, "-m", "streamlit", "run", str(APP), "--server.address", a.host, "--server.port",
           str(a.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--global.developmentMode", "false", "--client.toolbarMode", "minimal", "--",
           "--store", a.store or default_store_url()]
    if a.tenant:
        cmd += ["--tenant", a.tenant]
    serve_url = a.serve_url or os.environ.get("FABRIC_SERVE_URL") or _saved_serve().get("url")
    if serve_url:
        cmd += ["--serve-url", serve_url]
    ray_address = a.ray_address or os.environ.get("RAY_ADDRESS")
    if ray_address:
        cmd += ["--ray-address", ray_address]
    return cmd


def main(a: argparse.Namespace) -> int:
    if not 0 < a.port < 65536:
        return fail(f"--port must be 1-65535, got {a.port}", 2)
    cmd = streamlit_command(a)
    print(f"dashboard on http://{a.host}:{a.port}  (store {cmd[cmd.index('--store') + 1]}; Ctrl-C to stop)", flush=True)
    token = a.serve_token or os.environ.get("FABRIC_SERVE_TOKEN") or _saved_serve().get("token")
    if token:
        os.environ["FABRIC_SERVE_TOKEN"] = token
    # exec: the dashboard process *is* streamlit, so stopping it (Ctrl-C, kill PID) leaves nothing behind
    os.execv(cmd[0], cmd)
    return 0  # not reached
