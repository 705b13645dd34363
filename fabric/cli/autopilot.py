"""``fabric serve autopilot NAME``: the closed retrain loop on a served app, and its history.

Thin driver around the pure state machine :class:`fabric.flow.autopilot.Autopilot`: it gathers the
evidence over the serving API (live KPIs, a served-inputs snapshot and the drift test on it), runs the
retrain (:func:`fabric.flow.retrain.retrain`) as a Ray task, deploys the result as a canary through
``/admin/deploy`` (so the existing rollout policy and monitor judge it), then promotes or rolls back.
Every event the machine emits is stored as a signed ``report`` artifact named ``NAME/autopilot/...``
whose parents are the previous event and the artifacts it names (drift report, feedback, retrain set,
model, program, deployment, rollout step), so ``--history`` and the registry lineage show the loop.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from fabric.cli.options import add_address_option, add_store_option, add_tenant_option, fail

__all__ = ["add_arguments", "main", "run_cycle", "history", "format_history", "EVENT_PREFIX"]

EVENT_PREFIX = "autopilot"  # event artifacts: report kind, name "<app>/autopilot/<cycle>-<event>"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``fabric serve autopilot`` (registered by ``serve.cli``)."""
    p.add_argument("name", metavar="NAME", help="served application name (the --app of `fabric serve deploy`)")
    p.add_argument("--once", action="store_true", help="run one cycle (observe; on a trigger: retrain, canary, "
                   "verdict) and exit")
    p.add_argument("--history", action="store_true", help="print the loop's stored history and exit")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between observations (default 60)")
    p.add_argument("--canary-timeout", type=float, default=300.0,
                   help="seconds a canary may take to gather evidence before it is rolled back (default 300)")
    p.add_argument("--canary-weight", type=float, default=0.5, help="traffic share of the retrained canary (default 0.5)")
    p.add_argument("--canary-requests", type=int, default=20, help="canary requests before promotion (default 20)")
    p.add_argument("--canary-feedback", type=int, default=20,
                   help="labelled canary samples before promotion (default 20)")
    p.add_argument("--feedback-gate", type=float,
                   help="labelled accuracy below this triggers a retrain (default: the spec's min_accuracy)")
    p.add_argument("--min-feedback", type=int, default=20, help="labelled samples before the gate applies (default 20)")
    p.add_argument("--canary-gate", type=float,
                   help="min_accuracy the canary must hold (default: the retrained deployment's spec KPIs)")
    p.add_argument("--alpha", type=float, default=0.01, help="drift test p-value threshold (default 0.01)")
    p.add_argument("--min-statistic", type=float, default=0.1, help="drift effect-size floor (default 0.1)")
    p.add_argument("--epochs", type=int, help="retrain epochs (default: the spec's train.epochs)")
    p.add_argument("--no-drift", action="store_true", help="drift does not trigger")
    p.add_argument("--no-kpi", action="store_true", help="KPI breaches of the primary do not trigger")
    p.add_argument("--url", help="ingress URL (default $FABRIC_SERVE_URL or the one saved by deploy)")
    p.add_argument("--token", help="admin token (default $FABRIC_SERVE_TOKEN or the one saved by deploy)")
    p.add_argument("--json", action="store_true", help="--history as JSON")
    add_store_option(p)
    add_tenant_option(p)
    add_address_option(p, "Ray cluster the retrain job runs on (default $RAY_ADDRESS or the one saved by deploy)")


# -- event artifacts ------------------------------------------------------------------------------------
class _Recorder:
    """Stores each machine event as a signed artifact chained to the previous one (lineage)."""

    def __init__(self, reg: Any, app: str, log: Callable[[str], None]) -> None:
        self.reg, self.app, self.log = reg, app, log
        prev = history(reg, app)
        self.last: str | None = prev[-1]["artifact"] if prev else None

    def __call__(self, event: dict[str, Any], parents: list[str] | None = None) -> str:
        ps = ([self.last] if self.last else []) + [p for p in (parents or []) if p]
        body = dict(event, app=self.app, time=time.time())
        rec = self.reg.put_json(body, kind="report", name=f"{self.app}/{EVENT_PREFIX}/{event['cycle']}-{event['event']}",
                                parents=list(dict.fromkeys(ps)),
                                extra={EVENT_PREFIX: self.app, "event": event["event"], "cycle": event["cycle"]})
        self.last = rec.id
        self.log(f"[autopilot] {event['event']}: {_summary(body)}  ({rec.id[:12]})")
        return rec.id


def history(reg: Any, app: str) -> list[dict[str, Any]]:
    """The app's autopilot events, oldest first, each with its ``artifact`` id and ``parents``."""
    recs = [r for r in reg.ls(kind="report") if r.extra.get(EVENT_PREFIX) == app]
    out = []
    for r in sorted(recs, key=lambda r: r.created):
        out.append(reg.get_json(r.id) | {"artifact": r.id, "parents": list(r.parents)})
    return out


def _summary(e: dict[str, Any]) -> str:
    ev = e["event"]
    if ev == "trigger":
        return "; ".join(e["trigger"]["reasons"])
    if ev == "retrained":
        r = e.get("retrain") or {}
        acc = r.get("accuracy")
        return (f"model {str(e.get('model_id'))[:12]} on {r.get('train_samples')} samples "
                f"({r.get('feedback_samples')} labelled feedback), accuracy {acc if acc is None else round(acc, 3)}")
    if ev == "retrain-failed":
        return e.get("reason", "")
    if ev == "canary":
        return f"version {e['version']} at weight {e['weight']}"
    if ev == "verdict":
        return f"{e['verdict']} {e.get('version')} ({e.get('reason')})"
    return ""


def format_history(events: list[dict[str, Any]]) -> str:
    if not events:
        return "no autopilot history"
    rows = [f"{'cycle':>5}  {'time':<19}  {'event':<15} detail"]
    for e in events:
        t = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.get("time", 0)))
        rows.append(f"{e['cycle']:>5}  {t:<19}  {e['event']:<15} {_summary(e)}  [{e['artifact'][:12]}]")
    return "\n".join(rows)


# -- one cycle --------------------------------------------------------------------------------------------
def _deployment(st: dict[str, Any], role: str | None = None, version: str | None = None) -> dict[str, Any] | None:
    for d in st["deployments"]:
        if (role is None or d["role"] == role) and (version is None or d["version"] == version):
            return d
    return None


def _snap(d: dict[str, Any]) -> dict[str, Any]:
    keys = ("requests", "window", "errors", "error_rate", "p50_ms", "p99_ms", "serving_p99_ms",
            "energy_mj_per_inference", "accuracy_feedback", "feedback_samples")
    return {k: d.get(k) for k in keys}


def _rollout_id(reg: Any, app: str, step: dict[str, Any] | None, timeout: float = 10.0) -> str | None:
    """The signed ``rollout`` artifact of a step the ingress answered (it stores steps in the background)."""
    if not step:
        return None
    if step.get("artifact"):
        return step["artifact"]
    deadline = time.monotonic() + timeout
    while True:
        recs = [r for r in reg.ls(kind="rollout") if r.extra.get("app") == app and r.extra.get("step") == step["step"]
                and r.extra.get("action") == step["action"]]
        if recs:
            return max(recs, key=lambda r: r.created).id
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def _ray_retrain(**kw: Any) -> dict[str, Any]:
    """The retrain as a Ray task (the cluster schedules it; the driver only waits)."""
    import ray

    from fabric.flow.retrain import retrain

    return ray.get(ray.remote(num_cpus=1, max_retries=0)(retrain).remote(**kw))


def run_cycle(client: Any, reg: Any, app: str, machine: Any, *, drift_policy: Any,
              retrain_fn: Callable[..., dict[str, Any]] = _ray_retrain, canary_timeout: float = 300.0,
              poll: float = 1.0, canary_kpis: dict[str, Any] | None = None,
              log: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep) -> str:
    """Observe once; on a trigger run retrain -> canary -> verdict. Returns the outcome: ``none``,
    ``promoted``, ``rolled-back``, ``superseded`` or ``retrain-failed``.

    ``client``: a :class:`serve.ServeClient`; ``retrain_fn``: the job (default: a Ray task);
    ``sleep``: how the canary wait passes time (the in-process unit test sends traffic from it)."""
    from fabric.cli.drift import run_drift
    from fabric.flow.autopilot import Evidence
    from serve import ServeHTTPError, resolve_model

    record = _Recorder(reg, app, log)
    st = client.status()
    if st.get("app") != app:
        raise ValueError(f"NAME: the server at {client.url} serves app {st.get('app')!r}, not {app!r}")
    prim = _deployment(st, role="primary")
    if prim is None:
        raise ValueError(f"NAME: app {app!r} has no primary version deployed")
    # the serving monitor's own evidence thresholds bound the canary's (never promote before it could judge)
    pol = st.get("policy") or {}
    machine.policy.canary_min_requests = max(machine.policy.canary_min_requests, int(pol.get("min_requests", 0)))
    machine.policy.canary_min_feedback = max(machine.policy.canary_min_feedback, int(pol.get("min_feedback", 0)))
    evidence_ids: list[str] = []
    drift = None
    if machine.policy.drift:
        try:
            snap = client.snapshot(prim["version"])
        except ServeHTTPError as exc:
            if exc.status != 409:
                raise
            snap = None  # nothing served yet
        if snap is not None and snap["samples"] >= machine.policy.min_drift_samples:
            d_rec, drift = run_drift(reg, snap["artifact"], None, drift_policy)
            evidence_ids += [snap["artifact"], d_rec.id]
            drift = {"retrain": drift["retrain"], "reason": drift["reason"], "id": d_rec.id}
    ev = Evidence(primary=prim["version"], drift=drift, snapshot=_snap(prim), breaches=list(prim["breaches"]),
                  kpis=dict(prim["kpis"]), artifacts=evidence_ids)
    act = machine.observe(ev)
    if act.do == "none":
        log(f"[autopilot] {app}: {act.reason}")
        return "none"
    record(machine.events[-1], evidence_ids)

    # retrain: training split of the primary's encoding + the labelled feedback
    try:
        fb = client.snapshot(prim["version"], labelled=True)
    except ServeHTTPError as exc:
        if exc.status != 409:
            raise
        fb = None
    info = resolve_model(reg, prim["model_id"], prim["kind"])
    try:
        res = retrain_fn(store=reg.store.url, tenant=reg.tenant, kind=info.kind, encoding_id=info.encoding_id,
                         spec_hash=info.spec_hash, feedback_id=fb["artifact"] if fb else None,
                         epochs=machine.policy.epochs, feedback_repeat=machine.policy.feedback_repeat, name=app)
    except Exception as exc:  # a failed job ends the cycle, recorded; the primary keeps serving
        machine.retrained(ok=False, reason=f"{type(exc).__name__}: {exc}")
        record(machine.events[-1], [fb["artifact"]] if fb else [])
        return "retrain-failed"
    ids = [res[k] for k in ("dataset", "model", "nir", "program", "evaluation", "deployment")]
    act = machine.retrained(ok=True, model_id=res["deployment"], artifacts=ids)
    machine.events[-1]["retrain"] = res
    machine.events[-1]["feedback"] = fb["artifact"] if fb else None
    record(machine.events[-1], ([fb["artifact"]] if fb else []) + ids)

    body = client.deploy(res["deployment"], kind=info.kind, role="canary", weight=act.data["weight"],
                         kpis=dict(canary_kpis or {}))
    machine.canary_deployed(body["version"])
    machine.events[-1]["step"] = _rollout_id(reg, app, body["step"])
    record(machine.events[-1], [res["deployment"], machine.events[-1]["step"]])

    deadline = time.monotonic() + canary_timeout
    while True:
        d = _deployment(client.status(), version=body["version"])
        if d is None:
            raise RuntimeError(f"autopilot: canary {body['version']} vanished from app {app!r}")
        step = None
        if d["role"] == "rolled_back":  # the serving monitor's step says why
            rb = [s for s in client.status()["steps"] if s.get("action") == "rollback"
                  and s.get("from_version") == body["version"]]
            step = rb[-1] if rb else None
        act = machine.judge(role=d["role"], snapshot=_snap(d), breaches=list(d["breaches"]),
                            monitor_reason=(step or {}).get("reason", ""))
        if act.do != "wait":
            break
        if time.monotonic() > deadline:
            act = machine.timed_out(_snap(d))
            break
        sleep(poll)
    if act.do == "promote":
        step = client.traffic(body["version"], "primary")
    elif act.do == "rollback":
        try:
            step = client.rollback(body["version"], f"autopilot: {act.reason}")
        except ServeHTTPError as exc:  # the serving monitor rolled it back a moment earlier
            if exc.status != 409:
                raise
    machine.events[-1]["step"] = _rollout_id(reg, app, step)
    record(machine.events[-1], [res["deployment"], machine.events[-1]["step"]])
    return act.data["verdict"]


def main(a: argparse.Namespace) -> int:
    """``fabric serve autopilot``: history, one cycle (``--once``), or the loop until Ctrl-C."""
    import os

    from fabric.flow.autopilot import Autopilot, AutopilotPolicy
    from fabric.flow.drift import DriftPolicy
    from fabric.store.registry import Registry

    try:
        reg = Registry(a.store, tenant=a.tenant)
        if a.history:
            events = history(reg, a.name)
            print(json.dumps(events, indent=1, default=str) if a.json else format_history(events))
            return 0
        policy = AutopilotPolicy(drift=not a.no_drift, kpi_breach=not a.no_kpi, feedback_gate=a.feedback_gate,
                                 min_feedback=a.min_feedback, canary_weight=a.canary_weight,
                                 canary_min_requests=a.canary_requests, canary_min_feedback=a.canary_feedback,
                                 epochs=a.epochs)
        drift_policy = DriftPolicy(alpha=a.alpha, min_statistic=a.min_statistic)
        if a.canary_gate is not None and not 0.0 <= a.canary_gate <= 1.0:
            raise ValueError(f"--canary-gate: must be in [0, 1], got {a.canary_gate}")
        if a.canary_timeout <= 0 or a.interval <= 0:
            raise ValueError("--canary-timeout/--interval: must be > 0 seconds")
    except ValueError as exc:
        return fail(str(exc), 2)
    from fabric.connect import connect
    from serve import ServeClient
    from serve.cli import STATE_FILE

    try:  # the URL, token and cluster `fabric serve deploy` saved
        saved = json.loads(STATE_FILE.read_text())
    except (OSError, ValueError):
        saved = {}
    url = a.url or os.environ.get("FABRIC_SERVE_URL") or saved.get("url")
    token = a.token or os.environ.get("FABRIC_SERVE_TOKEN") or saved.get("token")
    if not url:
        return fail("--url: no server (run `fabric serve deploy` first or give --url)", 2)
    connect(a.address or os.environ.get("RAY_ADDRESS") or saved.get("address"))
    client = ServeClient(url, token)
    machine = Autopilot(policy)
    kpis = {"min_accuracy": a.canary_gate} if a.canary_gate is not None else None
    try:
        while True:
            out = run_cycle(client, reg, a.name, machine, drift_policy=drift_policy, canary_timeout=a.canary_timeout,
                            canary_kpis=kpis)
            if a.once:
                print(f"autopilot {a.name}: {out}")
                return 0
            time.sleep(a.interval)
    except ValueError as exc:
        return fail(str(exc), 2)
    finally:
        client.close()
