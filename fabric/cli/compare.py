"""``fabric compare SPEC_OR_NIR --kinds all|k1,k2``: the cross-device table and bar plot, stored.

Two inputs, one output. A spec (``.yaml``/``.yml``/``.json``) runs the pipeline with its targets
replaced by ``--kinds`` (cached stages are reused, so only missing compiles/evaluations run, on the
Ray device actors). A ``.nir`` graph is compiled and run in this process on each kind's runtime with
test inputs from ``--input X.npy --labels y.npy`` or from a built-in ``--dataset`` encoded here. Both
print the table, then store it (JSON, kind ``report``) and its bar plot (PNG) in the registry and print
their ids.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fabric.cli.options import add_address_option, add_store_option, fail

__all__ = ["add_parser", "main"]

EPILOG = """examples:
  fabric compare examples/digits.yaml --kinds all
  fabric compare model.nir --kinds loihi,akida,fpga --dataset digits --timesteps 25
  fabric compare rnn.nir --kinds all --input x_test.npy --labels y_test.npy --fallback hybrid

A .nir file needs test inputs: --input (spikes [N, T, inputs], any numeric npy; non-zero = spike) with
--labels (N integers), or --dataset NAME (built-in: digits, basic_motions, ...) encoded with --encoder
for --timesteps steps; its seeded test split (25 %%) is used, at most --limit samples.
Exit status: 0 done (kinds that do not fit are rows with their reason, not failures); 2 bad input."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "compare", help="run one model on several device kinds; print and store the comparison table + plot",
        description="Compare accuracy, latency, energy and footprint of one model across device kinds. "
        "Latency and energy of emulated kinds are MODELLED from the constants in actors/<kind>/constants.yaml "
        "(sources: `fabric devices --json`); cpu latency is measured host time. A kind that refuses the model "
        "is listed with the exact constraint it violates.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("model", metavar="SPEC_OR_NIR", help="a spec (.yaml/.yml/.json) or a NIR graph (.nir)")
    p.add_argument("--kinds", default="all", help="'all' (every registered kind: cpu and the device kinds) or e.g. "
                   "cpu,loihi,akida")
    p.add_argument("--input", metavar="X.npy", help="(.nir) test spikes [N, T, inputs]")
    p.add_argument("--labels", metavar="Y.npy", help="(.nir) test labels [N], with --input")
    p.add_argument("--dataset", metavar="NAME", help="(.nir) built-in dataset to encode instead of --input")
    p.add_argument("--encoder", default="rate", help="(.nir, --dataset) spike encoder (default rate)")
    p.add_argument("--timesteps", type=int, help="(.nir, --dataset) steps (default: the graph's metadata, else 25)")
    p.add_argument("--limit", type=int, default=300, help="(.nir) at most this many test samples (default 300)")
    p.add_argument("--seed", type=int, default=0, help="(.nir, --dataset) split/encoder seed (default 0)")
    p.add_argument("--fallback", choices=["none", "hybrid"], default="none",
                   help="(.nir) 'hybrid': kinds lacking a node type or recurrence run that part on cpu")
    add_store_option(p)
    add_address_option(p, "(spec) Ray cluster address (default $RAY_ADDRESS or a local fabric)")
    p.add_argument("--json", action="store_true", help="print the stored table as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _graph_inputs(graph: Any) -> int:
    import nir
    import numpy as np

    ins = [n for n in graph.nodes.values() if isinstance(n, nir.Input)]
    if len(ins) != 1:
        raise ValueError(f"the graph must have exactly one Input node, found {len(ins)}")
    return int(np.prod(np.asarray(ins[0].input_type["input"])))


def _nir_inputs(a: argparse.Namespace, graph: Any) -> tuple[Any, Any, str]:
    import numpy as np

    n_in = _graph_inputs(graph)
    if a.input or a.labels:
        if not (a.input and a.labels):
            raise ValueError("--input and --labels go together")
        if a.dataset:
            raise ValueError("give either --input/--labels or --dataset, not both")
        try:
            x, y = np.load(a.input, allow_pickle=False), np.load(a.labels, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read --input/--labels: {exc}") from None
        if x.ndim != 3 or x.shape[2] != n_in:
            raise ValueError(f"--input must have shape [N, T, {n_in}] (the graph's inputs), got {list(x.shape)}")
        if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
            raise ValueError(f"--labels must be {x.shape[0]} integers, got shape {list(y.shape)} dtype {y.dtype}")
        return x[: a.limit], y[: a.limit], f"{Path(a.input).name} ({min(len(y), a.limit)} samples)"
    if not a.dataset:
        raise ValueError("a .nir model needs test inputs: --input X.npy --labels y.npy, or --dataset NAME")
    from fabric.data.datasets import load_builtin, split
    from fabric.data.encode import encode

    steps = a.timesteps or int((graph.metadata or {}).get("timesteps", 25))
    ds = load_builtin(a.dataset)
    test = split(len(ds.y), 0.25, 0.0, a.seed) == "test"
    x = encode(a.encoder, ds.x, steps, a.seed)[test][: a.limit]
    y = ds.y[test][: a.limit]
    if x.shape[2] != n_in:
        raise ValueError(f"--dataset {a.dataset} encodes to {x.shape[2]} inputs but the graph takes {n_in}")
    return x, y, f"{a.dataset} test split, {a.encoder} x {steps} steps ({len(y)} samples)"


def _store(reg: Any, rows: list[dict[str, Any]], title: str, parents: list[str], extra: dict[str, Any],
           spec_hash: str | None = None) -> tuple[Any, Any]:
    from fabric.flow.compare import format_table, render_png

    doc = {"title": title, "rows": rows, "table": format_table(rows), **extra}
    t_rec = reg.put_json(doc, kind="report", name=f"{title}/compare.json", parents=parents, spec_hash=spec_hash,
                         extra={"what": "cross-device comparison", "kinds": [r["kind"] for r in rows]})
    p_rec = reg.put(render_png(rows, title), kind="report", name=f"{title}/compare.png", parents=[t_rec.id],
                    spec_hash=spec_hash, extra={"format": "png", "what": "cross-device comparison plot"})
    return t_rec, p_rec


def main(a: argparse.Namespace) -> int:
    from fabric.flow.compare import format_table, measure_graph, parse_kinds, rows_from_kpis
    from fabric.store.registry import Registry

    try:
        kinds = parse_kinds(a.kinds)
        if a.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {a.limit}")
        path = Path(a.model)
        if not path.is_file():
            raise ValueError(f"{a.model}: no such file")
        reg = Registry(a.store)
    except ValueError as exc:
        return fail(str(exc), 2)
    log = (lambda s: None) if (a.quiet or a.json) else (lambda s: print(s, flush=True))
    if path.suffix == ".nir":
        from fabric.flow.codecs import nir_from_bytes

        data = path.read_bytes()
        try:
            graph = nir_from_bytes(data)
            x, y, inputs = _nir_inputs(a, graph)
        except (ValueError, KeyError, OSError) as exc:
            return fail(f"{a.model}: {exc}", 2)
        nir_rec = reg.put(data, kind="nir", name=path.name, extra={"format": "nir-hdf5", "source": "fabric compare"})
        rows = measure_graph(graph, x, y, kinds, fallback=None if a.fallback == "none" else a.fallback,
                             progress=not (a.quiet or a.json))
        t_rec, p_rec = _store(reg, rows, path.stem, [nir_rec.id], {"inputs": inputs, "nir": nir_rec.id,
                                                                   "fallback": a.fallback})
    else:
        from fabric.connect import connect
        from fabric.flow.pipeline import run_pipeline
        from fabric.spec import SpecError, load_spec

        try:
            spec = load_spec(path)
        except SpecError as exc:
            return fail(str(exc), 2)
        spec = spec.model_copy(update={"targets": kinds})
        connect(a.address)
        summary = run_pipeline(spec, reg, progress=not (a.quiet or a.json), log=log)
        rows = rows_from_kpis([r.__dict__ for r in summary.kpis])
        t_rec, p_rec = _store(reg, rows, spec.name, [summary.report_id],
                              {"inputs": f"{spec.dataset.ref} test split (pipeline)", "report": summary.report_id},
                              spec_hash=summary.spec_hash)
    if a.json:
        print(json.dumps({"table_id": t_rec.id, "plot_id": p_rec.id, "rows": rows}, indent=1, default=str))
    else:
        print(format_table(rows))
        print(f"\ntable artifact {t_rec.id}\nplot artifact  {p_rec.id}  (fabric registry cat ID --out FILE)")
    return 0
