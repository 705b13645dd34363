"""Live telemetry the dashboard reads but does not store: Serve's ``/admin/status`` and ``/metrics``
and the device actors' health. Every function returns ``(data, error)`` so that a stopped Serve or
cluster shows a message on the page instead of an exception."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

__all__ = ["serve_status", "serve_metrics", "device_catalog", "device_pools", "device_occupancy", "connect_ray"]

SERVE_COLUMNS = ["version", "kind", "model_id", "weight", "role", "p50_ms", "p99_ms", "error_rate", "requests",
                 "energy_mj_per_inference", "accuracy_feedback"]
POOL_COLUMNS = ["kind", "name", "node_id", "healthy", "calls", "busy_s", "queued"]


def _cell(v: Any) -> Any:
    return json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list, tuple)) else v


def serve_status(url: str | None, token: str | None = None,
                 timeout: float = 3.0) -> tuple[pd.DataFrame | None, str | None]:
    """Deployments from ``<url>/admin/status`` (live latency, errors, energy, traffic weights); the admin
    route wants ``Authorization: Bearer <token>`` (``fabric serve``'s token)."""
    if not url:
        return None, ("no Serve URL given: start the dashboard with `fabric dashboard --serve-url "
                      "http://127.0.0.1:8000` (or deploy with `fabric serve deploy`, which saves it)")
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.get(url.rstrip("/") + "/admin/status", headers=headers, timeout=timeout)
        if r.status_code == 401:
            return None, (f"Serve at {url} refused /admin/status (401): give the admin token with --serve-token "
                          "or $FABRIC_SERVE_TOKEN")
        r.raise_for_status()
        doc = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        return None, f"Serve at {url} did not answer /admin/status: {type(exc).__name__}: {exc}"
    deps = doc.get("deployments") if isinstance(doc, dict) else None
    if not isinstance(deps, list):
        return None, f"Serve at {url} answered /admin/status without a 'deployments' list"
    cols = SERVE_COLUMNS + sorted({k for d in deps for k in d} - set(SERVE_COLUMNS))
    return pd.DataFrame([{c: _cell(d.get(c)) for c in cols} for d in deps], columns=cols), None


def serve_metrics(url: str | None, timeout: float = 3.0) -> tuple[pd.DataFrame | None, str | None]:
    """Prometheus samples from ``<url>/metrics`` as name/labels/value rows (comments skipped)."""
    if not url:
        return None, "no Serve URL given"
    import httpx

    try:
        r = httpx.get(url.rstrip("/") + "/metrics", timeout=timeout)
        r.raise_for_status()
    except httpx.HTTPError as exc:
        return None, f"Serve at {url} did not answer /metrics: {type(exc).__name__}: {exc}"
    rows = []
    for line in r.text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        try:
            rows.append({"metric": name, "labels": labels.rstrip("}"), "value": float(value)})
        except ValueError:
            continue
    return pd.DataFrame(rows, columns=["metric", "labels", "value"]), None


def device_catalog() -> pd.DataFrame:
    """Every device kind: emulated or hardware, the Ray resource it needs, its description."""
    from fabric.kinds import capabilities, kinds, runtime_class

    rows = []
    for kind in sorted(kinds()):
        try:
            info = runtime_class(kind)().info()
            board = capabilities(kind).needs_resource
        except Exception as exc:  # an SDK that fails to load is shown, not raised
            rows.append({"kind": kind, "mode": "unavailable", "resource": kind, "description": str(exc)[:120]})
            continue
        rows.append({"kind": kind, "mode": "emulated" if info.get("emulated") else "hardware",
                     "resource": kind if board else None, "description": info.get("description", "")})
    return pd.DataFrame(rows)


def connect_ray(address: str | None) -> tuple[bool, str | None]:
    """Join ``address`` as a driver (namespace ``fabric``) unless this process already is one.
    The dashboard never starts a cluster of its own."""
    import ray

    if ray.is_initialized():
        return True, None
    if not address:
        return False, ("not connected to a Ray cluster: start the dashboard with `fabric dashboard --ray-address "
                       "HOST:PORT` (or set RAY_ADDRESS) to see device pools")
    try:
        ray.init(address=address, namespace="fabric", logging_level="ERROR", log_to_driver=False)
    except Exception as exc:  # unreachable cluster: a message on the page
        return False, f"could not join Ray at {address}: {type(exc).__name__}: {exc}"
    return True, None


def device_pools(address: str | None, timeout: float = 5.0) -> tuple[pd.DataFrame | None, str | None]:
    """Per device actor: kind, name, node, health, calls, busy seconds, queued batches.

    Uses ``actors.cluster.pool.pool_status()`` when the pool provides it; otherwise asks each named device
    actor (namespace ``fabric``) for ``health()``; queue length is then unknown (pools are per driver)."""
    ok, err = connect_ray(address)
    if not ok:
        return None, err
    import ray

    from actors.cluster import pool as pool_mod

    if hasattr(pool_mod, "pool_status"):
        try:
            rows = list(pool_mod.pool_status())
        except Exception as exc:  # scheduler unreachable: a message, not a crash
            return None, f"device pool status failed: {type(exc).__name__}: {str(exc)[:200]}"
        cols = POOL_COLUMNS + [c for c in ("drained", "drain_reason", "failures", "fault") if any(c in r for r in rows)]
        return pd.DataFrame([{c: _cell(r.get(c)) for c in cols} for r in rows], columns=cols), None
    names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                   if a.get("namespace") == pool_mod.NAMESPACE)
    rows = []
    for name in names:
        kind = name.split("/")[0]
        row: dict[str, Any] = {"kind": kind, "name": name, "node_id": None, "healthy": False, "calls": None,
                               "busy_s": None, "queued": None}
        try:
            h = ray.get(ray.get_actor(name, namespace=pool_mod.NAMESPACE).health.remote(), timeout=timeout)
            row.update(node_id=str(h.get("node_id", ""))[:12], healthy=bool(h.get("ok")), calls=h.get("calls"),
                       busy_s=h.get("busy_s"))
        except Exception as exc:  # a dead or stuck actor is a red row, not a crash
            row["node_id"] = f"unreachable: {type(exc).__name__}"
        rows.append(row)
    return pd.DataFrame(rows, columns=POOL_COLUMNS), None


def device_occupancy(address: str | None) -> tuple[pd.DataFrame | None, str | None]:
    """Per device resource of the cluster: boards advertised, in use (held by actors/tasks), occupancy."""
    ok, err = connect_ray(address)
    if not ok:
        return None, err
    import ray

    from fabric.kinds import kinds

    total, avail = ray.cluster_resources(), ray.available_resources()
    rows = [{"resource": k, "boards": total[k], "in use": total[k] - avail.get(k, 0.0),
             "occupancy %": 100.0 * (total[k] - avail.get(k, 0.0)) / total[k]}
            for k in sorted(kinds()) if total.get(k)]
    return pd.DataFrame(rows, columns=["resource", "boards", "in use", "occupancy %"]), None
