"""Golden check of the Loihi emulator against Lava itself, through a subprocess bridge.

Lava 0.10 needs Python 3.10 and numpy < 2, so it lives in its own interpreter (the Makefile builds
``toolchains/lava/.venv``; ``FABRIC_LAVA_PYTHON`` points elsewhere). We write each Program (npz) and
its input spikes to a temporary directory, run ``toolchains/lava/run_lava.py`` there once for any
number of programs, and compare every layer's raster with :func:`actors.loihi.fixed.emulate` bit
for bit. A conv layer the program keeps as a kernel (``conv`` in its layer entry) runs as Lava's own
``Conv`` process, so its convolution is Lava's, not our dense expansion; :attr:`GoldenResult.lava_processes`
says which Lava processes ran. Both sides run the same schedule (input from a RingBuffer at step t, each Dense one step
late, state from zero), so equal programs must give identical rasters; any difference is a bug in
the emulator. A missing interpreter or a Lava that does not import raises :class:`GoldenUnavailable`
with the reason: a golden check never passes by default.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from actors.loihi.fixed import Emulation, emulate, program_layers
from fabric.records import Program, ReferenceCheckError, ReferenceMismatch, ReferenceUnavailable

__all__ = [
    "GoldenError",
    "GoldenUnavailable",
    "GoldenMismatch",
    "GoldenResult",
    "REPO_ROOT",
    "RUN_LAVA",
    "lava_python",
    "run_lava",
    "golden_check",
    "golden_check_many",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_LAVA = REPO_ROOT / "toolchains" / "lava" / "run_lava.py"
LAVA_ENV = "FABRIC_LAVA_PYTHON"


class GoldenError(ReferenceCheckError):
    """Lava ran but failed (crash, timeout, malformed output)."""


class GoldenUnavailable(GoldenError, ReferenceUnavailable):
    """No usable Lava toolchain: the golden check could not be made (``reason`` says why)."""

    def __init__(self, reason: str) -> None:
        ReferenceUnavailable.__init__(self, reason, f"Lava golden reference unavailable: {reason}")


class GoldenMismatch(ReferenceMismatch):
    """The emulator and Lava disagree on a program they both ran."""

    def __init__(self, result: GoldenResult) -> None:
        self.result = result
        super().__init__(result.summary())


@dataclass(kw_only=True)
class GoldenResult:
    """Per-layer raster comparison of emulator vs Lava on one program and input."""

    bit_exact: bool
    mismatches: int
    per_layer: list[int]
    first_mismatch: dict[str, Any] | None  # earliest step: layer, sample, step, neuron, lava, emulator
    samples: int
    steps: int
    layers: int
    lava_version: str
    lava_python: str
    lava_wall_s: float
    lava_processes: list[str] = field(default_factory=list)  # Lava process types used, first use first
    layer_processes: list[list[str]] = field(default_factory=list)  # per layer, e.g. ["Conv", "LIF"]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        head = (f"golden check vs Lava {self.lava_version} fixed_pt: "
                f"{'bit-exact' if self.bit_exact else 'MISMATCH'} over {self.layers} layers x {self.samples} samples x "
                f"{self.steps} steps")
        if self.lava_processes:
            head += f" (Lava processes {', '.join(self.lava_processes)})"
        if self.bit_exact:
            return head
        return f"{head}; {self.mismatches} differing spikes (per layer {self.per_layer}); first at {self.first_mismatch}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lava_python() -> Path:
    """The Lava interpreter: ``$FABRIC_LAVA_PYTHON``, else ``toolchains/lava/.venv/bin/python``."""
    env = os.environ.get(LAVA_ENV)
    return Path(env) if env else REPO_ROOT / "toolchains" / "lava" / ".venv" / "bin" / "python"


def _check_python(python: Path) -> None:
    how = f"set {LAVA_ENV} or run `make setup-lava`"
    if not python.exists():
        raise GoldenUnavailable(f"no Lava python at {python} ({how})")
    if not os.access(python, os.X_OK):
        raise GoldenUnavailable(f"Lava python {python} is not executable ({how})")
    if not RUN_LAVA.exists():
        raise GoldenUnavailable(f"runner script {RUN_LAVA} is missing")


def _has_recurrence(program: Program) -> bool:
    from actors.loihi.fixed import program_layers

    return any(fl.rec_weights is not None for fl in program_layers(program))


def run_lava(jobs: Sequence[tuple[Program, np.ndarray]], *, python: Path | str | None = None,
             timeout_s: float = 900.0, block: int | None = None) -> tuple[list[list[np.ndarray]], dict[str, Any]]:
    """Run every ``(program, spikes)`` through Lava in one subprocess.

    ``block`` fixes how many samples share one Lava run (default: as many as keep the block-diagonal
    weights small). Returns per-job lists of layer rasters ``[B, T, n]`` and run info
    (lava_version, wall_s, per-job and per-run timings).
    """
    if any(_has_recurrence(program) for program, _ in jobs):
        raise GoldenUnavailable("program has a recurrent Dense; toolchains/lava/run_lava.py builds "
                                "feed-forward chains only, so there is no Lava reference for it")
    py = Path(python) if python is not None else lava_python()
    _check_python(py)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    with tempfile.TemporaryDirectory(prefix="fabric-golden-") as tmp:
        work = Path(tmp)
        spec = []
        for i, (program, spikes) in enumerate(jobs):
            if program.kind != "loihi":
                raise ValueError(f"golden check needs a 'loihi' program, got {program.kind!r}")
            (work / f"p{i}.npz").write_bytes(program.to_bytes())
            np.save(work / f"x{i}.npy", (np.asarray(spikes) != 0).astype(np.uint8))
            spec.append({"id": f"j{i}", "program": f"p{i}.npz", "spikes": f"x{i}.npy", "block": block})
        (work / "jobs.json").write_text(json.dumps({"jobs": spec}))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([str(py), str(RUN_LAVA), str(work)], capture_output=True, text=True,
                                  timeout=timeout_s, env=env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise GoldenError(f"Lava run exceeded {timeout_s:g} s") from exc
        except OSError as exc:
            raise GoldenUnavailable(f"cannot start Lava python {py}: {exc}") from exc
        wall = time.perf_counter() - t0
        status_path = work / "status.json"
        status = json.loads(status_path.read_text()) if status_path.exists() else {}
        if proc.returncode == 3 or "unavailable" in status:
            raise GoldenUnavailable(status.get("unavailable") or proc.stderr.strip()[-2000:])
        if proc.returncode != 0 or not status.get("ok"):
            failed = [j for j in status.get("jobs", []) if not j.get("ok")]
            detail = failed[0]["error"] if failed else proc.stderr[-4000:]
            raise GoldenError(f"Lava run failed (exit {proc.returncode}):\n{detail}")
        out = []
        for i, (program, _) in enumerate(jobs):
            n_layers = len(program.meta["layers"])
            out.append([np.load(work / f"j{i}_l{k}.npy") for k in range(n_layers)])
    info = {"lava_version": status.get("lava_version", "?"), "python": str(py), "wall_s": wall,
            "jobs": status.get("jobs", [])}
    return out, info


def _compare(emu: Sequence[np.ndarray], lava: Sequence[np.ndarray], info: dict[str, Any], wall_s: float,
             job: dict[str, Any] | None = None) -> GoldenResult:
    per_layer, first = [], None
    layer_procs = [list(e.get("processes", [])) for e in (job or {}).get("layer_processes", [])]
    procs = list(dict.fromkeys(p for lp in layer_procs for p in lp))
    notes = [f"layer {e['layer']}: conv checked as Lava Dense: {e['conv_on_dense']}"
             for e in (job or {}).get("layer_processes", []) if e.get("conv_on_dense")]
    for k, (a, b) in enumerate(zip(emu, lava, strict=True)):
        if a.shape != b.shape:
            raise GoldenError(f"layer {k}: emulator raster {a.shape} vs Lava {b.shape}")
        diff = np.argwhere(a != b)
        per_layer.append(int(len(diff)))
        if len(diff):
            s, t, n = diff[np.lexsort((diff[:, 2], diff[:, 0], diff[:, 1]))[0]]
            if first is None or t < first["step"]:
                first = {"layer": k, "sample": int(s), "step": int(t), "neuron": int(n),
                         "lava": int(b[s, t, n]), "emulator": int(a[s, t, n])}
    b0 = emu[0]
    return GoldenResult(bit_exact=sum(per_layer) == 0, mismatches=sum(per_layer), per_layer=per_layer,
                        first_mismatch=first, samples=int(b0.shape[0]), steps=int(b0.shape[1]), layers=len(emu),
                        lava_version=info["lava_version"], lava_python=info["python"], lava_wall_s=wall_s,
                        lava_processes=procs, layer_processes=layer_procs, notes=notes)


def golden_check_many(programs: Sequence[Program], inputs: Sequence[np.ndarray], *,
                      emulations: Sequence[Emulation | None] | None = None, python: Path | str | None = None,
                      timeout_s: float = 900.0) -> list[GoldenResult]:
    """Compare emulator and Lava on many programs with one Lava subprocess (start-up paid once)."""
    if len(programs) != len(inputs):
        raise ValueError("one input per program")
    lava_out, info = run_lava(list(zip(programs, inputs, strict=True)), python=python, timeout_s=timeout_s)
    results = []
    for i, (program, spikes) in enumerate(zip(programs, inputs, strict=True)):
        em = emulations[i] if emulations is not None else None
        if em is None:
            em = emulate(program_layers(program), spikes)
        job = next((j for j in info["jobs"] if j.get("id") == f"j{i}"), {})
        results.append(_compare(em.rasters, lava_out[i], info, float(job.get("wall_s", info["wall_s"])), job))
    return results


def golden_check(program: Program, spikes: np.ndarray, *, emulation: Emulation | None = None,
                 python: Path | str | None = None, timeout_s: float = 900.0) -> GoldenResult:
    """Run ``program`` on ``spikes [B, T, n_in]`` in Lava and in the emulator; compare all layers."""
    return golden_check_many([program], [spikes], emulations=[emulation], python=python, timeout_s=timeout_s)[0]
