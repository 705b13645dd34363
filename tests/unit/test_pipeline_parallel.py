"""The per-kind stages of a job run at once (fabric.flow.pipeline.map_kinds), results in target order."""

from __future__ import annotations

import threading
import time

import pytest

from fabric.flow.pipeline import map_kinds


def test_kinds_run_at_once_and_results_keep_target_order():
    kinds = ["cpu", "loihi", "akida", "fpga"]
    barrier = threading.Barrier(len(kinds), timeout=5)  # passes only if every kind is running at the same time
    delay = {"cpu": 0.15, "loihi": 0.0, "akida": 0.1, "fpga": 0.05}  # finish order differs from target order

    def one(kind: str) -> str:
        barrier.wait()
        time.sleep(delay[kind])
        return kind.upper()

    assert map_kinds(one, kinds) == ["CPU", "LOIHI", "AKIDA", "FPGA"]


def test_first_failing_kind_in_target_order_raises_after_all_finished():
    done: list[str] = []

    def one(kind: str) -> str:
        if kind == "b":
            time.sleep(0.1)
            raise ValueError("b broke")
        if kind == "c":
            raise KeyError("c broke")
        time.sleep(0.2)
        done.append(kind)
        return kind

    with pytest.raises(ValueError, match="b broke"):  # b precedes c in the targets, though c failed first
        map_kinds(one, ["a", "b", "c", "d"])
    assert sorted(done) == ["a", "d"]  # the other kinds were not abandoned half-way


def test_single_kind_runs_inline():
    assert map_kinds(lambda k: threading.current_thread().name, ["cpu"]) == [threading.current_thread().name]
    assert map_kinds(lambda k: k, []) == []
