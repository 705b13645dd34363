"""``fabric tune``: multi-objective, hardware-in-the-loop search; ``--select`` picks from a front."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fabric.cli.options import add_address_option, add_store_option, fail

__all__ = ["add_parser", "main"]

EPILOG = """examples:
  fabric tune examples/digits_tune.yaml --kinds loihi,fpga --samples 16 --seed 1
  fabric tune examples/digits_tune.yaml --resume              continue the newest interrupted experiment
  fabric tune examples/digits_tune.yaml --select "latency_ms<5 and energy_mj<0.5"
  fabric tune --from <pareto-id> --select "accuracy>0.8 and kind==loihi"   no re-run

objectives: accuracy (max), latency_ms (min, device time per inference, modelled for emulated kinds),
energy_mj (min, modelled), footprint_kb (min), each per kind: one Pareto front per kind. Trials are
measured and selected on the validation split (default: 20% of the training data when the spec has no
dataset.val_fraction); front models are then measured once on the test split (column "test acc").
--select grammar: comparisons NAME OP VALUE (OP one of < <= > >= == !=) joined by and/or/not and
parentheses; names are the objectives (validation figures) and `kind`. --select picks the best feasible
row of each kind: the most accurate, then the lowest latency, energy, footprint.
exit codes: 0 done (or a row selected), 2 bad input, 3 nothing satisfies --select."""


def add_parser(sub: Any) -> None:
    """Register ``fabric tune`` (heavy imports stay inside :func:`main`)."""
    p = sub.add_parser("tune", help="multi-objective AutoML measured on device actors -> Pareto front",
                       description="Search SPEC's search_space with Ray Tune (Optuna NSGA-II over accuracy, latency, "
                       "energy, footprint; ASHA early stopping on the training curve). Every candidate is fit-checked "
                       "per kind before training, then measured on the shared device actors. Stores the Pareto front "
                       "(registry kind 'pareto') and a plot.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", metavar="SPEC", nargs="?", help="requirements YAML with a search_space (optional with --from)")
    p.add_argument("--kinds", help="comma-separated device kinds to measure on (default: the spec's targets)")
    p.add_argument("--samples", type=int, default=16, help="number of trials (default 16)")
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="re-train each front model with N seeds; test-split mean/std/CI in the pareto artifact "
                        "(default: the spec's repeats.n)")
    p.add_argument("--seed", type=int, help="sampler seed (default: the spec's seed)")
    p.add_argument("--max-concurrent", type=int, default=2, help="trials at once, 1 CPU each (default 2)")
    p.add_argument("--no-early-stop", action="store_true",
                   help="train every trial for every epoch (default: ASHA stops poor training curves early)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="DIR",
                   help="restore an interrupted experiment: DIR, or the newest one of SPEC under --storage-path")
    p.add_argument("--storage-path", metavar="DIR", help="Tune experiment root (default <store>/tune)")
    p.add_argument("--select", metavar="EXPR", help='pick the best feasible model, e.g. "latency_ms<5 and energy_mj<0.5"')
    p.add_argument("--from", dest="from_id", metavar="PARETO_ID", help="apply --select to a stored pareto artifact")
    add_store_option(p)
    add_address_option(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    p.add_argument("--mlflow", metavar="URI", help="also log the tune to an MLflow tracking store (default "
                   "$FABRIC_MLFLOW_URI): a parent run with the Pareto artifact id and plot, one nested child run per "
                   "trial (its config; val./test.<kind>.<objective> metrics); an unusable store is only a warning")
    p.add_argument("--mlflow-experiment", metavar="NAME", help="MLflow experiment name (default: the spec's name)")


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_rows(rows: list[dict[str, Any]], only: list[int] | None = None) -> str:
    """Table of (trial, kind) rows; ``*`` marks the Pareto front."""
    head = (f"{'':2}{'trial':<22}{'kind':<10}{'status':<15}{'val acc':>9}{'latency ms':>12}{'energy mJ':>12}{'KB':>8}"
            f"{'test acc':>9}  config")
    out = [head, "-" * len(head)]
    for i in only if only is not None else range(len(rows)):
        r, m = rows[i], rows[i]["metrics"]
        cfg = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(r["config"].items()))
        out.append(f"{'*' if r.get('on_front') else ' ':2}{str(r['trial_id'])[:21]:<22}{r['kind']:<10}{r['status']:<15}"
                   f"{_fmt(m['accuracy'], '.3f'):>9}{_fmt(m['latency_ms'], '.4f'):>12}{_fmt(m['energy_mj'], '.5f'):>12}"
                   f"{_fmt(m['footprint_kb'], '.1f'):>8}{_fmt((r.get('test_metrics') or {}).get('accuracy'), '.3f'):>9}"
                   f"  {cfg}")
    out.append("* = on its kind's Pareto front (selected on the val split; test acc measured once, front models only). "
               "latency = device time per inference, energy per inference: modelled for emulated kinds "
               "(fabric devices --json lists constants and sources).")
    reps = [i for i in (only if only is not None else range(len(rows))) if rows[i].get("repeats")]
    if reps:  # --repeats: the front models' repeated-seed test figures
        from fabric.kpis import fmt_interval

        out.append("repeated seeds (test split, mean ± std [CI]):")
        for i in reps:
            r = rows[i]
            cells = "; ".join(f"{k} {fmt_interval(st, '.4g')}" for k, st in r["repeats"].items())
            out.append(f"  {str(r['trial_id'])[:21]} {r['kind']} (n={next(iter(r['repeats'].values()))['n']}): {cells}")
    return "\n".join(out)


def _select(rows: list[dict[str, Any]], expr: str, as_json: bool, pareto_id: str) -> int:
    """The best feasible row of each kind (``per_kind``); ``index``/``selected`` stay the best row over
    all rows, as before per-kind fronts, for callers that read one pick."""
    from tune._pareto import SelectError, select, select_per_kind

    try:
        hit = select(rows, expr)
        per_kind = select_per_kind(rows, expr)
    except SelectError as exc:
        return fail(str(exc), 2)
    if hit is None:
        if as_json:
            print(json.dumps({"select": expr, "pareto_id": pareto_id, "selected": None, "per_kind": {}}))
        return fail(f"no measured model satisfies {expr!r} (pareto {pareto_id[:12]})", 3)
    i, row = hit
    if as_json:
        print(json.dumps({"select": expr, "pareto_id": pareto_id, "index": i, "selected": row, "selected_on": "val",
                          "per_kind": {k: {"index": j, "selected": r} for k, (j, r) in per_kind.items()}},
                         default=str))
    else:
        print(f"selected per kind (pareto {pareto_id[:12]}, on the val split) for {expr!r}:")
        print(format_rows(rows, [j for j, _ in per_kind.values()]))
        for k, (j, r) in per_kind.items():
            print(f"{k}: row {j}  model {r['model_id']}  program {r['program_id']}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Run a search (or read a stored front) and print the front or the selected model."""
    from fabric.store.registry import ArtifactNotFound, Registry

    reg = Registry(args.store)
    if args.from_id:
        if not args.select:
            return fail("--from needs --select EXPR", 2)
        try:
            rec = reg.record(args.from_id)
        except (ArtifactNotFound, ValueError) as exc:
            return fail(f"--from: {exc}", 2)
        if rec.kind != "pareto":
            return fail(f"--from: artifact {rec.id[:12]} is a {rec.kind!r}, not a 'pareto'", 2)
        return _select(reg.get_json(rec.id)["trials"], args.select, args.json, rec.id)
    if not args.spec:
        return fail("tune needs SPEC (or --from PARETO_ID with --select)", 2)
    if args.select:  # validate the expression before spending any compute
        from tune._pareto import SelectError, parse_select

        try:
            parse_select(args.select)
        except SelectError as exc:
            return fail(str(exc), 2)
    from fabric.spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        return fail(str(exc), 2)
    from fabric.connect import connect
    from tune._run import TuneError, run_tune

    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()] if args.kinds else None
    from fabric.kinds import kinds as registered

    bad = [k for k in kinds or [] if k not in registered()]
    if bad:  # before any cluster is started
        return fail(f"--kinds: unknown device kind(s) {bad}; valid: {registered()}", 2)
    if args.samples < 1:
        return fail("--samples: must be >= 1", 2)
    quiet = args.quiet or args.json
    try:
        connect(args.address)
        res = run_tune(spec, reg, kinds=kinds, num_samples=args.samples, seed=args.seed,
                       storage_path=args.storage_path, resume=args.resume, max_concurrent=args.max_concurrent,
                       early_stop=not args.no_early_stop, repeats=args.repeats,
                       progress=not quiet, log=(lambda s: None) if quiet else (lambda s: print(s, flush=True)))
    except TuneError as exc:
        return fail(str(exc), 2)
    doc = {"experiment": res.experiment, "experiment_path": res.experiment_path,
           "pareto_id": res.pareto_id, "plot_id": res.plot_id, "front": res.front, "fronts": res.fronts,
           "selected_on": "val", "reported_on": "test", "splits": res.splits, "trials": res.rows,
           "seconds": res.seconds, "errors": res.errors}
    from fabric.flow.tracking import log_tune, resolve_uri

    mlflow_uri = resolve_uri(args.mlflow)
    mlflow_run = None
    if mlflow_uri:  # a view of the registry: an unusable store is one warning line, same exit code
        settings = {"kinds": res.kinds, "samples": args.samples, "seed": args.seed, "repeats": args.repeats,
                    "early_stop": not args.no_early_stop, "max_concurrent": args.max_concurrent}
        mlflow_run = log_tune(mlflow_uri, doc, spec.to_dict(), experiment=args.mlflow_experiment, registry=reg,
                              settings=settings, store=reg.url)
    if args.select:
        if not args.json:
            print(format_rows(res.rows, res.front))
        return _select(res.rows, args.select, args.json, res.pareto_id)
    if args.json:
        print(json.dumps(doc, default=str))
    else:
        print(format_rows(res.rows, res.front))
        print(f"pareto {res.pareto_id}  plot {res.plot_id}  ({res.trials} trials, {len(res.front)} on the per-kind fronts, "
              f"{res.seconds:.0f}s; fabric registry cat {res.plot_id[:12]} --out pareto.png)")
        for e in res.errors:
            print(f"trial error: {e}")
        if mlflow_run:
            print(f"mlflow parent run {mlflow_run} (experiment {args.mlflow_experiment or spec.name}, {mlflow_uri})")
    return 0
