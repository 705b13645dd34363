"""Training (NMLOps stage 3): a snntorch LIF network on encoded spikes, seeded and with progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from snntorch import functional as SF
from tqdm.auto import tqdm

from fabric.model.mismatch import mismatch_schedule, weight_mismatch
from fabric.model.snn import LifMLP
from fabric.spec import Spec

__all__ = ["TrainResult", "train_model", "train_on_cluster", "build_model", "pick_device"]


@dataclass(kw_only=True)
class TrainResult:
    model: LifMLP
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("train.device: 'cuda' requested but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def build_model(spec: Spec, n_in: int, n_out: int) -> LifMLP:
    torch.manual_seed(spec.seed)
    return LifMLP(n_in, list(spec.model.hidden), n_out, spec.model.beta, spec.model.threshold)


def train_model(spec: Spec, spikes: np.ndarray, labels: np.ndarray, n_out: int, progress: bool = True,
                bar: type | None = None, on_epoch: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """spikes ``[N, T, F]`` uint8; loss is cross-entropy on output spike counts (rate readout).

    ``bar`` is the progress-bar class (``tqdm`` here, Ray's ``tqdm_ray`` inside a Ray task);
    ``on_epoch`` sees each epoch's record (Tune reports the training curve through it)."""
    dev = pick_device(spec.train.device)
    model = build_model(spec, spikes.shape[2], n_out).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=spec.train.lr)
    loss_fn = SF.ce_count_loss()
    x_all = torch.as_tensor(spikes, dtype=torch.float32)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    gen = torch.Generator().manual_seed(spec.seed)
    mm_gen = torch.Generator().manual_seed(spec.seed + 1)  # mismatch draws; unused when mismatch_cv = 0
    history, t0 = [], time.perf_counter()
    bar_cls = bar or tqdm
    kw = {"disable": not progress, "leave": False} if bar_cls is tqdm else {}
    bar = bar_cls(range(spec.train.epochs), desc="train", unit="epoch", **kw)
    for epoch in bar:
        order = torch.randperm(len(x_all), generator=gen)
        tot_loss, correct = 0.0, 0
        model.train()
        for s in range(0, len(order), spec.train.batch_size):
            idx = order[s:s + spec.train.batch_size]
            xb = x_all[idx].to(dev).transpose(0, 1)  # [T, B, F]
            yb = y_all[idx].to(dev)
            with weight_mismatch(model, mismatch_schedule(spec.train.mismatch_cv, epoch, spec.train.epochs),
                                 mm_gen):  # no-op at mismatch_cv = 0
                spk, _ = model(xb)
                loss = loss_fn(spk, yb)
                opt.zero_grad()
                loss.backward()
            opt.step()
            tot_loss += loss.item() * len(idx)
            correct += int((spk.sum(0).argmax(1) == yb).sum())
        rec = {"epoch": epoch + 1, "loss": tot_loss / len(order), "train_accuracy": correct / len(order)}
        history.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['train_accuracy']:.3f}")
        budget = spec.budgets.max_train_seconds
        if budget is not None and time.perf_counter() - t0 > budget:
            history[-1]["stopped"] = "budgets.max_train_seconds reached"
            break
    return TrainResult(model=model.cpu().eval(), history=history, seconds=time.perf_counter() - t0, device=str(dev))


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
    state, history, seconds, device = ray.get(task.remote(spec.to_dict(), spikes, labels, n_out, progress))
    model = build_model(spec, spikes.shape[2], n_out)
    model.load_state_dict(torch.load(io.BytesIO(state), weights_only=True))
    return TrainResult(model=model.eval(), history=history, seconds=seconds, device=device)
