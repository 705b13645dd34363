"""The spinnaker emulator's mapping arithmetic against sPyNNaker's own mapper on a virtual board.

sPyNNaker is found as production code finds it: ``$FABRIC_SPINNAKER_PYTHON``, else
``toolchains/spinnaker/.venv/bin/python`` (``make setup-spinnaker``). Without it these tests fail with
the toolchain's reason; they are never skipped. Plain subprocesses, no Ray. Reports come from the
toolchain's content-keyed cache when a network was mapped before (a cold run maps each afresh).
"""

from __future__ import annotations

import numpy as np
import pytest

from actors.spinnaker.fit import SWITCH_ENV, app_core_budget
from actors.spinnaker.reference import emulator_cores
from fabric.flow.capability import PROBES
from fabric.kinds import make_runtime
from fabric.records import FitError
from tests.unit.test_devices import dense_graph, lif

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def mapping_on(monkeypatch):
    monkeypatch.delenv(SWITCH_ENV, raising=False)


def _mapped(graph, options):
    """Compile with sPyNNaker's mapping; the driver's report (a missing toolchain fails with its reason)."""
    p = make_runtime("spinnaker").compile(graph, options)
    rep = p.meta["spynnaker"]
    assert rep is not None, [n for n in p.fit.notes if "sPyNNaker" in n]
    return p, rep


def _wide(n: int):
    return dense_graph([2, n], weights=[np.full((n, 2), 0.5)], bias=0)


@pytest.mark.parametrize("sizes,npc,neurons", [
    ([2, 300], 64, None),
    ([12, 100, 30], 32, [lif(100, beta=0.8), lif(30, beta=0.95)]),
])
def test_cores_per_population_agree_with_spynnaker(sizes, npc, neurons):
    p, rep = _mapped(dense_graph(sizes, neurons=neurons), {"neurons_per_core": npc})
    own = {f"l{i}": emulator_cores(n, npc) for i, n in enumerate(sizes[1:])}
    got = {k: v["cores"] for k, v in rep["populations"].items()}
    assert rep["ok"] and got == {"in": 1, **own}
    item = next(i for i in p.fit.items if i.name == "application cores")
    assert item.used == rep["app_cores"] == sum(own.values()) + 1
    assert not any("disagree" in n for n in p.fit.notes)


def test_one_step_over_a_spinn3_board_is_refused_with_spynnaker_reason():
    lim = make_runtime("spinnaker").constants.limits
    budget, host, _ = app_core_budget(4, lim)
    _, rep = _mapped(_wide(budget - host), {"neurons_per_core": 1, "chips": 4})
    assert rep["app_cores"] == budget  # sPyNNaker fills the board exactly where the emulator says it is full
    with pytest.raises(FitError) as err:
        make_runtime("spinnaker").compile(_wide(budget - host + 1), {"neurons_per_core": 1, "chips": 4})
    failed = {i.name: i for i in err.value.report.items if not i.ok}
    refusal = next(k for k in failed if k.startswith("sPyNNaker") and " refused: " in k)
    assert "virtual SpiNN-3" in refusal and len(refusal.split(" refused: ", 1)[1]) > 10
    assert failed["application cores"].used == budget + 1


def test_linear_if_maps_on_spynnaker():
    probe = next(p for p in PROBES if p.node == "Linear + IF")
    p, rep = _mapped(probe.build(), {})
    assert rep["ok"] and any(i.name.startswith("sPyNNaker") and i.name.endswith(": accepted") for i in p.fit.items)
