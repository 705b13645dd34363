"""One Tune trial: prune by fit, encode, train (reporting the training curve), compress, export,
compile per kind, and measure on the shared device actors through :class:`actors.cluster.pool.DevicePool`.

A trial asks Tune for 1 CPU; device actors ask for ``num_cpus=0`` and ``{kind: 1}``, so boards are a
shared resource (the pool queues when every actor of a kind is busy), never a per-trial one.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tune._space import candidate_spec, check_fit, compile_options, compress, weight_sparsity

__all__ = ["TrialContext", "tune_trial", "ROW_METRICS"]

ROW_METRICS = ("accuracy", "latency_ms", "energy_mj", "footprint_kb")


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
    extra: dict[str, Any] = field(default_factory=dict)



# A trial's batches are tiny (a few ms each): a device call still unanswered after this long was lost
# (e.g. its board actor was killed mid-call and the retry never ran); the pool then drains that board,
# re-queues the batch and a health probe brings the board back, instead of the trial waiting forever.
CALL_TIMEOUT_S = 60.0

def _row(kind: str, status: str, fit_error: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "status": status, "metrics": dict.fromkeys(ROW_METRICS), "model_id": None,
            "program_id": None, "evaluation_id": None, "fit_error": fit_error, "emulated": None}


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The trial's objective vector for the searcher: mean over the kinds it was measured on."""
    ok = [r["metrics"] for r in rows if r["status"] == "ok"]
    return {m: float(np.mean([r[m] for r in ok])) for m in ROW_METRICS} if ok else {}


def tune_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable (see module docstring); reports once per epoch, then the objectives."""
    from ray import tune

    from actors.cluster.pool import DevicePool
    from fabric.data.encode import encode
    from fabric.flow.pipeline import _evaluate, _pack_spikes, nir_to_bytes
    from fabric.model.snn import export_nir
    from fabric.model.train import train_model
    from fabric.records import FitError
    from fabric.spec import Spec
    from fabric.store.registry import Registry

    torch.set_num_threads(1)
    phases: list[tuple[float, float, str]] = []
    t_prep = time.time()
    spec = Spec.from_dict(ctx.spec)
    cand = candidate_spec(spec, config)
    reg = Registry(ctx.store_url, ctx.tenant)
    sh, seeds = cand.hash, {"seed": cand.seed}
    spikes = encode(cand.encoder.name, ctx.x, cand.encoder.timesteps, cand.seed, cand.encoder.params)
    n_in = int(spikes.shape[2])

    fits = check_fit(cand, config, n_in, ctx.n_classes, ctx.kinds)
    rows = {k: _row(k, "pending" if err is None else "does not fit", err) for k, err in fits.items()}
    if all(err is not None for err in fits.values()):  # pruned early: nothing is trained
        phases.append((t_prep, time.time(), "prepare"))
        tune.report({"trial_status": "does not fit", "rows_json": json.dumps(list(rows.values())),
                     "phases_json": json.dumps(phases)})
        return

    meta = {"encoder": cand.encoder.name, "timesteps": cand.encoder.timesteps, "params": cand.encoder.params,
            "seed": cand.seed, "n_classes": ctx.n_classes}
    enc = reg.put(_pack_spikes(spikes, ctx.y, ctx.splits, meta), kind="encoding", name=f"{cand.name}/{cand.encoder.name}",
                  parents=[ctx.dataset_id], spec_hash=sh, seeds=seeds, extra=meta | {"shape": list(spikes.shape)})
    train_mask, test_mask = ctx.splits == "train", ctx.splits == "test"
    phases.append((t_prep, time.time(), "prepare"))  # encode + fit check + encoding artifact

    def on_epoch(rec: dict[str, float]) -> None:
        # the scheduler sees `train_loss` for every epoch but the last: a trial that trained every
        # epoch is always measured (ASHA's top rung sits at max_t and would otherwise cut it there)
        key = "train_loss" if rec["epoch"] < cand.train.epochs else "last_epoch_loss"
        tune.report({key: float(rec["loss"]), "train_accuracy": float(rec["train_accuracy"]),
                     "epoch": int(rec["epoch"]), "trial_status": "training", "fit_json": json.dumps(fits)})

    t0 = time.time()
    res = train_model(cand, spikes[train_mask], ctx.y[train_mask], ctx.n_classes, progress=False, on_epoch=on_epoch)
    phases.append((t0, time.time(), "train"))
    t0 = time.time()
    model = compress(res.model, config.get("weight_bits"), config.get("sparsity"))
    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "n_in": n_in, "n_out": ctx.n_classes, "hidden": list(cand.model.hidden),
                "beta": cand.model.beta, "threshold": cand.model.threshold}, buf)
    model_rec = reg.put(buf.getvalue(), kind="model", name=f"{cand.name}/lif_mlp", parents=[enc.id], spec_hash=sh,
                        seeds=seeds, extra={"history": res.history, "train_seconds": res.seconds, "device": res.device,
                                            "template": cand.model.template, "tune_config": config,
                                            "weight_sparsity": weight_sparsity(model)})
    graph = export_nir(model, metadata={"timesteps": cand.encoder.timesteps, "model_artifact": model_rec.id})
    nir_rec = reg.put(nir_to_bytes(graph), kind="nir", name=f"{cand.name}.nir", parents=[model_rec.id], spec_hash=sh,
                      seeds=seeds, extra={"nodes": list(graph.nodes), "format": "nir-hdf5"})

    phases.append((t0, time.time(), "export"))  # compress + model/NIR artifacts
    from fabric.kinds import make_runtime

    for kind, row in rows.items():
        if row["status"] != "pending":
            continue
        row["model_id"] = model_rec.id
        t1 = time.time()
        try:  # compile is plain Python: done here, in the trial's CPU slot
            program = make_runtime(kind, device_id=f"{kind}-compile").compile(graph, compile_options(kind, config))
        except (FitError, ValueError) as exc:  # weights-dependent limits can still refuse the trained model
            row.update(status="does not fit", fit_error=" ".join(str(exc).split()))
            continue
        prog = reg.put(program.to_bytes(), kind="program", name=f"{kind}-program", parents=[nir_rec.id], spec_hash=sh,
                       device_id=kind, extra={"kind": kind, "fit": program.fit.to_dict()})
        phases.append((t1, time.time(), f"compile:{kind}"))
        t1 = time.time()
        ev = _evaluate(reg, DevicePool(kind, call_timeout_s=CALL_TIMEOUT_S), program, prog.id, enc.id, kind, spikes[test_mask], ctx.y[test_mask],
                       cand, False)
        phases.append((t1, time.time(), f"device:{kind}"))
        kpi = reg.get_json(ev.id)
        row.update(status="ok", program_id=prog.id, evaluation_id=ev.id, emulated=bool(kpi["emulated"]),
                   metrics={"accuracy": kpi["accuracy"], "latency_ms": kpi["latency_p50_ms"],
                            "energy_mj": kpi["energy_mj"], "footprint_kb": kpi["footprint_kb"]})
    out = list(rows.values())
    tune.report({**_aggregate(out), "trial_status": "ok" if _aggregate(out) else "does not fit",
                 "rows_json": json.dumps(out), "phases_json": json.dumps(phases),
                 "train_loss_final": float(res.history[-1]["loss"]), "epoch": len(res.history)})
