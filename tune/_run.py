"""The experiment driver: search (OptunaSearch, NSGA-II, multi-objective) + early stopping (ASHA on
the training curve) + retries + restore, then the Pareto artifact and its plot."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabric.spec import MAX_REPEATS, Spec
from fabric.store.registry import Registry
from tune._pareto import OBJECTIVES, front_union, objective_names, pareto_fronts
from tune._space import candidate_spec, effective_space, make_space_fn
from tune._splits import with_validation
from tune._trainable import ROW_METRICS, TrialContext, trial_row, tune_trial

__all__ = ["TuneError", "TuneResult", "run_tune", "store_pareto", "render_pareto_png", "default_storage_path", "latest_experiment",
           "measure_test"]


class TuneError(RuntimeError):
    """A tune request that cannot run; the message is one line naming the problem."""


@dataclass(kw_only=True)
class TuneResult:
    experiment: str
    experiment_path: str
    pareto_id: str
    plot_id: str
    rows: list[dict[str, Any]]
    front: list[int]
    seconds: float
    trials: int
    kinds: list[str]
    busy_seconds: float = 0.0  # union of time some trial spent training or on a device
    train_seconds: float = 0.0
    device_seconds: float = 0.0
    retried: int = 0  # trial failures that Tune retried (FailureConfig.max_failures)
    phase_seconds: dict[str, float] = field(default_factory=dict)  # union per phase kind over all trials
    in_trial_seconds: float = 0.0  # union of every timed phase inside trial functions
    errors: list[str] = field(default_factory=list)
    fronts: dict[str, list[int]] = field(default_factory=dict)  # kind -> row indices on that kind's front
    splits: dict[str, Any] = field(default_factory=dict)  # split bookkeeping (tune._splits.with_validation)

    @property
    def overhead_share(self) -> float:
        """Share of wall time in which no trial was training or on a device."""
        return max(0.0, 1.0 - self.busy_seconds / self.seconds) if self.seconds > 0 else 0.0


def default_storage_path(registry: Registry) -> str:
    """Tune's experiment directory root: ``<store>/tune`` for a local store, else ``~/.fabric/tune``."""
    if registry.store.fs.protocol in ("file", ("file", "local")) or "file" in registry.store.fs.protocol:
        return str(Path(registry.store.root) / "tune")
    return str(Path.home() / ".fabric" / "tune")


def latest_experiment(storage_path: str, spec: Spec) -> str | None:
    """The newest experiment directory of ``spec`` under ``storage_path`` (for ``--resume``)."""
    root = Path(storage_path)
    if not root.is_dir():
        return None
    pat = re.compile(rf"^{re.escape(spec.name)}-{spec.hash[:8]}-\d+$")
    cands = sorted((p for p in root.iterdir() if p.is_dir() and pat.match(p.name)), key=lambda p: p.name)
    return str(cands[-1]) if cands else None


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _searcher(seed: int, num_samples: int, space_fn: Callable[[Any], None], kinds: Sequence[str] | None = None) -> Any:
    """NSGA-II over the objectives; with ``kinds``, one objective per (kind, objective) pair
    (``accuracy@loihi``, ...) so no figure is ever averaged across kinds."""
    import optuna

    from tune._search import MultiObjectiveOptuna

    objs = objective_names(kinds) if kinds else dict(OBJECTIVES)
    pop = max(4, min(16, num_samples // 2))
    sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=pop)
    return MultiObjectiveOptuna(space=space_fn, metric=list(objs), mode=list(objs.values()), sampler=sampler)


def _prepare_data(spec: Spec, registry: Registry) -> tuple[str, Any, Any, Any, list[Any], dict[str, Any]]:
    """The pipeline's data stage, keeping the arrays the trials share: (dataset id, x, y, splits,
    classes, split record). The dataset artifact is stored with its own split (the one ``fabric run``
    stores); the val split trials are selected on is added to the shared array (tune._splits)."""
    from fabric.flow import stages

    src = stages.check_dataset(registry, spec)  # a dataset.version resolves in this registry; a path is read once
    ds, sp = stages.load_dataset(spec, source=src)
    rec = stages.put_dataset(registry, spec, ds, sp, source=src)
    try:
        splits, info = with_validation(sp, ds.y, spec.seed, spec_fraction=spec.dataset.val_fraction)
    except ValueError as exc:
        raise TuneError(str(exc)) from exc
    return rec.id, ds.x, ds.y, splits, list(ds.classes), info


def _test_key(program_id: str, encoding_id: str, n_test: int) -> str:
    import hashlib

    return "tune.test." + hashlib.sha256(f"{program_id}\x1f{encoding_id}\x1f{n_test}".encode()).hexdigest()[:40]


def measure_test(registry: Registry, spec: Spec, rows: list[dict[str, Any]], indices: Sequence[int], x: Any, y: Any,
                 splits: Any, classes: list[Any]) -> None:
    """Measure the rows at ``indices`` (the fronts' models) once on the **test** split, in place:
    ``test_metrics`` and ``test_evaluation_id``. Each (program, encoding) is measured once and cached
    in the registry's stage cache, so a restored experiment reuses the figures (and its artifact id)."""
    from actors.cluster.pool import DevicePool
    from fabric.flow import stages
    from fabric.flow.codecs import program_from_bytes
    from fabric.kpis import objective_metrics

    test = splits == "test"
    for i in indices:
        r = rows[i]
        if r.get("status") != "ok" or not r.get("program_id") or not r.get("encoding_id"):
            continue
        key = _test_key(r["program_id"], r["encoding_id"], int(test.sum()))
        ev_id = registry.cache_get(key)
        if ev_id is None:
            cand = candidate_spec(spec, r["config"])
            spikes, _ = stages.encode_inputs(cand, x, classes)  # seeded: the trial's encoding
            program = program_from_bytes(registry.get(r["program_id"]))
            ev = stages.evaluate(registry, DevicePool(r["kind"]), program, r["program_id"], r["encoding_id"], r["kind"],
                                 spikes[test], y[test], cand)
            registry.cache_put(key, ev.id)
            ev_id = ev.id
        r["test_metrics"] = {k: v for k, v in objective_metrics(registry.get_json(ev_id)).items() if k in ROW_METRICS}
        r["test_evaluation_id"] = ev_id


def run_tune(spec: Spec, registry: Registry, *, kinds: Sequence[str] | None = None, num_samples: int = 16,
             seed: int | None = None, storage_path: str | None = None, resume: str | bool | None = None,
             max_concurrent: int = 2, max_failures: int = 2, early_stop: bool = True, progress: bool = True,
             log: Callable[[str], None] = print, repeats: int | None = None) -> TuneResult:
    """Search ``spec.search_space`` with every candidate measured on each of ``kinds``' device actors.

    ``resume``: an experiment directory, or True for the newest one of this spec under
    ``storage_path``; unfinished and errored trials are resumed with ``Tuner.restore``.
    ``early_stop``: ASHA on the per-epoch training loss (False: every trial trains every epoch).
    ``repeats``: seeds per front model (default the spec's ``repeats.n``; > 1 re-trains each front
    candidate with more seeds and records test-split mean/std/CI per row, see :mod:`tune._repeats`).
    Returns the trials' (trial, kind) rows, the Pareto front and the stored artifact ids.
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from fabric.connect import connect
    from fabric.kinds import capabilities
    from fabric.kinds import kinds as registered

    kinds = list(kinds or spec.targets)
    for k in kinds:
        if k not in registered():
            raise TuneError(f"kinds: unknown device kind {k!r}; valid: {registered()}")
    if len(set(kinds)) != len(kinds):
        raise TuneError("kinds: a kind is repeated")
    if num_samples < 1:
        raise TuneError("samples: must be >= 1")
    n_rep = spec.repeats.n if repeats is None else int(repeats)
    if not 1 <= n_rep <= MAX_REPEATS:  # before any cluster is started
        raise TuneError(f"repeats: must be in 1..{MAX_REPEATS}, got {n_rep}")
    seed = spec.seed if seed is None else int(seed)
    if not ray.is_initialized():
        connect()
    have = ray.cluster_resources()
    missing = [k for k in kinds if capabilities(k).needs_resource and have.get(k, 0) < 1]
    if missing:
        raise TuneError(f"kinds: no node of this cluster advertises {missing}; start Ray with those resources")

    from actors.cluster.pool import DevicePool

    t0 = time.perf_counter()
    # Create (or find) the named, detached device actors here, in the driver: a trial runs inside a
    # Tune placement group, which would capture an actor created there (and kill it with the group).
    for k in kinds:
        DevicePool(k)
    storage_path = os.path.abspath(storage_path or default_storage_path(registry))
    os.makedirs(storage_path, exist_ok=True)
    data_id, x, y, splits, classes, split_info = _prepare_data(spec, registry)
    ctx = TrialContext(spec=spec.to_dict(), kinds=kinds, store_url=registry.store.url, tenant=registry.tenant,
                       dataset_id=data_id, x=x, y=y, splits=splits, n_classes=len(classes), classes=classes)
    trainable = tune.with_resources(tune.with_parameters(tune_trial, ctx=ctx), {"cpu": 1})
    # per-epoch results carry the training curve only; objectives come with a trial's last result
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # verbose=0 then really prints nothing
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from tune._search import TrialProgress

    callbacks = [TrialProgress(num_samples, progress)]

    if resume:
        path = resume if isinstance(resume, str) else latest_experiment(storage_path, spec)
        if not path or not tune.Tuner.can_restore(path):
            raise TuneError(f"resume: no restorable experiment {'at ' + str(path) if path else 'for this spec'} "
                            f"under {storage_path}")
        log(f"[tune] resuming {path}")
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
        name = Path(path).name
    else:
        name = f"{spec.name}-{spec.hash[:8]}-{time.strftime('%Y%m%d%H%M%S')}{int(time.time() * 1000) % 1000:03d}"
        epochs = spec.train.epochs
        # ASHA on the training curve (a single metric, which a multi-objective searcher cannot give a
        # scheduler). Trials report `train_loss` for every epoch but the last, so a trial that trained
        # every epoch is always measured on the devices (a 1-epoch spec gets no early stopping).
        asha = ASHAScheduler(time_attr="training_iteration", metric="train_loss", mode="min", max_t=epochs,
                             grace_period=1, reduction_factor=2, stop_last_trials=False)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=_searcher(seed, num_samples, make_space_fn(effective_space(spec), spec.model.hidden), kinds),
                                        scheduler=asha if early_stop else None, num_samples=num_samples, max_concurrent_trials=max_concurrent,
                                        reuse_actors=True),
            run_config=tune.RunConfig(name=name, storage_path=storage_path, verbose=0, callbacks=callbacks,
                                      failure_config=tune.FailureConfig(max_failures=max_failures)),
        )
    log(f"[tune] experiment {name}: {num_samples} trials x kinds {kinds} (dir {storage_path}/{name})")
    grid = tuner.fit()

    rows, errors, phases = _collect(grid, kinds)
    analysis = getattr(grid, "_experiment_analysis", None)  # Trial objects carry the failure count
    retried = sum(int(getattr(t, "num_failures", 0)) for t in getattr(analysis, "trials", []))
    fronts = pareto_fronts(rows, OBJECTIVES)  # one front per kind, selected on the val figures
    front = front_union(fronts)
    for i, r in enumerate(rows):
        r["on_front"] = i in front
    if front:
        log(f"[tune] measuring the {len(front)} front models once on the test split")
    measure_test(registry, spec, rows, front, x, y, splits, classes)
    rep_summary = None
    if n_rep > 1:
        from tune._repeats import repeat_front

        rep_summary = repeat_front(registry, spec, rows, front, x, y, splits, classes, n=n_rep,
                                   confidence=spec.repeats.confidence, log=log)
    wall = time.perf_counter() - t0
    pareto_id, plot_id = store_pareto(registry, spec, name, rows, front, data_id, fronts=fronts, splits=split_info,
                                      repeats=rep_summary)
    tr = [(a, b) for a, b, what in phases if what == "train"]
    dv = [(a, b) for a, b, what in phases if what.startswith("device")]
    res = TuneResult(experiment=name, experiment_path=f"{storage_path}/{name}", pareto_id=pareto_id, plot_id=plot_id,
                     rows=rows, front=front, seconds=wall, trials=len({r["trial_id"] for r in rows}), kinds=kinds,
                     busy_seconds=_union(tr + dv), train_seconds=sum(b - a for a, b in tr),
                     device_seconds=sum(b - a for a, b in dv), errors=errors, retried=retried,
                     phase_seconds={k: _union([(a, b) for a, b, w in phases if w.split(":")[0] == k])
                                    for k in sorted({w.split(":")[0] for _, _, w in phases})},
                     in_trial_seconds=_union([(a, b) for a, b, _ in phases]), fronts=fronts, splits=split_info)
    unfinished = len({r["trial_id"] for r in rows if r["status"] == "not run"})
    if unfinished:
        log(f"[tune] {unfinished} trials did not run (interrupted?): continue with --resume {res.experiment_path}")
    log(f"[tune] {res.trials} trials ({retried} retried after a failure), {len(rows)} (trial, kind) rows, "
        f"{len(front)} on the per-kind Pareto fronts ({', '.join(f'{k} {len(f)}' for k, f in fronts.items())}); "
        f"pareto {pareto_id[:12]}, plot {plot_id[:12]} ({wall:.1f}s)")
    return res


def _collect(grid: Any, kinds: list[str]) -> tuple[list[dict[str, Any]], list[str], list[tuple[float, float, str]]]:
    """(trial, kind) rows in the artifact's format, errors, and every trial's timed phases."""
    rows, errors, phases = [], [], []
    for result in grid:
        m = result.metrics or {}
        trial_id = m.get("trial_id") or Path(result.path).name
        config = dict(result.config or {})
        if result.error is not None:
            errors.append(f"{trial_id}: {str(result.error).splitlines()[0][:200]}")
        if "rows_json" in m:
            trows = json.loads(m["rows_json"])
            phases += [tuple(p) for p in json.loads(m.get("phases_json") or "[]")]
        else:
            # stopped by the scheduler (or failed) before measurement; the fit check still tells
            # which kinds refused the candidate
            status = ("error" if result.error is not None else "stopped early" if m.get("trial_status")
                      else "not run")  # "not run": the experiment was interrupted before it finished
            fits = json.loads(m.get("fit_json") or "{}")
            trows = [trial_row(k, "does not fit", fits[k]) if fits.get(k) else trial_row(k, status) for k in kinds]
        for r in trows:
            rows.append({"trial_id": trial_id, "config": config, "kind": r["kind"],
                         "metrics": {k: r["metrics"].get(k) for k in ROW_METRICS},
                         "model_id": r["model_id"], "program_id": r["program_id"], "status": r["status"],
                         "on_front": False, "fit_error": r["fit_error"], "evaluation_id": r.get("evaluation_id"),
                         "emulated": r.get("emulated"), "epochs": m.get("epoch"), "encoding_id": r.get("encoding_id"),
                         "test_metrics": None, "test_evaluation_id": None})
    rows.sort(key=lambda r: (r["trial_id"], r["kind"]))
    return rows, errors, phases


def store_pareto(registry: Registry, spec: Spec, experiment: str, rows: list[dict[str, Any]], front: list[int],
                 data_id: str, *, fronts: dict[str, list[int]] | None = None,
                 splits: dict[str, Any] | None = None, repeats: dict[str, Any] | None = None) -> tuple[str, str]:
    """Store the pareto artifact (format in ``tune.__doc__``) and its PNG; return their ids.
    ``fronts`` defaults to each kind's front of ``rows``; ``splits`` is the split record; ``repeats``
    the repeated-seed summary (front rows then carry ``repeats``: test-split mean/std/CI per objective)."""
    fronts = pareto_fronts(rows, OBJECTIVES) if fronts is None else fronts
    doc = {"experiment": experiment, "spec_hash": spec.hash, "objectives": dict(OBJECTIVES), "trials": rows,
           "front": front, "fronts": fronts, "selected_on": "val", "reported_on": "test", "splits": splits or {},
           "notes": "metrics = the validation split on the device (what selected every front); test_metrics = the "
                    "test split, measured once for front models only (reported, never used to select). "
                    "One front per kind: rows are compared only with rows of their kind. "
                    "latency_ms = device time per inference (p50, batch 1) and energy_mj = energy per inference: "
                    "both modelled for emulated kinds (constants and sources: actors/<kind>/constants.yaml, "
                    "`fabric devices`), measured latency only for kind cpu"}
    # which split each figure of a trial row comes from, machine-readable (the notes say it in words)
    doc["figure_splits"] = {"metrics": "val", "test_metrics": "test"}
    if repeats:
        doc["repeats"] = repeats
        doc["figure_splits"]["repeats"] = repeats.get("split", "test")
    parents = sorted({data_id} | {r[k] for r in rows for k in ("model_id", "program_id") if r.get(k)})
    extra = {"experiment": experiment, "trials": len({r["trial_id"] for r in rows}), "front_size": len(front),
             "kinds": sorted({r["kind"] for r in rows}), "selected_on": "val", "reported_on": "test"}
    rec = registry.put_json(doc, kind="pareto", name=f"{spec.name}/pareto", parents=parents, spec_hash=spec.hash,
                            seeds={"seed": spec.seed}, extra=extra)
    png = registry.put(render_pareto_png(rows, front, f"{spec.name} ({experiment})"), kind="report",
                       name=f"{spec.name}/pareto.png", parents=[rec.id], spec_hash=spec.hash, extra={"format": "png"})
    return rec.id, png.id


def render_pareto_png(rows: list[dict[str, Any]], front: list[int], title: str) -> bytes:
    """Accuracy (validation split: what selected) against latency and against energy, one colour per
    kind; each kind's front points ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    kinds = sorted({r["kind"] for r in rows})
    colours = dict(zip(kinds, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for ax, xm, label in ((axes[0], "latency_ms", "latency ms (device time, modelled for emulated kinds)"),
                          (axes[1], "energy_mj", "energy mJ / inference (modelled)")):
        for kind in kinds:
            pts = [(r["metrics"][xm], r["metrics"]["accuracy"], i in front) for i, r in enumerate(rows)
                   if r["kind"] == kind and r["status"] == "ok"]
            if not pts:
                continue
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=colours[kind], alpha=0.5, s=25, label=kind)
            fp = [p for p in pts if p[2]]
            ax.scatter([p[0] for p in fp], [p[1] for p in fp], facecolors="none", edgecolors=colours[kind], s=110,
                       linewidths=1.5)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy (val split, on device; selects)")
        ax.grid(alpha=0.3)
    if any(r["status"] == "ok" for r in rows):
        axes[0].legend(title="kind (ringed = that kind's Pareto front)", fontsize=8)
    else:
        axes[0].text(0.5, 0.5, "no trial was measured", transform=axes[0].transAxes, ha="center")
    fig.suptitle(f"tune: {title}", fontsize=10)
    from fabric.report import fig_png

    return fig_png(fig)
