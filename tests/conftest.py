"""Shared fixtures for both tiers: small, seeded specs and a temporary store.

Keys: no test may touch the real user's signing key or trust list, so ``FABRIC_HOME`` points at a
temporary directory for the whole session, set here at import time (before any fixture starts a Ray
cluster, whose processes, and so Serve replicas, Tune trials and tasks, inherit it and find the same key).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

from fabric.spec import parse_spec

for _var in ("FABRIC_SIGNING_KEY", "FABRIC_TRUST", "FABRIC_TRUST_ADMIN", "FABRIC_TRUSTED_KEYS"):
    os.environ.pop(_var, None)  # a developer's own key settings must not leak into the tests
FABRIC_HOME = tempfile.mkdtemp(prefix="fabric-home-")
os.environ["FABRIC_HOME"] = FABRIC_HOME
atexit.register(shutil.rmtree, FABRIC_HOME, ignore_errors=True)

TINY = {
    "name": "tiny",
    "dataset": {"name": "digits", "limit": 400, "test_fraction": 0.25},
    "encoder": {"name": "rate", "timesteps": 12},
    "model": {"hidden": [32], "beta": 0.9, "threshold": 1.0},
    "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "device": "cpu"},
    "targets": ["cpu"],
    "seed": 3,
}


FUZZ_LONG_FACTOR = 10  # --fuzz-long multiplies every fuzz suite's case count by this
FUZZ_COUNTS: dict[str, list[int]] = {}  # suite -> [cases, failures], filled by the ``fuzz`` fixture


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help=f"run the fuzz suites (tests/unit/test_fuzz_*.py) at {FUZZ_LONG_FACTOR}x their CI case count")


class FuzzBudget:
    """Case counts of one fuzz suite: ``n(base)`` scales a CI count, ``record`` adds to the session summary."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def n(self, base: int) -> int:
        return base * self.factor

    def record(self, suite: str, cases: int, failures: int = 0) -> None:
        tot = FUZZ_COUNTS.setdefault(suite, [0, 0])
        tot[0] += cases
        tot[1] += failures


@pytest.fixture(scope="session")
def fuzz(request: pytest.FixtureRequest) -> FuzzBudget:
    return FuzzBudget(FUZZ_LONG_FACTOR if request.config.getoption("--fuzz-long") else 1)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001 - pytest hook signature
    if FUZZ_COUNTS:
        parts = ", ".join(f"{k} {v[0]}" for k, v in FUZZ_COUNTS.items())
        total = sum(v[0] for v in FUZZ_COUNTS.values())
        failures = sum(v[1] for v in FUZZ_COUNTS.values())
        terminalreporter.write_line(f"fuzz: {parts} cases ({total} in all), {failures} failures")


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
