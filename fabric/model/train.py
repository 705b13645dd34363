"""Training (NMLOps stage 3): a snntorch LIF network on encoded spikes, seeded and with progress.

:func:`train_loop` is the one loop; :func:`train_model` (stage 3) and the compression fine-tunes
(:func:`fabric.model.compress.finetune`) both run it."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from snntorch import functional as SF
from torch import nn
from tqdm.auto import tqdm

from fabric.model.mismatch import mismatch_schedule, weight_mismatch
from fabric.model.snn import LifMLP
from fabric.spec import Spec

__all__ = ["TrainResult", "LoopState", "train_loop", "train_model", "train_on_cluster", "build_model", "pick_device",
           "is_checkpoint_epoch", "rate_penalty", "early_exit_penalty"]


@dataclass(kw_only=True)
class TrainResult:
    model: nn.Module  # a LifMLP, or a fabric.model.user.SequentialSNN for a user factory
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    start_epoch: int = 0  # the epoch the (last attempt of the) training resumed after; 0 = from scratch


@dataclass(kw_only=True)
class LoopState:
    """Where a training stands after ``epoch`` epochs: everything :func:`train_loop` needs to go on
    bit-exactly (weights, Adam's moments, the batch-order generator, ``rng`` holding any other named
    generator states, e.g. the mismatch draws), so a resumed run ends with the uninterrupted run's weights."""

    epoch: int
    history: list[dict[str, Any]]
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor] = field(default_factory=dict)


def is_checkpoint_epoch(rec: dict[str, Any], epochs: int, every: int) -> bool:
    """Whether the epoch of ``rec`` ends with a checkpoint: every ``every`` epochs, the last epoch,
    and an epoch where the time budget stopped the loop (so the final state is always saved)."""
    return rec["epoch"] % every == 0 or rec["epoch"] == epochs or "stopped" in rec


def rate_penalty(spk: torch.Tensor) -> torch.Tensor:
    """Mean output spike rate of a ``[T, B, C]`` raster (spikes per neuron per step): the spike-rate
    regulariser (``train.rate_reg``); fewer spikes is fewer synaptic events, so less modelled energy."""
    return spk.mean()


def early_exit_penalty(spk: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cutoff-aware loss (``train.exit_reg``): cross-entropy of the cumulative output counts after
    every step, step t weighted by (T - t) / sum, so a decision that is right early costs less. The
    Top-K cutoff (fabric.model.early_exit) exits on the early counts; this trains them to be right."""
    steps = spk.shape[0]
    cum = spk.cumsum(0)  # [T, B, C]
    w = torch.arange(steps, 0, -1, dtype=spk.dtype, device=spk.device)
    w = w / w.sum()
    ce = torch.stack([nn.functional.cross_entropy(cum[t], y) for t in range(steps)])
    return (w * ce).sum()


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device: 'cuda' requested but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def build_model(spec: Spec, n_in: int, n_out: int) -> nn.Module:
    """The spec's untrained network, seeded: the lif_mlp template, or the user factory's Sequential
    (``model.module``, checked before training by :func:`fabric.model.user.build_user_model`)."""
    if spec.model.module is not None:
        from fabric.model.user import build_user_model

        return build_user_model(spec.model.module, spec.model.params, n_in, n_out, spec.seed)
    torch.manual_seed(spec.seed)
    return LifMLP(n_in, list(spec.model.hidden), n_out, spec.model.layer_betas, spec.model.layer_thresholds)


def train_loop(model: nn.Module, spikes: np.ndarray, labels: np.ndarray, *, epochs: int, lr: float, seed: int,
               batch_size: int, device: torch.device | None = None, progress: bool = False, desc: str = "train",
               bar: type | None = None, perturb: Callable[[int], AbstractContextManager[Any]] | None = None,
               on_epoch: Callable[[dict[str, float]], None] | None = None,
               max_seconds: float | None = None, resume: LoopState | None = None,
               checkpoint: Callable[[LoopState], None] | None = None, checkpoint_every: int = 1,
               shard: tuple[int, int] = (0, 1),
               all_reduce: Callable[[list[float]], list[float]] | None = None,
               rate_reg: float = 0.0, exit_reg: float = 0.0) -> list[dict[str, float]]:
    """The fabric's one training loop (training and every compression fine-tune): Adam on
    ``model.parameters()``, count cross-entropy on output spikes (rate readout), batches in a seeded
    order. Returns one record per epoch (``epoch``, ``loss``, ``train_accuracy``). ``rate_reg`` and
    ``exit_reg`` add :func:`rate_penalty` and :func:`early_exit_penalty` to the loss with those weights.

    ``spikes`` ``[N, T, F]``; batches go to ``device`` (default: stay on the CPU). Hooks: ``perturb(epoch)``
    is a context manager around each batch's forward and backward pass, left before the optimizer
    step (mismatch-aware training perturbs the weights there and restores them); anything the forward
    pass itself must apply (pruning masks, fake quantization) is a parametrization of the model,
    registered before this is called. ``bar`` is the progress-bar class (``tqdm`` by default, Ray's
    ``tqdm_ray`` inside a Ray task); ``on_epoch`` sees each record; past ``max_seconds`` of training
    the loop stops after the current epoch and says so in its last record.

    Resume and data parallelism (:mod:`fabric.model.distributed`): ``resume`` continues a
    :class:`LoopState` (its weights are loaded into ``model``, or into ``model.module`` for a DDP
    wrapper); ``checkpoint`` gets the state after each epoch :func:`is_checkpoint_epoch` picks, before
    ``on_epoch`` sees that epoch's record. ``shard = (rank, world)`` trains on every ``world``-th sample
    of each batch from ``rank`` on (a rank whose share is empty repeats the batch's first sample with a
    zero loss, so every rank runs the same steps); ``all_reduce`` sums ``[loss, correct, samples, stop]``
    across ranks so the records, and the time-budget stop, are the same on every rank.
    """
    dev = device or torch.device("cpu")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = SF.ce_count_loss()
    x_all = torch.as_tensor(spikes, dtype=torch.float32)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    start = 0
    if resume is not None:
        getattr(model, "module", model).load_state_dict(resume.model)
        opt.load_state_dict(copy.deepcopy(resume.optimizer))  # Adam adopts the tensors: keep the caller's intact
        gen.set_state(resume.rng["order"])
        history, start = [dict(r) for r in resume.history], resume.epoch
    rank, world = shard
    t0 = time.perf_counter()
    bar_cls = bar or tqdm
    kw = {"disable": not progress, "leave": False} if bar_cls is tqdm else {}
    epoch_bar = bar_cls(range(start, epochs), desc=desc, unit="epoch", **kw)
    for epoch in epoch_bar:
        order = torch.randperm(len(x_all), generator=gen)
        tot_loss, correct, seen = 0.0, 0, 0
        model.train()
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            pad = False
            if world > 1:
                idx, pad = (idx[rank::world], False) if len(idx) > rank else (idx[:1], True)
            xb = x_all[idx].to(dev).transpose(0, 1)  # [T, B, F]
            yb = y_all[idx].to(dev)
            with perturb(epoch) if perturb is not None else nullcontext():
                spk, _ = model(xb)
                loss = loss_fn(spk, yb)
                if rate_reg:
                    loss = loss + rate_reg * rate_penalty(spk)
                if exit_reg:
                    loss = loss + exit_reg * early_exit_penalty(spk, yb)
                opt.zero_grad()
                (loss * 0.0 if pad else loss).backward()
            opt.step()
            if not pad:
                tot_loss += loss.item() * len(idx)
                correct += int((spk.sum(0).argmax(1) == yb).sum())
                seen += len(idx)
        stop = max_seconds is not None and time.perf_counter() - t0 > max_seconds
        if all_reduce is not None:
            tot_loss, c, n, stops = all_reduce([tot_loss, float(correct), float(seen), float(stop)])
            correct, seen, stop = int(round(c)), int(round(n)), stops > 0
        rec = {"epoch": epoch + 1, "loss": tot_loss / seen, "train_accuracy": correct / seen}
        if stop:
            rec["stopped"] = "budgets.max_train_seconds reached"
        history.append(rec)
        if checkpoint is not None and is_checkpoint_epoch(rec, epochs, checkpoint_every):
            base = getattr(model, "module", model)  # a snapshot: state_dict() tensors share the live storage
            checkpoint(LoopState(epoch=epoch + 1, history=[dict(r) for r in history],
                                 model={k: v.detach().clone() for k, v in base.state_dict().items()},
                                 optimizer=copy.deepcopy(opt.state_dict()), rng={"order": gen.get_state()}))
        if on_epoch is not None:
            on_epoch(rec)
        if hasattr(epoch_bar, "set_postfix"):
            epoch_bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['train_accuracy']:.3f}")
        if stop:
            break
    return history


def train_model(spec: Spec, spikes: np.ndarray, labels: np.ndarray, n_out: int, progress: bool = True,
                bar: type | None = None, on_epoch: Callable[[dict[str, float]], None] | None = None, *,
                resume: LoopState | None = None, checkpoint: Callable[[LoopState], None] | None = None,
                device: torch.device | None = None, wrap: Callable[[nn.Module], nn.Module] | None = None,
                shard: tuple[int, int] = (0, 1),
                all_reduce: Callable[[list[float]], list[float]] | None = None) -> TrainResult:
    """Build the spec's model and train it with :func:`train_loop` (spikes ``[N, T, F]`` uint8).

    ``train.mismatch_cv > 0`` perturbs the weights for each batch (:func:`weight_mismatch`, on the
    ramp of :func:`mismatch_schedule`); ``budgets.max_train_seconds`` stops training early.
    ``bar`` is the progress-bar class (``tqdm`` here, Ray's ``tqdm_ray`` inside a Ray task);
    ``on_epoch`` sees each epoch's record (Tune reports the training curve through it).

    Resume hooks (:mod:`fabric.model.distributed`, Tune trials): ``resume`` continues a stored
    :class:`LoopState`, ``checkpoint`` gets one every ``train.checkpoint_every`` epochs (its ``rng``
    also holds the mismatch generator); ``device`` overrides ``train.device`` (Ray Train picks it),
    ``wrap`` wraps the model for the loop (DDP), ``shard`` / ``all_reduce`` as in :func:`train_loop`."""
    dev = device or pick_device(spec.train.device)
    model = build_model(spec, spikes.shape[2], n_out).to(dev)
    cv, epochs = spec.train.mismatch_cv, spec.train.epochs
    mm_gen = torch.Generator().manual_seed(spec.seed + 1)  # mismatch draws; unused when mismatch_cv = 0
    if resume is not None:
        mm_gen.set_state(resume.rng["mismatch"])
    save = None
    if checkpoint is not None:
        def save(state: LoopState) -> None:
            state.rng["mismatch"] = mm_gen.get_state()
            checkpoint(state)

    def mismatch(epoch: int) -> AbstractContextManager[None]:
        return weight_mismatch(model, mismatch_schedule(cv, epoch, epochs), mm_gen)  # no-op at mismatch_cv = 0

    t0 = time.perf_counter()
    history = train_loop(wrap(model) if wrap is not None else model, spikes, labels, epochs=epochs,
                         lr=spec.train.lr, seed=spec.seed, batch_size=spec.train.batch_size, device=dev,
                         progress=progress, desc="train", bar=bar, perturb=mismatch, on_epoch=on_epoch,
                         max_seconds=spec.budgets.max_train_seconds, resume=resume, checkpoint=save,
                         checkpoint_every=spec.train.checkpoint_every, shard=shard, all_reduce=all_reduce,
                         rate_reg=spec.train.rate_reg, exit_reg=spec.train.exit_reg)
    return TrainResult(model=model.cpu().eval(), history=history, seconds=time.perf_counter() - t0, device=str(dev),
                       start_epoch=resume.epoch if resume is not None else 0)


def _train_task(spec_dict: dict, spikes: np.ndarray, labels: np.ndarray, n_out: int, progress: bool) -> tuple[bytes, list, float, str]:
    import io

    from ray.experimental.tqdm_ray import tqdm as tqdm_ray

    torch.set_num_threads(1)
    res = train_model(Spec.from_dict(spec_dict), spikes, labels, n_out, progress, bar=tqdm_ray if progress else None)
    buf = io.BytesIO()
    torch.save(res.model.state_dict(), buf)
    return buf.getvalue(), res.history, res.seconds, res.device


def train_on_cluster(spec: Spec, spikes: np.ndarray, labels: np.ndarray, n_out: int, progress: bool = True) -> TrainResult:
    """Train as a Ray task: one CPU, plus one GPU when the spec allows it and the cluster has one."""
    import io

    import ray

    gpus = 1 if spec.train.device in ("auto", "cuda") and ray.cluster_resources().get("GPU", 0) >= 1 else 0
    if spec.train.device == "cuda" and not gpus:
        raise RuntimeError("train.device: 'cuda' requested but no node of the cluster has a GPU")
    task = ray.remote(_train_task).options(num_cpus=1, num_gpus=gpus, max_retries=2)
    sent = spec
    if spec.model.module is not None:  # a worker's working directory may differ: send the file's absolute path
        from fabric.model.user import absolute_ref

        sent = spec.model_copy(update={"model": spec.model.model_copy(update={"module": absolute_ref(spec.model.module)})})
    state, history, seconds, device = ray.get(task.remote(sent.to_dict(), spikes, labels, n_out, progress))
    model = build_model(spec, spikes.shape[2], n_out)
    model.load_state_dict(torch.load(io.BytesIO(state), weights_only=True))
    return TrainResult(model=model.eval(), history=history, seconds=seconds, device=device)
