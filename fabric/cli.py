"""``fabric`` command line. Every command prints a one-line reason and exits non-zero on bad input."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["main", "build_parser"]

EPILOG = """examples:
  fabric run examples/digits.yaml             train, compile and measure on every target kind
  fabric devices --json                       device kinds, limits and energy constants with sources
  fabric registry ls --kind report            what the store holds
  fabric registry lineage <id-prefix>         where an artifact came from
  fabric compile model.nir --kind loihi --out model.prog
  fabric simulate model.prog --input spikes.npy --out out.npy --golden

environment: FABRIC_STORE (store URL, default ./.fabric/store), RAY_ADDRESS (join a cluster),
FABRIC_DEVICES (emulated device counts, e.g. "loihi=2,akida=1")."""


def _store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="URL", help="artifact store: a directory or fsspec URL (default $FABRIC_STORE or ./.fabric/store)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fabric", description="Neuromorphic MLOps fabric on Ray: spec -> SNN -> NIR -> "
                                 "device programs -> KPIs, on emulated or real neuromorphic devices.",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("run", help="run the NMLOps job for a spec (data -> train -> NIR -> compile -> measure)",
                       description="Run (or resume) the whole job for SPEC; finished stages are reused from the store.")
    p.add_argument("spec", metavar="SPEC", help="requirements YAML, e.g. examples/digits.yaml")
    _store_arg(p)
    p.add_argument("--json", action="store_true", help="print the run summary as JSON")
    p.add_argument("--no-cache", action="store_true", help="recompute every stage even if its artifact exists")
    p.add_argument("--address", help="Ray cluster address (default $RAY_ADDRESS, else a local fabric)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage log")

    p = sub.add_parser("devices", help="list device kinds, their mode, limits and resources",
                       description="Device kinds known to this fabric; with --json include every energy/latency "
                       "constant with its source and confidence.")
    p.add_argument("--json", action="store_true")
    p.add_argument("--address", help="also show the resources a running cluster advertises")

    p = sub.add_parser("registry", help="inspect the artifact registry", description="Inspect stored artifacts.")
    rs = p.add_subparsers(dest="rcmd", metavar="ACTION")
    rs.required = True
    q = rs.add_parser("ls", help="list artifacts")
    q.add_argument("--kind", help="only this artifact kind (dataset, encoding, model, nir, program, report, ...)")
    q.add_argument("--json", action="store_true")
    _store_arg(q)
    for name, helptext in (("show", "show an artifact's record"), ("verify", "re-hash an artifact and check its record"),
                           ("lineage", "print an artifact's ancestry as a tree")):
        q = rs.add_parser(name, help=helptext)
        q.add_argument("id", metavar="ID", help="artifact id or unique prefix (>= 6 hex chars)")
        q.add_argument("--json", action="store_true")
        _store_arg(q)

    q = rs.add_parser("cat", help="write an artifact's verified bytes to a file or stdout")
    q.add_argument("id", metavar="ID")
    q.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    _store_arg(q)

    p = sub.add_parser("compile", help="compile a NIR graph for a device kind",
                       description="Compile GRAPH.nir for --kind; prints the fit report. Exit 2 when it does not fit.")
    p.add_argument("graph", metavar="GRAPH.nir")
    p.add_argument("--kind", required=True)
    p.add_argument("--out", required=True, metavar="PROG", help="where to write the program (.npz)")

    p = sub.add_parser("simulate", help="run a compiled program on spike input",
                       description="Run PROG on SPIKES.npy ([batch, timesteps, inputs] or [timesteps, inputs]).")
    p.add_argument("program", metavar="PROG")
    p.add_argument("--input", required=True, metavar="SPIKES.npy")
    p.add_argument("--out", required=True, metavar="OUT.npy", help="output spike raster [batch, timesteps, outputs]")
    p.add_argument("--golden", action="store_true", help="also run the vendor reference (Lava for loihi) and compare")
    return ap


def _fail(msg: str, code: int = 1) -> int:
    print(f"fabric: error: {msg}", file=sys.stderr)
    return code


def cmd_run(a: argparse.Namespace) -> int:
    from fabric.spec import SpecError, load_spec

    try:
        spec = load_spec(a.spec)
    except SpecError as exc:
        return _fail(str(exc), 2)
    from fabric.connect import connect
    from fabric.pipeline import format_kpi_table, format_neurobench, run_pipeline
    from fabric.registry import Registry

    reg = Registry(a.store)
    log = (lambda s: None) if (a.quiet or a.json) else (lambda s: print(s, flush=True))
    connect(a.address)
    summary = run_pipeline(spec, reg, progress=not (a.quiet or a.json), use_cache=not a.no_cache, log=log)
    if a.json:
        print(json.dumps(summary.to_dict(), indent=1, default=str))
    else:
        print(f"\nrun {spec.name} (spec {spec.hash[:12]}) store {reg.url}")
        print(f"{'stage':<22}{'artifact':<14}{'':<10}{'seconds':>8}")
        for o in summary.stages:
            print(f"{o.stage:<22}{o.artifact[:12]:<14}{'cached' if o.cached else 'computed':<10}{o.seconds:>8.2f}")
        reused = sum(o.cached for o in summary.stages)
        print(f"{reused}/{len(summary.stages)} stages reused from the store\n")
        print(format_kpi_table(summary.kpis))
        print(format_neurobench(summary.neurobench))
        print(f"\nreport artifact {summary.report_id}  ({'ALL KPI GATES PASS' if summary.passed else 'KPI GATES FAILED'})"
              f"  job time {summary.seconds:.1f}s")
    return 0 if summary.passed else 3


def cmd_devices(a: argparse.Namespace) -> int:
    from actors.base import RUNTIMES, get_runtime_class
    from fabric.connect import device_resources

    advertised = device_resources()
    cluster: dict[str, Any] | None = None
    if a.address:
        from fabric.connect import connect

        cluster = connect(a.address)
    out = []
    for kind in sorted(RUNTIMES):
        info = get_runtime_class(kind)().info()
        info["resource"] = None if kind == "cpu" else kind
        info["embedded_count"] = advertised.get(kind, 0) if kind != "cpu" else None
        if cluster is not None:
            info["cluster_count"] = cluster.get(kind)
        out.append(info)
    if a.json:
        print(json.dumps(out, indent=1, default=str))
        return 0
    print(f"{'kind':<11}{'mode':<10}{'resource':<11}{'count':>6}  description")
    for i in out:
        count = i.get("cluster_count", i["embedded_count"])
        print(f"{i['kind']:<11}{'emulated' if i['emulated'] else 'hardware':<10}{str(i['resource'] or '-'):<11}"
              f"{'-' if count is None else count:>6}  {i.get('description', '')}")
    print("\n`fabric devices --json` lists limits and every energy/latency constant with its source.")
    return 0


def _fmt_time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_tree(node: dict[str, Any], prefix: str = "", last: bool = True, root: bool = True) -> None:
    r = node["record"]
    label = f"{r.kind:<9} {r.id[:12]}  {r.name}"
    print(label if root else f"{prefix}{'└── ' if last else '├── '}{label}")
    kids = node["parents"]
    for i, k in enumerate(kids):
        _print_tree(k, prefix + ("" if root else ("    " if last else "│   ")), i == len(kids) - 1, False)


def cmd_registry(a: argparse.Namespace) -> int:
    from fabric.registry import ArtifactNotFound, IntegrityError, Registry

    reg = Registry(a.store)
    try:
        if a.rcmd == "ls":
            recs = reg.ls(a.kind)
            if a.json:
                print(json.dumps([r.to_dict() for r in recs], indent=1))
                return 0
            print(f"{'id':<14}{'kind':<10}{'size':>10}  {'created (UTC)':<20} name")
            for r in recs:
                print(f"{r.id[:12]:<14}{r.kind:<10}{r.size:>10}  {_fmt_time(r.created):<20} {r.name}")
            print(f"{len(recs)} artifacts in {reg.url}")
            return 0
        if a.rcmd == "show":
            rec = reg.record(a.id)
            print(json.dumps(rec.to_dict(), indent=1))
            return 0
        if a.rcmd == "verify":
            res = reg.verify(a.id)
            print(json.dumps(res) if a.json else f"{res['id'][:12]} {res['kind']}: {'OK' if res['ok'] else 'FAILED'} ({res['reason']})")
            return 0 if res["ok"] else 4
        if a.rcmd == "cat":
            data = reg.get(a.id)
            if a.out:
                with open(a.out, "wb") as f:
                    f.write(data)
                print(f"wrote {len(data)} bytes to {a.out}")
            else:
                sys.stdout.buffer.write(data)
            return 0
        if a.rcmd == "lineage":
            tree = reg.lineage(a.id)
            if a.json:
                print(json.dumps(tree, indent=1, default=lambda o: o.to_dict()))
            else:
                _print_tree(tree)
            return 0
    except (ArtifactNotFound, IntegrityError) as exc:
        return _fail(str(exc), 4)
    return _fail(f"unknown registry action {a.rcmd}")


def cmd_compile(a: argparse.Namespace) -> int:
    from fabric.loihi_cli import compile_cmd

    return compile_cmd(a.graph, a.kind, a.out)


def cmd_simulate(a: argparse.Namespace) -> int:
    from fabric.loihi_cli import simulate_cmd

    return simulate_cmd(a.program, a.input, a.out, a.golden)


COMMANDS = {"run": cmd_run, "devices": cmd_devices, "registry": cmd_registry, "compile": cmd_compile,
            "simulate": cmd_simulate}


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        return COMMANDS[a.cmd](a)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
