"""Training through Ray Train (issue #19 item 4): ``TorchTrainer`` workers, checkpoints as registry
artifacts, resume after a killed worker or a killed job.

The fabric's registry is the source of truth for checkpoints: every ``train.checkpoint_every`` epochs
rank 0 stores a signed ``checkpoint`` artifact (weights, Adam's moments, the generator states, the
history: a :class:`fabric.model.train.LoopState`) and points two stage-cache entries at it (that
epoch's, and the latest). Ray Train's :class:`ray.train.Checkpoint` only carries the artifact id
from a worker to the controller and back, so a worker that Ray restarts
(``FailureConfig(max_failures)``) and a rerun of ``fabric run`` after the whole job was killed both
continue from the same stored state, and end with the uninterrupted run's weights.

Pure parts (codec, resume choice, GPU choice) are here at the top and need no Ray.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fabric.model.train import LoopState, TrainResult, build_model, train_model
from fabric.spec import Spec, TrainSpec

if TYPE_CHECKING:
    from fabric.store.registry import ArtifactRecord, Registry

__all__ = ["CHECKPOINT_FORMAT", "TrainCheckpoint", "encode_checkpoint", "decode_checkpoint", "checkpoint_key",
           "checkpoint_cache_key", "pick_resume", "resolve_use_gpu", "store_checkpoint", "load_checkpoint",
           "find_resume", "write_ray_checkpoint", "read_ray_checkpoint", "train_with_ray", "EXIT_AFTER_ENV"]

CHECKPOINT_FORMAT = 1
GPU_DEVICES = ("auto", "cuda")  # the train.device choices (torch devices, not fabric kinds) that allow a GPU
RAY_CHECKPOINT_FILE = "fabric_checkpoint.json"  # what a Ray Train / Tune checkpoint directory holds
# test hook: a fresh (not resumed) Ray Train run makes its rank-0 worker process exit after this epoch
EXIT_AFTER_ENV = "FABRIC_TEST_TRAIN_EXIT_AFTER"


@dataclass(kw_only=True)
class TrainCheckpoint:
    """A decoded checkpoint artifact: the loop state plus what it belongs to (``key``: the training's
    identity, see :func:`checkpoint_key`), the training seconds so far, and the epoch each attempt
    started from (``attempts``: ``[0, 2]`` = a fresh start, then a resume after epoch 2)."""

    state: LoopState
    key: str
    seconds: float = 0.0
    attempts: list[int] = field(default_factory=list)


def encode_checkpoint(ck: TrainCheckpoint) -> bytes:
    """A checkpoint artifact's bytes (``torch.save`` of tensors and plain data only)."""
    s = ck.state
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "key": ck.key, "epoch": s.epoch, "history": s.history,
                "model": s.model, "optimizer": s.optimizer, "rng": s.rng, "seconds": float(ck.seconds),
                "attempts": [int(a) for a in ck.attempts]}, buf)
    return buf.getvalue()


def decode_checkpoint(data: bytes) -> TrainCheckpoint:
    """The :class:`TrainCheckpoint` of :func:`encode_checkpoint`'s bytes (``weights_only``: no pickled
    code runs); a foreign or damaged blob is a one-line ValueError naming what is wrong."""
    try:
        d = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises several types for a blob that is not its format
        raise ValueError(f"checkpoint: not a torch checkpoint ({type(exc).__name__})") from None
    if not isinstance(d, dict) or d.get("format") != CHECKPOINT_FORMAT:
        got = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise ValueError(f"checkpoint: format {got!r} is not {CHECKPOINT_FORMAT}")
    missing = sorted({"key", "epoch", "history", "model", "optimizer", "rng"} - set(d))
    if missing:
        raise ValueError(f"checkpoint: missing field(s) {missing}")
    if not isinstance(d["epoch"], int) or d["epoch"] < 1 or len(d["history"]) != d["epoch"]:
        raise ValueError(f"checkpoint: epoch {d['epoch']!r} does not match its {len(d['history'])} history records")
    state = LoopState(epoch=d["epoch"], history=list(d["history"]), model=d["model"], optimizer=d["optimizer"],
                      rng=dict(d["rng"]))
    return TrainCheckpoint(state=state, key=d["key"], seconds=float(d.get("seconds", 0.0)),
                           attempts=list(d.get("attempts", [])))


def checkpoint_key(*parts: Any) -> str:
    """A training's identity for its checkpoints: sha256 of its inputs (the pipeline passes the train
    stage's cache-key parts: encoding id, model and train sections, seed, user-factory digest)."""
    return hashlib.sha256(json.dumps(["train-checkpoint", *parts], sort_keys=True, default=str).encode()).hexdigest()


def checkpoint_cache_key(key: str, epoch: int | None = None) -> str:
    """The stage-cache entry naming the checkpoint of ``key`` after ``epoch`` (None: the latest)."""
    return f"ckpt-{key}-{'latest' if epoch is None else int(epoch)}"


def pick_resume(candidates: list[tuple[int, str]], epochs: int) -> tuple[int, str] | None:
    """The (epoch, artifact id) to resume from: the furthest candidate that does not go past
    ``epochs`` (a checkpoint of a longer run cannot be continued into a shorter one), or None."""
    ok = [(e, aid) for e, aid in candidates if 1 <= e <= epochs]
    return max(ok, key=lambda c: c[0]) if ok else None


def resolve_use_gpu(train: TrainSpec, cluster_gpus: float) -> bool:
    """Whether Ray Train workers get a GPU each: when the spec allows it (``use_gpu`` not false,
    ``device`` not cpu) and the cluster has one per worker; required (``use_gpu: true`` or
    ``device: cuda``) and missing is a one-line error."""
    allowed = train.use_gpu is not False and train.device in GPU_DEVICES
    required = train.use_gpu is True or train.device == "cuda"
    enough = cluster_gpus >= train.workers
    if required and not enough:
        field_ = "train.use_gpu: true" if train.use_gpu is True else "train.device: 'cuda'"
        raise RuntimeError(f"{field_} needs {train.workers} GPU(s), one per train.workers; the cluster has "
                           f"{cluster_gpus:g}")
    return allowed and enough


def write_ray_checkpoint(directory: str | Path, artifact_id: str, epoch: int) -> None:
    """What a Ray checkpoint directory holds: the artifact id (the registry has the state)."""
    Path(directory, RAY_CHECKPOINT_FILE).write_text(json.dumps({"artifact": artifact_id, "epoch": int(epoch)}))


def read_ray_checkpoint(directory: str | Path) -> tuple[int, str] | None:
    """(epoch, artifact id) of a Ray checkpoint directory, or None when it is missing or not ours
    (e.g. on another node's local disk after a restart there)."""
    try:
        d = json.loads(Path(directory, RAY_CHECKPOINT_FILE).read_text())
        return int(d["epoch"]), str(d["artifact"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


# -- the registry side -----------------------------------------------------------------------------------
def store_checkpoint(registry: Registry, ck: TrainCheckpoint, *, spec: Spec, parents: list[str]) -> ArtifactRecord:
    """Store ``ck`` as a signed ``checkpoint`` artifact and point that epoch's and the latest cache
    entries at it."""
    rec = registry.put(encode_checkpoint(ck), kind="checkpoint", name=f"{spec.name}/checkpoint", parents=parents,
                       spec_hash=spec.hash, seeds={"seed": spec.seed},
                       extra={"epoch": ck.state.epoch, "epochs": spec.train.epochs, "key": ck.key,
                              "loss": ck.state.history[-1]["loss"], "attempts": ck.attempts})
    registry.cache_put(checkpoint_cache_key(ck.key, ck.state.epoch), rec.id)
    registry.cache_put(checkpoint_cache_key(ck.key), rec.id)
    return rec


def load_checkpoint(registry: Registry, artifact_id: str, key: str) -> TrainCheckpoint:
    """The checkpoint artifact ``artifact_id``, checked to belong to the training ``key``."""
    ck = decode_checkpoint(registry.get(artifact_id))
    if ck.key != key:
        raise ValueError(f"checkpoint {artifact_id[:12]}: belongs to training {ck.key[:12]}, not {key[:12]}")
    return ck


def find_resume(registry: Registry, key: str, epochs: int, ray_checkpoint: Any = None) -> tuple[str, TrainCheckpoint] | None:
    """The checkpoint to continue from: the one Ray Train hands a restarted worker
    (``ray_checkpoint``) or the registry's latest for ``key``, whichever is further (see
    :func:`pick_resume`); (artifact id, checkpoint) or None to start from scratch."""
    cands: list[tuple[int, str]] = []
    if ray_checkpoint is not None:
        with ray_checkpoint.as_directory() as d:
            got = read_ray_checkpoint(d)
        if got is not None:
            cands.append(got)
    latest = registry.cache_get(checkpoint_cache_key(key))
    if latest is not None:
        cands.append((int(registry.record(latest).extra.get("epoch", 0)), latest))
    pick = pick_resume(cands, epochs)
    if pick is None:
        return None
    return pick[1], load_checkpoint(registry, pick[1], key)


# -- Ray Train -------------------------------------------------------------------------------------------
def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: resume if there is a checkpoint, train its shard, report every epoch
    (with the checkpoint's id on checkpoint epochs; rank 0 stores the artifacts)."""
    import ray
    import ray.train
    import ray.train.torch
    from ray.experimental.tqdm_ray import tqdm as tqdm_ray

    torch.set_num_threads(1)
    spec, reg, key = Spec.from_dict(config["spec"]), config["registry"], config["key"]
    x, y = ray.get(config["x"]), ray.get(config["y"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    dev = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")
    found = find_resume(reg, key, spec.train.epochs, ray.train.get_checkpoint()) if config["resume"] else None
    resumed = found[1] if found is not None else None
    start = resumed.state.epoch if resumed is not None else 0
    attempts = (resumed.attempts if resumed is not None else []) + [start]
    seconds0, t0 = (resumed.seconds if resumed is not None else 0.0), time.perf_counter()
    pending: dict[str, Any] = {}

    def save(state: LoopState) -> None:
        if rank == 0:
            ck = TrainCheckpoint(state=state, key=key, seconds=seconds0 + time.perf_counter() - t0, attempts=attempts)
            pending["id"] = store_checkpoint(reg, ck, spec=spec, parents=config["parents"]).id

    def report(metrics: dict[str, Any]) -> None:
        aid = pending.pop("id", None)
        if aid is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            write_ray_checkpoint(d, aid, metrics["epoch"])
            ray.train.report({**metrics, "checkpoint_id": aid}, checkpoint=ray.train.Checkpoint.from_directory(d))

    def on_epoch(rec: dict[str, Any]) -> None:
        report({"epoch": int(rec["epoch"]), "loss": float(rec["loss"]), "train_accuracy": float(rec["train_accuracy"]),
                "start_epoch": start, "device": str(dev)})
        if config["exit_after"] and start == 0 and rec["epoch"] == config["exit_after"] and rank == 0:
            os._exit(17)  # test hook (EXIT_AFTER_ENV): the worker process dies after its checkpoint

    def all_reduce(vals: list[float]) -> list[float]:
        t = torch.tensor(vals, dtype=torch.float64, device=dev)
        torch.distributed.all_reduce(t)
        return t.cpu().tolist()

    multi = world > 1
    train_model(spec, x, y, config["n_out"], progress=config["progress"] and rank == 0,
                bar=tqdm_ray if config["progress"] and rank == 0 else None, on_epoch=on_epoch,
                resume=resumed.state if resumed is not None else None, checkpoint=save, device=dev,
                wrap=ray.train.torch.prepare_model if multi else None, shard=(rank, world),
                all_reduce=all_reduce if multi else None)
    if start >= spec.train.epochs:  # nothing left to train: hand back the checkpoint we resumed from
        if rank == 0 and found is not None:
            pending["id"] = found[0]
        report({"epoch": start, "start_epoch": start, "device": str(dev)})


def train_with_ray(spec: Spec, x: np.ndarray, y: np.ndarray, n_out: int, *, registry: Registry, key: str,
                   parents: list[str], progress: bool = True, resume: bool = True,
                   max_failures: int = 2) -> TrainResult:
    """Train with ``ray.train.torch.TorchTrainer`` (``train.workers`` workers, a GPU each when
    :func:`resolve_use_gpu` says so), checkpointing into ``registry`` under ``key`` and resuming
    from its latest checkpoint when ``resume``; Ray restarts a failed worker group up to
    ``max_failures`` times. The weights come back through the final checkpoint artifact."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if spec.train.epochs == 0:  # nothing to train (a zoo entry deployed as is): no workers needed
        return train_model(spec, x, y, n_out, progress=False)
    use_gpu = resolve_use_gpu(spec.train, ray.cluster_resources().get("GPU", 0))
    sent = spec
    if spec.model.module is not None:  # a worker's working directory may differ: send the file's absolute path
        from fabric.model.user import absolute_ref

        sent = spec.model_copy(update={"model": spec.model.model_copy(update={"module": absolute_ref(spec.model.module)})})
    exit_after = int(os.environ.get(EXIT_AFTER_ENV, "0") or 0)
    config = {"spec": sent.to_dict(), "registry": registry, "key": key, "parents": list(parents), "n_out": n_out,
              "x": ray.put(x), "y": ray.put(y), "use_gpu": use_gpu, "progress": progress, "resume": resume,
              "exit_after": exit_after}
    storage = tempfile.mkdtemp(prefix="fabric-train-")
    trainer = TorchTrainer(
        _worker, train_loop_config=config, torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=spec.train.workers, use_gpu=use_gpu),
        run_config=RunConfig(name=f"train-{key[:16]}", storage_path=storage,
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)))
    try:
        result = trainer.fit()
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    metrics = result.metrics or {}
    aid = metrics.get("checkpoint_id")
    if not aid:
        raise RuntimeError(f"Ray Train finished without a final checkpoint (last report: {metrics})")
    ck = load_checkpoint(registry, aid, key)
    model = build_model(spec, x.shape[2], n_out)
    model.load_state_dict(ck.state.model)
    return TrainResult(model=model.eval(), history=ck.state.history, seconds=ck.seconds,
                       device=str(metrics.get("device", "cpu")), start_epoch=int(metrics.get("start_epoch", 0)))
