"""Training (NMLOps stage 3): a snntorch LIF network on encoded spikes, seeded and with progress."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from snntorch import functional as SF
from tqdm.auto import tqdm

from fabric.snn import LifMLP
from fabric.spec import Spec

__all__ = ["TrainResult", "train_model", "build_model", "pick_device"]


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


def train_model(spec: Spec, spikes: np.ndarray, labels: np.ndarray, n_out: int, progress: bool = True) -> TrainResult:
    """spikes ``[N, T, F]`` uint8; loss is cross-entropy on output spike counts (rate readout)."""
    dev = pick_device(spec.train.device)
    model = build_model(spec, spikes.shape[2], n_out).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=spec.train.lr)
    loss_fn = SF.ce_count_loss()
    x_all = torch.as_tensor(spikes, dtype=torch.float32)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    gen = torch.Generator().manual_seed(spec.seed)
    history, t0 = [], time.perf_counter()
    bar = tqdm(range(spec.train.epochs), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        order = torch.randperm(len(x_all), generator=gen)
        tot_loss, correct = 0.0, 0
        model.train()
        for s in range(0, len(order), spec.train.batch_size):
            idx = order[s:s + spec.train.batch_size]
            xb = x_all[idx].to(dev).transpose(0, 1)  # [T, B, F]
            yb = y_all[idx].to(dev)
            spk, _ = model(xb)
            loss = loss_fn(spk, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot_loss += loss.item() * len(idx)
            correct += int((spk.sum(0).argmax(1) == yb).sum())
        rec = {"epoch": epoch + 1, "loss": tot_loss / len(order), "train_accuracy": correct / len(order)}
        history.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['train_accuracy']:.3f}")
        budget = spec.budgets.max_train_seconds
        if budget is not None and time.perf_counter() - t0 > budget:
            history[-1]["stopped"] = "budgets.max_train_seconds reached"
            break
    return TrainResult(model=model.cpu().eval(), history=history, seconds=time.perf_counter() - t0, device=str(dev))
