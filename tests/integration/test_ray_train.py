"""Training through Ray Train (issue #19 item 4) on the session cluster: the TorchTrainer path gives
the in-process loop's weights, a worker killed mid-training resumes from its last checkpoint artifact
(epochs not repeated, the uninterrupted weights), a rerun after a killed job resumes from the
registry, and two workers train data-parallel (DDP over gloo)."""

from __future__ import annotations

import numpy as np
import torch

from fabric.model.distributed import (
    EXIT_AFTER_ENV,
    checkpoint_cache_key,
    checkpoint_key,
    decode_checkpoint,
    find_resume,
    train_with_ray,
)
from fabric.model.train import train_model
from fabric.spec import parse_spec
from fabric.store.registry import Registry


def _spec(**train):
    t = {"epochs": 4, "batch_size": 8, "lr": 0.03, "device": "cpu", "mismatch_cv": 0.2} | train
    return parse_spec({"name": "raytrain", "dataset": {"name": "digits"}, "encoder": {"name": "rate", "timesteps": 5},
                       "model": {"hidden": [8]}, "train": t, "seed": 11})


def _data():
    """40 samples, 3 classes, each firing its own block of 8 of the 24 inputs more: learnable in a few
    epochs (the loss falls every epoch), so every epoch moves the weights the comparisons look at."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 40)
    p = np.full((40, 1, 24), 0.1)
    for i, c in enumerate(y):
        p[i, 0, 8 * c:8 * c + 8] = 0.7
    return (rng.random((40, 5, 24)) < p).astype(np.uint8), y


def _in_process(spec):
    x, y = _data()
    torch.set_num_threads(1)  # as the Ray Train worker does
    return train_model(spec, x, y, 3, progress=False)


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def _setup(tmp_path, spec):
    reg = Registry(str(tmp_path / "store"))
    enc = reg.put(b"encoding bytes", kind="encoding", name="e")
    return reg, enc.id, checkpoint_key(spec.hash, enc.id)


def test_torch_trainer_gives_the_in_process_weights(ray_session, tmp_path):
    spec = _spec(epochs=3)
    reg, enc_id, key = _setup(tmp_path, spec)
    x, y = _data()
    res = train_with_ray(spec, x, y, 3, registry=reg, key=key, parents=[enc_id], progress=False)
    ref = _in_process(spec)
    losses = [r["loss"] for r in ref.history]
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == 3  # it learns: weights move
    _assert_same_weights(res.model, ref.model)
    assert res.history == ref.history and res.start_epoch == 0 and res.device == "cpu"
    for epoch in (1, 2, 3):  # checkpoint_every 1: one signed artifact per epoch
        rec = reg.record(reg.cache_get(checkpoint_cache_key(key, epoch)))
        assert rec.kind == "checkpoint" and rec.extra["epoch"] == epoch and rec.parents == [enc_id]


def test_killed_worker_resumes_from_its_checkpoint(ray_session, tmp_path, monkeypatch):
    spec = _spec(epochs=4)
    reg, enc_id, key = _setup(tmp_path, spec)
    x, y = _data()
    monkeypatch.setenv(EXIT_AFTER_ENV, "2")  # the fresh attempt's worker process dies after epoch 2
    res = train_with_ray(spec, x, y, 3, registry=reg, key=key, parents=[enc_id], progress=False, max_failures=1)
    assert res.start_epoch == 2  # the restarted worker resumed after epoch 2 ...
    assert [r["epoch"] for r in res.history] == [1, 2, 3, 4]  # ... and did not repeat epochs 1-2
    final = decode_checkpoint(reg.get(reg.cache_get(checkpoint_cache_key(key))))
    assert final.state.epoch == 4 and final.attempts == [0, 2]
    assert decode_checkpoint(reg.get(reg.cache_get(checkpoint_cache_key(key, 2)))).attempts == [0]
    ref = _in_process(spec)
    _assert_same_weights(res.model, ref.model)  # == the uninterrupted run
    assert res.history == ref.history

    # a rerun of the job (a new TorchTrainer: no Ray checkpoint) starts from the registry's latest;
    # the worker's choice is find_resume (the unit tier trains on from it), checked here on this store
    aid, latest = find_resume(reg, key, spec.train.epochs)
    assert aid == reg.cache_get(checkpoint_cache_key(key, 4)) and latest.state.history == ref.history


def test_two_workers_train_data_parallel(ray_session, tmp_path):
    spec = _spec(epochs=1, workers=2, mismatch_cv=0.0)
    reg, enc_id, key = _setup(tmp_path, spec)
    x, y = _data()
    res = train_with_ray(spec, x, y, 3, registry=reg, key=key, parents=[enc_id], progress=False)
    one = _in_process(_spec(epochs=1, mismatch_cv=0.0))
    # DDP averages the two half-batch gradients of each batch of 8 (5 batches, no padding): the same
    # steps as one worker up to float rounding; the record's loss sums both ranks (all_reduce)
    assert [r["epoch"] for r in res.history] == [1]
    assert abs(res.history[0]["loss"] - one.history[0]["loss"]) < 1e-4
    for name, t in one.model.state_dict().items():
        assert torch.allclose(res.model.state_dict()[name], t, atol=1e-4), name
