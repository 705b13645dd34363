"""xylo's reference adapter: the compiled integer spec run by Rockpool's ``XyloSim`` (rockpool 3.1.0,
``rockpool.devices.xylo.syns61201``, backed by the xylosim 0.1.3 C++ simulator).

Why: the emulator (:mod:`actors.xylo.core`) is evidence only where SynSense's own simulator agrees with
it; the check compares output spikes of every sample and step, bit for bit.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np

from actors.base.common import quiet_vendor_import
from actors.xylo.core import XyloSpec, evolve

__all__ = ["import_xylo", "xylosim_version", "xylosim_run", "check_program"]


def import_xylo() -> Any:
    """``rockpool.devices.xylo.syns61201`` with ``syns65302`` stubbed (it imports samna unguarded)."""
    sys.modules.setdefault("rockpool.devices.xylo.syns65302", types.ModuleType("rockpool.devices.xylo.syns65302"))
    with quiet_vendor_import():
        import rockpool.devices.xylo.syns61201 as xa2

    return xa2


def xylosim_version() -> str | None:
    """Installed xylosim version (None: missing)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xylosim")
    except PackageNotFoundError:
        return None


def xylosim_run(spec: XyloSpec, x: np.ndarray, dt: float) -> np.ndarray:
    """Output spikes ``[B, T, n_out]`` of ``XyloSim.from_specification(..., output_mode="Spike")``."""
    xa2 = import_xylo()
    n_hid = spec.w_in.shape[1]
    outs = []
    for sample in np.asarray(x):
        sim = xa2.XyloSim.from_specification(
            weights_in=spec.w_in, weights_rec=spec.w_rec, weights_out=spec.w_out, dash_mem=spec.dash_mem,
            dash_syn=spec.dash_syn, dash_syn_2=np.zeros(n_hid, int), dash_mem_out=spec.dash_mem_out,
            dash_syn_out=spec.dash_syn_out, threshold=spec.threshold, threshold_out=spec.threshold_out,
            weight_shift_in=int(spec.weight_shift_in), weight_shift_rec=int(spec.weight_shift_rec),
            weight_shift_out=int(spec.weight_shift_out), dt=dt, output_mode="Spike")
        out, _, _ = sim(np.asarray(sample).astype(int))
        outs.append(np.asarray(out, dtype=np.int64))
    return np.stack(outs)


def check_program(spec: XyloSpec, x: np.ndarray, dt: float) -> dict[str, Any]:
    """Emulator vs XyloSim on ``x``: ``status`` bit-exact | mismatch | unavailable, with counts."""
    ver = xylosim_version()
    if ver is None:
        return {"status": "unavailable", "summary": "xylosim is not installed; no Xylo reference", "samples": 0,
                "reason": "xylosim missing"}
    emu, _ = evolve(spec, x)
    ref = xylosim_run(spec, x, dt)
    who = f"rockpool XyloSim (xylosim {ver})"
    base = {"samples": int(len(ref)), "outputs_compared": int(ref.size), "reference": who}
    diff = emu != ref
    if diff.any():
        s, t, j = (int(v) for v in np.argwhere(diff)[0])
        return {"status": "mismatch", **base, "mismatches": int(diff.sum()), "max_error": int(np.abs(emu - ref).max()),
                "first_mismatch": {"sample": s, "step": t, "output": j, "emulator": int(emu[s, t, j]),
                                   "engine": int(ref[s, t, j])},
                "summary": f"{int(diff.sum())} of {ref.size} output spike bins differ from {who}; first: sample {s}, "
                           f"step {t}, output {j}"}
    return {"status": "bit-exact", **base, "mismatches": 0, "max_error": 0, "first_mismatch": None,
            "summary": f"{len(ref)} samples x {ref.shape[1]} steps x {ref.shape[2]} outputs identical to {who}"}
