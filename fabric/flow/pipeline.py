"""The NMLOps job as a stage graph: requirements -> data -> encode -> train -> neurobench -> compress
-> export (NIR) -> compile[kind] -> evaluate[kind] on device actors -> golden[kind] -> deploy[kind]
(only kinds whose KPI gates pass) -> report (KPI table + gates, Markdown + PNG).

Every stage's output is a registry artifact keyed by the hashes of its inputs and the spec fields it
reads, so a rerun with the same spec reuses what is done and a crashed job resumes at the first stage
whose output is missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import nir
import numpy as np
import torch

from fabric.data.datasets import from_parquet_bytes, load_builtin, split, to_parquet_bytes
from fabric.data.encode import encode_with_meta
from fabric.model.snn import LifMLP, export_nir
from fabric.model.train import train_model, train_on_cluster
from fabric.records import FitError, Program
from fabric.spec import Spec
from fabric.store.registry import ArtifactRecord, Registry

__all__ = ["run_pipeline", "RunSummary", "format_neurobench", "StageOutcome", "KPIRow", "format_kpi_table", "nir_to_bytes",
           "nir_from_bytes", "format_compression", "format_golden", "format_run_extras", "format_deployments", "STAGE_VERSIONS"]

# bump a stage's version when its code changes meaning, so stale cache entries are not reused
STAGE_VERSIONS = {"requirements": 1, "data": 1, "encode": 2, "train": 2, "neurobench": 1, "compress": 1, "export": 1,
                  "compile": 1, "evaluate": 2, "golden": 1, "deploy": 1}
LATENCY_PROBE = 32  # samples run one at a time for the latency distribution


@dataclass(kw_only=True)
class StageOutcome:
    stage: str
    artifact: str
    cached: bool
    seconds: float
    detail: str = ""


@dataclass(kw_only=True)
class KPIRow:
    kind: str
    status: str  # "ok" | "does not fit" | "error"
    emulated: bool = False
    accuracy: float | None = None
    latency_p50_ms: float | None = None  # device latency: modelled for emulated kinds, measured for cpu
    latency_p99_ms: float | None = None
    host_p50_ms: float | None = None  # measured compute time inside the actor, batch 1
    energy_mj: float | None = None  # modelled, per inference
    spikes_per_inference: float | None = None
    synops_per_inference: float | None = None
    footprint_kb: float | None = None
    early_exit_accuracy: float | None = None  # Top-K cutoff (spec.early_exit) on the device's raster
    early_exit_steps_saved: float | None = None  # fraction of timesteps not simulated
    gates: dict[str, bool] = field(default_factory=dict)
    reason: str = ""
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "ok" and all(self.gates.values())


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


def nir_to_bytes(graph: nir.NIRGraph) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "g.nir")
        nir.write(p, graph)
        with open(p, "rb") as f:
            return f.read()


def nir_from_bytes(data: bytes) -> nir.NIRGraph:
    """Read with nir's own reader and type checks, then infer types: the validity contract."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "g.nir")
        with open(p, "wb") as f:
            f.write(data)
        g = nir.read(p)
    g.infer_types()
    return g


def _pack_spikes(spikes: np.ndarray, labels: np.ndarray, splits: np.ndarray, meta: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, bits=np.packbits(spikes, axis=-1), shape=np.array(spikes.shape), labels=labels,
                        splits=splits.astype("U5"), meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return buf.getvalue()


def _unpack_spikes(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    with np.load(io.BytesIO(data)) as z:
        shape = tuple(int(s) for s in z["shape"])
        spikes = np.unpackbits(z["bits"], axis=-1, count=shape[-1]).reshape(shape)
        return spikes, z["labels"], z["splits"].astype(object), json.loads(bytes(z["meta"]).decode())


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


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


def run_pipeline(spec: Spec, registry: Registry, *, progress: bool = True, use_cache: bool = True,
                 log: Callable[[str], None] = print) -> RunSummary:
    """Run (or resume) the job for ``spec``; device stages go through Ray actor pools."""
    from fabric.kinds import capabilities, device_pool, make_runtime

    t_start = time.perf_counter()
    R = _Runner(spec, registry, progress, use_cache, log)
    sh, seeds = spec.hash, {"seed": spec.seed}

    # 1. requirements: the validated spec itself, so every run's lineage starts from what was asked
    req_rec = R.stage("requirements", [sh], lambda: registry.put_json(
        {"spec": spec.to_dict(), "spec_hash": sh}, kind="report", name=f"{spec.name}/requirements", spec_hash=sh,
        seeds=seeds, extra={"what": "validated spec"}))

    # 2. data
    def build_data() -> ArtifactRecord:
        ds = load_builtin(spec.dataset.name, spec.dataset.limit)
        sp = split(len(ds.y), spec.dataset.test_fraction, spec.dataset.val_fraction, spec.seed)
        return registry.put(to_parquet_bytes(ds, sp), kind="dataset", name=spec.dataset.name, spec_hash=sh, seeds=seeds,
                            extra={"samples": len(ds.y), "shape": list(ds.x.shape[1:]), "classes": ds.classes,
                                   "source": ds.source, "format": "parquet"})

    data_rec = R.stage("data", [spec.dataset.model_dump(), spec.seed], build_data)

    # 3. encode (every encoder parameter stored, defaults resolved, with the input kind and decoder)
    def build_encoding() -> ArtifactRecord:
        ds, sp = from_parquet_bytes(registry.get(data_rec.id))
        spikes, meta = encode_with_meta(spec.encoder.name, ds.x, spec.encoder.timesteps, spec.seed, spec.encoder.params)
        meta = meta | {"n_classes": len(ds.classes), "classes": list(ds.classes)}
        return registry.put(_pack_spikes(spikes, ds.y, sp, meta), kind="encoding", name=f"{ds.name}/{spec.encoder.name}",
                            parents=[data_rec.id], spec_hash=sh, seeds=seeds, extra=meta | {"shape": list(spikes.shape)})

    enc_rec = R.stage("encode", [data_rec.id, spec.encoder.model_dump(), spec.seed], build_encoding)
    spikes, labels, splits, enc_meta = _unpack_spikes(registry.get(enc_rec.id))
    n_out = int(enc_meta["n_classes"])
    train_mask, test_mask = splits == "train", splits == "test"

    # 4. train
    def build_model() -> ArtifactRecord:
        import ray

        trainer = train_on_cluster if ray.is_initialized() else train_model
        res = trainer(spec, spikes[train_mask], labels[train_mask], n_out, progress=progress)
        last = res.history[-1]
        log(f"[train] {len(res.history)} epochs in {res.seconds:.1f}s on {res.device}: loss {last['loss']:.3f}, "
            f"train accuracy {last['train_accuracy']:.3f}")
        return registry.put(_model_bytes(res.model), kind="model", name=f"{spec.name}/lif_mlp", parents=[enc_rec.id],
                            spec_hash=sh, seeds=seeds, extra={"history": res.history, "train_seconds": res.seconds,
                                                              "device": res.device, "template": spec.model.template,
                                                              "variant": "baseline"})

    model_rec = R.stage("train", [enc_rec.id, spec.model.model_dump(), spec.train.model_dump(), spec.seed], build_model)

    # 5. NeuroBench static + workload metrics of the trained model on the test split
    def build_neurobench() -> ArtifactRecord:
        from fabric.model.neurobench import neurobench_metrics

        res = neurobench_metrics(_load_model(registry, model_rec.id), spikes[test_mask], labels[test_mask],
                                 spec.eval_batch_size)
        return registry.put_json(res, kind="report", name=f"{spec.name}/neurobench", parents=[model_rec.id, enc_rec.id],
                                 spec_hash=sh, seeds=seeds, extra={"metrics": sorted(res)})

    nb_rec = R.stage("neurobench", [model_rec.id, enc_rec.id], build_neurobench)
    nb = registry.get_json(nb_rec.id)

    # 6. compression: each variant a model artifact, measured against the baseline
    compression: dict[str, Any] = {}
    deploy_model_id = model_rec.id
    c = spec.compress
    if any(v is not None for v in (c.prune, c.structured, c.qat_bits, c.state_bits)):
        comp_rec = R.stage("compress", [model_rec.id, enc_rec.id, c.model_dump(), spec.targets, spec.seed,
                                        spec.train.batch_size, spec.eval_batch_size],
                           lambda: _compress(registry, spec, model_rec.id, enc_rec.id, spikes, labels, train_mask,
                                             test_mask, progress, log))
        compression = registry.get_json(comp_rec.id)
        deploy_model_id = compression["deploy_model_id"]
        log(f"[compress] deploying variant {compression['deploy']!r} ({deploy_model_id[:12]})")

    # 7. export to NIR (validated by reading it back with nir's type checks)
    def build_nir() -> ArtifactRecord:
        graph = export_nir(_load_model(registry, deploy_model_id),
                           metadata={"timesteps": spec.encoder.timesteps, "model_artifact": deploy_model_id})
        data = nir_to_bytes(graph)
        nir_from_bytes(data)  # must pass nir.read + type inference
        return registry.put(data, kind="nir", name=f"{spec.name}.nir", parents=[deploy_model_id], spec_hash=sh,
                            seeds=seeds, extra={"nodes": list(graph.nodes), "format": "nir-hdf5"})

    nir_rec = R.stage("export", [deploy_model_id], build_nir)
    graph = nir_from_bytes(registry.get(nir_rec.id))

    # 8-10. per kind: compile, evaluate on the device actors, golden equivalence
    rows: list[KPIRow] = []
    placed: dict[str, tuple[Any, Program, str, str]] = {}  # kind -> (pool, program, program id, evaluation id)
    golden: dict[str, dict[str, Any]] = {}
    for kind in spec.targets:
        pool = device_pool(kind)
        try:
            prog_rec = R.stage(f"compile[{kind}]", [nir_rec.id, kind],
                               lambda pool=pool, kind=kind: _compile(registry, pool, graph, kind, nir_rec.id, sh))
        except FitError as exc:
            log(f"[compile[{kind}]] does not fit: {exc}")
            rows.append(KPIRow(kind=kind, status="does not fit", reason=str(exc)))
            continue
        program = Program.from_bytes(registry.get(prog_rec.id))
        ev_rec = R.stage(f"evaluate[{kind}]", [prog_rec.id, enc_rec.id, spec.early_exit.model_dump()],
                         lambda pool=pool, program=program, prog_rec=prog_rec, kind=kind: _evaluate(
                             registry, pool, program, prog_rec.id, enc_rec.id, kind, spikes[test_mask],
                             labels[test_mask], spec, progress))
        rows.append(KPIRow(**registry.get_json(ev_rec.id)))
        placed[kind] = (pool, program, prog_rec.id, ev_rec.id)
        if spec.golden.samples:
            ref = make_runtime(kind) if capabilities(kind).reference else None
            # the reference toolchain's presence is part of the key: a run after installing it redoes the check
            fingerprint = ref.reference_fingerprint() if ref is not None else []
            g_rec = R.stage(f"golden[{kind}]", [prog_rec.id, enc_rec.id, spec.golden.samples, *fingerprint],
                            lambda program=program, prog_rec=prog_rec, kind=kind: _golden(
                                registry, program, prog_rec.id, enc_rec.id, kind, spikes[test_mask][:spec.golden.samples],
                                sh))
            golden[kind] = registry.get_json(g_rec.id)
            log(f"[golden[{kind}]] {golden[kind]['status']}: {golden[kind]['summary']}")

    for row in rows:
        row.gates = _gates(spec, row, golden.get(row.kind))

    # 11. deploy the kinds whose gates all pass; warm their actors so the first request is not cold
    deployments: dict[str, str] = {}
    for row in rows:
        if not row.passed or row.kind not in placed:
            continue
        pool, program, prog_id, ev_id = placed[row.kind]
        dep_rec = R.stage(f"deploy[{row.kind}]", [prog_id, ev_id, enc_rec.id, deploy_model_id, nir_rec.id, sh],
                          lambda kind=row.kind, prog_id=prog_id, ev_id=ev_id: _deploy(
                              registry, spec, kind, prog_id, ev_id, deploy_model_id, nir_rec.id, enc_meta, enc_rec.id,
                              spikes.shape[2], n_out))
        deployments[row.kind] = dep_rec.id
        warm = pool.run(program, [spikes[test_mask][:1]] * len(pool.actors))
        log(f"[deploy[{row.kind}]] {dep_rec.id[:12]}; {len(warm)} actor(s) warm")

    # 12. report
    report = {"spec": spec.to_dict(), "spec_hash": sh, "kpis": [asdict(r) | {"passed": r.passed} for r in rows],
              "stages": [asdict(o) for o in R.outcomes], "neurobench": nb, "compression": compression,
              "golden": golden, "deployments": deployments, "requirements_id": req_rec.id,
              "table": (format_kpi_table(rows) + "\n" + format_neurobench(nb)
                        + ("\n" + format_compression(compression) if compression else "")
                        + ("\n" + format_golden(golden) if golden else "")
                        + "\n" + format_deployments(rows, deployments))}
    parents = sorted({o.artifact for o in R.outcomes})
    rep = registry.put_json(report, kind="report", name=f"{spec.name}/kpi-report", parents=parents, spec_hash=sh, seeds=seeds,
                            extra={"passed": all(r.passed for r in rows), "targets": spec.targets,
                                   "deployed": sorted(deployments)})
    from fabric.report import render_kpi_png, render_markdown

    png = registry.put(render_kpi_png(report["kpis"], spec.name, compression), kind="report", name=f"{spec.name}/kpis.png",
                       parents=[rep.id], spec_hash=sh, extra={"format": "png"})
    md = registry.put(render_markdown(report, png.id).encode(), kind="report", name=f"{spec.name}/report.md",
                      parents=[rep.id, png.id], spec_hash=sh, extra={"format": "markdown"})
    log(f"[report] markdown {md.id[:12]}, plot {png.id[:12]} (fabric registry cat ID --out FILE)")
    return RunSummary(spec_name=spec.name, spec_hash=sh, store=registry.url, stages=R.outcomes, kpis=rows,
                      report_id=rep.id, seconds=time.perf_counter() - t_start, neurobench=nb, compression=compression,
                      golden=golden, deployments=deployments, markdown_id=md.id, png_id=png.id)


def _model_bytes(model: LifMLP, **extra: Any) -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "n_in": model.fcs[0].in_features, "n_out": model.fcs[-1].out_features,
                "hidden": [fc.out_features for fc in model.fcs[:-1]], "beta": model.beta, "threshold": model.threshold,
                **extra}, buf)
    return buf.getvalue()


def _load_checkpoint(registry: Registry, model_id: str) -> dict[str, Any]:
    return torch.load(io.BytesIO(registry.get(model_id)), weights_only=True)


def _load_model(registry: Registry, model_id: str) -> LifMLP:
    """The exportable LIF network of a model artifact (baseline or any compressed variant)."""
    ck = _load_checkpoint(registry, model_id)
    m = LifMLP(ck["n_in"], list(ck["hidden"]), ck["n_out"], ck["beta"], ck["threshold"])
    m.load_state_dict(ck["state_dict"])
    return m.eval()


def _compress(registry: Registry, spec: Spec, model_id: str, enc_id: str, spikes: np.ndarray, labels: np.ndarray,
              train_mask: np.ndarray, test_mask: np.ndarray, progress: bool, log: Callable[[str], None]) -> ArtifactRecord:
    from fabric.model.compress import compress_variants, measure

    base = _load_model(registry, model_id)
    xt, yt = spikes[test_mask], labels[test_mask]
    rows = [{"variant": "baseline", "model_id": model_id, "params": {}} | measure(base, xt, yt, spec.eval_batch_size)]
    variants = compress_variants(base, spikes[train_mask], labels[train_mask], spec.compress, list(spec.targets),
                                 seed=spec.seed, batch_size=spec.train.batch_size, progress=progress, log=log)
    prev = model_id
    for v in variants:
        from fabric.model.compress import base_model

        m = base_model(v.model)
        rec = registry.put(_model_bytes(m, variant=v.name, state_bits=v.params.get("state_bits"),
                                        weight_bits=v.params.get("weight_bits")),
                           kind="model", name=f"{spec.name}/lif_mlp-{v.name}", parents=sorted({model_id, prev}),
                           spec_hash=spec.hash, seeds={"seed": spec.seed},
                           extra={"variant": v.name, "baseline": model_id, "params": v.params, "history": v.history})
        row = measure(v.model, xt, yt, spec.eval_batch_size, v.params.get("weight_bits"))
        rows.append({"variant": v.name, "model_id": rec.id, "params": v.params, "finetune": v.history} | row)
        log(f"[compress] {v.name}: accuracy {row['accuracy']:.3f} (baseline {rows[0]['accuracy']:.3f}), "
            f"{row['nonzero_weights']} non-zero weights, synops {row['synops']:.0f}")
        prev = rec.id
    want = spec.compress.deploy
    chosen = rows[-1] if want == "last" else next(r for r in rows if r["variant"] == want)
    out = {"variants": rows, "deploy": chosen["variant"], "deploy_model_id": chosen["model_id"],
           "note": "NeuroBench metrics per variant on the test split (float simulation; state variant with its "
                   "quantized membrane); devices re-quantize weights to their own precision at compile time"}
    return registry.put_json(out, kind="report", name=f"{spec.name}/compression",
                             parents=[r["model_id"] for r in rows] + [enc_id], spec_hash=spec.hash,
                             seeds={"seed": spec.seed}, extra={"variants": [r["variant"] for r in rows],
                                                               "deploy": chosen["variant"]})


def _golden(registry: Registry, program: Program, prog_id: str, enc_id: str, kind: str, x: np.ndarray,
            sh: str) -> ArtifactRecord:
    """Agreement of the device program with the kind's reference engine on a few test samples."""
    from fabric.kinds import capabilities, make_runtime

    ref = make_runtime(kind) if capabilities(kind).reference else None
    if ref is None:
        out = {"kind": kind, "status": "no reference", "summary": f"no golden reference for {kind}", "samples": 0}
    else:
        out = {"kind": kind, **ref.reference_check(program, x)}
    return registry.put_json(out, kind="report", name=f"{kind}-golden", parents=[prog_id, enc_id], spec_hash=sh,
                             device_id=kind, extra={"kind": kind, "status": out["status"]})


def _deploy(registry: Registry, spec: Spec, kind: str, prog_id: str, ev_id: str, model_id: str, nir_id: str,
            enc_meta: dict[str, Any], enc_id: str, n_in: int, n_out: int) -> ArtifactRecord:
    """The deployment record the Serve room consumes (fields fixed by issue #6). ``version`` is 1 + the
    deployments of this spec name and kind already in the store; the stage is cached, so a rerun of the
    same inputs returns the same record and version."""
    earlier = [r for r in registry.ls("deployment") if r.name == f"{spec.name}/{kind}"]
    dep = {"kind": kind, "program_id": prog_id, "model_id": model_id, "nir_id": nir_id, "encoding_id": enc_id,
           "encoder": {"name": enc_meta["encoder"], "timesteps": int(enc_meta["timesteps"]),
                       "params": dict(enc_meta["params"]), "seed": int(enc_meta["seed"])},
           "n_in": int(n_in), "n_out": int(n_out), "classes": list(enc_meta.get("classes", [])),
           "kpis": spec.kpis.model_dump(), "spec_name": spec.name, "spec_hash": spec.hash,
           "version": len(earlier) + 1}
    return registry.put_json(dep, kind="deployment", name=f"{spec.name}/{kind}", parents=[prog_id, ev_id],
                             spec_hash=spec.hash, device_id=kind, extra={"kind": kind, "version": dep["version"]})


def _compile(registry: Registry, pool: Any, graph: nir.NIRGraph, kind: str, nir_id: str, sh: str) -> ArtifactRecord:
    program = pool.compile(graph)
    return registry.put(program.to_bytes(), kind="program", name=f"{kind}-program", parents=[nir_id], spec_hash=sh,
                        device_id=kind, extra={"kind": kind, "fit": program.fit.to_dict()})


def _evaluate(registry: Registry, pool: Any, program: Program, prog_id: str, enc_id: str, kind: str,
              x: np.ndarray, y: np.ndarray, spec: Spec, progress: bool) -> ArtifactRecord:
    from tqdm.auto import tqdm

    bs = spec.eval_batch_size
    batches = [x[i:i + bs] for i in range(0, len(x), bs)]
    probe = [x[i:i + 1] for i in range(min(LATENCY_PROBE, len(x)))]
    with tqdm(total=len(batches) + len(probe), desc=f"evaluate {kind}", unit="batch", disable=not progress, leave=False) as bar:
        results = pool.run(program, batches, record_raster=True, progress=bar)
        singles = pool.run(program, probe, progress=bar)
    from fabric.model.early_exit import topk_cutoff

    preds = np.concatenate([r.predictions for r in results])
    # kinds without a time axis (akida runs one frame per sample) return no raster: no early exit there
    has_raster = all(r.raster is not None and np.ndim(r.raster) == 3 for r in results)
    ee = (topk_cutoff(np.concatenate([r.raster for r in results]), k=spec.early_exit.k, patience=spec.early_exit.patience)
          if has_raster else None)
    tel = [r.telemetry for r in results]
    n = len(x)
    dev_ms = [r.telemetry.device_time_s * 1e3 for r in singles]
    host_ms = [r.telemetry.host_latency_s * 1e3 for r in singles]
    spikes_total = sum(sum(t.spikes_per_layer.values()) for t in tel)
    row = KPIRow(
        kind=kind, status="ok", emulated=tel[0].emulated, accuracy=float((preds == y).mean()),
        latency_p50_ms=_percentile(dev_ms, 50), latency_p99_ms=_percentile(dev_ms, 99),
        host_p50_ms=_percentile(host_ms, 50), energy_mj=sum(t.energy_j for t in tel) / n * 1e3,
        spikes_per_inference=spikes_total / n, synops_per_inference=sum(t.synaptic_ops for t in tel) / n,
        footprint_kb=tel[0].footprint_bytes / 1024, sources=dict(tel[0].sources),
        early_exit_accuracy=None if ee is None else float((ee.predictions == y).mean()),
        early_exit_steps_saved=None if ee is None else ee.saved_fraction,
    )
    return registry.put_json(asdict(row), kind="report", name=f"{kind}-evaluation", parents=[prog_id, enc_id],
                             spec_hash=spec.hash, device_id=kind, extra={"kind": kind, "test_samples": n})


def _gates(spec: Spec, row: KPIRow, golden: dict[str, Any] | None = None) -> dict[str, bool]:
    k = spec.kpis
    if row.status != "ok":
        return {"fits": False}
    extra = {}
    if golden is not None and golden["status"] in ("bit-exact", "mismatch"):
        extra["golden"] = golden["status"] == "bit-exact"  # a reference that disagrees fails the kind
    checks = {
        "accuracy": (k.min_accuracy, row.accuracy, lambda lim, v: v >= lim),
        "latency_p50": (k.max_latency_p50_ms, row.latency_p50_ms, lambda lim, v: v <= lim),
        "latency_p99": (k.max_latency_p99_ms, row.latency_p99_ms, lambda lim, v: v <= lim),
        "energy": (k.max_energy_mj, row.energy_mj, lambda lim, v: v <= lim),
        "footprint": (k.max_footprint_kb, row.footprint_kb, lambda lim, v: v <= lim),
    }
    return {name: bool(ok(lim, v)) for name, (lim, v, ok) in checks.items() if lim is not None and v is not None} | extra


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
    parts = []
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
    return "\n".join(["golden equivalence (device program vs reference, test samples):"]
                     + [f"  {k}: {g['status']} - {g['summary']}" for k, g in golden.items()])


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


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_kpi_table(rows: list[KPIRow]) -> str:
    head = (f"{'kind':<10}{'mode':<10}{'accuracy':>9}{'lat p50 ms':>12}{'lat p99 ms':>12}{'host p50 ms':>12}"
            f"{'energy mJ':>12}{'spikes/inf':>11}{'synops/inf':>12}{'KB':>9}  gates")
    lines = [head, "-" * len(head)]
    for r in rows:
        if r.status != "ok":
            lines.append(f"{r.kind:<10}{'-':<10}  {r.status}: {r.reason}")
            continue
        gates = " ".join(f"{g}:{'PASS' if ok else 'FAIL'}" for g, ok in r.gates.items()) or "(none set)"
        lines.append(
            f"{r.kind:<10}{'emulated' if r.emulated else 'measured':<10}{_f(r.accuracy, '.3f'):>9}"
            f"{_f(r.latency_p50_ms, '.4f'):>12}{_f(r.latency_p99_ms, '.4f'):>12}{_f(r.host_p50_ms, '.3f'):>12}"
            f"{_f(r.energy_mj, '.5f'):>12}{_f(r.spikes_per_inference, '.1f'):>11}{_f(r.synops_per_inference, '.0f'):>12}"
            f"{_f(r.footprint_kb, '.1f'):>9}  {gates}")
    for r in rows:
        if r.early_exit_accuracy is not None:
            lines.append(f"early exit ({r.kind}, Top-K cutoff): {r.early_exit_steps_saved:.0%} of timesteps "
                         f"saved, accuracy {r.accuracy:.3f} -> {r.early_exit_accuracy:.3f}")
    lines.append("latency = device time per inference (modelled for emulated kinds, measured for cpu); "
                 "energy is modelled for every kind.")
    for r in rows:  # per-constant sources stay in the report artifact and `fabric devices --json`
        for what, src in sorted(r.sources.items()):
            if not what.startswith("const."):
                lines.append(f"  {r.kind} {what}: {src[:160]}")
    return "\n".join(lines)
