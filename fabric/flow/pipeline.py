"""The NMLOps job as a stage graph: requirements -> data -> encode -> train -> neurobench -> compress
-> export (NIR) -> compile[kind] -> evaluate[kind] on device actors -> golden[kind] -> deploy[kind]
(only kinds whose KPI gates pass) -> report (KPI table + gates, Markdown + PNG).
A pre-trained graph (``model.nir``) replaces train -> neurobench -> compress -> export by one
``import`` stage that stores it as the nir artifact.

Every stage's output is a registry artifact keyed by the hashes of its inputs and the spec fields it
reads, so a rerun with the same spec reuses what is done and a crashed job resumes at the first stage
whose output is missing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fabric.flow import stages
from fabric.flow.codecs import nir_from_bytes, nir_to_bytes, program_from_bytes, unpack_spikes
from fabric.flow.datasource import DatasetSource
from fabric.flow.rows import KPIRow, _gates, format_kpi_table
from fabric.kpis import format_repeats, gates_on_note
from fabric.records import FitError, Program
from fabric.spec import Spec
from fabric.store.registry import ArtifactRecord, Registry

# KPIRow / format_kpi_table (fabric.flow.rows) and nir_to_bytes / nir_from_bytes (fabric.flow.codecs)
# are re-exported here: they were first defined in this module and callers still import them from it
__all__ = ["run_pipeline", "RunSummary", "format_neurobench", "StageOutcome", "KPIRow", "format_kpi_table", "nir_to_bytes",
           "nir_from_bytes", "format_compression", "format_golden", "format_run_extras", "format_deployments", "STAGE_VERSIONS"]

# bump a stage's version when its code changes meaning, so stale cache entries are not reused
STAGE_VERSIONS = {"requirements": 1, "data": 1, "encode": 2, "train": 2, "neurobench": 1, "compress": 1, "export": 1,
                  "compile": 1, "evaluate": 2, "golden": 1, "deploy": 1,
                  "import": 1, "zoo": 1}


@dataclass(kw_only=True)
class StageOutcome:
    stage: str
    artifact: str
    cached: bool
    seconds: float
    detail: str = ""


@dataclass(kw_only=True)
class RunSummary:
    spec_name: str
    spec_hash: str
    store: str
    stages: list[StageOutcome]
    kpis: list[KPIRow]
    report_id: str
    seconds: float
    neurobench: dict[str, Any] = field(default_factory=dict)
    compression: dict[str, Any] = field(default_factory=dict)  # variants measured against the baseline
    golden: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> golden agreement
    deployments: dict[str, str] = field(default_factory=dict)  # kind -> deployment artifact id
    markdown_id: str = ""
    png_id: str = ""
    repeats: dict[str, Any] = field(default_factory=dict)  # the repeats artifact (+ its "id"); {} with one seed
    gates_note: str = ""  # what the gates compared, when kpis.on is set

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.kpis)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        for row, k in zip(d["kpis"], self.kpis, strict=True):
            row["passed"] = k.passed
        return d


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class _Runner:
    def __init__(self, spec: Spec, registry: Registry, progress: bool, use_cache: bool, log: Callable[[str], None]):
        self.spec, self.reg, self.progress, self.use_cache, self.log = spec, registry, progress, use_cache, log
        self.outcomes: list[StageOutcome] = []

    def stage(self, name: str, key_parts: list[Any], build: Callable[[], ArtifactRecord], detail: str = "") -> ArtifactRecord:
        key = _key(name.split("[")[0], STAGE_VERSIONS[name.split("[")[0]], key_parts)
        t0 = time.perf_counter()
        hit = self.reg.cache_get(key) if self.use_cache else None
        if hit is not None:
            rec = self.reg.record(hit)
            self.outcomes.append(StageOutcome(stage=name, artifact=rec.id, cached=True, seconds=time.perf_counter() - t0, detail=detail))
            self.log(f"[{name}] cached {rec.kind} {rec.id[:12]}")
            return rec
        self.log(f"[{name}] running ...")
        rec = build()
        self.reg.cache_put(key, rec.id)
        self.outcomes.append(StageOutcome(stage=name, artifact=rec.id, cached=False, seconds=time.perf_counter() - t0, detail=detail))
        self.log(f"[{name}] stored {rec.kind} {rec.id[:12]} ({time.perf_counter() - t0:.1f}s)")
        return rec


@dataclass
class _KindOut:
    """What one kind's compile/evaluate/golden stages produced (merged into the run in target order)."""

    outcomes: list[StageOutcome]
    row: KPIRow | None = None
    placed: tuple[Any, Program, str, str] | None = None
    golden: dict[str, Any] | None = None


def map_kinds(fn: Callable[[str], Any], kinds: list[str], max_workers: int | None = None) -> list[Any]:
    """``[fn(k) for k in kinds]`` with the kinds run at once on threads (each drives its own board
    actors, so they overlap); results in ``kinds`` order. The first kind (in that order) that raised
    re-raises here once every kind has finished, so no stage is left half-written in the background."""
    if len(kinds) <= 1:
        return [fn(k) for k in kinds]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max_workers or len(kinds), thread_name_prefix="fabric-kind") as ex:
        futures = [ex.submit(fn, k) for k in kinds]
    return [f.result() for f in futures]


def run_pipeline(spec: Spec, registry: Registry, *, progress: bool = True, use_cache: bool = True,
                 log: Callable[[str], None] = print, dataset: DatasetSource | None = None) -> RunSummary:
    """Run (or resume) the job for ``spec``; device stages go through Ray actor pools.

    The graph only: what each stage computes and stores is :mod:`fabric.flow.stages`; here are the
    cache key of each stage (its inputs' ids and the spec fields it reads) and the order.
    ``dataset``: the result of :func:`fabric.flow.stages.check_dataset` when the caller already
    validated the dataset (else it is checked here first: a bad one raises SpecError, nothing stored)."""
    from fabric.ir.lowering import GraphStructureError, UnsupportedNodeError
    from fabric.kinds import capabilities, code_digest, device_pool, make_runtime

    src = dataset if dataset is not None else stages.check_dataset(registry, spec)
    user = stages.check_model(registry, spec)  # model.nir read / model.module imported: SpecError, nothing stored
    if user.zoo is not None:  # a zoo entry brings its encoder (its weights expect those spikes)
        from fabric.flow.zoo import effective_spec, start_model

        spec = effective_spec(spec, user.zoo)
    t_start = time.perf_counter()
    R = _Runner(spec, registry, progress, use_cache, log)
    sh = spec.hash

    # 1. requirements: the validated spec itself, so every run's lineage starts from what was asked
    req_rec = R.stage("requirements", [sh], lambda: stages.requirements(registry, spec))
    # 2. data (key: the dataset section for a built-in, the version id, or the file's sha256 for a path)
    data_rec = R.stage("data", src.key, lambda: stages.data(registry, spec, src))
    # 3. encode (every encoder parameter stored, defaults resolved, with the input kind and decoder)
    enc_rec = R.stage("encode", [data_rec.id, spec.encoder.model_dump(), spec.seed],
                      lambda: stages.encode(registry, spec, data_rec.id))
    spikes, labels, splits, enc_meta = unpack_spikes(registry.get(enc_rec.id))
    n_out = int(enc_meta["n_classes"])
    train_mask, test_mask = splits == "train", splits == "test"

    # 4-7. the model. A pre-trained NIR graph (model.nir) is imported as the nir artifact: no train,
    # neurobench or compress stages. The template or a user factory (model.module) is trained, measured,
    # compressed (template only) and exported.
    compression: dict[str, Any] = {}
    nb: dict[str, Any] = {}
    n_in = int(spikes.shape[2])
    if user.nir_bytes is not None:
        nir_bytes = user.nir_bytes
        nir_rec = R.stage("import", [hashlib.sha256(nir_bytes).hexdigest(), n_in, n_out],
                          lambda: stages.import_nir(registry, spec, nir_bytes, n_in, n_out))
        deploy_model_id = nir_rec.id  # the graph is the model
        log("[import] pre-trained NIR graph (model.nir): no train, neurobench or compress stages")
    else:
        train_key: list[Any] = [enc_rec.id, spec.model.model_dump(), spec.train.model_dump(), spec.seed]
        if spec.model.module is not None:
            stages.check_user_model(spec, n_in, n_out)  # sizes and layers, one line, before any training
            train_key.append(user.digest)  # editing the factory's file re-trains
        # 4. train
        # (under Ray Train: checkpoint artifacts keyed by the train key + epoch, so a killed job's rerun
        # resumes from the last one; --no-cache starts afresh)
        ckpt_key = _key("train-checkpoint", STAGE_VERSIONS["train"], train_key)
        if user.zoo is not None:  # start from the entry: as is (train.epochs 0) or fine-tuned from its weights
            entry = user.zoo
            model_rec = R.stage("zoo", [entry.id, enc_rec.id, spec.train.model_dump(), spec.seed],
                                lambda: start_model(registry, spec, entry, enc_rec.id, spikes[train_mask],
                                                    labels[train_mask], n_in, n_out, progress=progress, log=log))
        else:
            model_rec = R.stage("train", train_key,
                            lambda: stages.train(registry, spec, enc_rec.id, spikes[train_mask], labels[train_mask],
                                                 n_out, progress=progress, log=log, checkpoint_key=ckpt_key,
                                                 resume=use_cache))

        # 5. NeuroBench static + workload metrics of the trained model on the test split
        nb_rec = R.stage("neurobench", [model_rec.id, enc_rec.id], lambda: stages.neurobench(
            registry, spec, model_rec.id, enc_rec.id, spikes[test_mask], labels[test_mask]))
        nb = registry.get_json(nb_rec.id)

        # 6. compression: each variant a model artifact, measured against the baseline
        deploy_model_id = model_rec.id
        c = spec.compress
        if any(v is not None for v in (c.prune, c.structured, c.qat_bits, c.state_bits)):
            comp_rec = R.stage("compress", [model_rec.id, enc_rec.id, c.model_dump(), spec.targets, spec.seed,
                                            spec.train.batch_size, spec.eval_batch_size],
                               lambda: stages.compress(registry, spec, model_rec.id, enc_rec.id, spikes, labels,
                                                       train_mask, test_mask, progress=progress, log=log))
            compression = registry.get_json(comp_rec.id)
            deploy_model_id = compression["deploy_model_id"]
            log(f"[compress] deploying variant {compression['deploy']!r} ({deploy_model_id[:12]})")

        # 7. export to NIR (validated by reading it back with nir's type checks)
        nir_rec = R.stage("export", [deploy_model_id], lambda: stages.export(registry, spec, deploy_model_id))
    graph = nir_from_bytes(registry.get(nir_rec.id))

    # 8-10. per kind: compile, evaluate on the device actors, golden equivalence. The kinds' boards are
    # separate actors, so the kinds run at once (one driver thread each); their stage outcomes, rows
    # and golden reports are merged in spec.targets order, so the summary does not depend on timing.
    def one_kind(kind: str) -> _KindOut:
        K = _Runner(spec, registry, progress, use_cache, log)  # its own outcomes; merged below
        out = _KindOut(outcomes=K.outcomes)
        pool = device_pool(kind)
        try:
            # the kind's folder digest (constants + emulator code) is in every device stage's key
            prog_rec = K.stage(f"compile[{kind}]", [nir_rec.id, kind, code_digest(kind)],
                               lambda: stages.compile(registry, pool, graph, kind, nir_rec.id, sh))
        except FitError as exc:
            log(f"[compile[{kind}]] does not fit: {exc}")
            out.row = KPIRow(kind=kind, status="does not fit", reason=str(exc))
            return out
        except (UnsupportedNodeError, GraphStructureError) as exc:  # e.g. a user graph's node type the kind lacks
            log(f"[compile[{kind}]] unsupported: {exc}")
            out.row = KPIRow(kind=kind, status="does not fit", reason=f"unsupported: {exc}")
            return out
        program = program_from_bytes(registry.get(prog_rec.id))
        # one tqdm bar per kind would interleave on one terminal: bars only when a single kind runs
        bars = progress and len(spec.targets) == 1
        ev_rec = K.stage(f"evaluate[{kind}]", [prog_rec.id, enc_rec.id, spec.early_exit.model_dump(), code_digest(kind)],
                         lambda: stages.evaluate(registry, pool, program, prog_rec.id, enc_rec.id, kind,
                                                 spikes[test_mask], labels[test_mask], spec, bars))
        out.row = KPIRow(**registry.get_json(ev_rec.id))
        out.placed = (pool, program, prog_rec.id, ev_rec.id)
        if spec.golden.samples:
            ref = make_runtime(kind) if capabilities(kind).reference else None
            # the reference toolchain's presence is part of the key: a run after installing it redoes the check
            fingerprint = ref.reference_fingerprint() if ref is not None else []
            g_rec = K.stage(f"golden[{kind}]", [prog_rec.id, enc_rec.id, spec.golden.samples, code_digest(kind), *fingerprint],
                            lambda: stages.golden(registry, program, prog_rec.id, enc_rec.id, kind,
                                                  spikes[test_mask][:spec.golden.samples], sh))
            out.golden = registry.get_json(g_rec.id)
            log(f"[golden[{kind}]] {out.golden['status']}: {out.golden['summary']}")
        return out

    rows: list[KPIRow] = []
    placed: dict[str, tuple[Any, Program, str, str]] = {}  # kind -> (pool, program, program id, evaluation id)
    golden: dict[str, dict[str, Any]] = {}
    # kinds whose latency is host wall time (cpu) run after the others, alone: measured beside the other
    # kinds' stages they would time the contention, not themselves (their p99 tripled in a parallel run)
    measured = [k for k in spec.targets if capabilities(k).latency == "measured"]
    modelled = [k for k in spec.targets if k not in measured]
    by_kind = dict(zip(modelled, map_kinds(one_kind, modelled), strict=True))
    by_kind |= {k: one_kind(k) for k in measured}
    for kind, out in ((k, by_kind[k]) for k in spec.targets):
        R.outcomes.extend(out.outcomes)
        rows.append(out.row)
        if out.placed is not None:
            placed[kind] = out.placed
        if out.golden is not None:
            golden[kind] = out.golden

    # 10b. repeated trials (spec.repeats.n > 1): the chain again with more seeds; mean/std/CI per KPI per
    # kind, which the gates use when kpis.on names an interval bound (fabric.flow.repeats)
    repeats: dict[str, Any] = {}
    if spec.repeats.n > 1:
        from fabric.flow.repeats import measure_repeats

        rep_rec = measure_repeats(R.stage, registry, spec, data_rec.id, rows,
                                  nir_id=nir_rec.id if user.nir_bytes is not None else None,
                                  module_digest=user.digest if spec.model.module is not None else None,
                                  parents=sorted({o.artifact for o in R.outcomes}), progress=progress, log=log)
        repeats = registry.get_json(rep_rec.id) | {"id": rep_rec.id}
    gates_note = gates_on_note(spec.kpis.on, bool(repeats))
    for row in rows:
        row.gates = _gates(spec, row, golden.get(row.kind), repeats.get("kinds", {}).get(row.kind))

    # 11. deploy the kinds whose gates all pass; warm their actors so the first request is not cold
    deployments: dict[str, str] = {}
    for row in rows:
        if not row.passed or row.kind not in placed:
            continue
        pool, program, prog_id, ev_id = placed[row.kind]
        dep_rec = R.stage(f"deploy[{row.kind}]", [prog_id, ev_id, enc_rec.id, deploy_model_id, nir_rec.id, sh],
                          lambda kind=row.kind, prog_id=prog_id, ev_id=ev_id: stages.deploy(
                              registry, spec, kind, prog_id, ev_id, deploy_model_id, nir_rec.id, enc_meta, enc_rec.id,
                              spikes.shape[2], n_out))
        deployments[row.kind] = dep_rec.id
        warm = pool.run(program, [spikes[test_mask][:1]] * len(pool.actors))
        log(f"[deploy[{row.kind}]] {dep_rec.id[:12]}; {len(warm)} actor(s) warm")

    # 12. report
    report = {"spec": spec.to_dict(), "spec_hash": sh, "kpis": [asdict(r) | {"passed": r.passed} for r in rows],
              "stages": [asdict(o) for o in R.outcomes], "neurobench": nb, "compression": compression,
              "golden": golden, "deployments": deployments, "requirements_id": req_rec.id,
              **({"repeats": repeats} if repeats else {}),
              "table": (format_kpi_table(rows) + ("\n" + gates_note if gates_note else "")
                        + ("\n" + format_repeats(repeats) if repeats else "") + "\n" + format_neurobench(nb)
                        + ("\n" + format_compression(compression) if compression else "")
                        + ("\n" + format_golden(golden) if golden else "")
                        + "\n" + format_deployments(rows, deployments))}
    rep, png, md = stages.report(registry, spec, report, sorted({o.artifact for o in R.outcomes}))
    log(f"[report] markdown {md.id[:12]}, plot {png.id[:12]} (fabric registry cat ID --out FILE)")
    return RunSummary(spec_name=spec.name, spec_hash=sh, store=registry.url, stages=R.outcomes, kpis=rows,
                      report_id=rep.id, seconds=time.perf_counter() - t_start, neurobench=nb, compression=compression,
                      golden=golden, deployments=deployments, markdown_id=md.id, png_id=png.id, repeats=repeats,
                      gates_note=gates_note)


def format_compression(comp: dict[str, Any]) -> str:
    """Each compressed variant against the baseline (NeuroBench on the float model, test split)."""
    head = (f"{'variant':<12}{'accuracy':>9}{'d acc':>8}{'params':>9}{'nonzero w':>11}{'w bits':>8}{'KB @bits':>10}"
            f"{'synops':>10}  how")
    lines = ["compression (NeuroBench per variant, test split; deployed: " + comp.get("deploy", "-") + ")", head,
             "-" * len(head)]
    base = comp["variants"][0]
    for r in comp["variants"]:
        how = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != "bits_from")
        lines.append(f"{r['variant']:<12}{r['accuracy']:>9.3f}{r['accuracy'] - base['accuracy']:>+8.3f}"
                     f"{r['parameters']:>9}{r['nonzero_weights']:>11}{r['weight_bits'] or 32:>8}"
                     f"{r['weights_bytes_at_precision'] / 1024:>10.2f}{r['synops']:>10.0f}  {how}")
    return "\n".join(lines)


def format_run_extras(summary: RunSummary) -> str:
    """Compression variants, golden agreement and deployments of a run, for the CLI after the KPI table."""
    parts = [summary.gates_note] if summary.gates_note else []
    if summary.repeats:
        parts.append(format_repeats(summary.repeats) + f"\n  (repeats artifact {summary.repeats['id'][:12]})")
    if summary.compression:
        parts.append(format_compression(summary.compression))
    if summary.golden:
        parts.append(format_golden(summary.golden))
    parts.append(format_deployments(summary.kpis, summary.deployments))
    if summary.markdown_id:
        parts.append(f"report: markdown {summary.markdown_id[:12]}, plot {summary.png_id[:12]} "
                     "(fabric registry cat ID --out FILE)")
    return "\n".join(parts)


def format_golden(golden: dict[str, dict[str, Any]]) -> str:
    """One line per kind, then one per ``extra_reference`` block a kind's check returned (any kind)."""
    lines = ["golden equivalence (device program vs reference, test samples):"]
    for k, g in golden.items():
        lines.append(f"  {k}: {g['status']} - {g['summary']}")
        lines += [f"    {k} {name}: {b.get('status', '-')} - {b.get('summary', '')}"
                  for name, b in (g.get("extra_reference") or {}).items()]
    return "\n".join(lines)


def format_deployments(rows: list[KPIRow], deployments: dict[str, str]) -> str:
    held = [r.kind for r in rows if r.kind not in deployments]
    dep = ", ".join(f"{k} ({v[:12]})" for k, v in deployments.items()) or "none"
    return f"deployed: {dep}" + (f"; not deployed (gate failed or does not fit): {', '.join(held)}" if held else "")


def format_neurobench(nb: dict[str, Any]) -> str:
    """One line per NeuroBench metric of the trained (float) model, per test sample."""
    out = ["NeuroBench (trained model, float, test split, per sample):"]
    for k, v in nb.items():
        if isinstance(v, dict):
            out.append(f"  {k}: " + ", ".join(f"{a}={b:.1f}" for a, b in v.items()))
        else:
            out.append(f"  {k}: {v:.4g}")
    return "\n".join(out)
