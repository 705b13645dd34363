"""``fabric zoo``: publish a run's model as a signed, versioned zoo entry; list and show entries.

Why a command: a model worth reusing should be found by name (``model: {zoo: NAME}`` in a spec)
with the encoder, spec, per-kind KPIs and device programs that came with it, not by an artifact id
copied out of a run's output. The work is :mod:`fabric.flow.zoo`; this module parses and prints.

Exit codes: 0 ok; 2 bad input (invalid name, unknown entry or version, an artifact that is not a
run's model / deployment / report); 4 a missing or refused artifact (unknown id, tampered entry).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from fabric.cli.options import add_store_option, add_tenant_option, fail

__all__ = ["add_parser", "main"]

EPILOG = """examples:
  fabric run examples/digits.yaml                     prints the run's report id
  fabric zoo publish <report-id> --name digits-mlp    publish it (a model or deployment id works too)
  fabric zoo ls                                        every entry: name, version, kinds, accuracy per kind
  fabric zoo show digits-mlp --version 1 --json        one entry in full (encoder, KPIs, programs, ids)

then start a spec from it:  model: {zoo: digits-mlp}  (train.epochs: 0 deploys it as is; more epochs
fine-tune its weights on the spec's data; the encoder comes with the entry). Publishing a name again
adds a new version; nothing is overwritten."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("zoo", help="publish, list and show model zoo entries (reusable trained models)",
                       description="The model zoo: signed, versioned entries that bundle a trained model with its "
                       "encoding configuration, spec, per-kind KPIs and device programs.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    zs = p.add_subparsers(dest="zcmd", metavar="ACTION")
    zs.required = True
    q = zs.add_parser("publish", help="publish a run's model as the next version of an entry",
                      description="ID: a run's KPI report id, or a model or deployment artifact id that a run "
                      "report lists (or a unique prefix of >= 6 hex chars).")
    q.add_argument("id", metavar="ID", help="run report, model or deployment artifact id (or prefix)")
    q.add_argument("--name", required=True, metavar="NAME", help="entry name: letters, digits, _ . -")
    q.add_argument("--json", action="store_true", help="print the published entry as JSON")
    q = zs.add_parser("ls", help="list entries: name, version, kinds, accuracy per kind, published")
    q.add_argument("--json", action="store_true")
    q = zs.add_parser("show", help="one entry in full (its newest version unless --version)")
    q.add_argument("name", metavar="NAME")
    q.add_argument("--version", type=int, metavar="V", help="which version (default: the newest)")
    q.add_argument("--json", action="store_true")
    for q in zs.choices.values():
        add_store_option(q)
        add_tenant_option(q)


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _acc(entry: Any) -> str:
    return ", ".join(f"{k} {'-' if v['accuracy'] is None else format(v['accuracy'], '.3f')}"
                     for k, v in sorted(entry.kpis.items()))


def _summary(entry: Any) -> str:
    return (f"zoo entry {entry.name} v{entry.version} ({entry.id[:12]}): kinds {', '.join(entry.kinds)}; "
            f"accuracy {_acc(entry)}")


def _num(kpi: dict[str, Any], key: str, fmt: str) -> str:
    return "-" if kpi.get(key) is None else format(kpi[key], fmt)


def _show(entry: Any) -> None:
    rows = [("entry", f"{entry.name} v{entry.version}"), ("id", entry.id), ("published", _when(entry.published)),
            ("signed by", entry.signed_by or "-"), ("model", f"{entry.model_id} ({entry.model_kind})"),
            ("encoding", entry.encoding_id), ("encoder", json.dumps(entry.encoder, sort_keys=True)),
            ("shape", f"{entry.n_in} inputs -> {entry.n_out} classes"),
            ("source", f"{entry.source_kind} {entry.source_id}" + ("" if entry.source_id == entry.report_id
                                                                    else f" (run report {entry.report_id})")),
            ("spec", f"{entry.spec.get('name', '?')} (hash {entry.spec_hash[:12]})")]
    for k, v in rows:
        print(f"{k:<12}{v}")
    head = f"  {'kind':<12}{'accuracy':>9}{'p50 ms':>10}{'energy mJ':>12}{'footprint kB':>14}  {'program':<14}deployment"
    print("per kind:")
    print(head)
    for kind, kpi in sorted(entry.kpis.items()):
        print(f"  {kind:<12}{_num(kpi, 'accuracy', '.3f'):>9}{_num(kpi, 'latency_p50_ms', '.3f'):>10}"
              f"{_num(kpi, 'energy_mj', '.4g'):>12}{_num(kpi, 'footprint_kb', '.1f'):>14}  "
              f"{entry.programs.get(kind, '-')[:12]:<14}"
              f"{entry.deployments.get(kind, '-')[:12]}")
    print(f"use it: model: {{zoo: {entry.name}, version: {entry.version}}}")


def _registry(a: argparse.Namespace) -> Any:
    from fabric.store.registry import Registry

    return Registry(a.store, tenant=a.tenant)


def _publish(a: argparse.Namespace) -> int:
    from fabric.flow.zoo import publish

    entry = publish(_registry(a), a.id, a.name)
    if a.json:
        print(json.dumps(entry.to_dict(), indent=1))
    else:
        print(f"published {_summary(entry)}")
        print(f"use it: model: {{zoo: {entry.name}}}  (this version: version: {entry.version})")
    return 0


def _ls(a: argparse.Namespace) -> int:
    from fabric.flow.zoo import format_entries, scan_entries

    reg = _registry(a)
    found, bad, unverified = scan_entries(reg)
    if a.json:
        print(json.dumps({"entries": [e.to_dict() for e in found],
                          "refused": [{"id": i, "reason": r} for i, r in bad]}, indent=1))
    else:
        print(format_entries(found))
        note = f"; {unverified} record(s) of the store failed verification (fabric registry verify-all)" if unverified else ""
        print(f"{len(found)} zoo entries in {reg.url}{note}")
    if bad:
        return fail(f"{len(bad)} zoo entr{'y' if len(bad) == 1 else 'ies'} refused: "
                    + "; ".join(f"{i[:12]} ({r})" for i, r in bad), 4)
    return 0


def _show_cmd(a: argparse.Namespace) -> int:
    from fabric.flow.zoo import resolve

    entry = resolve(_registry(a), a.name, a.version)
    if a.json:
        print(json.dumps(entry.to_dict(), indent=1))
    else:
        _show(entry)
    return 0


_ACTIONS = {"publish": _publish, "ls": _ls, "show": _show_cmd}


def main(a: argparse.Namespace) -> int:
    from fabric.flow.zoo import ZooError
    from fabric.spec import SpecError
    from fabric.store.registry import ArtifactNotFound, IntegrityError

    try:
        return _ACTIONS[a.zcmd](a)
    except (ZooError, SpecError) as exc:
        return fail(exc, 2)
    except (ArtifactNotFound, IntegrityError) as exc:
        return fail(str(exc).strip("'\""), 4)
    except ValueError as exc:  # a bad --tenant name or store URL
        return fail(exc, 2)
