"""spinnaker fit check by sPyNNaker's own mapping, next to the emulator's arithmetic.

Why: the emulator estimates cores as ``ceil(n / neurons_per_core)`` per population and chips as 16
application cores each; sPyNNaker's partitioner, placer and router on a virtual board say what the
real toolchain would do. Its verdict is one fit item (accepted, or refused with sPyNNaker's reason as
the item's name, so the FitError text is sPyNNaker's); its figures (cores per population, chips,
routing entries, SDRAM per core) are notes of the fit report and ``Program.meta["spynnaker"]``. When
it cannot run (no toolchain, a board it has no model of, a crash) the note says so and the verdict is
the emulator's own estimate, labelled as such.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from actors.spinnaker.reference import (
    CHIPS_PER_SPINN5,
    SpynnakerError,
    SpynnakerUnavailable,
    board_for,
    describe,
    emulator_cores,
    map_network,
)
from fabric.records import FitReport

__all__ = ["MAX_DENSE_WEIGHTS", "SWITCH_ENV", "spynnaker_fit", "board_name", "app_core_budget"]

MAX_DENSE_WEIGHTS = 1_000_000  # weight entries sent to the driver as JSON (~10 MB) at most
# "off" skips the sPyNNaker run (each costs seconds: a unit tier that compiles many programs may set it)
SWITCH_ENV = "FABRIC_SPINNAKER_MAP"


def board_name(board: Mapping[str, int]) -> str:
    """How a board reads in the fit report."""
    if board["version"] == 3:
        return "virtual SpiNN-3 (version 3, 4 chips)"
    n = int(board.get("boards", 1))
    return f"virtual SpiNN-5 (version 5, {n} board{'s' if n > 1 else ''} of 48 chips)"


def app_core_budget(chips: int, limits: Mapping[str, Any]) -> tuple[int, int, str]:
    """The emulator's application-core budget on ``chips`` chips: ``(budget, host_input_cores, why)``.

    Why: on the boards sPyNNaker models (SpiNN-3, whole SpiNN-5s) its placer has fewer cores than 16 per
    chip (SpiNN-5: 759, not 768): every chip gives its SCAMP monitor and sPyNNaker's extra monitor, each
    board's Ethernet chip a packet gatherer, and eight SpiNN-5 chips have 17 cores; the host input
    (``SpikeSourceArray``) takes a core too. Counting the same, the emulator's own verdict (used where
    the toolchain is absent) agrees with sPyNNaker's. Other chip counts keep 16 application cores per chip.
    """
    board = board_for(chips)
    if board is None:
        per = int(limits["app_cores_per_chip"])
        return chips * per, 0, f"{chips} chips x {per} application cores (no sPyNNaker board of {chips} chips)"
    if board["version"] == 3:
        n_boards, cores, n_chips = 1, int(limits["board_cores_spinn3"]), chips
    else:
        n_boards, cores, n_chips = int(board["boards"]), int(limits["board_cores_spinn5"]), CHIPS_PER_SPINN5
    mon, sys_ = int(limits["monitor_cores_per_chip"]), int(limits["system_cores_per_board"])
    per_board = cores - mon * n_chips - sys_
    why = (f"{board_name(board)}: {n_boards} x ({cores} cores - {mon} monitors x {n_chips} chips - {sys_} "
           f"packet gatherer) = {n_boards * per_board} application cores, the host input's included")
    return n_boards * per_board, int(limits["host_input_cores"]), why


def _own(layers: list[dict[str, Any]], npc: int) -> dict[str, int]:
    return {f"l{i}": emulator_cores(int(m["n_out"]), npc) for i, m in enumerate(layers)}


def spynnaker_fit(fit: FitReport, arrays: Mapping[str, np.ndarray], layers: list[dict[str, Any]], n_in: int,
                  npc: int, chips: int, *, python: str | None = None) -> dict[str, Any] | None:
    """Map the compiled program with sPyNNaker onto the board of ``chips`` chips; add its verdict and
    figures to ``fit``. Returns the driver's report (None when sPyNNaker did not run)."""
    own = _own(layers, npc)
    fallback = (f"fit verdict = the emulator's own estimate (cores per population {own}, the board's "
                f"application-core budget as sPyNNaker reserves it)")
    if os.environ.get(SWITCH_ENV, "").lower() == "off":
        fit.notes.append(f"sPyNNaker fit check switched off ({SWITCH_ENV}=off); {fallback}")
        return None
    board = board_for(chips)
    if board is None:
        fit.notes.append(f"sPyNNaker fit check not run: sPyNNaker models SpiNN-3 (4 chips) and whole SpiNN-5 boards "
                         f"(48 x k chips), not {chips} chips; {fallback}")
        return None
    n_weights = sum(int(np.asarray(v).size) for k, v in arrays.items() if k.endswith((".exc", ".inh")))
    if n_weights > MAX_DENSE_WEIGHTS:
        fit.notes.append(f"sPyNNaker fit check not run: {n_weights} weight entries > {MAX_DENSE_WEIGHTS} sent to the "
                         f"driver at most; {fallback}")
        return None
    where = board_name(board)
    try:
        res = map_network(describe(arrays, layers, n_in, npc, board), python=python)
    except SpynnakerUnavailable as exc:
        fit.notes.append(f"{exc.reason}; {fallback}")
        return None
    except SpynnakerError as exc:
        fit.notes.append(f"sPyNNaker fit check failed ({exc}); {fallback}")
        return None
    who = f"sPyNNaker {res.version} mapping on a {where}"
    if not res.ok:
        fit.add(f"{who} refused: {res.reason}", 1, 0, "", "board")
        return res.report
    fit.add(f"{who}: accepted", 0, 0, "", "board")
    rep = res.report
    pops = rep["populations"]
    cores = {k: v["cores"] for k, v in pops.items()}
    rt, b = rep["routing"], rep["board"]
    fit.notes.append(
        f"sPyNNaker cores per population {cores} (host input 'in' included; emulator's estimate {own}); "
        f"{rep['app_cores']} application + {rep['system_cores']} system cores on {rep['chips_used']} of {b['chips']} chips")
    fit.notes.append(
        f"sPyNNaker routing entries (uncompressed): {rt['max_entries_per_chip']} max per chip "
        f"(router holds {b['router_entries_per_chip']}), {rt['total_entries']} total over {rt['tables']} chip(s)")
    fit.notes.append(
        "sPyNNaker SDRAM per core (max, bytes): " + str({k: v["sdram_per_core_max"] for k, v in pops.items()})
        + f"; busiest chip {rep['sdram_per_chip_max']} of {b['sdram_per_chip']} B; mapped in {rep['mapping_s']:g} s"
        + (" (report from the toolchain's cache)" if rep.get("cached") else ""))
    diff = {k: (cores.get(k, 0), n) for k, n in own.items() if cores.get(k, 0) != n}
    if diff:
        fit.notes.append(f"sPyNNaker and the emulator disagree on cores per population (sPyNNaker, emulator): {diff}")
    return rep
