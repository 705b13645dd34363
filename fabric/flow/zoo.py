"""The model zoo (issue #19 item 6): a published model is a signed registry record of kind ``zoo``
that bundles what reusing it needs (model id, encoding configuration, the spec that made it, its
per-kind KPIs, its device program and deployment ids). Names are versioned: publishing a name again
adds version 2, 3, ...; nothing is overwritten, so a spec pinned to ``model: {zoo: N, version: 1}``
keeps meaning the same weights.

An entry is made from a run's KPI report, or from a model or deployment artifact that a run report
lists (the report holds the KPIs and programs). A spec starts from an entry with ``model: {zoo: N}``:
``train.epochs: 0`` deploys its model as is, more epochs fine-tune its weights on the spec's data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from fabric.spec import EncoderSpec, Spec, SpecError
from fabric.store.registry import ArtifactRecord, IntegrityError, Registry

__all__ = ["ZooEntry", "ZooError", "publish", "entries", "scan_entries", "resolve", "effective_spec",
           "start_model", "format_entries", "KPI_FIELDS"]

# the KPI row fields an entry keeps per kind (fabric.flow.rows.KPIRow)
KPI_FIELDS = ("status", "emulated", "accuracy", "latency_p50_ms", "latency_p99_ms", "energy_mj",
              "spikes_per_inference", "synops_per_inference", "footprint_kb", "early_exit_accuracy", "passed")


class ZooError(ValueError):
    """A zoo request that cannot be met; ``str()`` is one line (unknown name lists the known ones)."""


@dataclass(kw_only=True)
class ZooEntry:
    """One published version; ``id`` is its zoo record's artifact id."""

    name: str
    version: int
    model_id: str
    model_kind: str  # "model" (trained weights) or "nir" (an imported graph: deployable, not fine-tunable)
    encoder: dict[str, Any]
    encoding_id: str
    n_in: int
    n_out: int
    classes: list[str]
    spec: dict[str, Any]
    spec_hash: str
    kpis: dict[str, dict[str, Any]]
    programs: dict[str, str]
    deployments: dict[str, str]
    source_id: str
    source_kind: str
    report_id: str
    published: float
    id: str = ""
    signed_by: str | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def kinds(self) -> list[str]:
        return sorted(self.kpis)


# -- publishing -----------------------------------------------------------------------------------------
def _run_model(doc: dict[str, Any]) -> tuple[str, str]:
    """(model id, artifact kind) a run report deployed: the compressed variant, the trained (or
    zoo-started) model, or the imported NIR graph."""
    stages = {o["stage"]: o["artifact"] for o in doc.get("stages", [])}
    comp = doc.get("compression") or {}
    if comp.get("deploy_model_id"):
        return comp["deploy_model_id"], "model"
    for st in ("train", "zoo"):
        if st in stages:
            return stages[st], "model"
    if "import" in stages:
        return stages["import"], "nir"
    raise ZooError("the run report names no model (no train, zoo or import stage)")


def _run_reports(registry: Registry) -> list[tuple[ArtifactRecord, dict[str, Any]]]:
    """Every KPI report of the store, newest first, with its document."""
    recs = [r for r in registry.ls("report") if r.name.endswith("/kpi-report")]
    return [(r, registry.get_json(r.id)) for r in reversed(recs)]


def _report_for(registry: Registry, rec: ArtifactRecord) -> tuple[ArtifactRecord, dict[str, Any]]:
    """The run report behind ``rec`` (a KPI report, a model or a deployment artifact)."""
    if rec.kind == "report":
        if not rec.name.endswith("/kpi-report"):
            raise ZooError(f"artifact {rec.id[:12]} is a report ({rec.name}), not a run's KPI report")
        return rec, registry.get_json(rec.id)
    if rec.kind not in ("model", "deployment", "nir"):
        raise ZooError(f"artifact {rec.id[:12]} is a {rec.kind}; publish a model, deployment or run report")
    for r, doc in _run_reports(registry):
        hit = (rec.id in doc.get("deployments", {}).values() if rec.kind == "deployment"
               else _run_model(doc)[0] == rec.id)
        if hit:
            return r, doc
    raise ZooError(f"{rec.kind} {rec.id[:12]} is in no run report of {registry.url} (its KPIs and programs come "
                   "from one); publish the run's report instead (fabric registry ls --kind report)")


def _kpis(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["kind"]: {k: row.get(k) for k in KPI_FIELDS} for row in doc.get("kpis", [])}


def entries(registry: Registry, name: str | None = None) -> list[ZooEntry]:
    """Published entries (of ``name``, or all), sorted by name then version; each verified."""
    out = []
    for rec in registry.ls("zoo"):
        if name is not None and rec.extra.get("zoo") != name:
            continue
        out.append(_entry(registry, rec))
    return sorted(out, key=lambda e: (e.name, e.version))


def scan_entries(registry: Registry) -> tuple[list[ZooEntry], list[tuple[str, str]], int]:
    """Every entry that verifies (sorted as :func:`entries`), ``(record id, reason)`` for each zoo
    record whose entry was refused (tampered bytes, name/version mismatch), and how many records of
    the store (any kind: a refused record's kind cannot be trusted) failed verification; so a listing
    shows the good entries and names the refused ones instead of failing on the first."""
    good, bad = [], []
    recs, refused = registry.scan("zoo")
    for rec in recs:
        try:
            good.append(_entry(registry, rec))
        except IntegrityError as exc:
            bad.append((rec.id, str(exc)))
    return sorted(good, key=lambda e: (e.name, e.version)), bad, len(refused)


def _entry(registry: Registry, rec: ArtifactRecord) -> ZooEntry:
    doc = registry.get_json(rec.id)  # bytes re-hashed against the signed record
    entry = ZooEntry(**{k: v for k, v in doc.items() if k not in ("id", "signed_by")})
    if (entry.name, entry.version) != (rec.extra.get("zoo"), rec.extra.get("version")):
        raise IntegrityError(f"zoo record {rec.id[:12]} refused: its signed name/version "
                             f"{rec.extra.get('zoo')} v{rec.extra.get('version')} differ from the entry's")
    entry.id, entry.signed_by = rec.id, (rec.signature or {}).get("key")
    return entry


def publish(registry: Registry, ref: str, name: str) -> ZooEntry:
    """Publish artifact ``ref`` (a run's KPI report, or a model / deployment a run report lists) as the
    next version of zoo entry ``name``."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
        raise ZooError(f"--name: letters, digits and _ . - only, got {name!r}")
    rec = registry.record(ref)
    report, doc = _report_for(registry, rec)
    model_id, model_kind = _run_model(doc)
    stages = {o["stage"]: o["artifact"] for o in doc["stages"]}
    enc = registry.record(stages["encode"])
    spec = Spec.from_dict(doc["spec"])
    version = 1 + max((e.version for e in entries(registry, name)), default=0)
    entry = ZooEntry(
        name=name, version=version, model_id=model_id, model_kind=model_kind,
        encoder=spec.encoder.model_dump(mode="json"), encoding_id=enc.id, n_in=int(enc.extra["shape"][2]),
        n_out=int(enc.extra["n_classes"]), classes=[str(c) for c in enc.extra.get("classes", [])],
        spec=doc["spec"], spec_hash=doc["spec_hash"], kpis=_kpis(doc),
        programs={s.removeprefix("compile[").rstrip("]"): a for s, a in stages.items() if s.startswith("compile[")},
        deployments=dict(doc.get("deployments", {})), source_id=rec.id, source_kind=rec.kind, report_id=report.id,
        published=time.time())
    body = entry.to_dict()
    body.pop("id"), body.pop("signed_by")
    parents = sorted({model_id, report.id, rec.id, *entry.programs.values()})
    acc = {k: v["accuracy"] for k, v in entry.kpis.items()}
    out = registry.put_json(body, kind="zoo", name=f"zoo/{name}", parents=parents, spec_hash=entry.spec_hash,
                            extra={"zoo": name, "version": version, "kinds": entry.kinds, "accuracy": acc,
                                   "model_id": model_id})
    return _entry(registry, out)


# -- using an entry ---------------------------------------------------------------------------------------
def resolve(registry: Registry, name: str, version: int | None = None) -> ZooEntry:
    """The entry ``name`` (its newest version, or ``version``); unknown names list the known ones."""
    found = entries(registry, name)
    if not found:
        _, refused = registry.scan("zoo")
        known = sorted({e.name for e in entries(registry)})
        note = (f"; {len(refused)} record(s) in the store failed verification and were left out "
                "(fabric registry verify-all)") if refused else ""
        raise ZooError(f"no zoo entry {name!r} in {registry.url}; known: {known or 'none'}{note}")
    if version is None:
        return found[-1]
    hit = [e for e in found if e.version == version]
    if not hit:
        raise ZooError(f"zoo entry {name!r} has versions {[e.version for e in found]}, not {version}")
    return hit[0]


def effective_spec(spec: Spec, entry: ZooEntry) -> Spec:
    """``spec`` with the entry's encoder: its weights expect those spikes. An encoder section that the
    spec sets and that differs is refused (one line), never silently replaced."""
    enc = EncoderSpec(**entry.encoder)
    if "encoder" in spec.model_fields_set and spec.encoder != enc:
        raise SpecError([("encoder", f"differs from zoo entry {entry.name} v{entry.version}'s encoder "
                                     f"{entry.encoder}; leave the encoder section out (it comes with the entry)")])
    return spec.model_copy(update={"encoder": enc})


def start_model(registry: Registry, spec: Spec, entry: ZooEntry, enc_id: str, x: np.ndarray, y: np.ndarray,
                n_in: int, n_out: int, *, progress: bool = False,
                log: Callable[[str], None] = print) -> ArtifactRecord:
    """The model a ``model: {zoo: N}`` run deploys: the entry's own model record (``train.epochs: 0``),
    or its weights fine-tuned on ``x``/``y`` (the train split) for ``train.epochs`` with the fabric's
    training loop, stored as a new model artifact whose parents are the entry's model and ``enc_id``."""
    from fabric.flow import stages
    from fabric.model.train import TrainResult, pick_device, train_loop

    if (entry.n_in, entry.n_out) != (n_in, n_out):
        raise SpecError([("model.zoo", f"entry {entry.name} v{entry.version} takes {entry.n_in} inputs and "
                                       f"{entry.n_out} classes; this dataset and encoder give {n_in} and {n_out}")])
    if spec.train.epochs == 0:
        log(f"[zoo] {entry.name} v{entry.version}: deploying model {entry.model_id[:12]} as is (train.epochs 0)")
        return registry.record(entry.model_id)
    model = stages.load_model(registry, entry.model_id)
    dev = pick_device(spec.train.device)
    t0 = time.perf_counter()
    history = train_loop(model.to(dev), x, y, epochs=spec.train.epochs, lr=spec.train.lr, seed=spec.seed,
                         batch_size=spec.train.batch_size, device=dev, progress=progress, desc="fine-tune",
                         max_seconds=spec.budgets.max_train_seconds)
    res = TrainResult(model=model.cpu().eval(), history=history, seconds=time.perf_counter() - t0, device=str(dev))
    last = history[-1]
    log(f"[zoo] fine-tuned {entry.name} v{entry.version} for {len(history)} epochs: loss {last['loss']:.3f}, "
        f"train accuracy {last['train_accuracy']:.3f}")
    return stages.put_model(registry, spec, res.model, res, parents=[entry.model_id, enc_id], variant="baseline",
                            zoo={"name": entry.name, "version": entry.version, "entry": entry.id})


# -- listing ----------------------------------------------------------------------------------------------
def format_entries(found: list[ZooEntry]) -> str:
    """The ``fabric zoo ls`` table: name, version, kinds, accuracy per kind, date (UTC)."""
    from datetime import UTC, datetime

    rows = []
    for e in found:
        acc = ", ".join(f"{k} {'-' if v['accuracy'] is None else format(v['accuracy'], '.3f')}"
                        for k, v in sorted(e.kpis.items()))
        when = datetime.fromtimestamp(e.published, UTC).strftime("%Y-%m-%d %H:%M")
        rows.append((e.name, str(e.version), ",".join(e.kinds), acc, when))
    wk = max([len("kinds"), *(len(r[2]) for r in rows)]) + 2  # columns as wide as their content
    wa = max([len("accuracy per kind"), *(len(r[3]) for r in rows)]) + 2
    head = f"{'name':<24}{'version':>8}  {'kinds':<{wk}}{'accuracy per kind':<{wa}}published (UTC)"
    lines = [head, "-" * len(head)]
    lines += [f"{n:<24}{v:>8}  {k:<{wk}}{a:<{wa}}{w}" for n, v, k, a, w in rows]
    return "\n".join(lines)
