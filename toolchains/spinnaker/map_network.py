"""SpiNNaker fit check: map a network with sPyNNaker onto a virtual board and report what it used.

Runs under the sPyNNaker toolchain interpreter (``toolchains/spinnaker/.venv``, sPyNNaker 1!7.4.1 with
PyNN 0.13), never imported by the fabric. It must run with ``HOME`` = ``toolchains/spinnaker/home``:
sPyNNaker reads its user config (``.spynnaker.cfg``: virtual board, version 5 = 48-chip boards) from
HOME and writes a template there when it finds none. Its ``reports/`` folder (written next to the
current directory) goes into a temporary directory that is removed afterwards.

stdin: one JSON document::

    {"timestep_ms": 1.0, "run_ms": 10,
     "board": {"version": 5, "boards": 1},            # or {"version": 3} (the 4-chip SpiNN-3)
     "populations": [{"label": "l0", "size": 200, "model": "IF_curr_exp",   # IF_curr_delta, SpikeSourceArray
                      "params": {"tau_m": 20.0, ...}, "neurons_per_core": 64}],
     "projections": [{"pre": "in", "post": "l0", "receptor": "excitatory",
                      "weights": [[...n_pre...], ...n_post rows], "delay_ms": 1.0}]}
                      # or "connections": [[pre, post, weight, delay_ms], ...] (FromListConnector)

stdout: one JSON document, ``{"ok": true, ...}`` with cores per population, chips used, routing
entries (max per chip and total, uncompressed, with the router's limit) and SDRAM per core from
sPyNNaker's placements, or ``{"ok": false, "reason": ..., "error_type": ...}`` when sPyNNaker refuses
to map the network on the board. sPyNNaker's own printing goes to stderr. Exit status 3: sPyNNaker
cannot be imported; 2: the description is malformed (the message names the field).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from typing import Any

MODELS = ("IF_curr_exp", "IF_curr_delta", "SpikeSourceArray")
RECEPTORS = ("excitatory", "inhibitory")


def _fail(msg: str) -> None:
    print(f"map_network: {msg}", file=sys.stderr)
    raise SystemExit(2)


def _check(desc: Any) -> None:
    """Validate the description; one line naming the field on the first problem."""
    if not isinstance(desc, dict):
        _fail("the description must be a JSON object")
    pops = desc.get("populations")
    if not isinstance(pops, list) or not pops:
        _fail("populations: a non-empty list is required")
    labels = set()
    for i, p in enumerate(pops):
        if not isinstance(p, dict) or not isinstance(p.get("label"), str):
            _fail(f"populations[{i}].label: a string is required")
        if not isinstance(p.get("size"), int) or p["size"] < 1:
            _fail(f"populations[{i}].size: an integer >= 1 is required, got {p.get('size')!r}")
        if p.get("model") not in MODELS:
            _fail(f"populations[{i}].model: one of {MODELS} is required, got {p.get('model')!r}")
        npc = p.get("neurons_per_core")
        if npc is not None and (not isinstance(npc, int) or npc < 1):
            _fail(f"populations[{i}].neurons_per_core: an integer >= 1 or null is required, got {npc!r}")
        labels.add(p["label"])
    for i, pr in enumerate(desc.get("projections", [])):
        for end in ("pre", "post"):
            if pr.get(end) not in labels:
                _fail(f"projections[{i}].{end}: {pr.get(end)!r} is not a population label")
        if pr.get("receptor", "excitatory") not in RECEPTORS:
            _fail(f"projections[{i}].receptor: one of {RECEPTORS} is required")
        if ("weights" in pr) == ("connections" in pr):
            _fail(f"projections[{i}]: exactly one of weights (dense) or connections (list) is required")
    board = desc.get("board", {"version": 5, "boards": 1})
    if board.get("version") not in (3, 5):
        _fail(f"board.version: 3 (4-chip) or 5 (48-chip) is required, got {board.get('version')!r}")


def _connections(pr: dict[str, Any]) -> list[tuple[int, int, float, float]]:
    """Connection list ``(pre, post, |w|, delay)``; zero weights are no synapse."""
    if "connections" in pr:
        return [(int(a), int(b), abs(float(w)), float(d)) for a, b, w, d in pr["connections"] if float(w) != 0.0]
    d = float(pr.get("delay_ms", 1.0))
    return [(j, i, abs(float(w)), d) for i, row in enumerate(pr["weights"]) for j, w in enumerate(row) if w != 0]


@contextlib.contextmanager
def _stdout_to_stderr():
    """sPyNNaker prints progress to stdout; keep stdout for our one JSON document."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _map(desc: dict[str, Any], sim: Any, view: Any, np: Any) -> dict[str, Any]:
    board = desc.get("board", {"version": 5, "boards": 1})
    kw = {"n_boards_required": int(board.get("boards", 1))} if board["version"] == 5 else {}
    t0 = time.perf_counter()
    sim.setup(timestep=float(desc.get("timestep_ms", 1.0)), **kw)
    pops: dict[str, Any] = {}
    for p in desc["populations"]:
        cls = getattr(sim, p["model"])
        cell = cls(spike_times=[]) if p["model"] == "SpikeSourceArray" \
            else cls(**{k: (np.asarray(v) if isinstance(v, list) else v) for k, v in p.get("params", {}).items()})
        pop = sim.Population(p["size"], cell, label=p["label"])
        if p.get("neurons_per_core"):
            pop.set_max_atoms_per_core(int(p["neurons_per_core"]))
        pops[p["label"]] = pop
    n_syn = 0
    for pr in desc.get("projections", []):
        conns = _connections(pr)
        if not conns:
            continue
        n_syn += len(conns)
        sim.Projection(pops[pr["pre"]], pops[pr["post"]], sim.FromListConnector(conns, column_names=["weight", "delay"]),
                       synapse_type=sim.StaticSynapse(), receptor_type=pr.get("receptor", "excitatory"))
    try:
        sim.run(float(desc.get("run_ms", 10.0)))
    except Exception as exc:  # sPyNNaker's refusal (placement, routing, SDRAM) is the verdict
        msg = re.sub(r"\s*Report written to \S+", "", " ".join(str(exc).split()))
        return {"ok": False, "reason": msg, "error_type": type(exc).__name__,
                "mapping_s": round(time.perf_counter() - t0, 3)}
    mapping_s = time.perf_counter() - t0
    machine = view.get_machine()
    version = view.get_machine_version()
    steps = view.get_plan_n_timestep()
    label_of = {id(pop._vertex): lab for lab, pop in pops.items()}
    per_pop: dict[str, dict[str, Any]] = {lab: {"cores": 0, "chips": set(), "sdram_per_core": []} for lab in pops}
    app_chips, system_cores = set(), 0
    sdram_chip: dict[tuple[int, int], int] = defaultdict(int)
    for pl in view.iterate_placemements():
        sdram = int(pl.vertex.sdram_required.get_total_sdram(steps))
        sdram_chip[(pl.x, pl.y)] += sdram
        lab = label_of.get(id(getattr(pl.vertex, "app_vertex", None)))
        if lab is None:
            system_cores += 1
            continue
        rec = per_pop[lab]
        rec["cores"] += 1
        rec["chips"].add((pl.x, pl.y))
        rec["sdram_per_core"].append(sdram)
        app_chips.add((pl.x, pl.y))
    tables = view.get_uncompressed()
    out_pops = {lab: {"cores": r["cores"], "chips": len(r["chips"]),
                      "sdram_per_core_max": max(r["sdram_per_core"], default=0),
                      "sdram_per_core_min": min(r["sdram_per_core"], default=0),
                      "sdram_total": sum(r["sdram_per_core"])} for lab, r in per_pop.items()}
    chip00 = machine.get_chip_at(0, 0)
    return {
        "ok": True,
        "board": {"version": board["version"], "chips": machine.n_chips, "cores": machine.total_cores,
                  "router_entries_per_chip": int(version.n_router_entries), "sdram_per_chip": int(chip00.sdram)},
        "populations": out_pops,
        "synapses": n_syn,
        "app_cores": sum(r["cores"] for r in out_pops.values()),
        "system_cores": system_cores,
        "chips_used": len(app_chips),
        "routing": {"max_entries_per_chip": int(tables.get_max_number_of_entries()),
                    "total_entries": int(tables.get_total_number_of_entries()), "tables": len(tables),
                    "compressed": False},
        "sdram_per_chip_max": max(sdram_chip.values(), default=0),
        "run_timesteps": steps,
        "mapping_s": round(mapping_s, 3),
    }


def main() -> int:
    try:
        desc = json.load(sys.stdin)
    except json.JSONDecodeError as exc:
        _fail(f"stdin: not a JSON document ({exc})")
    _check(desc)
    workdir = tempfile.mkdtemp(prefix="spinn_map_")
    # registered before sPyNNaker is imported, so it runs after sPyNNaker's own exit hooks (LIFO),
    # which still write into the reports folder
    atexit.register(shutil.rmtree, workdir, True)
    os.chdir(workdir)  # sPyNNaker writes reports/ (and reads a local spynnaker.cfg) in the current dir
    board = desc.get("board", {"version": 5})
    with open("spynnaker.cfg", "w", encoding="utf-8") as f:  # run-local overrides of the HOME cfg
        f.write(f"[Machine]\nversion = {int(board['version'])}\n\n[Reports]\ndefault_report_file_path = {workdir}\n")
    with _stdout_to_stderr():
        try:
            import numpy as np
            import pyNN.spiNNaker as sim
            from spynnaker import __version__ as spynnaker_version
            from spynnaker.pyNN.data import SpynnakerDataView
        except Exception as exc:
            print(f"map_network: sPyNNaker does not import: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 3
        try:
            rep = _map(desc, sim, SpynnakerDataView, np)
        finally:
            with contextlib.suppress(Exception):
                sim.end()
    rep["spynnaker_version"] = str(spynnaker_version)
    print(json.dumps(rep))
    return 0

if __name__ == "__main__":
    sys.exit(main())
