"""What the dashboard shows, as plain data: functions of a Registry (or a stored document) that return
data frames and dicts. They *read* what stages stored (KPI reports, fit reports, Pareto fronts,
rollouts, drift reports) and only reshape it for display; nothing here re-measures or re-derives a
result a stage should have stored. Unit-testable without Streamlit or Ray.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from fabric.kpis import KPI, KPIS, METRICS, fmt_interval, objective_kpis, objectives
from fabric.report import figure_basis
from fabric.store.registry import ArtifactNotFound, ArtifactRecord, IntegrityError, Registry

__all__ = [
    "KPI_METRICS", "PARETO_OBJECTIVES", "list_runs", "load_json", "run_kpis", "run_stages", "neurobench_table",
    "lineage_rows", "artifact_rows", "fit_reports", "golden_rows", "comparison", "list_pareto", "pareto_trials", "filter_trials",
    "list_rollouts", "list_deployments", "list_drift", "drift_features", "drift_histogram", "refused",
    "refused_rows", "LISTED_KINDS", "fmt_time", "figure_mode", "FIGURE_MODES", "kpi_intervals",
]

# (row field, label, unit) per gated KPI, and Tune's objectives: both from fabric.kpis
KPI_METRICS = tuple((m.row_field, m.label, m.unit) for m in KPIS)
PARETO_OBJECTIVES = objectives()
# the comparison legend: a host kind's figure is measured or modelled per KPI (cpu energy = measured time x
# declared power: modelled); every figure of an emulated kind is modelled
FIGURE_MODES = ("measured", "modelled", "emulated (modelled)")


def figure_mode(m: KPI, row: dict[str, Any]) -> str:
    """The legend label of KPI ``m`` on a stored KPI row (from ``fabric.kpis``, never a kind name)."""
    return "emulated (modelled)" if row.get("emulated") else figure_basis(m, row)


def fmt_time(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def load_json(reg: Registry, ref: str) -> dict[str, Any]:
    """A stored JSON document (verified); ValueError when the artifact is not JSON."""
    try:
        doc = json.loads(reg.get(ref))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"artifact {ref[:12]} is not a JSON document") from None
    if not isinstance(doc, dict):
        raise ValueError(f"artifact {ref[:12]} is not a JSON object")
    return doc


def refused(reg: Registry) -> list[tuple[str, str]]:
    """``(id, reason)`` for every record that failed verification (shown as a warning, never used)."""
    return reg.scan()[1]


# the kinds whose stored JSON documents the pages list (runs, AutoML, serving, drift)
LISTED_KINDS = ("report", "pareto", "rollout", "deployment", "drift")
REFUSED_COLUMNS = ["id", "kind", "name", "reason"]


def refused_rows(reg: Registry) -> pd.DataFrame:
    """One row per stored record the pages leave out because it failed verification: ``id``, ``kind``
    (``?`` when the record itself is refused: its fields cannot be trusted), ``name`` and ``reason``.

    Why: a tampered record used to vanish from every listing without a word; a page that shows what it
    refused lets an operator see an attack or a broken store instead of a quietly shorter list.
    """
    rows = [{"id": aid, "kind": "?", "name": "", "reason": reason} for aid, reason in reg.scan()[1]]
    for kind in LISTED_KINDS:
        _json_records(reg, kind, refused_out=rows)
    return pd.DataFrame(rows, columns=REFUSED_COLUMNS)


def _json_records(reg: Registry, kind: str, name_suffix: str | None = None,
                  refused_out: list[dict[str, Any]] | None = None) -> list[tuple[ArtifactRecord, dict]]:
    """Verified records of ``kind`` with their JSON documents; an artifact whose bytes fail verification
    (or are not a JSON object) is left out here and reported in ``refused_out`` (see :func:`refused_rows`)."""
    out = []
    recs, _ = reg.scan(kind)  # refused records are reported by refused_rows, once for every page
    for rec in recs:
        if name_suffix and not rec.name.endswith(name_suffix):
            continue
        if rec.extra.get("format") in ("png", "markdown"):
            continue
        try:
            out.append((rec, load_json(reg, rec.id)))
        except (ValueError, IntegrityError, ArtifactNotFound) as exc:
            if refused_out is not None:
                refused_out.append({"id": rec.id, "kind": rec.kind, "name": rec.name, "reason": str(exc)})
    return out


# -- runs ----------------------------------------------------------------------------------------
def list_runs(reg: Registry) -> pd.DataFrame:
    """One row per stored KPI report (newest first): spec, status and KPI pass/fail per device kind."""
    rows = []
    for rec, doc in _json_records(reg, "report", "/kpi-report"):
        kpis = doc.get("kpis", [])
        per_kind = {k.get("kind", "?"): ("PASS" if k.get("passed") else ("NO FIT" if k.get("status") == "does not fit"
                                                                        else "FAIL")) for k in kpis}
        stages = doc.get("stages", [])
        rows.append({
            "report": rec.id, "spec": doc.get("spec", {}).get("name", rec.name.split("/")[0]),
            "created": fmt_time(rec.created), "status": "PASS" if all(k.get("passed") for k in kpis) and kpis
            else "FAIL", "kinds": " ".join(f"{k}:{v}" for k, v in per_kind.items()),
            "stages": len(stages), "cached stages": sum(1 for s in stages if s.get("cached")),
            "spec_hash": (doc.get("spec_hash") or "")[:12], "_created": rec.created,
        })
    df = pd.DataFrame(rows, columns=["report", "spec", "created", "status", "kinds", "stages", "cached stages",
                                     "spec_hash", "_created"])
    return df.sort_values("_created", ascending=False).drop(columns="_created").reset_index(drop=True)


def run_kpis(report: dict[str, Any]) -> pd.DataFrame:
    """The KPI rows of a report with a gate column per gate (PASS/FAIL) and the run's mode label."""
    rows = []
    for k in report.get("kpis", []):
        row = {"kind": k.get("kind"), "mode": ("emulated" if k.get("emulated") else "measured")
               if k.get("status") == "ok" else "-", "status": k.get("status"),
               "passed": bool(k.get("passed"))}
        for key, _, _ in KPI_METRICS:
            row[key] = k.get(key)
        for key, _, _ in KPI_METRICS:  # modelled figures: the constants' band (docs/measurement.md)
            if k.get(f"{key}_low") is not None:
                row[f"{key} band"] = f"[{k[f'{key}_low']:.4g}, {k[f'{key}_high']:.4g}]"
        if k.get("time_mode"):
            row["time mode"] = k["time_mode"]
        stats = _repeat_stats(report, k.get("kind"))
        for key, _, _ in KPI_METRICS:  # repeated seeds: mean ± std [CI] next to the run's own figure
            if key in stats:
                row[f"{key} ±CI"] = fmt_interval(stats[key], by_field(key).compact)
        for g, ok in (k.get("gates") or {}).items():
            row[f"gate {g}"] = "PASS" if ok else "FAIL"
        row["reason"] = k.get("reason", "")
        rows.append(row)
    return pd.DataFrame(rows)


def run_stages(report: dict[str, Any]) -> pd.DataFrame:
    cols = ["stage", "artifact", "cached", "seconds", "detail"]
    return pd.DataFrame([{c: s.get(c) for c in cols} for s in report.get("stages", [])], columns=cols)


def neurobench_table(report: dict[str, Any]) -> pd.DataFrame:
    """NeuroBench metrics as metric/value rows (dict-valued metrics flattened as ``metric.sub``)."""
    rows = []
    for k, v in (report.get("neurobench") or {}).items():
        if isinstance(v, dict):
            rows += [{"metric": f"{k}.{a}", "value": float(b)} for a, b in v.items()]
        else:
            rows.append({"metric": k, "value": float(v)})
    return pd.DataFrame(rows, columns=["metric", "value"])


# -- model detail --------------------------------------------------------------------------------
def _sig(rec: ArtifactRecord) -> str:
    return (rec.signature or {}).get("key", "unsigned")[:16]


def lineage_rows(reg: Registry, ref: str) -> pd.DataFrame:
    """The lineage tree flattened depth-first: depth, an indented label, id, kind, name, signer."""
    rows: list[dict[str, Any]] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        r = node["record"]
        rows.append({"depth": depth, "tree": "  " * depth + ("└─ " if depth else "") + f"{r.kind}: {r.name}",
                     "id": r.id, "kind": r.kind, "name": r.name, "signed by": _sig(r), "created": fmt_time(r.created)})
        for p in node["parents"]:
            walk(p, depth + 1)

    walk(reg.lineage(ref), 0)
    return pd.DataFrame(rows)


def artifact_rows(reg: Registry, ids: list[str]) -> pd.DataFrame:
    """Each artifact's hash, size and signature status, re-verified now (signature, bytes, parents)."""
    rows = []
    for aid in dict.fromkeys(ids):
        v = reg.verify(aid)
        rows.append({"id": v["id"], "kind": v["kind"], "size": v["size"], "signed by": (v["signed_by"] or "-")[:16],
                     "verified": "OK" if v["ok"] else "REFUSED", "detail": v["reason"]})
    return pd.DataFrame(rows, columns=["id", "kind", "size", "signed by", "verified", "detail"])


def fit_reports(reg: Registry, report: dict[str, Any]) -> pd.DataFrame:
    """Per kind and resource: used vs limit, from the fit report stored with each compiled program."""
    rows = []
    for s in report.get("stages", []):
        if not str(s.get("stage", "")).startswith("compile["):
            continue
        try:
            rec = reg.record(s["artifact"])
        except (ArtifactNotFound, IntegrityError):
            continue
        fit = rec.extra.get("fit") or {}
        for i in fit.get("items", []):
            used, limit = float(i["used"]), float(i["limit"])
            rows.append({"kind": fit.get("kind", rec.extra.get("kind")), "resource": i["name"], "scope": i.get("scope"),
                         "used": used, "limit": limit, "unit": i.get("unit", ""),
                         "use %": 100.0 * used / limit if limit else None, "status": "ok" if used <= limit else "OVER"})
    for k in report.get("kpis", []):
        if k.get("status") == "does not fit":
            rows.append({"kind": k.get("kind"), "resource": "(compile)", "scope": "", "used": None, "limit": None,
                         "unit": "", "use %": None, "status": f"DOES NOT FIT: {k.get('reason', '')}"})
    return pd.DataFrame(rows, columns=["kind", "resource", "scope", "used", "limit", "unit", "use %", "status"])


def golden_rows(reg: Registry, report: dict[str, Any]) -> pd.DataFrame:
    """Golden-equivalence results (device program vs the kind's reference simulator) stored by the run."""
    rows = []
    for s in report.get("stages", []):
        if not str(s.get("stage", "")).startswith("golden["):
            continue
        try:
            d = load_json(reg, s["artifact"])
        except (ValueError, ArtifactNotFound, IntegrityError):
            continue
        rows.append({"kind": d.get("kind"), "status": d.get("status"), "samples": d.get("samples"),
                     "summary": d.get("summary", "")})
    return pd.DataFrame(rows, columns=["kind", "status", "samples", "summary"])


# -- cross-device ----------------------------------------------------------------------------------
def comparison(report: dict[str, Any]) -> pd.DataFrame:
    """Long table kind/metric/value/mode for the bar charts (kinds that ran; emulated ones labelled).
    With a repeats section, ``mean`` / ``ci_low`` / ``ci_high`` are the repeated-seed figures (the
    plot's error bars); NaN otherwise. ``band_low`` / ``band_high``: a modelled figure's band (the same
    model at its constants' band ends, docs/measurement.md); NaN for a row stored without one."""
    rows = []
    for k in report.get("kpis", []):
        if k.get("status") != "ok":
            continue
        stats = _repeat_stats(report, k["kind"])
        for m in KPIS:
            key, label, unit = m.row_field, m.label, m.unit
            if k.get(key) is not None:
                st = stats.get(key) or {}
                rows.append({"kind": k["kind"], "metric": key, "label": label + (f" [{unit}]" if unit else ""),
                             "value": float(k[key]), "mode": figure_mode(m, k), "passed": bool(k.get("passed")),
                             "mean": st.get("mean", math.nan), "ci_low": st.get("lower_ci", math.nan),
                             "ci_high": st.get("upper_ci", math.nan),
                             "band_low": _num(k.get(f"{key}_low")), "band_high": _num(k.get(f"{key}_high"))})
    return pd.DataFrame(rows, columns=["kind", "metric", "label", "value", "mode", "passed", "mean", "ci_low",
                                       "ci_high", "band_low", "band_high"])


def _num(v: Any) -> float:
    return math.nan if v is None else float(v)


def _repeat_stats(report: dict[str, Any], kind: Any) -> dict[str, Any]:
    return ((report.get("repeats") or {}).get("kinds") or {}).get(kind) or {}


def by_field(row_field: str) -> KPI:
    return next(m for m in METRICS if m.row_field == row_field)


def kpi_intervals(report: dict[str, Any]) -> pd.DataFrame:
    """The repeats section of a run report, one row per kind and KPI: n, mean, std, the confidence
    interval and its text (``0.947 ± 0.006 [0.930, 0.964]``); empty when the run had one seed."""
    rep = report.get("repeats") or {}
    cols = ["kind", "metric", "label", "n", "mean", "std", "ci_low", "ci_high", "confidence", "interval"]
    rows = []
    for kind, per in (rep.get("kinds") or {}).items():
        for m in METRICS:
            st = per.get(m.row_field)
            if st:
                rows.append({"kind": kind, "metric": m.row_field, "label": m.label + (f" [{m.unit}]" if m.unit else ""),
                             "n": int(st["n"]), "mean": st["mean"], "std": st["std"], "ci_low": st["lower_ci"],
                             "ci_high": st["upper_ci"], "confidence": float(rep.get("confidence", st.get("confidence"))),
                             "interval": fmt_interval(st, m.compact)})
    return pd.DataFrame(rows, columns=cols)


# -- AutoML ----------------------------------------------------------------------------------------
def list_pareto(reg: Registry) -> pd.DataFrame:
    rows = []
    for rec, doc in _json_records(reg, "pareto"):
        if "trials" not in doc:
            continue
        rows.append({"pareto": rec.id, "experiment": doc.get("experiment", rec.name), "created": fmt_time(rec.created),
                     "trials": len(doc["trials"]), "on front": len(doc.get("front", [])) or
                     sum(1 for t in doc["trials"] if t.get("on_front")), "_created": rec.created})
    df = pd.DataFrame(rows, columns=["pareto", "experiment", "created", "trials", "on front", "_created"])
    return df.sort_values("_created", ascending=False).drop(columns="_created").reset_index(drop=True)


def pareto_trials(doc: dict[str, Any]) -> pd.DataFrame:
    """One row per trial with its stored metrics and whether Tune put it on the front."""
    rows = []
    for t in doc.get("trials", []):
        m = t.get("metrics") or {}
        row = {"trial_id": t.get("trial_id"), "kind": t.get("kind"), "status": t.get("status"),
               "on_front": bool(t.get("on_front"))}
        for obj in doc.get("objectives", PARETO_OBJECTIVES):
            row[obj] = m.get(obj)
        row.update(model_id=t.get("model_id"), program_id=t.get("program_id"), fit_error=t.get("fit_error"),
                   config=json.dumps(t.get("config", {}), sort_keys=True))
        rows.append(row)
    return pd.DataFrame(rows)


def filter_trials(df: pd.DataFrame, *, min_accuracy: float | None = None, max_latency_ms: float | None = None,
                  max_energy_mj: float | None = None, max_footprint_kb: float | None = None,
                  kinds: list[str] | None = None, **constraints: float | None) -> pd.DataFrame:
    """Trials that meet every given constraint (a missing metric does not meet a constraint); one
    keyword per objective KPI, named by its ``constraint`` (``min_accuracy``, ``max_latency_ms``...)."""
    known = {m.constraint for m in objective_kpis()}
    if set(constraints) - known:
        raise TypeError(f"filter_trials: unknown constraint(s) {sorted(set(constraints) - known)}; valid: {sorted(known)}")
    if df.empty:
        return df
    given = constraints | {"min_accuracy": min_accuracy, "max_latency_ms": max_latency_ms,
                           "max_energy_mj": max_energy_mj, "max_footprint_kb": max_footprint_kb}
    keep = pd.Series(True, index=df.index)
    for m in objective_kpis():
        lim, col = given.get(m.constraint), m.alias
        if lim is None:
            continue
        if col not in df:
            return df.iloc[0:0]
        v = pd.to_numeric(df[col], errors="coerce")
        keep &= (v >= lim) if m.better == "higher" else (v <= lim)
    if kinds:
        keep &= df["kind"].isin(kinds)
    return df[keep]


# -- serving ---------------------------------------------------------------------------------------
def list_rollouts(reg: Registry) -> pd.DataFrame:
    """Rollout history (every canary step, promotion and rollback that Serve stored), oldest first."""
    rows = []
    for rec, d in _json_records(reg, "rollout"):
        t = d.get("time", rec.created)
        rows.append({"app": d.get("app"), "step": d.get("step"), "action": d.get("action"),
                     "from_version": d.get("from_version"), "to_version": d.get("to_version"),
                     "weights": json.dumps(d.get("weights", {}), sort_keys=True), "reason": d.get("reason", ""),
                     "time": fmt_time(t) if isinstance(t, (int, float)) else str(t), "id": rec.id,
                     "_t": t if isinstance(t, (int, float)) else rec.created})
    cols = ["app", "step", "action", "from_version", "to_version", "weights", "reason", "time", "id", "_t"]
    return pd.DataFrame(rows, columns=cols).sort_values("_t").drop(columns="_t").reset_index(drop=True)


def list_deployments(reg: Registry) -> pd.DataFrame:
    """Stored deployment records (one per deployed kind), their scalar fields as columns."""
    rows = []
    for rec, d in _json_records(reg, "deployment"):
        row = {"id": rec.id, "name": rec.name, "created": fmt_time(rec.created)}
        row |= {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool)) or v is None}
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in df.columns:  # records from different writers may mix types in one column (version 1 vs "v1")
        if df[c].dtype == object and len({type(v) for v in df[c] if v is not None}) > 1:
            df[c] = df[c].map(lambda v: None if v is None else str(v))
    return df


# -- drift -----------------------------------------------------------------------------------------
def list_drift(reg: Registry) -> pd.DataFrame:
    rows = []
    for rec, d in _json_records(reg, "drift"):
        feats = d.get("features", {})
        row = {"drift": rec.id, "served": d.get("served_name", ""), "training": d.get("training_name", ""),
               "created": fmt_time(rec.created), "retrain": "RETRAIN" if d.get("retrain") else "ok",
               "served samples": d.get("samples", {}).get("served")}
        for name, f in feats.items():
            row[f"KS {name}"] = f.get("statistic")
        row["_created"] = rec.created
        rows.append(row)
    if not rows:
        return pd.DataFrame(columns=["drift", "served", "training", "created", "retrain", "served samples"])
    return pd.DataFrame(rows).sort_values("_created", ascending=False).drop(columns="_created").reset_index(drop=True)


def drift_features(doc: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for name, f in doc.get("features", {}).items():
        rows.append({"feature": name, "KS statistic": f.get("statistic"), "p-value": f.get("p_value"),
                     "drifted": bool(f.get("drifted")), "train mean": f.get("train", {}).get("mean"),
                     "served mean": f.get("served", {}).get("mean"), "train n": f.get("train", {}).get("n"),
                     "served n": f.get("served", {}).get("n")})
    return pd.DataFrame(rows)


def drift_histogram(doc: dict[str, Any], feature: str) -> pd.DataFrame:
    """The stored densities of one feature, long form (bin centre, density, which set)."""
    h = doc.get("features", {}).get(feature, {}).get("histogram")
    if not h:
        return pd.DataFrame(columns=["bin", "density", "set"])
    e = h["edges"]
    mids = [(a + b) / 2 for a, b in zip(e[:-1], e[1:], strict=True)]
    return pd.DataFrame([{"bin": m, "density": v, "set": s} for s in ("train", "served")
                         for m, v in zip(mids, h[s], strict=True)])
