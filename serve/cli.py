"""``fabric serve``: deploy registry artifacts behind Ray Serve HTTP, roll out canaries/shadows,
switch blue-green, roll back, and read live KPIs."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from fabric.cli.options import add_address_option, add_store_option, add_tenant_option, fail

__all__ = ["add_parser", "main", "STATE_FILE"]

STATE_FILE = Path(".fabric") / "serve.json"
EPILOG = """examples:
  ray start --head --resources='{"loihi": 2, "akida": 1, "spinnaker": 1, "fpga": 1, "dynapse": 1}'
  fabric serve deploy <deployment-or-program-id> --kind loihi --replicas 2 --address auto
  curl -s localhost:8000/v1/predict -H 'content-type: application/json' -d '{"inputs": [[0.1, ...]]}'
  fabric serve canary <program-id> --kind spinnaker --weight 0.1     rolled back automatically on KPI breach
  fabric serve shadow <program-id> --kind fpga                        copy of traffic, responses discarded
  fabric serve promote v2                                             blue-green switch (v1 stays warm)
  fabric serve rollback                                               candidate out, or back to the last primary
  fabric serve status / snapshot / shutdown

Admin calls send FABRIC_SERVE_TOKEN (or the token `deploy` generated and saved, mode 0600, in
.fabric/serve.json with the URL; it is never printed). --predict-token (or $FABRIC_SERVE_PREDICT_TOKEN)
makes /v1/predict and /v1/feedback answer 401 without `Authorization: Bearer <predict token>`.
Ray's own token auth is left on: give RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH where the cluster uses it. Latency in status: p50_ms/p99_ms = modelled device time per
inference (what the spec's max_latency_*_ms gates); serving_*_ms = measured ingress wall time.
exit codes: 0 ok, 1 server/cluster problem, 2 bad input (one line naming the field)."""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="ingress URL (default $FABRIC_SERVE_URL or the one saved by deploy)")
    p.add_argument("--token", help="admin token (default $FABRIC_SERVE_TOKEN or the one saved by deploy)")
    p.add_argument("--json", action="store_true", help="print the server's JSON answer")


def _deploy_args(p: argparse.ArgumentParser, role: str) -> None:
    p.add_argument("model_id", metavar="MODEL_ID", help="deployment or program artifact id (model/nir ids with --kind)")
    from fabric.kinds import kinds

    p.add_argument("--kind", help=f"device kind ({', '.join(kinds())})")
    p.add_argument("--replicas", type=int, default=1, help="Serve replicas of this version (default 1)")
    p.add_argument("--version", help="version name (default v1, v2, ...)")
    p.add_argument("--placement", choices=("auto", "pool", "replica", "ingress"), default="auto",
                   help="pool: batches run on the shared device actors; replica: runtime in the replica, which "
                        "claims a share of the device resource; ingress: runtime inside the ingress (fewest hops; "
                        "kinds without a device resource only); auto (default): ingress for kinds without a device "
                        "resource and 1 replica, replica for them with more, pool otherwise")
    p.add_argument("--slo-p99-ms", type=float, help="serving-latency objective: past it, requests spill to --overflow "
                   "kinds (default: the spec's serve section)")
    p.add_argument("--overflow", help="comma-separated kinds to spill to, in order (those with a compiled program)")
    p.add_argument("--sleep-after-s", type=float, help="idle seconds before a board goes to its modelled sleep state")
    if role == "canary":
        p.add_argument("--weight", type=float, default=0.1, help="share of traffic, 0 <= w < 1 (default 0.1)")
    if role in ("canary", "shadow"):
        p.add_argument("--min-requests", type=int, help="requests before the candidate is judged (default 20)")
    _common(p)


def add_parser(sub: Any) -> None:
    """Register ``fabric serve`` and its actions."""
    p = sub.add_parser("serve", help="HTTP inference on device runtimes with canary/shadow/blue-green and rollback",
                       description="Serve registry artifacts with Ray Serve on 127.0.0.1: FastAPI ingress (OpenAPI at "
                       "/docs), dynamic batching, live KPIs compared with the spec's thresholds, automatic "
                       "rollback, every rollout step stored as a signed 'rollout' artifact.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ss = p.add_subparsers(dest="scmd", metavar="ACTION")
    ss.required = True
    q = ss.add_parser("deploy", help="start serving (ingress + first/next primary version)",
                      description="Start Serve and the ingress if needed, then deploy MODEL_ID as the primary.")
    _deploy_args(q, "primary")
    q.add_argument("--port", type=int, help="HTTP port on 127.0.0.1 (default 8000, or a free port if taken)")
    add_address_option(q, "Ray cluster (default $RAY_ADDRESS; without one a local fabric runs until Ctrl-C)")
    add_store_option(q)
    add_tenant_option(q, "registry tenant (default $FABRIC_TENANT)")
    q.add_argument("--app", default="fabric", help="application name (default fabric)")
    q.add_argument("--gate-predict", action="store_true", help="predict and feedback also require the token")
    q.add_argument("--predict-token", action="store_true",
                   help="predict and feedback require a predict token ($FABRIC_SERVE_PREDICT_TOKEN, else generated "
                        "and saved with the admin token); off by default")
    q = ss.add_parser("canary", help="deploy MODEL_ID as a canary with a traffic weight")
    _deploy_args(q, "canary")
    q = ss.add_parser("shadow", help="deploy MODEL_ID as a shadow (gets a copy of traffic)")
    _deploy_args(q, "shadow")
    q = ss.add_parser("promote", help="blue-green: make VERSION the primary (old primary kept as standby)")
    q.add_argument("version", metavar="VERSION")
    _common(q)
    q = ss.add_parser("traffic", help="set VERSION's canary weight")
    q.add_argument("version", metavar="VERSION")
    q.add_argument("--weight", type=float, required=True)
    _common(q)
    q = ss.add_parser("rollback", help="take the canary/shadow out, or switch back to the previous primary")
    q.add_argument("version", metavar="VERSION", nargs="?")
    q.add_argument("--reason", default="manual (cli)")
    _common(q)
    q = ss.add_parser("status", help="versions, roles, weights and live KPIs")
    _common(q)
    q = ss.add_parser("snapshot", help="store the last 512 encoded inputs of VERSION (default primary)")
    q.add_argument("version", metavar="VERSION", nargs="?")
    _common(q)
    q = ss.add_parser("autopilot", help="closed retrain loop: drift/KPI/feedback trigger -> retrain on Ray -> "
                      "canary -> promote or roll back; --history prints the loop's stored events",
                      description="Watch app NAME; when the drift test on recent inputs, a live KPI breach or "
                      "labelled-feedback accuracy below the gate asks for it, retrain (a Ray task running the stage "
                      "library on the training split + /v1/feedback samples), deploy the result as a canary and "
                      "promote it or roll it back. Every step is a signed artifact with lineage.")
    from fabric.cli.autopilot import add_arguments as autopilot_arguments

    autopilot_arguments(q)
    q = ss.add_parser("shutdown", help="stop every Serve application on the cluster")
    add_address_option(q, "Ray cluster (default $RAY_ADDRESS)")


def _saved() -> dict[str, Any]:
    try:
        return json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        return {}


def _save(state: dict[str, Any]) -> None:
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(STATE_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state, f, indent=1)


def _serve_fields(a: argparse.Namespace) -> dict[str, Any]:
    """``--slo-p99-ms/--overflow/--sleep-after-s`` -> the deploy request's ``serve`` field ({} if none given;
    the server validates it)."""
    out: dict[str, Any] = {}
    slo, over, sleep = (getattr(a, k, None) for k in ("slo_p99_ms", "overflow", "sleep_after_s"))
    if slo is not None:
        out["slo_p99_ms"] = slo
    if over:
        out["overflow"] = [k.strip() for k in over.split(",") if k.strip()]
    if sleep is not None:
        out["sleep_after_s"] = sleep
    return {"serve": out} if out else {}


def _client(a: argparse.Namespace) -> Any:
    from serve._private.client import ServeClient

    saved = _saved()
    url = a.url or os.environ.get("FABRIC_SERVE_URL") or saved.get("url")
    token = a.token or os.environ.get("FABRIC_SERVE_TOKEN") or saved.get("token")
    if not url:
        raise SystemExit(fail("no server: run `fabric serve deploy` first or give --url", 2))
    return ServeClient(url, token)


def _port(preferred: int | None) -> int:
    for port in ([preferred] if preferred else [8000, 0]):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                if preferred:
                    raise SystemExit(fail(f"--port: 127.0.0.1:{port} is in use", 2)) from None
                continue
            return s.getsockname()[1]
    raise SystemExit(fail("no free port on 127.0.0.1", 2))


def _print(a: argparse.Namespace, body: Any, line: str) -> None:
    print(json.dumps(body, indent=1, default=str) if getattr(a, "json", False) else line)


def _status_table(st: dict[str, Any]) -> str:
    def f(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    head = (f"{'version':<9}{'role':<12}{'weight':>7} {'kind':<10}{'requests':>9}{'err':>7}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'serve p99':>10}{'mJ/inf':>10}{'acc(fb)':>8}  model")
    rows = [f"app {st['app']}", head, "-" * len(head)]
    for d in st["deployments"]:
        rows.append(f"{d['version']:<9}{d['role']:<12}{d['weight']:>7.2f} {d['kind']:<10}{d['requests']:>9}"
                    f"{d['error_rate']:>7.3f}{f(d['p50_ms'], '.4f'):>9}{f(d['p99_ms'], '.4f'):>9}"
                    f"{f(d['serving_p99_ms'], '.2f'):>10}{f(d['energy_mj_per_inference'], '.5f'):>10}"
                    f"{f(d['accuracy_feedback'], '.3f'):>8}  {d['model_id'][:12]}")
        rows += [f"    breach: {b}" for b in d["breaches"]]
    rows.append(st["latency_definition"])
    rows += [f"step {s['step']}: {s['action']} {s.get('from_version')} -> {s.get('to_version')} "
             f"{s.get('reason') or ''}".rstrip() for s in st["steps"][-10:]]
    return "\n".join(rows)


def _deploy(a: argparse.Namespace) -> int:
    from fabric.connect import connect
    from fabric.store.backend import default_store_url
    from serve._private.client import ServeClient

    address = a.address or os.environ.get("RAY_ADDRESS")
    connect(address)  # Ray's token auth stays as the cluster has it (RAY_AUTH_TOKEN[_PATH] / ~/.ray/auth_token)
    from ray import serve

    saved = _saved()
    running = a.app in serve.status().applications
    token = a.token or os.environ.get("FABRIC_SERVE_TOKEN") or (saved.get("token") if running else None)
    generated = token is None
    token = token or secrets.token_urlsafe(24)
    predict_token = os.environ.get("FABRIC_SERVE_PREDICT_TOKEN") or (saved.get("predict_token") if running else None)
    if getattr(a, "predict_token", False) and not predict_token:
        predict_token = secrets.token_urlsafe(24)
    if running:
        url = a.url or saved.get("url")
        if not url:
            return fail(f"app {a.app!r} is already running but its URL is unknown: give --url", 2)
    else:
        from serve._private.factory import start_ingress

        store = os.path.abspath(a.store) if a.store and "://" not in a.store else (a.store or default_store_url())
        url = start_ingress(app=a.app, store=store, tenant=a.tenant, token=token, port=_port(a.port),
                            gate_predict=a.gate_predict, predict_token=predict_token)
    state = {"url": url, "token": token, "app": a.app, "address": address}
    if predict_token:
        state["predict_token"] = predict_token
    _save(state)
    c = ServeClient(url, token)
    body = c.deploy(a.model_id, kind=a.kind, replicas=a.replicas, role="primary", version=a.version,
                    placement=a.placement, **_serve_fields(a))
    _print(a, body, f"serving {body['version']} ({body['kind']}, {a.replicas} replica(s)) at {url}  "
                    f"[/v1/predict, /docs, /metrics]")
    if generated:  # the token itself never goes to stdout (logs, CI output, shell scrollback)
        print(f"admin token saved to {STATE_FILE.resolve()} (mode 0600, key 'token')")
    if predict_token:
        print(f"predict token required on /v1/predict: saved to {STATE_FILE.resolve()} (mode 0600, key 'predict_token')")
    if not address:
        import time

        print("local fabric: serving until Ctrl-C")
        while True:
            time.sleep(3600)
    return 0


def main(a: argparse.Namespace) -> int:
    """Run one ``fabric serve`` action; HTTP 4xx answers exit 2 with the server's one-line reason."""
    from serve._private.client import ServeHTTPError

    try:
        if a.scmd == "deploy":
            return _deploy(a)
        if a.scmd == "autopilot":
            from fabric.cli.autopilot import main as autopilot_main

            return autopilot_main(a)
        if a.scmd == "shutdown":
            from fabric.connect import connect

            address = a.address or os.environ.get("RAY_ADDRESS") or _saved().get("address")
            if not address:
                return fail("--address: no cluster given (a local `fabric serve deploy` stops with Ctrl-C)", 2)
            connect(address)
            from ray import serve

            serve.shutdown()
            STATE_FILE.unlink(missing_ok=True)
            print("serve: every application stopped")
            return 0
        c = _client(a)
        if a.scmd in ("canary", "shadow"):
            kw: dict[str, Any] = {"kind": a.kind, "replicas": a.replicas, "role": a.scmd, "version": a.version,
                                  "placement": a.placement, **_serve_fields(a)}
            if a.scmd == "canary":
                kw["weight"] = a.weight
            if a.min_requests:
                kw["policy"] = {"min_requests": a.min_requests}
            b = c.deploy(a.model_id, **kw)
            _print(a, b, f"{b['version']} deployed as {b['role']} (weight {b['weight']:.2f}, kind {b['kind']}); "
                         f"KPI gates {b['kpis'] or '(none in the spec)'}")
        elif a.scmd == "promote":
            b = c.traffic(a.version, "primary")
            _print(a, b, f"step {b['step']}: {a.version} is primary; {b['from_version']} kept as standby")
        elif a.scmd == "traffic":
            b = c.traffic(a.version, "canary", a.weight)
            _print(a, b, f"step {b['step']}: weights {b['weights']}")
        elif a.scmd == "rollback":
            b = c.rollback(a.version, a.reason)
            _print(a, b, f"step {b['step']}: rolled back {b['from_version']} -> {b['to_version']}")
        elif a.scmd == "status":
            b = c.status()
            _print(a, b, _status_table(b))
        elif a.scmd == "snapshot":
            b = c.snapshot(a.version)
            _print(a, b, f"served-inputs {b['artifact'][:12]}: {b['samples']} samples {b['shape']} of {b['version']}")
        return 0
    except ServeHTTPError as exc:
        return fail(exc.message, 2 if exc.status < 500 else 1)
    except OSError as exc:
        return fail(f"cannot reach the server: {exc}", 1)
    except Exception as exc:  # httpx transport errors and Ray connection failures: one line, no traceback
        if type(exc).__module__.startswith("httpx"):
            return fail(f"cannot reach the server: {exc}", 1)
        raise
