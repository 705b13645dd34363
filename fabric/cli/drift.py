"""``fabric drift``: compare served inputs with the training encoding and store a ``drift`` report.

The report is a registry artifact (kind ``drift``, parents: the served-inputs artifact and the training
encoding), so the dashboard's drift page only reads what this command computed.
"""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

from fabric.cli.options import add_store_option, add_tenant_option, fail

__all__ = ["add_parser", "main", "load_served", "load_training", "run_drift"]

EXIT_DRIFT = 3  # like `fabric run`'s failed gate: the command worked, the result asks for action


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "drift", help="test served inputs for drift against the training set; store a drift report",
        description="Compare the event-rate and inter-event-interval distributions of served inputs "
        "(a served-inputs artifact, npz array 'spikes' [N, T, C]) with the training split of an encoding "
        "artifact, using a two-sample Kolmogorov-Smirnov test. Drift triggers a retrain when, for any "
        "feature, p < --alpha and the KS statistic >= --min-statistic. The result is stored as a "
        "'drift' artifact (shown by `fabric dashboard`). Exit 0: no drift; 3: retrain triggered; "
        "2: bad input; 4: artifact missing or failing verification.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  fabric serve snapshot                          store recent inputs as served-inputs\n"
        "  fabric drift --served 3fa2c1                   reference: the model's own training encoding\n"
        "  fabric drift --served 3fa2c1 --training 9b07de --alpha 0.01 --min-statistic 0.1")
    p.add_argument("--served", required=True, metavar="ID", help="served-inputs artifact id or unique prefix")
    p.add_argument("--training", metavar="ENCODING_ID",
                   help="encoding artifact id or prefix (its training split is the reference); default: the "
                   "encoding the served model was trained on, as recorded with the served inputs")
    p.add_argument("--alpha", type=float, default=0.01, help="p-value threshold (default 0.01)")
    p.add_argument("--min-statistic", type=float, default=0.1,
                   help="smallest KS statistic that counts as drift (effect size floor, default 0.1)")
    p.add_argument("--features", default="event_rate,inter_event_interval",
                   help="comma-separated features that may trigger a retrain (default both)")
    add_store_option(p)
    add_tenant_option(p)
    p.add_argument("--json", action="store_true", help="print the stored report as JSON")


def load_served(reg: Any, ref: str) -> tuple[Any, Any]:
    """(record, spikes [N, T, C]) of a served-inputs artifact."""
    import numpy as np

    rec = reg.record(ref)
    if rec.kind != "served-inputs":
        raise ValueError(f"--served: artifact {rec.id[:12]} is a {rec.kind}, not served-inputs")
    with np.load(io.BytesIO(reg.get(rec.id))) as z:
        if "spikes" not in z.files:
            raise ValueError(f"--served: artifact {rec.id[:12]} has no array 'spikes' (has {z.files})")
        return rec, z["spikes"]


def load_training(reg: Any, ref: str) -> tuple[Any, Any]:
    """(record, training-split spikes [N, T, C]) of an encoding artifact."""
    from fabric.flow.codecs import unpack_spikes

    rec = reg.record(ref)
    if rec.kind != "encoding":
        raise ValueError(f"--training: artifact {rec.id[:12]} is a {rec.kind}, not an encoding")
    spikes, _, splits, _ = unpack_spikes(reg.get(rec.id))
    train = spikes[splits == "train"]
    return rec, (train if len(train) else spikes)


def run_drift(reg: Any, served: str, training: str | None, policy: Any) -> tuple[Any, dict[str, Any]]:
    """Compute the drift report and store it; returns (record, report)."""
    from fabric.flow.drift import drift_report

    s_rec, s_spikes = load_served(reg, served)
    training = training or s_rec.extra.get("encoding_id")
    if not training:
        raise ValueError(f"--training: served inputs {s_rec.id[:12]} record no encoding_id; give the encoding id")
    t_rec, t_spikes = load_training(reg, training)
    rep = drift_report(t_spikes, s_spikes, policy)
    rep |= {"served": s_rec.id, "training": t_rec.id, "served_name": s_rec.name, "training_name": t_rec.name,
            "program": s_rec.parents[0] if s_rec.parents else None}
    rec = reg.put_json(rep, kind="drift", name=f"{s_rec.name}/drift", parents=[s_rec.id, t_rec.id],
                       spec_hash=t_rec.spec_hash,
                       extra={"retrain": rep["retrain"], "statistics": {k: v["statistic"] for k, v in
                                                                        rep["features"].items()}})
    return rec, rep


def main(a: argparse.Namespace) -> int:
    from fabric.flow.drift import DriftInputError, DriftPolicy
    from fabric.store.registry import ArtifactNotFound, IntegrityError, Registry

    try:
        feats = tuple(f.strip() for f in a.features.split(",") if f.strip())
        policy = DriftPolicy(alpha=a.alpha, min_statistic=a.min_statistic, features=feats)
        reg = Registry(a.store, tenant=a.tenant)
        rec, rep = run_drift(reg, a.served, a.training, policy)
    except (ValueError, DriftInputError) as exc:
        return fail(str(exc), 2)
    except (ArtifactNotFound, IntegrityError) as exc:
        return fail(str(exc), 4)
    if a.json:
        print(json.dumps({"id": rec.id} | rep, indent=1))
    else:
        print(f"drift of {rep['served_name']} ({rep['samples']['served']} samples) vs {rep['training_name']} "
              f"({rep['samples']['training']} training samples), {rep['test']}")
        for name, f in rep["features"].items():
            print(f"  {name:<22} KS {f['statistic']:.3f}  p {f['p_value']:.3g}  train mean {f['train']['mean']:.4g}"
                  f"  served mean {f['served']['mean']:.4g}  {'DRIFT' if f['drifted'] else 'ok'}")
        print(("RETRAIN TRIGGERED: " if rep["retrain"] else "no retrain: ") + rep["reason"])
        print(f"drift report {rec.id} in {reg.url}")
    return EXIT_DRIFT if rep["retrain"] else 0
