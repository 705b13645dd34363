"""The capability matrix: which NIR node types each kind maps, found by compiling, not by declaring.

Why probe: a table written by hand drifts from the code. Each row here is a small graph built on the
path a user's model takes (snntorch ``nn.Sequential`` -> :func:`fabric.model.user.export_sequential`,
or the recurrent/NIR builders), compiled by every registered kind; the cell is what the compiler said:
``maps`` (and how, from the program's fit notes: native, or lowered to a dense expansion), or the
refusal text. ``docs/capabilities.md`` is this module's output (``fabric devices --matrix --markdown``)
and a unit test fails when it is stale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nir
import numpy as np

__all__ = ["PROBES", "Probe", "capability_matrix", "matrix_markdown"]


@dataclass(frozen=True, kw_only=True)
class Probe:
    """One row: the node type under test and a builder of the smallest graph that holds it."""

    node: str
    what: str
    build: Callable[[], nir.NIRGraph]


def _seq(*layers: Any, n_in: int, n_out: int) -> nir.NIRGraph:
    import snntorch as snn
    import torch
    from torch import nn

    from fabric.model.user import SequentialSNN, export_sequential

    torch.manual_seed(0)
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                m.weight.mul_(3.0)
    assert isinstance(net[-1], snn.SpikingNeuron)
    return export_sequential(SequentialSNN(net, factory="capability-probe", params={}, n_in=n_in, n_out=n_out))


def _z(**kw: Any) -> dict[str, Any]:
    return {"init_hidden": True, "reset_mechanism": "zero"} | kw


def _affine_lif() -> nir.NIRGraph:
    import snntorch as snn
    from torch import nn

    return _seq(nn.Linear(12, 8), snn.Leaky(beta=0.9, **_z()), nn.Linear(8, 4), snn.Leaky(beta=0.9, output=True, **_z()),
                n_in=12, n_out=4)


def _linear_if() -> nir.NIRGraph:
    """Linear (no bias) into IF neurons (a LIF without leak), written with the nir API as other tools do."""
    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(input_type={"input": np.array([12])}),
             "fc": nir.Linear(weight=rng.normal(0, 0.8, (4, 12))),
             "if": nir.IF(r=np.ones(4), v_threshold=np.ones(4), v_reset=np.zeros(4)),
             "output": nir.Output(output_type={"output": np.array([4])})}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "if"), ("if", "output")])


def _cuba() -> nir.NIRGraph:
    import snntorch as snn
    from torch import nn

    return _seq(nn.Linear(12, 8), snn.Synaptic(alpha=0.6, beta=0.9, reset_delay=False, **_z()), nn.Linear(8, 4),
                snn.Synaptic(alpha=0.6, beta=0.9, reset_delay=False, output=True, **_z()), n_in=12, n_out=4)


def _recurrent() -> nir.NIRGraph:
    from fabric.ir.recurrent import build_recurrent_graph

    rng = np.random.default_rng(0)
    return build_recurrent_graph(rng.normal(0, 0.5, (6, 12)), rng.normal(0, 0.2, (6, 6)), rng.normal(0, 0.5, (4, 6)),
                                 beta=0.9, threshold=1.0)


def _conv(pool: str | None) -> Callable[[], nir.NIRGraph]:
    def build() -> nir.NIRGraph:
        import snntorch as snn
        from torch import nn

        from fabric.model.user import SumPool2d

        layers: list[Any] = [nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 2, 3, stride=1, padding=1),
                             snn.Leaky(beta=0.9, **_z())]
        if pool == "avg":
            layers.append(nn.AvgPool2d(2))
        elif pool == "sum":
            layers.append(SumPool2d(2))
        side = 4 if pool else 8
        layers += [nn.Flatten(), nn.Linear(2 * side * side, 4), snn.Leaky(beta=0.9, output=True, **_z())]
        return _seq(*layers, n_in=64, n_out=4)
    return build


def _strided_conv() -> nir.NIRGraph:
    import snntorch as snn
    from torch import nn

    return _seq(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 2, 3, stride=2, padding=1), snn.Leaky(beta=0.9, **_z()),
                nn.Flatten(), nn.Linear(32, 4), snn.Leaky(beta=0.9, output=True, **_z()), n_in=64, n_out=4)


def _delay() -> nir.NIRGraph:
    """A node type no kind maps (NIR Delay): every kind must refuse it by name."""
    rng = np.random.default_rng(0)
    nodes = {"input": nir.Input(input_type={"input": np.array([12])}),
             "fc": nir.Affine(weight=rng.normal(0, 0.8, (4, 12)), bias=np.zeros(4)),
             "delay": nir.Delay(delay=np.full(4, 0.002)),
             "lif": nir.LIF(tau=np.full(4, 0.01), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.ones(4),
                            v_reset=np.zeros(4)),
             "output": nir.Output(output_type={"output": np.array([4])})}
    return nir.NIRGraph(nodes=nodes, edges=[("input", "fc"), ("fc", "delay"), ("delay", "lif"), ("lif", "output")])


PROBES: list[Probe] = [
    Probe(node="Affine + LIF", what="snntorch Linear + Leaky, 12-8-4", build=_affine_lif),
    Probe(node="Linear + IF", what="nir.Linear (no bias) into nir.IF, 12-4", build=_linear_if),
    Probe(node="Affine + CubaLIF", what="snntorch Linear + Synaptic, 12-8-4", build=_cuba),
    Probe(node="recurrent LIF", what="LIF fed back through its own Affine (RLeaky), 12-6-4", build=_recurrent),
    Probe(node="Conv2d", what="Conv2d 1->2 3x3 pad 1 on 8x8 + LIF, then Linear", build=_conv(None)),
    Probe(node="Conv2d stride 2", what="Conv2d 1->2 3x3 stride 2 on 8x8 + LIF, then Linear", build=_strided_conv),
    Probe(node="AvgPool2d", what="Conv2d + LIF + AvgPool2d 2x2, then Linear", build=_conv("avg")),
    Probe(node="SumPool2d", what="Conv2d + LIF + SumPool2d 2x2, then Linear", build=_conv("sum")),
    Probe(node="Delay", what="nir.Delay between Affine and LIF", build=_delay),
]


def _cell(kind: str, graph: nir.NIRGraph) -> dict[str, str]:
    from fabric.kinds import make_runtime

    try:
        prog = make_runtime(kind).compile(graph)
    except Exception as exc:  # noqa: BLE001 - every refusal is a cell of the table, whatever its type
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"status": "refused", "detail": f"{type(exc).__name__}: {text}"}
    notes = [n for n in getattr(prog.fit, "notes", []) if "expanded to a dense" in n or "native" in n.lower()]
    how = "lowered to dense synapses" if any("expanded to a dense" in n for n in notes) else "maps"
    return {"status": "maps", "detail": how}


def capability_matrix(kind_names: list[str] | None = None) -> dict[str, dict[str, dict[str, str]]]:
    """``{probe node: {kind: {status, detail}}}`` for every probe on every kind (or ``kind_names``)."""
    from fabric.kinds import kinds

    names = sorted(kind_names or kinds())
    out: dict[str, dict[str, dict[str, str]]] = {}
    for probe in PROBES:
        graph = probe.build()
        out[probe.node] = {k: _cell(k, graph) for k in names}
    return out


def _short(cell: dict[str, str]) -> str:
    if cell["status"] == "maps":
        return "yes" if cell["detail"] == "maps" else "yes (dense)"
    return "no"


def matrix_markdown(matrix: dict[str, dict[str, dict[str, str]]]) -> str:
    """The table for docs/capabilities.md, and the refusal texts below it (what a user would read)."""
    kinds_ = sorted(next(iter(matrix.values())))
    what = {p.node: p.what for p in PROBES}
    lines = ["# Capability matrix", "",
             "Generated by `fabric devices --matrix --markdown > docs/capabilities.md` (fabric/flow/capability.py):",
             "each row is a small graph compiled by every kind; `yes (dense)` = lowered to a dense synapse matrix",
             "(convolutions and pooling expanded, Toeplitz), `no` = the compiler refused it (reason below).",
             "A unit test regenerates it and fails when this file is stale.", "",
             "| node type | probe | " + " | ".join(kinds_) + " |",
             "|---|---|" + "---|" * len(kinds_)]
    for node, row in matrix.items():
        lines.append(f"| {node} | {what.get(node, '')} | " + " | ".join(_short(row[k]) for k in kinds_) + " |")
    lines += ["", "## Refusals", ""]
    for node, row in matrix.items():
        for k in kinds_:
            if row[k]["status"] == "refused":
                lines.append(f"- **{node}** on `{k}`: {row[k]['detail']}")
    return "\n".join(lines) + "\n"
