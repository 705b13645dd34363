"""The unit tier's default (tests/unit/conftest.py): spinnaker compiles skip the sPyNNaker mapping and
say so, unless a test opts in with ``@pytest.mark.spynnaker_map``."""

from __future__ import annotations

import os

import pytest

from actors.spinnaker.fit import SWITCH_ENV
from fabric.kinds import make_runtime
from tests.unit.test_devices import dense_graph


def test_unit_tier_runs_the_emulator_estimate():
    assert os.environ.get(SWITCH_ENV) == "off"
    p = make_runtime("spinnaker").compile(dense_graph([2, 3]))
    assert p.meta["spynnaker"] is None and any("switched off" in n for n in p.fit.notes)


@pytest.mark.spynnaker_map
def test_a_marked_test_gets_the_mapping(monkeypatch, tmp_path):
    assert SWITCH_ENV not in os.environ
    monkeypatch.setenv("FABRIC_SPINNAKER_PYTHON", str(tmp_path / "no-such-python"))
    p = make_runtime("spinnaker").compile(dense_graph([2, 3]))
    assert not any("switched off" in n for n in p.fit.notes)
    assert any("not installed" in n for n in p.fit.notes)
