"""One Tune trial: prune by fit, encode, train (reporting the training curve), compress, export,
compile per kind, and measure on the shared device actors through :class:`actors.cluster.pool.DevicePool`.

A trial is measured on the **validation** split only (selection happens there); its report gives the
searcher one objective per (kind, objective) pair (``accuracy@loihi``, ...), see :mod:`tune`.

Every artifact a trial stores (encoding, model, NIR, program, evaluation) is written by the stage
library :mod:`fabric.flow.stages`, the same code as the pipeline's stages, so a trial's artifacts read
like a pipeline run's. The trial only adds what Tune needs: the fit check before anything is stored,
the per-epoch reports, and the compression of the candidate before it is stored.

A trial asks Tune for 1 CPU; device actors ask for ``num_cpus=0`` and ``{kind: 1}``, so boards are a
shared resource (the pool queues when every actor of a kind is busy), never a per-trial one.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fabric.kpis import objective_metrics, objectives
from tune._pareto import per_kind_objectives
from tune._space import (
    candidate_spec,
    check_fit,
    compile_options,
    compress_trained,
    weight_sparsity,
)

__all__ = ["TrialContext", "tune_trial", "trial_row", "restored_checkpoint", "ROW_METRICS"]

ROW_METRICS = tuple(objectives())  # the Pareto objectives, named as Tune rows name them (fabric.kpis)


@dataclass(kw_only=True)
class TrialContext:
    """What every trial shares (put in the object store once by ``tune.with_parameters``)."""

    spec: dict[str, Any]
    kinds: list[str]
    store_url: str
    tenant: str
    dataset_id: str
    x: np.ndarray
    y: np.ndarray
    splits: np.ndarray
    n_classes: int
    classes: list[Any] = field(default_factory=list)  # class names; empty: classes are named by index
    extra: dict[str, Any] = field(default_factory=dict)



# A trial's batches are tiny (a few ms each): a device call still unanswered after this long was lost
# (e.g. its board actor was killed mid-call and the retry never ran); the pool then drains that board,
# re-queues the batch and a health probe brings the board back, instead of the trial waiting forever.
CALL_TIMEOUT_S = 60.0

def trial_row(kind: str, status: str, fit_error: str | None = None) -> dict[str, Any]:
    """A (trial, kind) row before measurement: what the driver records for a trial that never got
    measured on ``kind`` (did not fit, stopped early, failed)."""
    return {"kind": kind, "status": status, "metrics": dict.fromkeys(ROW_METRICS), "model_id": None,
            "program_id": None, "evaluation_id": None, "encoding_id": None, "fit_error": fit_error, "emulated": None}




def restored_checkpoint(reg: Any, key: str, epochs: int) -> Any:
    """The checkpoint artifact (a :class:`fabric.model.distributed.TrainCheckpoint`) named by the
    Tune checkpoint a restored trial is handed, or None (a fresh trial, or one whose checkpoint is
    unreadable, for another training, or past ``epochs``: it trains from scratch)."""
    import warnings

    from ray import tune

    from fabric.model.distributed import load_checkpoint, pick_resume, read_ray_checkpoint
    from fabric.store.registry import ArtifactNotFound, IntegrityError

    with warnings.catch_warnings():  # outside a Tune session (unit tests) Ray warns and returns None
        warnings.simplefilter("ignore")
        ray_ck = tune.get_checkpoint()
    if ray_ck is None:
        return None
    with ray_ck.as_directory() as d:
        got = read_ray_checkpoint(d)
    pick = pick_resume([got] if got is not None else [], epochs)
    if pick is None:
        return None
    try:
        return load_checkpoint(reg, pick[1], key)
    except (ValueError, ArtifactNotFound, IntegrityError):
        return None


def tune_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable (see module docstring); reports once per epoch, then the objectives."""
    from ray import tune

    from actors.cluster.pool import DevicePool
    from fabric.flow import stages
    from fabric.flow.codecs import nir_from_bytes, program_from_bytes
    from fabric.kinds import make_runtime
    from fabric.model.distributed import (
        TrainCheckpoint,
        checkpoint_key,
        store_checkpoint,
        write_ray_checkpoint,
    )
    from fabric.model.train import LoopState, train_model
    from fabric.records import FitError
    from fabric.spec import Spec
    from fabric.store.registry import Registry

    torch.set_num_threads(1)
    phases: list[tuple[float, float, str]] = []
    t_prep = time.time()
    spec = Spec.from_dict(ctx.spec)
    cand = candidate_spec(spec, config)
    reg = Registry(ctx.store_url, ctx.tenant)
    spikes, meta = stages.encode_inputs(cand, ctx.x, ctx.classes or list(range(ctx.n_classes)))
    n_in = int(spikes.shape[2])

    fits = check_fit(cand, config, n_in, ctx.n_classes, ctx.kinds)
    rows = {k: trial_row(k, "pending" if err is None else "does not fit", err) for k, err in fits.items()}
    if all(err is not None for err in fits.values()):  # pruned early: nothing is trained
        phases.append((t_prep, time.time(), "prepare"))
        tune.report({"trial_status": "does not fit", "rows_json": json.dumps(list(rows.values())),
                     "phases_json": json.dumps(phases)})
        return

    enc = stages.put_encoding(reg, cand, spikes, ctx.y, ctx.splits, meta, parents=[ctx.dataset_id],
                              name=f"{cand.name}/{cand.encoder.name}")
    # selection happens on val: the test split is measured by the driver, once, for front models only
    train_mask, val_mask = ctx.splits == "train", ctx.splits == "val"
    if not val_mask.any():
        raise ValueError("trial: the data has no 'val' samples to measure on (the driver adds them)")
    phases.append((t_prep, time.time(), "prepare"))  # encode + fit check + encoding artifact

    # resume: a restored trial (FailureConfig retry, Tuner.restore) gets its last Tune checkpoint, which
    # names a checkpoint artifact; training continues from it with the uninterrupted trial's weights
    ck_key = checkpoint_key("tune-trial", cand.hash, enc.id)
    resumed = restored_checkpoint(reg, ck_key, cand.train.epochs)
    pending: dict[str, str] = {}
    t0 = time.time()

    def save(state: LoopState) -> None:
        attempts = (resumed.attempts if resumed is not None else []) + [resumed.state.epoch if resumed else 0]
        seconds = (resumed.seconds if resumed is not None else 0.0) + time.time() - t0
        ck = TrainCheckpoint(state=state, key=ck_key, seconds=seconds, attempts=attempts)
        pending["id"] = store_checkpoint(reg, ck, spec=cand, parents=[enc.id]).id

    def on_epoch(rec: dict[str, float]) -> None:
        # the scheduler sees `train_loss` for every epoch but the last: a trial that trained every
        # epoch is always measured (ASHA's top rung sits at max_t and would otherwise cut it there)
        key = "train_loss" if rec["epoch"] < cand.train.epochs else "last_epoch_loss"
        metrics = {key: float(rec["loss"]), "train_accuracy": float(rec["train_accuracy"]),
                   "epoch": int(rec["epoch"]), "trial_status": "training", "fit_json": json.dumps(fits)}
        aid = pending.pop("id", None)
        if aid is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            write_ray_checkpoint(d, aid, int(rec["epoch"]))
            tune.report({**metrics, "checkpoint_id": aid}, checkpoint=tune.Checkpoint.from_directory(d))

    res = train_model(cand, spikes[train_mask], ctx.y[train_mask], ctx.n_classes, progress=False, on_epoch=on_epoch,
                      resume=resumed.state if resumed is not None else None, checkpoint=save)
    phases.append((t0, time.time(), "train"))
    t0 = time.time()
    model = compress_trained(res.model, config, cand, spikes[train_mask], ctx.y[train_mask])
    model_rec = stages.put_model(reg, cand, model, res, parents=[enc.id], tune_config=config,
                                 weight_sparsity=weight_sparsity(model))
    nir_rec = stages.export(reg, cand, model_rec.id, model=model)
    graph = nir_from_bytes(reg.get(nir_rec.id))  # what the pipeline compiles too: the graph as stored
    phases.append((t0, time.time(), "export"))  # compress + model/NIR artifacts

    for kind, row in rows.items():
        if row["status"] != "pending":
            continue
        row["model_id"] = model_rec.id
        t1 = time.time()
        try:  # compile is plain Python: done here, in the trial's CPU slot
            prog = stages.compile(reg, make_runtime(kind, device_id=f"{kind}-compile"), graph, kind, nir_rec.id,
                                  cand.hash, compile_options(kind, config))
        except (FitError, ValueError) as exc:  # weights-dependent limits can still refuse the trained model
            row.update(status="does not fit", fit_error=" ".join(str(exc).split()))
            continue
        program = program_from_bytes(reg.get(prog.id))
        phases.append((t1, time.time(), f"compile:{kind}"))
        t1 = time.time()
        ev = stages.evaluate(reg, DevicePool(kind, call_timeout_s=CALL_TIMEOUT_S), program, prog.id, enc.id, kind,
                             spikes[val_mask], ctx.y[val_mask], cand)
        phases.append((t1, time.time(), f"device:{kind}"))
        kpi = reg.get_json(ev.id)
        row.update(status="ok", program_id=prog.id, evaluation_id=ev.id, emulated=bool(kpi["emulated"]),
                   metrics=objective_metrics(kpi), encoding_id=enc.id)
    out = list(rows.values())
    objs = per_kind_objectives(out, ctx.kinds)  # metric@kind for every kind: never a mean across kinds
    tune.report({**objs, "trial_status": "ok" if objs else "does not fit",
                 "rows_json": json.dumps(out), "phases_json": json.dumps(phases),
                 "train_loss_final": float(res.history[-1]["loss"]), "epoch": len(res.history)})
