"""Generate docs/capability_matrix.md: NIR node types x device kinds, by actually trying them.

For every node type a one-node-type probe graph is built, written with ``nir.write`` and read back
(``nir.read``), then compiled, loaded and run on a small random spike batch by every registered kind.
A cell is "yes" only when that whole round trip produced outputs of the right shape; otherwise it
shows why not (unsupported node type, a fit limit, graph structure, or another error). A second table
probes ``fallback="hybrid"``: a supported layer followed by the node type, whose tail may run on the
``cpu`` kind.

Run: ``.venv/bin/python docs/gen_capability_matrix.py`` (a few seconds; no Ray).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nir
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fabric.ir.lowering import GraphStructureError, UnsupportedNodeError  # noqa: E402
from fabric.ir.recurrent import build_recurrent_graph  # noqa: E402
from fabric.kinds import capabilities, make_runtime, registry  # noqa: E402
from fabric.records import FitError  # noqa: E402

N_IN, N_HID, DT, BETA = 16, 8, 1e-3, 0.9
RNG = np.random.default_rng(0)


def _w(n_out: int, n_in: int) -> np.ndarray:
    return RNG.normal(0, 2.0 / np.sqrt(n_in), (n_out, n_in)).astype(np.float32)


def _lif(n: int | tuple[int, ...]) -> nir.LIF:
    tau = DT / (1 - BETA)
    shape = (n,) if isinstance(n, int) else n
    return nir.LIF(tau=np.full(shape, tau, np.float32), r=np.full(shape, tau / DT, np.float32),
                   v_leak=np.zeros(shape, np.float32), v_threshold=np.ones(shape, np.float32),
                   v_reset=np.zeros(shape, np.float32))


def _neuron(kind: str, n: int) -> nir.NIRNode:
    tau = DT / (1 - BETA)
    f = np.full(n, 1.0, np.float32)
    if kind == "LIF":
        return _lif(n)
    if kind == "CubaLIF":
        return nir.CubaLIF(tau_mem=f * tau, tau_syn=f * 2 * DT / (1 - 0.5), r=f * tau / DT, v_leak=0 * f,
                           v_threshold=f, v_reset=0 * f, w_in=f * 2.0)
    if kind == "IF":
        return nir.IF(r=f, v_threshold=f * 2, v_reset=0 * f)
    if kind == "LI":
        return nir.LI(tau=f * tau, r=f * tau / DT, v_leak=0 * f)
    if kind == "CubaLI":
        return nir.CubaLI(tau_syn=f * 2 * DT, tau_mem=f * tau, r=f * tau / DT, v_leak=0 * f)
    if kind == "I":
        return nir.I(r=f)
    if kind == "Threshold":
        return nir.Threshold(threshold=f)
    if kind == "Delay":
        return nir.Delay(delay=f * DT)
    if kind == "Scale":
        return nir.Scale(scale=f)
    raise KeyError(kind)


def _chain(nodes: list[tuple[str, nir.NIRNode]], n_in: int | tuple[int, ...], n_out: int | tuple[int, ...]) -> nir.NIRGraph:
    shp_in = np.array([n_in] if isinstance(n_in, int) else list(n_in))
    shp_out = np.array([n_out] if isinstance(n_out, int) else list(n_out))
    all_nodes = [("input", nir.Input(input_type={"input": shp_in})), *nodes,
                 ("output", nir.Output(output_type={"output": shp_out}))]
    edges = [(a[0], b[0]) for a, b in zip(all_nodes, all_nodes[1:], strict=False)]
    return nir.NIRGraph(nodes=dict(all_nodes), edges=edges, metadata={"dt": DT})


def probe_dense(neuron: str) -> nir.NIRGraph:
    return _chain([("fc", nir.Affine(weight=_w(N_HID, N_IN), bias=np.zeros(N_HID, np.float32))),
                   ("n", _neuron(neuron, N_HID))], N_IN, N_HID)


def probe_linear() -> nir.NIRGraph:
    return _chain([("fc", nir.Linear(weight=_w(N_HID, N_IN))), ("n", _lif(N_HID))], N_IN, N_HID)


def probe_flatten() -> nir.NIRGraph:
    return _chain([("flat", nir.Flatten(input_type={"input": np.array([N_IN])}, start_dim=0, end_dim=-1)),
                   ("fc", nir.Affine(weight=_w(N_HID, N_IN), bias=np.zeros(N_HID, np.float32))),
                   ("n", _lif(N_HID))], N_IN, N_HID)


def probe_conv2d() -> nir.NIRGraph:
    w = RNG.normal(0, 0.6, (4, 1, 3, 3)).astype(np.float32)
    conv = nir.Conv2d(input_shape=(8, 8), weight=w, stride=1, padding=0, dilation=1, groups=1,
                      bias=np.zeros(4, np.float32))
    return _chain([("conv", conv), ("n", _lif((4, 6, 6)))], (1, 8, 8), (4, 6, 6))


def probe_conv1d() -> nir.NIRGraph:
    w = RNG.normal(0, 0.6, (2, 1, 3)).astype(np.float32)
    conv = nir.Conv1d(input_shape=16, weight=w, stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(2, np.float32))
    return _chain([("conv", conv), ("n", _lif((2, 14)))], (1, 16), (2, 14))


def probe_pool(cls: type) -> nir.NIRGraph:
    pool = cls(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    return _chain([("pool", pool), ("n", _lif((1, 4, 4)))], (1, 8, 8), (1, 4, 4))


def probe_recurrent() -> nir.NIRGraph:
    return build_recurrent_graph(_w(N_HID, N_IN), _w(N_HID, N_HID) * 0.3, _w(4, N_HID), dt=DT)


def probe_tail(node_type: str) -> nir.NIRGraph:
    """A supported LIF layer, then an Affine + the probed node: tests ``fallback="hybrid"``."""
    return _chain([("fc0", nir.Affine(weight=_w(N_HID, N_IN), bias=np.zeros(N_HID, np.float32))), ("lif0", _lif(N_HID)),
                   ("fc1", nir.Affine(weight=_w(4, N_HID), bias=np.zeros(4, np.float32))), ("n", _neuron(node_type, 4))],
                  N_IN, 4)


PROBES: dict[str, Callable[[], nir.NIRGraph]] = {
    "Affine (+LIF)": lambda: probe_dense("LIF"),
    "Linear (+LIF)": probe_linear,
    "LIF": lambda: probe_dense("LIF"),
    "CubaLIF": lambda: probe_dense("CubaLIF"),
    "IF": lambda: probe_dense("IF"),
    "LI": lambda: probe_dense("LI"),
    "Flatten": probe_flatten,
    "Conv2d (+LIF)": probe_conv2d,
    "LIF recurrent (LIF->Linear->LIF cycle)": probe_recurrent,
    "CubaLI": lambda: probe_dense("CubaLI"),
    "I (integrator)": lambda: probe_dense("I"),
    "Threshold": lambda: probe_dense("Threshold"),
    "Delay": lambda: probe_dense("Delay"),
    "Scale": lambda: probe_dense("Scale"),
    "Conv1d (+LIF)": probe_conv1d,
    "SumPool2d (+LIF)": lambda: probe_pool(nir.SumPool2d),
    "AvgPool2d (+LIF)": lambda: probe_pool(nir.AvgPool2d),
}
TAIL_PROBES = ["CubaLIF", "IF", "LI", "CubaLI", "I", "Threshold", "Delay"]


def _roundtrip(graph: nir.NIRGraph) -> nir.NIRGraph:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "probe.nir"
        nir.write(path, graph)
        return nir.read(path)


def try_kind(kind: str, graph: nir.NIRGraph, options: dict | None = None) -> tuple[str, str]:
    """Return (cell, reason) for one kind on one probe graph."""
    try:
        g = _roundtrip(graph)
        rt = make_runtime(kind)
        prog = rt.compile(g, options or {})
        rt.load(prog)
        x = (RNG.random((4, 12, int(prog.meta["n_in"]))) < 0.3).astype(np.float32)
        res = rt.run(x)
        if res.counts.shape != (4, int(prog.meta["n_out"])):
            return "no", f"output shape {res.counts.shape}"
        fb = prog.meta.get("fallback")
        note = "" if not fb else (" (hybrid: recurrent layer on cpu)" if fb.get("prefix_nodes") else " (hybrid: tail on cpu)")
        return "yes" + note, ""
    except UnsupportedNodeError as e:
        where = "" if e.kind == kind else f" (the fallback kind {e.kind!r} lacks it too)"
        return "no: unsupported node", f"{e.node_type} not in {e.kind}'s node map{where}"
    except FitError as e:
        return "no: fit", "; ".join(i.describe() for i in e.report.violations)[:160]
    except GraphStructureError as e:
        return "no: structure", str(e)[:160]
    except ValueError as e:
        if "unknown compile option" in str(e) and options:
            return "n/a: no fallback option", f"kind {kind!r} does not take compile options {sorted(options)}"
        return "no: error", f"{type(e).__name__}: {str(e)[:140]}"
    except Exception as e:  # noqa: BLE001 - the matrix reports every other failure as a cell
        return "no: error", f"{type(e).__name__}: {str(e)[:140]}"


def main() -> int:
    kinds = sorted(registry())
    t0 = time.perf_counter()
    lines = ["# Capability matrix: NIR node types x device kinds", "",
             "Generated by `docs/gen_capability_matrix.py`; do not edit by hand. Each cell is the result of "
             "writing a one-node-type probe graph with `nir.write`, reading it back, then `compile` + `load` + "
             "`run` on that kind (strict mode: no fallback). Reasons for every \"no\" are listed below the "
             "tables.", "", "| node type | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    notes: list[str] = []
    for label, make in PROBES.items():
        cells = []
        for kind in kinds:
            cell, why = try_kind(kind, make())
            cells.append(cell)
            if why:
                notes.append(f"- **{label} / {kind}**: {why}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## With `fallback=\"hybrid\"`", "",
              "Probe: `Input -> Affine -> LIF -> Affine -> <node> -> Output`, compiled with "
              "`{\"fallback\": \"hybrid\"}`: where the kind lacks `<node>`, the graph from that layer on runs on "
              "kind `cpu` (Urgese et al. 2026, DOI 10.1109/JIOT.2026.3663902, §III.6), which itself supports Affine/Linear/LIF/CubaLIF/IF/LI/Flatten and "
              "recurrent self-loops. The last row compiles the recurrent probe with the same option: a kind "
              "that maps no recurrence (akida) runs the recurrent layer on `cpu` and the rest on the device.", "",
              "| tail node | " + " | ".join(kinds) + " |", "|---|" + "---|" * len(kinds)]
    for t in TAIL_PROBES:
        cells = []
        for kind in kinds:
            cell, why = try_kind(kind, probe_tail(t), {"fallback": "hybrid"} if capabilities(kind).hybrid_fallback else None)
            cells.append(cell)
            if why:
                notes.append(f"- **hybrid tail {t} / {kind}**: {why}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    cells = []
    for kind in kinds:
        opts = {"fallback": "hybrid"} if capabilities(kind).hybrid_fallback else None
        cell, why = try_kind(kind, probe_recurrent(), opts)
        cells.append(cell)
        if why:
            notes.append(f"- **hybrid LIF recurrent / {kind}**: {why}")
    lines.append("| LIF recurrent (self-loop) | " + " | ".join(cells) + " |")
    lines += ["", "## Why not", "", *notes, "",
              f"_{len(PROBES) * len(kinds) + len(TAIL_PROBES) * len(kinds)} round trips in "
              f"{time.perf_counter() - t0:.1f} s._", ""]
    out = ROOT / "docs" / "capability_matrix.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines[: 6 + len(PROBES)]))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
