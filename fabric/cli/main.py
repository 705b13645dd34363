"""``fabric`` command line. Every command prints a one-line reason and exits non-zero on bad input."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from fabric.cli.options import add_address_option, add_store_option, add_tenant_option, fail

__all__ = ["main", "build_parser"]

EPILOG = """examples:
  fabric run examples/digits.yaml             train, compile and measure on every target kind
  fabric devices --json                       device kinds, limits and energy constants with sources
  fabric registry ls --kind report            what the store holds
  fabric registry lineage <id-prefix>         where an artifact came from
  fabric registry verify-all --tenant lab-a   check every signature, hash and parent of one tenant
  fabric data ingest motions_TRAIN.ts --test motions_TEST.ts   store a dataset version (.npz/.npy/.csv/.parquet/.ts)
  fabric data ingest builtin:dvs_gestures     store a built-in source (digits, basic_motions, dvs_gestures)
  fabric data ls / fabric data show <id>      dataset versions and their schema
  fabric compile model.nir --kind loihi --out model.prog
  fabric simulate model.prog --input spikes.npy --out out.npy --golden
  fabric zoo publish <report-id> --name digits-mlp   publish a run's model; `model: {zoo: digits-mlp}` reuses it

environment: FABRIC_STORE (store URL, default ./.fabric/store), RAY_ADDRESS (join a cluster),
FABRIC_DEVICES (emulated device counts, e.g. "loihi=2,akida=1"), FABRIC_TENANT (registry namespace),
FABRIC_SIGNING_KEY (Ed25519 PEM path; default $FABRIC_HOME/keys/, never in the store), FABRIC_HOME (default
~/.config/fabric: key and trust list, see `fabric keys --help`), FABRIC_TRUSTED_KEYS (extra pin of accepted
signer key ids), FABRIC_S3_ENDPOINT_URL (MinIO-style S3 endpoint), FABRIC_TENANT_KEY (a non-default tenant's
credential, token or file; see `fabric tenants --help`)."""


_STORE_HELP = "artifact store: a directory or fsspec URL (default $FABRIC_STORE or ./.fabric/store)"


def _store_arg(p: argparse.ArgumentParser) -> None:
    add_store_option(p, _STORE_HELP)


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
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="re-train and re-measure with N seeds (overrides the spec's repeats.n): mean, std, CI")
    add_address_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage log")
    p.add_argument("--mlflow", metavar="URI", help="also log the run to an MLflow tracking store (http://host:port or "
                   "sqlite:///m.db; default $FABRIC_MLFLOW_URI): a view of the registry, so a store that "
                   "cannot be used is a warning, never a failure")
    p.add_argument("--mlflow-experiment", metavar="NAME", help="MLflow experiment name (default: the spec's name)")

    p = sub.add_parser("devices", help="list device kinds, their mode, limits and resources",
                       description="Device kinds known to this fabric; with --json include every energy/latency "
                       "constant with its source and confidence.")
    p.add_argument("--json", action="store_true")
    p.add_argument("--matrix", action="store_true", help="compile a small graph per NIR node type on every kind and "
                   "print which maps (the capability matrix; with --markdown as docs/capabilities.md)")
    p.add_argument("--markdown", action="store_true", help="with --matrix: the docs/capabilities.md text")
    add_address_option(p, "also show the resources a running cluster advertises")

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
    q = rs.add_parser("verify-all", help="verify every artifact: record signature, bytes, parents",
                      description="Print every record's status; exit 4 (a failing artifact) when any is refused, "
                      "listing the refused ids with their reasons on stderr.")
    q.add_argument("--json", action="store_true")
    _store_arg(q)
    for q in rs.choices.values():
        add_tenant_option(q)
    _add_data_parser(sub)
    for cmd in EXTENSIONS:
        _extension(cmd).add_parser(sub)

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


def with_repeats(spec: Any, n: int, source: str = "--repeats") -> Any:
    """``spec`` with ``repeats.n = n`` (its confidence kept), validated as a spec (SpecError on a bad n)."""
    from fabric.spec import parse_spec

    d = spec.to_dict()
    d["repeats"] = {**d.get("repeats", {}), "n": n}
    return parse_spec(d, source)


def cmd_run(a: argparse.Namespace) -> int:
    from fabric.spec import SpecError, load_spec

    try:
        spec = load_spec(a.spec)
        if a.repeats is not None:  # validated like the spec field: repeats.n out of range is one line
            spec = with_repeats(spec, a.repeats, a.spec)
    except SpecError as exc:
        return fail(str(exc), 2)
    from fabric.connect import connect
    from fabric.flow.pipeline import (
        format_kpi_table,
        format_neurobench,
        format_run_extras,
        run_pipeline,
    )
    from fabric.flow.stages import check_dataset, check_model
    from fabric.store.registry import Registry

    reg = Registry(a.store)
    try:  # the dataset is resolved (version) or read (path) before Ray starts or anything is stored
        source = check_dataset(reg, spec, a.spec)
        check_model(reg, spec)  # model.nir read / model.module imported, likewise
    except SpecError as exc:
        return fail(str(exc), 2)
    log = (lambda s: None) if (a.quiet or a.json) else (lambda s: print(s, flush=True))
    connect(a.address)
    try:  # a user model's sizes are known once the data is encoded: still one line, no model stored
        summary = run_pipeline(spec, reg, progress=not (a.quiet or a.json), use_cache=not a.no_cache, log=log,
                               dataset=source)
    except SpecError as exc:
        return fail(str(exc), 2)
    from fabric.flow.tracking import log_run, resolve_uri

    mlflow_uri, mlflow_run = resolve_uri(a.mlflow), None
    if mlflow_uri:  # a view of the registry: a store that cannot be used is one warning line, same exit code
        mlflow_run = log_run(mlflow_uri, summary.to_dict(), spec.to_dict(), experiment=a.mlflow_experiment,
                             registry=reg)
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
        print(format_run_extras(summary))
        print(f"\nreport artifact {summary.report_id}  ({'ALL KPI GATES PASS' if summary.passed else 'KPI GATES FAILED'})"
              f"  job time {summary.seconds:.1f}s")
        if mlflow_run:
            print(f"mlflow run {mlflow_run} (experiment {a.mlflow_experiment or spec.name}, {mlflow_uri})")
    return 0 if summary.passed else 3


def cmd_devices(a: argparse.Namespace) -> int:
    from fabric.connect import device_resources
    from fabric.kinds import capabilities, kinds, runtime_class

    if a.matrix:
        from fabric.flow.capability import capability_matrix, matrix_markdown

        m = capability_matrix()
        if a.json:
            print(json.dumps(m, indent=1))
        elif a.markdown:
            print(matrix_markdown(m), end="")
        else:
            names = sorted(next(iter(m.values())))
            print(f"{'node type':<18}" + "".join(f"{k:>12}" for k in names))
            for node, row in m.items():
                print(f"{node:<18}" + "".join(f"{('yes' if row[k]['status'] == 'maps' else 'no'):>12}" for k in names))
            print("\n--matrix --json gives each refusal's text; --matrix --markdown the docs/capabilities.md page.")
        return 0
    advertised = device_resources()
    cluster: dict[str, Any] | None = None
    if a.address:
        from fabric.connect import connect

        cluster = connect(a.address)
    out = []
    for kind in sorted(kinds()):
        info = runtime_class(kind)().info()
        caps = capabilities(kind)
        info["capabilities"] = caps.to_dict()
        info["resource"] = kind if caps.needs_resource else None
        info["embedded_count"] = advertised.get(kind, 0) if caps.needs_resource else None
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
    from fabric.store.registry import ArtifactNotFound, IntegrityError, Registry

    try:
        reg = Registry(a.store, tenant=a.tenant)
    except ValueError as exc:
        return fail(str(exc), 2)
    try:
        if a.rcmd == "ls":
            recs, refused = reg.scan(a.kind)
            for aid, reason in refused:
                print(f"fabric: refused {aid[:12]}: {reason}", file=sys.stderr)
            if a.json:
                print(json.dumps([r.to_dict() for r in recs], indent=1))
                return 0
            print(f"{'id':<14}{'kind':<10}{'size':>10}  {'created (UTC)':<20} name")
            for r in recs:
                print(f"{r.id[:12]:<14}{r.kind:<10}{r.size:>10}  {_fmt_time(r.created):<20} {r.name}")
            print(f"{len(recs)} artifacts in {reg.url}" + (f"; {len(refused)} refused (see `fabric registry "
                                                            "verify-all`)" if refused else ""))
            return 4 if refused else 0
        if a.rcmd == "verify-all":
            results = reg.verify_all()
            if a.json:
                print(json.dumps(results, indent=1))
            for res in [] if a.json else results:
                print(f"{res['id'][:12]} {res['kind'] or '?':<9} {'OK' if res['ok'] else 'FAILED'} ({res['reason']})")
            bad = [r for r in results if not r["ok"]]
            if not a.json:
                print(f"{len(results) - len(bad)}/{len(results)} artifacts verified in {reg.url}"
                      + (f"; {len(bad)} REFUSED" if bad else ""))
            for res in bad:  # the refused ids with their reasons, also after --json (on stderr)
                print(f"fabric: refused {res['id']}: {res['reason']}", file=sys.stderr)
            return 4 if bad else 0
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
        return fail(str(exc), 4)
    return fail(f"unknown registry action {a.rcmd}", 1)


def cmd_compile(a: argparse.Namespace) -> int:
    from fabric.cli.program import compile_cmd

    return compile_cmd(a.graph, a.kind, a.out)


def cmd_simulate(a: argparse.Namespace) -> int:
    from fabric.cli.program import simulate_cmd

    return simulate_cmd(a.program, a.input, a.out, a.golden)


def _wxh(text: str, what: str) -> list[int]:
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"{what}: give WIDTHxHEIGHT, e.g. 32x32, got {text!r}")
    return [int(p) for p in parts]


def _event_options(a: Any) -> dict[str, Any]:
    """The event-archive options of `fabric data ingest`, only when given (other formats refuse them)."""
    out: dict[str, Any] = {}
    if a.sensor_size:
        out["sensor_size"] = tuple(_wxh(a.sensor_size, "--sensor-size"))
    if a.time_unit != "us":
        out["time_unit"] = a.time_unit
    if a.duration_us is not None:
        out["duration_us"] = a.duration_us
    steps = []
    for t in a.transform:
        name, sep, value = t.partition("=")
        if not sep:
            raise ValueError(f"--transform: give NAME=VALUE (e.g. denoise=10000), got {t!r}")
        name = name.strip()
        try:
            steps.append({name: _wxh(value, f"--transform {name}") if name == "center_crop" else float(value)})
        except ValueError as exc:
            raise ValueError(str(exc) if "WIDTHx" in str(exc) else f"--transform {name}: not a number: {value!r}") from None
    if steps:
        from fabric.data.eventfiles import check_transforms

        out["transforms"] = check_transforms(steps)
    return out


def _add_data_parser(sub: Any) -> None:
    p = sub.add_parser("data", help="ingest, list and inspect dataset versions",
                       description="Datasets become Parquet artifacts whose id is their version (content, split and "
                       "preprocessing included).")
    ds = p.add_subparsers(dest="dcmd", metavar="ACTION")
    ds.required = True
    q = ds.add_parser("ingest", help="store a dataset from a file or a built-in source",
                      description="SOURCE: a .npz/.npy/.csv/.parquet/.ts file, a .zip of event-camera recordings "
                      "(Prophesee EVT2/EVT3 .raw, .dat, or x/y/t/p .npy, with labels.csv: file,label[,split]), an fsspec "
                      "URL (s3://...) of one, or builtin:NAME.")
    q.add_argument("source", metavar="SOURCE")
    q.add_argument("--name", help="dataset name (default: the file stem)")
    q.add_argument("--format", default="auto", help="auto (from the extension), npz, npy, parquet, csv, ts or events")
    q.add_argument("--labels", metavar="Y.npy", help="labels for a .npy source (or to override a .npz's)")
    q.add_argument("--label-column", help="label column of a CSV/Parquet source (default label/y/target/class)")
    q.add_argument("--test", metavar="FILE_TEST.ts", help="the matching test file of a UEA/UCR .ts train file")
    q.add_argument("--layout", default="auto", choices=["auto", "static", "timeseries"],
                   help="how to read [N, C, T] arrays (auto: 3-D is a time series)")
    q.add_argument("--sampling-rate", type=float, metavar="HZ")
    q.add_argument("--sensor-size", metavar="WxH", help="event archive: sensor width x height (default: from the "
                   "recordings' '% geometry' headers)")
    q.add_argument("--time-unit", default="us", choices=["us", "ms", "ns", "s"], help="event archive: unit of t")
    q.add_argument("--duration-us", type=int, metavar="US", help="event archive: sample window (default: longest recording)")
    q.add_argument("--transform", action="append", default=[], metavar="NAME=VALUE",
                   help="event archive: a tonic transform, in order (repeatable): denoise=US, refractory_period=US, "
                   "decimation=N, center_crop=WxH")
    q.add_argument("--limit", type=int, metavar="N", help="only the first N samples")
    q.add_argument("--test-fraction", type=float, default=0.25)
    q.add_argument("--val-fraction", type=float, default=0.0)
    q.add_argument("--seed", type=int, default=0, help="split seed")
    q.add_argument("--normalize", default="per_channel", choices=["per_channel", "global", "none"],
                   help="min-max to [0, 1] with training-split statistics (built-ins are already normalized)")
    q.add_argument("--json", action="store_true")
    q = ds.add_parser("ls", help="list stored dataset versions and the built-in sources")
    q.add_argument("--json", action="store_true")
    q = ds.add_parser("show", help="schema, classes and splits of a dataset version")
    q.add_argument("id", metavar="ID", help="dataset artifact id or unique prefix")
    q.add_argument("--json", action="store_true")
    for q in ds.choices.values():
        _store_arg(q)
        add_tenant_option(q)


def cmd_data(a: argparse.Namespace) -> int:
    import numpy as np

    from fabric.data.datasets import (
        DATASETS,
        DataError,
        dataset_summary,
        from_parquet_bytes,
        load_builtin,
        prepare,
        to_parquet_bytes,
    )
    from fabric.data.sources import ingest_files, read_source
    from fabric.store.registry import ArtifactNotFound, IntegrityError, Registry

    try:
        reg = Registry(a.store, tenant=a.tenant)
        if a.dcmd == "ingest":
            if a.source.startswith("builtin:"):
                ds = load_builtin(a.source.removeprefix("builtin:"), a.limit)
                ds, splits = prepare(ds, test_fraction=a.test_fraction, val_fraction=a.val_fraction, seed=a.seed,
                                     normalize="none")  # built-ins come normalized
            else:
                # files or fsspec URLs (s3://bucket/x.parquet), read once and parsed from a private copy
                ds = ingest_files(read_source(a.source), labels=read_source(a.labels) if a.labels else None,
                                  test=read_source(a.test) if a.test else None, name=a.name, fmt=a.format,
                                  label_column=a.label_column, sampling_rate_hz=a.sampling_rate, layout=a.layout,
                                  **_event_options(a))
                if a.limit is not None:
                    ds = ds.take(slice(0, a.limit))
                ds, splits = prepare(ds, test_fraction=a.test_fraction, val_fraction=a.val_fraction, seed=a.seed,
                                     normalize=a.normalize)
            if a.name:
                ds.name = a.name
            summary = dataset_summary(ds, splits)
            rec = reg.put(to_parquet_bytes(ds, splits), kind="dataset", name=ds.name, seeds={"split": a.seed},
                          extra=summary)
            if a.json:
                print(json.dumps(rec.to_dict(), indent=1))
            else:
                shape = f" {summary['shape']}" if summary["shape"] else ""
                print(f"dataset {ds.name}: {summary['samples']} samples, {summary['kind']}{shape}, "
                      f"{len(ds.classes)} classes, splits {summary['splits']}")
                print(f"version {rec.id}  (content {summary['version'][:12]}) in {reg.url}")
            return 0
        if a.dcmd == "ls":
            recs = reg.ls("dataset")
            if a.json:
                print(json.dumps({"datasets": [r.to_dict() for r in recs], "builtin": sorted(DATASETS)}, indent=1))
                return 0
            print(f"{'version':<14}{'name':<20}{'kind':<12}{'samples':>8}  {'shape':<12}{'classes':>8}  created (UTC)")
            for r in recs:
                e = r.extra
                print(f"{r.id[:12]:<14}{r.name:<20}{str(e.get('kind', '?')):<12}{e.get('samples', '?'):>8}  "
                      f"{str(e.get('shape', '')):<12}{len(e.get('classes', [])):>8}  {_fmt_time(r.created)}")
            print(f"{len(recs)} dataset versions in {reg.url}; built-in sources: {', '.join(sorted(DATASETS))}")
            return 0
        if a.dcmd == "show":
            rec = reg.record(a.id)
            if rec.kind != "dataset":
                return fail(f"artifact {rec.id[:12]} is a {rec.kind}, not a dataset", 2)
            ds, splits = from_parquet_bytes(reg.get(rec.id))
            info = {"id": rec.id, "name": ds.name, "created": _fmt_time(rec.created)} | dataset_summary(ds, splits)
            if a.json:
                print(json.dumps(info, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
                return 0
            for k in ("id", "name", "version", "kind", "samples", "shape", "channels", "sampling_rate_hz", "splits",
                      "class_counts", "sensor_size", "duration_us", "source", "created"):
                if k in info and info[k] not in (None, [], {}):
                    print(f"{k:<18}{info[k]}")
            pre = {k: v for k, v in info["preprocessing"].items() if k not in ("lo", "hi")}
            print(f"{'preprocessing':<18}{json.dumps(pre)}")
            return 0
    except (DataError, ValueError) as exc:
        return fail(str(exc), 2)
    except (ArtifactNotFound, IntegrityError, KeyError) as exc:
        return fail(str(exc).strip("'\""), 4)
    return fail(f"unknown data action {a.dcmd}", 1)


COMMANDS = {"run": cmd_run, "devices": cmd_devices, "registry": cmd_registry, "compile": cmd_compile,
            "simulate": cmd_simulate}


COMMANDS["data"] = cmd_data

# Subcommands that live with their room: command -> module exposing ``add_parser(sub)`` (registers the
# subparser; keeps heavy imports inside functions) and ``main(args) -> int``. One line per command.
EXTENSIONS: dict[str, str] = {
    "drift": "fabric.cli.drift",
    "dashboard": "apps.dashboard_cli",
    "tune": "tune.cli",
    "serve": "serve.cli",
    "compare": "fabric.cli.compare",
    "keys": "fabric.cli.keys",
    "tenants": "fabric.cli.tenants",
    "zoo": "fabric.cli.zoo",
}


def _extension(cmd: str) -> Any:
    import importlib

    return importlib.import_module(EXTENSIONS[cmd])


def main(argv: list[str] | None = None) -> int:
    from fabric.store.registry import IntegrityError
    from fabric.store.signing import SignatureError

    a = build_parser().parse_args(argv)
    try:
        if a.cmd in EXTENSIONS:
            return _extension(a.cmd).main(a)
        return COMMANDS[a.cmd](a)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except (IntegrityError, SignatureError) as exc:
        # a refused record (tampered, or signed by a key the trust list does not name, e.g. a store
        # written before keys moved out of stores): one line with the key id and the fix, nothing stored
        return fail(str(exc).splitlines()[0], 4)


if __name__ == "__main__":
    sys.exit(main())
