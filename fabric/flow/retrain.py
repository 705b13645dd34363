"""The autopilot's retrain job: the stage library's train -> export -> compile -> evaluate -> deploy chain
on the served model's training split plus the labelled feedback collected by ``/v1/feedback``.

Why here and not ``fabric run``: the retrain starts from what is *served* (a deployment's lineage and a
``served-inputs`` artifact holding labelled feedback), not from a spec file. The data set version the
new model is trained on is stored as its own ``encoding`` artifact whose parents are the original
encoding and the feedback, so the new model's lineage shows exactly which live samples it learnt from.
The driver runs :func:`retrain` as a Ray task; it is plain Python so it also runs in-process.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from fabric.flow import stages
from fabric.flow.codecs import program_from_bytes, unpack_spikes
from fabric.spec import Spec
from fabric.store.registry import Registry

__all__ = ["RetrainError", "find_spec", "load_feedback", "retrain"]


class RetrainError(ValueError):
    """The served model's lineage or the feedback cannot be retrained from (message names the link)."""


def find_spec(registry: Registry, spec_hash: str | None) -> Spec:
    """The spec that built the served model, from the run's stored ``requirements`` report."""
    if not spec_hash:
        raise RetrainError("spec_hash: the served model records no spec hash (was it built by `fabric run`?)")
    for r in sorted(registry.ls(kind="report"), key=lambda r: r.created, reverse=True):
        if r.spec_hash == spec_hash and r.name.endswith("/requirements"):
            return Spec.from_dict(registry.get_json(r.id)["spec"])
    raise RetrainError(f"spec_hash: no requirements report for spec {spec_hash[:12]} in {registry.url}")


def load_feedback(registry: Registry, ref: str) -> tuple[np.ndarray, np.ndarray]:
    """(spikes [N, T, C], labels [N]) of a labelled ``served-inputs`` artifact."""
    rec = registry.record(ref)
    if rec.kind != "served-inputs" or not rec.extra.get("labelled"):
        raise RetrainError(f"feedback: artifact {rec.id[:12]} is not labelled served-inputs")
    with np.load(io.BytesIO(registry.get(rec.id))) as z:
        if "labels" not in z.files or "spikes" not in z.files:
            raise RetrainError(f"feedback: artifact {rec.id[:12]} lacks 'spikes'/'labels' (has {z.files})")
        return z["spikes"].astype(np.uint8), z["labels"].astype(np.int64)


def retrain(store: str, tenant: str | None, *, kind: str, encoding_id: str, spec_hash: str | None,
            feedback_id: str | None, epochs: int | None = None, feedback_repeat: int = 3,
            name: str = "autopilot") -> dict[str, Any]:
    """Retrain on training split + feedback (repeated ``feedback_repeat`` times), compile for ``kind``,
    evaluate on the original test split plus the feedback, and store a deployment record.

    Returns the ids of every artifact made: ``dataset`` (the retrain encoding), ``model``, ``nir``,
    ``program``, ``evaluation``, ``deployment``, and the evaluation's ``accuracy``."""
    from fabric.kinds import device_pool, make_runtime
    from fabric.model.train import train_model

    reg = Registry(store, tenant)
    spec = find_spec(reg, spec_hash)
    if epochs is not None and int(epochs) != spec.train.epochs:
        spec = Spec.from_dict(spec.to_dict() | {"train": spec.to_dict()["train"] | {"epochs": int(epochs)}})
    # the spec the retrain ran under, stored like a run's: the next cycle finds it by the new model's hash
    req_rec = stages.requirements(reg, spec)
    enc_rec = reg.record(encoding_id)
    spikes, labels, splits, meta = unpack_spikes(reg.get(enc_rec.id))
    n_out = int(meta["n_classes"])
    train_mask, test_mask = splits == "train", splits == "test"
    # the original dataset first: serve reads a deployment's raw input shape from the encoding's dataset parent
    parents = [p for p in enc_rec.parents if reg.record(p).kind == "dataset"] + [enc_rec.id, req_rec.id]
    fx = np.zeros((0, *spikes.shape[1:]), np.uint8)
    fy = np.zeros(0, np.int64)
    if feedback_id:
        fx, fy = load_feedback(reg, feedback_id)
        if fx.shape[1:] != spikes.shape[1:]:
            raise RetrainError(f"feedback: samples are {list(fx.shape[1:])}, the encoding's are {list(spikes.shape[1:])}")
        if len(fy) and (fy.min() < 0 or fy.max() >= n_out):
            raise RetrainError(f"feedback: labels must be in [0, {n_out})")
        parents.append(reg.resolve(feedback_id))
    # the retrain data set version: training split + feedback (split "train") + the test split
    rep = max(1, int(feedback_repeat))
    x_all = np.concatenate([spikes[train_mask]] + [fx] * rep + [spikes[test_mask]])
    y_all = np.concatenate([labels[train_mask]] + [fy] * rep + [labels[test_mask]])
    s_all = np.array(["train"] * (int(train_mask.sum()) + rep * len(fy)) + ["test"] * int(test_mask.sum()))
    ds_rec = stages.put_encoding(reg, spec, x_all, y_all, s_all, meta | {"retrain_feedback": int(len(fy)),
                                                                       "feedback_repeat": rep},
                                 parents=parents, name=f"{name}/retrain-set")
    tr = s_all == "train"
    res = train_model(spec, x_all[tr], y_all[tr], n_out, progress=False)
    model_rec = stages.put_model(reg, spec, res.model, res, parents=[ds_rec.id], variant="retrain",
                                 autopilot=name)
    nir_rec = stages.export(reg, spec, model_rec.id, model=res.model)
    from fabric.flow.codecs import nir_from_bytes

    graph = nir_from_bytes(reg.get(nir_rec.id))
    prog_rec = stages.compile(reg, make_runtime(kind, device_id=f"{kind}-compile"), graph, kind, nir_rec.id, spec.hash)
    program = program_from_bytes(reg.get(prog_rec.id))
    # evaluated on the held-out test split and the feedback itself (the live distribution)
    ex, ey = np.concatenate([spikes[test_mask], fx]), np.concatenate([labels[test_mask], fy])
    ev_rec = stages.evaluate(reg, device_pool(kind), program, prog_rec.id, ds_rec.id, kind, ex, ey, spec)
    dep_rec = stages.deploy(reg, spec, kind, prog_rec.id, ev_rec.id, model_rec.id, nir_rec.id, meta, ds_rec.id,
                            int(spikes.shape[2]), n_out)
    row = reg.get_json(ev_rec.id)
    return {"dataset": ds_rec.id, "model": model_rec.id, "nir": nir_rec.id, "program": prog_rec.id,
            "evaluation": ev_rec.id, "deployment": dep_rec.id, "requirements": req_rec.id,
            "accuracy": row.get("accuracy"),
            "train_samples": int(tr.sum()), "feedback_samples": int(len(fy)), "epochs": spec.train.epochs}
