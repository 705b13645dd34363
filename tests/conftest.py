"""Shared fixtures for both tiers: small, seeded specs and a temporary store."""

from __future__ import annotations

import pytest

from fabric.spec import parse_spec

TINY = {
    "name": "tiny",
    "dataset": {"name": "digits", "limit": 400, "test_fraction": 0.25},
    "encoder": {"name": "rate", "timesteps": 12},
    "model": {"hidden": [32], "beta": 0.9, "threshold": 1.0},
    "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "device": "cpu"},
    "targets": ["cpu"],
    "seed": 3,
}


@pytest.fixture
def tiny_spec_dict() -> dict:
    import copy

    return copy.deepcopy(TINY)


@pytest.fixture
def tiny_spec(tiny_spec_dict):
    return parse_spec(tiny_spec_dict)


@pytest.fixture
def store_dir(tmp_path):
    return str(tmp_path / "store")
