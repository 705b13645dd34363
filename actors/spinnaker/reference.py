"""spinnaker's reference adapter: sPyNNaker's own mapping of the compiled program onto a virtual board.

Why: the emulator's resource arithmetic (``ceil(n / neurons_per_core)`` cores per population, 16
application cores per chip) is an estimate; sPyNNaker (1!7.4.1, PyPI ``spynnaker``) partitions,
places and routes the same network onto a software model of the machine (``virtual_board = True``,
``version = 5``: SpiNN-5, 48 chips) and reports cores per population, chips used, routing entries
per chip and SDRAM per core from its placements. A virtual board runs no spikes and measures no
energy, so this is a fit check only; the emulator's arithmetic stays.

sPyNNaker lives in its own interpreter (``toolchains/spinnaker/.venv``, built by ``make
setup-spinnaker``; ``FABRIC_SPINNAKER_PYTHON`` points elsewhere) and reads its config from HOME, so
the driver ``toolchains/spinnaker/map_network.py`` runs as a subprocess with HOME =
``toolchains/spinnaker/home`` (never the user's home) and a timeout. A mapping costs seconds (the
digits model took 5 s inside sPyNNaker, 25 s a compile on a loaded 2-core machine) and is a pure function
of the description, the driver and the toolchain, so its report is cached under the toolchain's own
dir (``toolchains/spinnaker/home/.cache/fabric-map/<sha256>.json``, git-ignored) keyed by the sha256
of those three; ``FABRIC_SPINNAKER_CACHE`` names another dir, or ``off``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabric.records import ReferenceCheckError, ReferenceUnavailable

__all__ = [
    "NOT_INSTALLED",
    "MAP_NETWORK",
    "TOOLCHAIN_HOME",
    "CACHE_DIR",
    "CACHE_ENV",
    "TAU_M_MAX",
    "SpynnakerError",
    "SpynnakerUnavailable",
    "MapResult",
    "board_for",
    "describe",
    "spinnaker_python",
    "map_network",
    "cache_dir",
    "cache_key",
    "emulator_cores",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLCHAIN = REPO_ROOT / "toolchains" / "spinnaker"
MAP_NETWORK = TOOLCHAIN / "map_network.py"
TOOLCHAIN_HOME = TOOLCHAIN / "home"
PYTHON_ENV = "FABRIC_SPINNAKER_PYTHON"
NOT_INSTALLED = "sPyNNaker toolchain not installed (make setup-spinnaker)"
CHIPS_PER_SPINN5 = 48
CHIPS_SPINN3 = 4
MAP_TIMEOUT_S = 600.0
FRAC = 15  # s16.15 accums (see actors/spinnaker/runtime.py)
# sPyNNaker stores tau_m as an s16.15 accum (ms), so the longest membrane time constant it takes is
# the largest whole accum below 2^16: an IF (no leak) maps to this one (decay exp(-1/65535) per tick)
TAU_M_MAX = 65535.0
CACHE_DIR = TOOLCHAIN_HOME / ".cache" / "fabric-map"
CACHE_ENV = "FABRIC_SPINNAKER_CACHE"


class SpynnakerError(ReferenceCheckError):
    """sPyNNaker ran but failed: crash, timeout, malformed output."""


class SpynnakerUnavailable(SpynnakerError, ReferenceUnavailable):
    """No usable sPyNNaker toolchain here (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        ReferenceUnavailable.__init__(self, reason, reason)


@dataclass(kw_only=True)
class MapResult:
    """What sPyNNaker said about one network on one virtual board."""

    ok: bool
    reason: str = ""  # sPyNNaker's refusal, when not ok
    report: dict[str, Any] = field(default_factory=dict)  # the driver's JSON document

    @property
    def version(self) -> str:
        return str(self.report.get("spynnaker_version", "?"))


def board_for(chips: int) -> dict[str, int] | None:
    """The sPyNNaker board for a chip budget: 4 = SpiNN-3 (version 3), 48 x k = k SpiNN-5 boards."""
    if chips == CHIPS_SPINN3:
        return {"version": 3}
    if chips >= CHIPS_PER_SPINN5 and chips % CHIPS_PER_SPINN5 == 0:
        return {"version": 5, "boards": chips // CHIPS_PER_SPINN5}
    return None


def _value(x: np.ndarray) -> float | list[float]:
    """A scalar when every neuron shares the value (short JSON), else the per-neuron list."""
    x = np.asarray(x, dtype=np.float64).ravel()
    return float(x[0]) if x.size and np.all(x == x[0]) else [float(v) for v in x]


def _weights(arrays: Mapping[str, np.ndarray], key: str, shift: int) -> np.ndarray:
    """The program's 16-bit weight words back in float units: ``w16 << shift`` as s16.15."""
    return arrays[key].astype(np.float64) * 2.0 ** (int(shift) - FRAC)


def describe(arrays: Mapping[str, np.ndarray], layers: list[dict[str, Any]], n_in: int, neurons_per_core: int,
             board: dict[str, int], run_ms: float = 10.0) -> dict[str, Any]:
    """The driver's network description, built from a compiled spinnaker program's arrays and layer meta.

    Populations: the host input as a ``SpikeSourceArray`` of ``n_in`` (sPyNNaker's default atoms per
    core), then one population per layer with the emulator's ``neurons_per_core``: ``IF_curr_exp``
    for current-based layers (a synaptic decay in the program), ``IF_curr_delta`` for the
    voltage-based ones. Membrane time constants come from the program's u0.32 decays in 1 ms ticks
    (an exact-1 decay, IF, becomes the longest sPyNNaker accepts, :data:`TAU_M_MAX`: it has no
    leak-free IF, and larger values fail its s16.15 conversion). Projections: the
    16-bit excitatory and inhibitory words of each layer (feed-forward and recurrent) as dense
    weights, 1 ms delay (the emulator's one-step projection delay).
    """
    pops: list[dict[str, Any]] = [{"label": "in", "size": int(n_in), "model": "SpikeSourceArray"}]
    projs: list[dict[str, Any]] = []
    prev = "in"
    for i, m in enumerate(layers):
        label = f"l{i}"
        beta = arrays[f"l{i}.decay_u032"].astype(np.float64) / 2.0**32
        tau_m = np.where(arrays[f"l{i}.decay_one"], TAU_M_MAX, np.minimum(1.0 / np.maximum(1.0 - beta, 1.0e-9), TAU_M_MAX))
        params: dict[str, Any] = {
            "tau_m": _value(tau_m), "v_rest": 0.0,
            "v_thresh": _value(arrays[f"l{i}.thr_raw"] / 2.0**FRAC),
            "v_reset": _value(arrays[f"l{i}.reset_raw"] / 2.0**FRAC),
            "i_offset": _value(arrays[f"l{i}.bias_raw"] / 2.0**FRAC), "tau_refrac": 0.0,
        }
        current = f"l{i}.syn_decay_u032" in arrays
        if current:
            alpha = arrays[f"l{i}.syn_decay_u032"].astype(np.float64) / 2.0**32
            tau_syn = _value(np.minimum(1.0 / np.maximum(1.0 - alpha, 1.0e-9), TAU_M_MAX))
            params.update(tau_syn_E=tau_syn, tau_syn_I=tau_syn)
        pops.append({"label": label, "size": int(m["n_out"]), "model": "IF_curr_exp" if current else "IF_curr_delta",
                     "params": params, "neurons_per_core": int(neurons_per_core)})
        shift = arrays[f"l{i}.shift"]
        for tag, pre in (("ff", prev), ("rec", label)):
            for k, receptor in ((0, "excitatory"), (1, "inhibitory")):
                key = f"l{i}.{tag}.{receptor[:3]}"
                if key not in arrays or not np.any(arrays[key]):
                    continue
                w = _weights(arrays, key, int(shift[k]))
                projs.append({"pre": pre, "post": label, "receptor": receptor, "delay_ms": 1.0,
                              "weights": w.tolist()})
        prev = label
    return {"timestep_ms": 1.0, "run_ms": float(run_ms), "board": dict(board), "populations": pops,
            "projections": projs}


def spinnaker_python() -> Path:
    """The sPyNNaker interpreter: ``$FABRIC_SPINNAKER_PYTHON``, else ``toolchains/spinnaker/.venv/bin/python``."""
    env = os.environ.get(PYTHON_ENV)
    return Path(env) if env else TOOLCHAIN / ".venv" / "bin" / "python"


def cache_dir() -> Path | None:
    """Where mapping reports are cached: ``$FABRIC_SPINNAKER_CACHE`` (``off``: nowhere), else :data:`CACHE_DIR`."""
    env = os.environ.get(CACHE_ENV, "")
    if env.lower() == "off":
        return None
    return Path(env) if env else CACHE_DIR


def cache_key(desc: dict[str, Any], py: Path) -> str:
    """sha256 of what the report is a function of: the description, the driver, the cfg and the toolchain
    (its interpreter path and pinned requirements), so an edit to any of them maps afresh."""
    h = hashlib.sha256(json.dumps(desc, sort_keys=True, separators=(",", ":")).encode())
    for f in (MAP_NETWORK, TOOLCHAIN_HOME / ".spynnaker.cfg", TOOLCHAIN / "requirements.lock"):
        h.update(f.read_bytes() if f.exists() else b"-")
    h.update(str(py).encode())
    return h.hexdigest()


def map_network(desc: dict[str, Any], *, python: Path | str | None = None,
                timeout_s: float = MAP_TIMEOUT_S) -> MapResult:
    """Run the driver on ``desc`` (or read its cached report); raises :class:`SpynnakerUnavailable` when
    there is no toolchain and :class:`SpynnakerError` when it crashes or times out. A refusal is a result
    (``ok`` False) and is cached like an acceptance; a failure is never cached."""
    py = Path(python) if python is not None else spinnaker_python()
    if not py.exists() or not os.access(py, os.X_OK):
        raise SpynnakerUnavailable(NOT_INSTALLED)
    if not MAP_NETWORK.exists() or not (TOOLCHAIN_HOME / ".spynnaker.cfg").exists():
        raise SpynnakerUnavailable(f"{NOT_INSTALLED}: {MAP_NETWORK.name} or home/.spynnaker.cfg is missing")
    where = cache_dir()
    hit = None if where is None else where / f"{cache_key(desc, py)}.json"
    if hit is not None and hit.exists():
        try:
            rep = json.loads(hit.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            rep = None  # a torn or unreadable entry: map afresh and overwrite it
        if isinstance(rep, dict):
            rep["cached"] = True
            return MapResult(ok=bool(rep.get("ok")), reason=str(rep.get("reason", "")), report=rep)
    rep = _run_driver(desc, py, timeout_s)
    if hit is not None:
        try:
            hit.parent.mkdir(parents=True, exist_ok=True)
            tmp = hit.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(rep), encoding="utf-8")
            os.replace(tmp, hit)  # atomic: a concurrent reader sees the whole report or none
        except OSError:
            pass  # a read-only checkout still maps, it only cannot remember
    rep["cached"] = False
    return MapResult(ok=bool(rep.get("ok")), reason=str(rep.get("reason", "")), report=rep)


def _run_driver(desc: dict[str, Any], py: Path, timeout_s: float) -> dict[str, Any]:
    """One driver subprocess with the toolchain's HOME; its JSON report."""
    with tempfile.TemporaryDirectory(prefix="fabric_spinn_") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "XDG_", "VIRTUAL_ENV"))}
        # sPyNNaker looks for its cfg in HOME and the XDG config dirs: all point at the toolchain's home
        env.update(HOME=str(TOOLCHAIN_HOME), XDG_CONFIG_HOME=str(TOOLCHAIN_HOME / ".config"),
                   XDG_CONFIG_DIRS=str(TOOLCHAIN_HOME / ".config-site"), MPLCONFIGDIR=str(Path(tmp) / "mpl"),
                   MPLBACKEND="Agg")
        try:
            proc = subprocess.run([str(py), str(MAP_NETWORK)], input=json.dumps(desc), capture_output=True,
                                  text=True, timeout=timeout_s, cwd=tmp, env=env)
        except subprocess.TimeoutExpired as exc:
            raise SpynnakerError(f"sPyNNaker mapping timed out after {timeout_s:g} s") from exc
    if proc.returncode == 3:
        raise SpynnakerUnavailable(f"{NOT_INSTALLED}: {proc.stderr.strip().splitlines()[-1:]}")
    tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
    if proc.returncode != 0:
        raise SpynnakerError(f"sPyNNaker mapping failed (exit {proc.returncode}): {tail}")
    try:
        rep = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise SpynnakerError(f"sPyNNaker driver printed no JSON report: {proc.stdout[-200:]!r}") from exc
    if not isinstance(rep, dict):
        raise SpynnakerError(f"sPyNNaker driver printed no JSON object: {proc.stdout[-200:]!r}")
    return rep


def emulator_cores(n: int, neurons_per_core: int) -> int:
    """The emulator's own estimate of one population's cores (populations never share a core)."""
    return math.ceil(n / neurons_per_core)
