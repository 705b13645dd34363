"""Unit-tier fixtures: the sPyNNaker mapping is off unless a test asks for it.

Why: with the toolchain installed every spinnaker compile spends seconds in sPyNNaker, and the unit tier
compiles spinnaker programs in many tests; they check the emulator, so they run its own estimate
(``FABRIC_SPINNAKER_MAP=off``). A test about the sPyNNaker mapping opts in with
``@pytest.mark.spynnaker_map``. Set per test (monkeypatch), not at import, so an integration tier
collected in the same session keeps the mapping on.
"""

from __future__ import annotations

import pytest

from actors.spinnaker.fit import SWITCH_ENV


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spynnaker_map: run the sPyNNaker mapping in spinnaker compiles (unit tier)")


@pytest.fixture(autouse=True)
def _spynnaker_map_off(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("spynnaker_map") is None:
        monkeypatch.setenv(SWITCH_ENV, "off")
    else:  # opted in: on, whatever the developer's shell says
        monkeypatch.delenv(SWITCH_ENV, raising=False)
