"""Training checkpoints (issue #19 item 4), the parts without Ray: the checkpoint codec, which
checkpoint a training resumes from, the GPU choice, the spec fields, and that a training resumed from
a stored checkpoint artifact ends with the uninterrupted training's weights and history."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from fabric.model.distributed import (
    CHECKPOINT_FORMAT,
    TrainCheckpoint,
    checkpoint_cache_key,
    checkpoint_key,
    decode_checkpoint,
    encode_checkpoint,
    find_resume,
    load_checkpoint,
    pick_resume,
    read_ray_checkpoint,
    resolve_use_gpu,
    store_checkpoint,
    write_ray_checkpoint,
)
from fabric.model.train import LoopState, is_checkpoint_epoch, train_model
from fabric.spec import MAX_TRAIN_WORKERS, SpecError, TrainSpec, parse_spec
from fabric.store.registry import Registry


def _spec(**train):
    t = {"epochs": 4, "batch_size": 8, "lr": 0.01, "device": "cpu", "mismatch_cv": 0.2} | train
    return parse_spec({"name": "ck", "dataset": {"name": "digits"}, "encoder": {"name": "rate", "timesteps": 5},
                       "model": {"hidden": [8]}, "train": t, "seed": 7})


def _data():
    rng = np.random.default_rng(0)
    return (rng.random((28, 5, 12)) < 0.3).astype(np.uint8), rng.integers(0, 3, 28)


def _state(epoch: int = 2) -> LoopState:
    lin = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(lin.parameters(), lr=0.1)
    lin(torch.ones(1, 3)).sum().backward()
    opt.step()
    return LoopState(epoch=epoch, history=[{"epoch": i + 1, "loss": 1.0 / (i + 1), "train_accuracy": 0.5}
                                           for i in range(epoch)],
                     model=lin.state_dict(), optimizer=opt.state_dict(),
                     rng={"order": torch.Generator().manual_seed(1).get_state()})


# -- the codec -----------------------------------------------------------------------------------------
def test_checkpoint_codec_round_trips_every_field():
    st = _state()
    back = decode_checkpoint(encode_checkpoint(TrainCheckpoint(state=st, key="k" * 64, seconds=1.5, attempts=[0, 2])))
    assert back.key == "k" * 64 and back.seconds == 1.5 and back.attempts == [0, 2]
    assert back.state.epoch == 2 and back.state.history == st.history
    for name, t in st.model.items():
        assert torch.equal(back.state.model[name], t)
    assert torch.equal(back.state.rng["order"], st.rng["order"])
    assert torch.equal(back.state.optimizer["state"][0]["exp_avg"], st.optimizer["state"][0]["exp_avg"])
    assert back.state.optimizer["param_groups"] == st.optimizer["param_groups"]


def test_checkpoint_codec_refuses_foreign_and_inconsistent_blobs():
    import io

    with pytest.raises(ValueError, match="checkpoint: not a torch checkpoint"):
        decode_checkpoint(b"not a checkpoint")

    def blob(**d):
        buf = io.BytesIO()
        torch.save(d, buf)
        return buf.getvalue()

    with pytest.raises(ValueError, match=f"checkpoint: format 99 is not {CHECKPOINT_FORMAT}"):
        decode_checkpoint(blob(format=99))
    with pytest.raises(ValueError, match=r"checkpoint: missing field\(s\) \['optimizer', 'rng'\]"):
        decode_checkpoint(blob(format=CHECKPOINT_FORMAT, key="k", epoch=1, history=[{}], model={}))
    with pytest.raises(ValueError, match="checkpoint: epoch 3 does not match its 2 history records"):
        decode_checkpoint(blob(format=CHECKPOINT_FORMAT, key="k", epoch=3, history=[{}, {}], model={}, optimizer={},
                               rng={}))


def test_ray_checkpoint_directory_carries_the_artifact_id(tmp_path):
    write_ray_checkpoint(tmp_path, "ab" * 32, 3)
    assert read_ray_checkpoint(tmp_path) == (3, "ab" * 32)
    assert read_ray_checkpoint(tmp_path / "missing") is None  # e.g. on another node's disk


# -- which checkpoint -----------------------------------------------------------------------------------
def test_pick_resume_takes_the_furthest_checkpoint_within_the_epochs():
    assert pick_resume([], 8) is None
    assert pick_resume([(2, "a"), (6, "b"), (4, "c")], 8) == (6, "b")
    assert pick_resume([(8, "a")], 8) == (8, "a")  # the limit itself: resumable (nothing left to train)
    assert pick_resume([(9, "a")], 8) is None  # one step over: a longer run's checkpoint is not continued
    assert pick_resume([(9, "a"), (3, "b")], 8) == (3, "b")
    assert pick_resume([(0, "a")], 8) is None


def test_checkpoint_epochs_every_k_the_last_and_a_budget_stop():
    picked = [e for e in range(1, 8) if is_checkpoint_epoch({"epoch": e}, 7, 3)]
    assert picked == [3, 6, 7]
    assert is_checkpoint_epoch({"epoch": 2, "stopped": "budgets.max_train_seconds reached"}, 7, 3)
    assert [e for e in range(1, 5) if is_checkpoint_epoch({"epoch": e}, 4, 1)] == [1, 2, 3, 4]


def test_checkpoint_keys_name_the_training_and_the_epoch():
    k = checkpoint_key("spec-hash", "enc-id")
    assert k == checkpoint_key("spec-hash", "enc-id") and k != checkpoint_key("spec-hash", "other-enc")
    assert checkpoint_cache_key(k, 3) == f"ckpt-{k}-3" and checkpoint_cache_key(k) == f"ckpt-{k}-latest"


# -- GPU choice and spec fields -------------------------------------------------------------------------
def test_use_gpu_only_when_allowed_and_present():
    assert resolve_use_gpu(TrainSpec(), 1) is True
    assert resolve_use_gpu(TrainSpec(), 0) is False
    assert resolve_use_gpu(TrainSpec(use_gpu=False), 4) is False
    assert resolve_use_gpu(TrainSpec(device="cpu"), 4) is False
    assert resolve_use_gpu(TrainSpec(workers=2), 1) is False  # auto: one GPU per worker or none
    assert resolve_use_gpu(TrainSpec(use_gpu=True, workers=2), 2) is True
    with pytest.raises(RuntimeError, match=r"train.use_gpu: true needs 2 GPU\(s\), one per train.workers; the cluster has 1"):
        resolve_use_gpu(TrainSpec(use_gpu=True, workers=2), 1)
    with pytest.raises(RuntimeError, match="train.device: 'cuda' needs 1 GPU"):
        resolve_use_gpu(TrainSpec(device="cuda"), 0)


def test_train_spec_ray_fields_limits_and_stable_hash():
    base = _spec()
    assert not {"workers", "use_gpu", "checkpoint_every"} & set(base.to_dict()["train"])  # old hashes kept
    s = _spec(workers=MAX_TRAIN_WORKERS, use_gpu=True, device="auto", checkpoint_every=1000)
    assert s.hash != base.hash and parse_spec(s.to_dict()).train == s.train  # round trip to Ray workers
    assert _spec(use_gpu=False).to_dict()["train"]["use_gpu"] is False
    for bad, field in (({"workers": MAX_TRAIN_WORKERS + 1}, "workers"), ({"workers": 0}, "workers"),
                       ({"checkpoint_every": 1001}, "checkpoint_every"), ({"checkpoint_every": 0}, "checkpoint_every"),
                       ({"use_gpu": "maybe"}, "use_gpu")):
        with pytest.raises(SpecError, match=field):
            _spec(**bad)
    with pytest.raises(SpecError, match="train: use_gpu: true contradicts device: cpu"):
        _spec(use_gpu=True)


# -- resume through the registry ------------------------------------------------------------------------
def _train_with_checkpoints(spec, reg, key, enc_id, resume=None):
    saved: list[int] = []

    def save(state: LoopState) -> None:
        store_checkpoint(reg, TrainCheckpoint(state=state, key=key, attempts=[0]), spec=spec, parents=[enc_id])
        saved.append(state.epoch)

    x, y = _data()
    torch.set_num_threads(1)
    return train_model(spec, x, y, 3, progress=False, resume=resume, checkpoint=save), saved


def test_resumed_training_ends_with_the_uninterrupted_weights(tmp_path):
    spec = _spec(checkpoint_every=2)  # mismatch_cv 0.2: the mismatch generator is resumed too
    reg = Registry(str(tmp_path / "store"))
    enc = reg.put(b"encoding", kind="encoding", name="e")
    key = checkpoint_key(spec.hash, enc.id)
    x, y = _data()
    torch.set_num_threads(1)
    plain = train_model(spec, x, y, 3, progress=False)  # no hooks: today's training
    full, saved = _train_with_checkpoints(spec, reg, key, enc.id)
    assert saved == [2, 4]  # every 2 epochs, and the last
    for name, t in plain.model.state_dict().items():  # the hooks do not change the training
        assert torch.equal(full.model.state_dict()[name], t), name

    mid_id = reg.cache_get(checkpoint_cache_key(key, 2))
    rec = reg.record(mid_id)
    assert rec.kind == "checkpoint" and rec.parents == [enc.id] and rec.spec_hash == spec.hash
    assert rec.extra["epoch"] == 2 and reg.verify(mid_id)["ok"]
    mid = load_checkpoint(reg, mid_id, key)
    resumed, saved2 = _train_with_checkpoints(spec, reg, key, enc.id, resume=mid.state)
    assert saved2 == [4] and resumed.start_epoch == 2  # epochs 1-2 not repeated
    assert resumed.history == full.history
    for name, t in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], t), name

    # a rerun (job killed after training) finds the latest checkpoint: nothing left to train
    found_id, latest = find_resume(reg, key, spec.train.epochs)
    assert latest.state.epoch == 4 and found_id == reg.cache_get(checkpoint_cache_key(key, 4))
    again = train_model(spec, x, y, 3, progress=False, resume=latest.state)
    assert again.history == full.history
    for name, t in full.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], t), name

    assert find_resume(reg, checkpoint_key("another", enc.id), 4) is None
    with pytest.raises(ValueError, match="belongs to training"):
        load_checkpoint(reg, mid_id, checkpoint_key("another", enc.id))


# -- Tune trials ----------------------------------------------------------------------------------------
def test_tune_trial_reports_checkpoints_and_a_restored_trial_resumes(monkeypatch, tmp_path):
    import ray.tune

    import actors.cluster.pool
    from fabric.data.datasets import load_builtin
    from tests.unit.local_pool import LocalPool
    from tune import with_validation
    from tune._trainable import TrialContext, restored_checkpoint, tune_trial

    reported: list[tuple[dict, object]] = []

    def report(metrics, checkpoint=None):  # Tune persists a reported checkpoint's directory: so do we
        if checkpoint is not None:
            kept = tmp_path / f"tune-ck-{len(reported)}"
            shutil.copytree(checkpoint.path, kept)
            checkpoint = ray.tune.Checkpoint.from_directory(str(kept))
        reported.append((metrics, checkpoint))

    monkeypatch.setattr(ray.tune, "report", report)
    monkeypatch.setattr(actors.cluster.pool, "DevicePool", LocalPool)
    ds = load_builtin("digits", 60)
    splits, _ = with_validation(np.array(["train"] * 45 + ["test"] * 15), ds.y, seed=1)
    spec = parse_spec({"name": "t", "dataset": {"name": "digits", "limit": 60},
                       "encoder": {"name": "rate", "timesteps": 8}, "model": {"hidden": [16]},
                       "train": {"epochs": 3, "device": "cpu", "checkpoint_every": 2}, "targets": ["fpga"], "seed": 1})
    reg = Registry(str(tmp_path / "store"))
    data = reg.put(b"x", kind="dataset", name="d")
    ctx = TrialContext(spec=spec.to_dict(), kinds=["fpga"], store_url=reg.store.url, tenant=reg.tenant,
                       dataset_id=data.id, x=ds.x, y=ds.y, splits=splits, n_classes=len(ds.classes),
                       classes=list(ds.classes))
    config = {"hidden": "16", "beta": 0.9}
    tune_trial(config, ctx)
    epochs = [(m["epoch"], ck is not None) for m, ck in reported if m.get("trial_status") == "training"]
    assert epochs == [(1, False), (2, True), (3, True)]  # checkpoint_every 2, and the last epoch
    first_model = json.loads(reported[-1][0]["rows_json"])[0]["model_id"]
    ck_after_2 = next(ck for m, ck in reported if m.get("epoch") == 2 and ck is not None)
    key = reg.record(next(m["checkpoint_id"] for m, _ in reported if m.get("epoch") == 2)).extra["key"]

    # the trial is restored with its epoch-2 Tune checkpoint: it trains epoch 3 only, same model
    reported.clear()
    monkeypatch.setattr(ray.tune, "get_checkpoint", lambda: ck_after_2)
    assert restored_checkpoint(reg, key, 3).state.epoch == 2
    assert restored_checkpoint(reg, key, 1) is None  # a checkpoint past the trial's epochs is not used
    assert restored_checkpoint(reg, "0" * 64, 3) is None  # nor one of another training
    tune_trial(config, ctx)
    assert [m["epoch"] for m, _ in reported if m.get("trial_status") == "training"] == [3]
    assert json.loads(reported[-1][0]["rows_json"])[0]["model_id"] == first_model  # the same weights
