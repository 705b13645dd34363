"""MLflow as a *view* of fabric runs and tunes (issue #19 item 5); the registry stays the source of truth.

``fabric run SPEC --mlflow URI`` / ``fabric tune SPEC --mlflow URI`` (or ``FABRIC_MLFLOW_URI``; the flag
wins) mirror what the registry already holds into an MLflow tracking store:

- a run: the spec as params (flattened dotted keys, cut to MLflow's key/value limits), per-kind KPIs as
  metrics ``<kind>.<kpi>`` (``loihi.accuracy``, ``loihi.energy_mj``, ...), repeated-seed statistics as
  ``<kind>.<kpi>.mean|std|lower_ci|upper_ci``, ``gates.passed`` 0/1 plus a tag ``gate.failed.<kind>.<gate>``
  per failed gate, artifact ids as tags (``fabric.report``, ``fabric.model``, ``fabric.program.<kind>``,
  ...) with the ``fabric registry show ID`` command that opens each in the run's description, and the
  report's Markdown/PNG as MLflow artifacts;
- a tune: one parent run (the spec, the tune settings, ``fabric.pareto`` / ``fabric.plot``, the Pareto
  plot) and one nested child run per trial (``mlflow.parentRunId``): params = the trial config, metrics
  = the per-kind objectives on the split they come from (``val.loihi.accuracy``; ``test.loihi.accuracy``
  for front models).

Logging happens after the job, from the driver, through :class:`mlflow.MlflowClient` (no global active
run; nothing inside Ray trials). A store that cannot be reached or used costs one line on stderr
(``fabric: warning: mlflow ...``) and never changes the job's result or exit code: an HTTP server is
probed on ``/health`` first with a short timeout, and MLflow's own HTTP retries are off while logging.
mlflow is imported lazily (about 2 s), only when a URI is given. MLflow writes "View run ..." lines to
stdout; they go to stderr here so ``fabric run --json`` keeps stdout for one JSON document.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ENV_URI",
    "PROBE_TIMEOUT_S",
    "TrackingError",
    "TrackingPayload",
    "flatten_params",
    "log_run",
    "log_tune",
    "metric_key",
    "probe",
    "resolve_uri",
    "run_payload",
    "tune_payloads",
]

ENV_URI = "FABRIC_MLFLOW_URI"
PROBE_TIMEOUT_S = 2.0  # the /health probe of an HTTP tracking server
REQUEST_TIMEOUT_S = 5  # each MLflow HTTP request while logging (MLFLOW_HTTP_REQUEST_TIMEOUT)
# MLflow's limits (mlflow.utils.validation: MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH)
MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
_TRUNCATED = "...[truncated]"

# KPI row fields logged as ``<kind>.<field>`` (numbers only; the rest are tags or left out)
_KPI_FIELDS = ("accuracy", "latency_p50_ms", "latency_p99_ms", "host_p50_ms", "energy_mj", "spikes_per_inference",
               "synops_per_inference", "footprint_kb", "early_exit_accuracy", "early_exit_steps_saved")
_STAT_FIELDS = ("mean", "std", "lower_ci", "upper_ci")
# pipeline stage -> tag name of its artifact (the registry kind a reader looks for)
_STAGE_TAGS = {"requirements": "spec", "data": "dataset", "encode": "encoding", "train": "model", "import": "nir",
               "export": "nir", "compile": "program", "evaluate": "evaluation", "deploy": "deployment"}


class TrackingError(RuntimeError):
    """The tracking store cannot be used; the message is one line naming the URI and the reason."""


@dataclass(kw_only=True)
class TrackingPayload:
    """What one MLflow run gets: params, metrics, tags, a description, and registry artifacts to copy
    (file name -> registry id)."""

    run_name: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    note: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    status: str = "FINISHED"


def resolve_uri(flag: str | None) -> str | None:
    """The tracking URI: ``--mlflow`` when given, else ``$FABRIC_MLFLOW_URI``, else None (no tracking)."""
    uri = flag if flag else os.environ.get(ENV_URI, "")
    return uri.strip() or None


# -- keys and values -------------------------------------------------------------------------------------
def metric_key(key: str) -> str:
    """``key`` as a valid MLflow param/metric/tag name: characters outside ``[A-Za-z0-9_.-]`` become ``_``
    (MLflow treats names as file paths, so no slashes or leading dots), cut to MLflow's 250 characters."""
    k = re.sub(r"[^\w.\-]", "_", str(key)).lstrip(".") or "_"
    return k[:MAX_KEY]


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - len(_TRUNCATED)] + _TRUNCATED


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)


def flatten_params(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted keys (``train.lr``), leaves as text (lists/None as JSON), each key and
    value cut to MLflow's param limits; an empty mapping stays one ``{}`` param so it is not lost."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten_params(v, key + "."))
        else:
            out[metric_key(key)] = _cut(_text(v), MAX_PARAM_VALUE)
    return out


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float) and v == v and abs(v) != float("inf"):  # NaN/inf are not logged
        return float(v)
    return None


def _numbers(d: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """The finite numbers of a nested mapping as dotted metric keys."""
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_numbers(v, f"{prefix}{k}."))
        elif (x := _num(v)) is not None:
            out[metric_key(f"{prefix}{k}")] = x
    return out


def _open_note(title: str, ids: Mapping[str, str], store: str) -> str:
    """Markdown description: each artifact id with the command that opens it (the registry is the truth)."""
    lines = [f"{title}", "", f"The fabric's registry ({store}) holds the source of truth; open an artifact with:", "",
             "| artifact | command |", "|---|---|"]
    for name, aid in ids.items():
        lines.append(f"| {name} | `fabric registry show {aid} --store {store}` |")
    return "\n".join(lines)


# -- a run summary -> one MLflow run ---------------------------------------------------------------------
def run_payload(summary: Mapping[str, Any], spec: Mapping[str, Any]) -> TrackingPayload:
    """Map ``RunSummary.to_dict()`` and ``Spec.to_dict()`` to one run's params, metrics and tags."""
    store = str(summary.get("store", ""))
    ids: dict[str, str] = {"fabric.report": summary["report_id"]}
    for o in summary.get("stages", []):
        stage, _, kind = str(o["stage"]).partition("[")
        kind = kind.rstrip("]")
        if kind.startswith("#"):  # repeated seeds' stages: the repeats artifact names them
            continue
        name = _STAGE_TAGS.get(stage, stage)
        ids[metric_key(f"fabric.{name}.{kind}" if kind else f"fabric.{name}")] = o["artifact"]
    for key, extra in (("markdown_id", "fabric.report_md"), ("png_id", "fabric.report_png")):
        if summary.get(key):
            ids[extra] = summary[key]
    if summary.get("repeats", {}).get("id"):
        ids["fabric.repeats"] = summary["repeats"]["id"]
    tags = {k: v for k, v in ids.items()}
    tags |= {"fabric.spec_hash": str(summary.get("spec_hash", "")), "fabric.store": store,
             "fabric.kind": "run", "fabric.open": f"fabric registry show {summary['report_id']} --store {store}"}
    metrics: dict[str, float] = {}
    failed: dict[str, str] = {}
    for row in summary.get("kpis", []):
        kind = row["kind"]
        tags[metric_key(f"fabric.status.{kind}")] = _cut(row["status"] + (f": {row['reason']}" if row.get("reason") else ""),
                                                         MAX_TAG_VALUE)
        tags[metric_key(f"fabric.emulated.{kind}")] = str(bool(row.get("emulated"))).lower()
        for f in _KPI_FIELDS:
            if (x := _num(row.get(f))) is not None:
                metrics[metric_key(f"{kind}.{f}")] = x
        passed = row["status"] == "ok" and all(row.get("gates", {}).values())
        metrics[metric_key(f"{kind}.passed")] = float(passed)
        if row["status"] != "ok":
            failed[metric_key(f"gate.failed.{kind}.status")] = row["status"]
        for gate, ok in sorted(row.get("gates", {}).items()):
            metrics[metric_key(f"{kind}.gates.{gate}")] = float(bool(ok))
            if not ok:
                failed[metric_key(f"gate.failed.{kind}.{gate}")] = "failed"
    for kind, per in (summary.get("repeats", {}).get("kinds") or {}).items():
        for f, st in per.items():
            for s in _STAT_FIELDS:
                if isinstance(st, Mapping) and (x := _num(st.get(s))) is not None:
                    metrics[metric_key(f"{kind}.{f}.{s}")] = x
    passed_all = bool(summary.get("passed", not failed))
    metrics["gates.passed"] = float(passed_all)
    metrics |= _numbers(summary.get("neurobench") or {}, "neurobench.")
    metrics["job.seconds"] = float(summary.get("seconds") or 0.0)
    tags |= failed
    if summary.get("gates_note"):
        tags["fabric.gates_note"] = _cut(str(summary["gates_note"]), MAX_TAG_VALUE)
    for kind, g in (summary.get("golden") or {}).items():
        if isinstance(g, Mapping) and g.get("status"):
            tags[metric_key(f"fabric.golden.{kind}")] = str(g["status"])
    artifacts = {n: summary[k] for n, k in (("report.md", "markdown_id"), ("report.png", "png_id")) if summary.get(k)}
    artifacts["report.json"] = summary["report_id"]
    title = (f"fabric run `{summary.get('spec_name', '')}`: "
             f"{'all KPI gates pass' if passed_all else 'KPI gates failed'}")
    return TrackingPayload(run_name=f"{summary.get('spec_name', 'run')}-{summary['report_id'][:12]}",
                           params=flatten_params(spec), metrics=metrics, tags=tags,
                           note=_open_note(title, ids, store), artifacts=artifacts,
                           seconds=float(summary.get("seconds") or 0.0))


# -- a tune result -> a parent run and one child per trial -----------------------------------------------
def tune_payloads(result: Mapping[str, Any], spec: Mapping[str, Any], settings: Mapping[str, Any] | None = None,
                  store: str = "") -> tuple[TrackingPayload, list[TrackingPayload]]:
    """Map a tune result (the ``fabric tune --json`` document: experiment, pareto_id, plot_id, trials,
    fronts, seconds) to the parent run and one child run per trial (rows grouped by ``trial_id``)."""
    rows: Sequence[Mapping[str, Any]] = result.get("trials", [])
    by_trial: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_trial.setdefault(str(r["trial_id"]), []).append(r)
    ids = {"fabric.pareto": result["pareto_id"], "fabric.plot": result["plot_id"]}
    params = flatten_params(spec) | flatten_params({"tune": dict(settings or {})})
    metrics = {"tune.trials": float(len(by_trial)), "tune.rows": float(len(rows)),
               "tune.front_size": float(len(result.get("front", []))), "tune.seconds": float(result.get("seconds") or 0),
               "tune.errors": float(len(result.get("errors", [])))}
    for kind, front in (result.get("fronts") or {}).items():
        metrics[metric_key(f"front.{kind}.size")] = float(len(front))
    tags = dict(ids) | {"fabric.kind": "tune", "fabric.store": store,
                        "fabric.experiment": str(result.get("experiment", "")),
                        "fabric.experiment_path": str(result.get("experiment_path", "")),
                        "fabric.selected_on": "val", "fabric.reported_on": "test",
                        "fabric.open": f"fabric registry show {result['pareto_id']} --store {store}"}
    parent = TrackingPayload(run_name=str(result.get("experiment") or "tune"), params=params, metrics=metrics, tags=tags,
                             note=_open_note(f"fabric tune `{result.get('experiment', '')}`: {len(by_trial)} trials",
                                             ids, store),
                             artifacts={"pareto.png": result["plot_id"], "pareto.json": result["pareto_id"]},
                             seconds=float(result.get("seconds") or 0.0))
    children = []
    for trial_id, trows in by_trial.items():
        m: dict[str, float] = {}
        t: dict[str, str] = {"fabric.trial_id": trial_id, "fabric.kind": "tune-trial",
                             "fabric.pareto": result["pareto_id"]}
        for r in trows:
            kind = r["kind"]
            for split, vals in (("val", r.get("metrics")), ("test", r.get("test_metrics"))):
                for k, v in (vals or {}).items():
                    if (x := _num(v)) is not None:
                        m[metric_key(f"{split}.{kind}.{k}")] = x
            for obj, st in (r.get("repeats") or {}).items():  # repeated seeds: test split
                for s in _STAT_FIELDS:
                    if isinstance(st, Mapping) and (x := _num(st.get(s))) is not None:
                        m[metric_key(f"test.{kind}.{obj}.{s}")] = x
            m[metric_key(f"{kind}.on_front")] = float(bool(r.get("on_front")))
            t[metric_key(f"fabric.status.{kind}")] = _cut(str(r.get("status")) + (
                f": {r['fit_error']}" if r.get("fit_error") else ""), MAX_TAG_VALUE)
            for key, name in (("model_id", "model"), ("program_id", "program"), ("evaluation_id", "evaluation"),
                              ("test_evaluation_id", "test_evaluation")):
                if r.get(key):
                    t[metric_key(f"fabric.{name}.{kind}")] = str(r[key])
        status = "FAILED" if trows and all(r.get("status") == "error" for r in trows) else "FINISHED"
        children.append(TrackingPayload(run_name=trial_id, params=flatten_params(dict(trows[0].get("config") or {})),
                                        metrics=m, tags=t, status=status))
    return parent, children


# -- MLflow calls ------------------------------------------------------------------------------------------
def probe(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`TrackingError` unless an ``http(s)`` tracking server answers ``/health`` within
    ``timeout`` seconds (other URIs are local stores: MLflow checks them when it opens them)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:  # noqa: S310 (http only)
            if resp.status != 200:
                raise TrackingError(f"{uri} /health answered HTTP {resp.status}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"cannot reach {uri} ({reason})") from exc


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """MLflow's stdout lines to stderr, its HTTP retries off and requests short (unless the user set them)."""
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT_S),
           "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}  # its "View run" lines: stdout stays ours
    saved = {k: os.environ.get(k) for k in env}
    for k, v in env.items():
        os.environ.setdefault(k, v)
    import logging

    levels = {n: logging.getLogger(n).level for n in ("alembic", "mlflow")}
    for n in levels:  # the sqlite store's schema migration logs INFO lines on first use
        logging.getLogger(n).setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for n, lv in levels.items():
            logging.getLogger(n).setLevel(lv)


def _warn(uri: str, exc: BaseException) -> None:
    line = "; ".join(p.strip() for p in str(exc).splitlines() if p.strip()) or type(exc).__name__
    print(f"fabric: warning: mlflow {uri}: {line[:300]} (the job's result is unchanged; nothing logged there)",
          file=sys.stderr)


def _experiment_id(client: Any, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # created meanwhile by another job
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _write_run(client: Any, experiment_id: str, p: TrackingPayload, registry: Any | None,
               parent_id: str | None = None) -> str:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    tags = dict(p.tags)
    if p.note:
        tags["mlflow.note.content"] = _cut(p.note, MAX_TAG_VALUE)
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    run = client.create_run(experiment_id, start_time=now - int(p.seconds * 1000), run_name=p.run_name)
    rid = run.info.run_id
    client.log_batch(rid, metrics=[Metric(k, v, now, 0) for k, v in p.metrics.items()],
                     params=[Param(k, v) for k, v in p.params.items()],
                     tags=[RunTag(k, _cut(str(v), MAX_TAG_VALUE)) for k, v in tags.items()])
    if registry is not None and p.artifacts:
        with tempfile.TemporaryDirectory(prefix="fabric-mlflow-") as tmp:
            for fname, aid in p.artifacts.items():
                path = Path(tmp) / fname
                path.write_bytes(registry.get(aid))
                client.log_artifact(rid, str(path), artifact_path="fabric")
    client.set_terminated(rid, p.status, end_time=now)
    return rid


def _guarded(uri: str, warn: Callable[[str, BaseException], None] | None, fn: Callable[[Any], str]) -> str | None:
    try:
        probe(uri)
        with _quiet_mlflow():
            from mlflow import MlflowClient

            return fn(MlflowClient(tracking_uri=uri))
    except Exception as exc:  # a view only: any failure is a warning, never the job's failure
        (warn or _warn)(uri, exc)
        return None


def log_run(uri: str, summary: Mapping[str, Any], spec: Mapping[str, Any], *, experiment: str | None = None,
            registry: Any | None = None, warn: Callable[[str, BaseException], None] | None = None) -> str | None:
    """Log one ``fabric run`` (``RunSummary.to_dict()``) as an MLflow run in ``experiment`` (default the
    spec's name); with ``registry``, the report's Markdown/PNG/JSON are copied as artifacts.
    Returns the MLflow run id, or None after a one-line warning when the store cannot be used."""
    payload = run_payload(summary, spec)
    name = experiment or str(summary.get("spec_name") or spec.get("name") or "fabric")
    return _guarded(uri, warn, lambda c: _write_run(c, _experiment_id(c, name), payload, registry))


def log_tune(uri: str, result: Mapping[str, Any], spec: Mapping[str, Any], *, experiment: str | None = None,
             registry: Any | None = None, settings: Mapping[str, Any] | None = None, store: str = "",
             warn: Callable[[str, BaseException], None] | None = None) -> str | None:
    """Log one ``fabric tune`` as a parent run (Pareto ids and plot) with one nested child run per trial.
    Returns the parent's MLflow run id, or None after a one-line warning."""
    parent, children = tune_payloads(result, spec, settings, store)
    name = experiment or str(spec.get("name") or "fabric")

    def write(client: Any) -> str:
        eid = _experiment_id(client, name)
        pid = _write_run(client, eid, parent, registry)
        for child in children:
            _write_run(client, eid, child, None, parent_id=pid)
        return pid

    return _guarded(uri, warn, write)
