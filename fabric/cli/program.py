"""``compile`` and ``simulate`` as plain functions for the CLI to wire up; they work for every kind in
the kind registry (``fabric.kinds``); ``--golden`` needs a kind that declares a reference engine.

Exit codes: 0 ok; 1 bad input (unknown kind, unreadable or unsupported graph, wrong input shape);
2 the graph does not fit the device (the violated constraint is printed); 3 golden reference
unavailable; 4 golden mismatch (device program and reference disagree).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nir
import numpy as np

from fabric.cli.options import fail
from fabric.ir.lowering import GraphStructureError, UnsupportedNodeError
from fabric.kinds import UnknownKindError, capabilities, kinds, make_runtime
from fabric.records import (
    FitError,
    Program,
    ReferenceCheckError,
    ReferenceMismatch,
    ReferenceUnavailable,
)

__all__ = ["compile_cmd", "simulate_cmd"]


def compile_cmd(graph_path: str | Path, kind: str, out_path: str | Path) -> int:
    """Compile a NIR file for ``kind``; print the fit report; write the program bytes to ``out_path``."""
    try:
        runtime = make_runtime(kind)
    except UnknownKindError as exc:
        return fail(exc, 1)
    try:
        graph = nir.read(str(graph_path))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:  # h5py: RuntimeError on a corrupt B-tree
        return fail(f"cannot read NIR graph {graph_path}: {exc}", 1)
    try:
        program = runtime.compile(graph)
    except FitError as exc:
        print(exc.report.table())
        fail(exc, 2)
        for item in exc.report.violations:
            print(f"  violated: {item.describe()}", file=sys.stderr)
        return 2
    except (UnsupportedNodeError, GraphStructureError) as exc:
        return fail(exc, 1)
    print(program.fit.table())
    data = program.to_bytes()
    Path(out_path).write_bytes(data)
    print(f"wrote {kind} program ({len(data)} bytes) to {out_path}")
    return 0


def simulate_cmd(prog_path: str | Path, input_npy: str | Path, out_npy: str | Path, golden: bool = False) -> int:
    """Run a compiled program on spikes ``[B, T, n_in]`` from ``input_npy``; save the output raster
    ``[B, T, n_out]`` (uint8) to ``out_npy``; print counts and telemetry; optionally golden-check."""
    try:
        program = Program.from_bytes(Path(prog_path).read_bytes())
    except (OSError, KeyError, ValueError) as exc:
        return fail(f"cannot read program {prog_path}: {exc}", 1)
    try:
        if golden and not capabilities(program.kind).reference:
            with_ref = [k for k in kinds() if capabilities(k).reference]
            return fail(f"--golden needs a kind with a reference engine ({with_ref}); this program is for "
                        f"{program.kind!r}", 1)
        runtime = make_runtime(program.kind, **({"golden": True} if golden else {}))
        runtime.load(program)
        spikes = np.load(str(input_npy), allow_pickle=False)
        result = runtime.run(spikes, record_raster=True)
    except UnknownKindError as exc:
        return fail(exc, 1)
    except ReferenceUnavailable as exc:
        return fail(exc, 3)
    except ReferenceMismatch as exc:
        return fail(exc, 4)
    except ReferenceCheckError as exc:
        return fail(exc, 3)
    except (OSError, ValueError) as exc:
        return fail(exc, 1)
    assert result.raster is not None
    np.save(str(out_npy), result.raster.astype(np.uint8))
    tel = result.telemetry
    print(f"{program.kind}: {tel.samples} samples x {tel.timesteps} steps; output spikes {tel.spikes_out}; "
          f"predictions {result.predictions[:16].tolist()}{' ...' if tel.samples > 16 else ''}")
    print(f"  synaptic ops {tel.synaptic_ops:g}, neuron updates {tel.neuron_updates:g}, "
          f"energy {tel.energy_j:.4g} J, device time {tel.device_time_s:.4g} s, host {tel.host_latency_s:.4g} s")
    for key, text in tel.sources.items():
        print(f"  {key}: {text}")
    print(f"wrote output raster {list(result.raster.shape)} to {out_npy}")
    return 0
