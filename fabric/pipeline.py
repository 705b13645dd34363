"""The NMLOps job as a stage graph: data -> encode -> train -> export (NIR) -> compile[kind] ->
evaluate[kind] on device actors -> report (KPI table + gates).

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

from fabric.data import from_parquet_bytes, load_builtin, split, to_parquet_bytes
from fabric.encode import encode
from fabric.records import FitError, Program
from fabric.registry import ArtifactRecord, Registry
from fabric.snn import LifMLP, export_nir
from fabric.spec import Spec
from fabric.train import train_model, train_on_cluster

__all__ = ["run_pipeline", "RunSummary", "format_neurobench", "StageOutcome", "KPIRow", "format_kpi_table", "nir_to_bytes", "nir_from_bytes"]

# bump a stage's version when its code changes meaning, so stale cache entries are not reused
STAGE_VERSIONS = {"data": 1, "encode": 1, "train": 1, "neurobench": 1, "export": 1, "compile": 1, "evaluate": 2}
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
    from actors.pool import DevicePool

    t_start = time.perf_counter()
    R = _Runner(spec, registry, progress, use_cache, log)
    sh, seeds = spec.hash, {"seed": spec.seed}

    # 1. data
    def build_data() -> ArtifactRecord:
        ds = load_builtin(spec.dataset.name, spec.dataset.limit)
        sp = split(len(ds.y), spec.dataset.test_fraction, spec.dataset.val_fraction, spec.seed)
        return registry.put(to_parquet_bytes(ds, sp), kind="dataset", name=spec.dataset.name, spec_hash=sh, seeds=seeds,
                            extra={"samples": len(ds.y), "shape": list(ds.x.shape[1:]), "classes": ds.classes,
                                   "source": ds.source, "format": "parquet"})

    data_rec = R.stage("data", [spec.dataset.model_dump(), spec.seed], build_data)

    # 2. encode
    def build_encoding() -> ArtifactRecord:
        ds, sp = from_parquet_bytes(registry.get(data_rec.id))
        spikes = encode(spec.encoder.name, ds.x, spec.encoder.timesteps, spec.seed, spec.encoder.params)
        meta = {"encoder": spec.encoder.name, "timesteps": spec.encoder.timesteps, "params": spec.encoder.params,
                "seed": spec.seed, "n_classes": len(ds.classes)}
        return registry.put(_pack_spikes(spikes, ds.y, sp, meta), kind="encoding", name=f"{ds.name}/{spec.encoder.name}",
                            parents=[data_rec.id], spec_hash=sh, seeds=seeds, extra=meta | {"shape": list(spikes.shape)})

    enc_rec = R.stage("encode", [data_rec.id, spec.encoder.model_dump(), spec.seed], build_encoding)
    spikes, labels, splits, enc_meta = _unpack_spikes(registry.get(enc_rec.id))
    n_out = int(enc_meta["n_classes"])
    train_mask, test_mask = splits == "train", splits == "test"

    # 3. train
    def build_model() -> ArtifactRecord:
        import ray

        trainer = train_on_cluster if ray.is_initialized() else train_model
        res = trainer(spec, spikes[train_mask], labels[train_mask], n_out, progress=progress)
        buf = io.BytesIO()
        torch.save({"state_dict": res.model.state_dict(), "n_in": spikes.shape[2], "n_out": n_out,
                    "hidden": list(spec.model.hidden), "beta": spec.model.beta, "threshold": spec.model.threshold}, buf)
        last = res.history[-1]
        log(f"[train] {len(res.history)} epochs in {res.seconds:.1f}s on {res.device}: loss {last['loss']:.3f}, "
            f"train accuracy {last['train_accuracy']:.3f}")
        return registry.put(buf.getvalue(), kind="model", name=f"{spec.name}/lif_mlp", parents=[enc_rec.id], spec_hash=sh,
                            seeds=seeds, extra={"history": res.history, "train_seconds": res.seconds, "device": res.device,
                                                "template": spec.model.template})

    model_rec = R.stage("train", [enc_rec.id, spec.model.model_dump(), spec.train.model_dump(), spec.seed], build_model)

    def load_model() -> LifMLP:
        ck = torch.load(io.BytesIO(registry.get(model_rec.id)), weights_only=True)
        m = LifMLP(ck["n_in"], ck["hidden"], ck["n_out"], ck["beta"], ck["threshold"])
        m.load_state_dict(ck["state_dict"])
        return m.eval()

    # 4. NeuroBench static + workload metrics of the trained model on the test split
    def build_neurobench() -> ArtifactRecord:
        from fabric.evaluate import neurobench_metrics

        res = neurobench_metrics(load_model(), spikes[test_mask], labels[test_mask], spec.eval_batch_size)
        return registry.put_json(res, kind="report", name=f"{spec.name}/neurobench", parents=[model_rec.id, enc_rec.id],
                                 spec_hash=sh, seeds=seeds, extra={"metrics": sorted(res)})

    nb_rec = R.stage("neurobench", [model_rec.id, enc_rec.id], build_neurobench)
    nb = registry.get_json(nb_rec.id)

    # 4. export to NIR (validated by reading it back with nir's type checks)
    def build_nir() -> ArtifactRecord:
        graph = export_nir(load_model(), metadata={"timesteps": spec.encoder.timesteps, "model_artifact": model_rec.id})
        data = nir_to_bytes(graph)
        nir_from_bytes(data)  # must pass nir.read + type inference
        return registry.put(data, kind="nir", name=f"{spec.name}.nir", parents=[model_rec.id], spec_hash=sh, seeds=seeds,
                            extra={"nodes": list(graph.nodes), "format": "nir-hdf5"})

    nir_rec = R.stage("export", [model_rec.id], build_nir)
    graph = nir_from_bytes(registry.get(nir_rec.id))

    # 5-6. per kind: compile, then evaluate on the device actors
    rows: list[KPIRow] = []
    for kind in spec.targets:
        pool = DevicePool(kind)
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

    for row in rows:
        row.gates = _gates(spec, row)
    report = {"spec": spec.to_dict(), "spec_hash": sh, "kpis": [asdict(r) | {"passed": r.passed} for r in rows],
              "stages": [asdict(o) for o in R.outcomes], "neurobench": nb,
              "table": format_kpi_table(rows) + "\n" + format_neurobench(nb)}
    parents = sorted({o.artifact for o in R.outcomes})
    rep = registry.put_json(report, kind="report", name=f"{spec.name}/kpi-report", parents=parents, spec_hash=sh, seeds=seeds,
                            extra={"passed": all(r.passed for r in rows), "targets": spec.targets})
    from fabric.report import render_kpi_png, render_markdown

    png = registry.put(render_kpi_png(report["kpis"], spec.name), kind="report", name=f"{spec.name}/kpis.png",
                       parents=[rep.id], spec_hash=sh, extra={"format": "png"})
    md = registry.put(render_markdown(report, png.id).encode(), kind="report", name=f"{spec.name}/report.md",
                      parents=[rep.id, png.id], spec_hash=sh, extra={"format": "markdown"})
    log(f"[report] markdown {md.id[:12]}, plot {png.id[:12]} (fabric registry cat ID --out FILE)")
    return RunSummary(spec_name=spec.name, spec_hash=sh, store=registry.url, stages=R.outcomes, kpis=rows,
                      report_id=rep.id, seconds=time.perf_counter() - t_start, neurobench=nb)


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
    from fabric.early_exit import topk_cutoff

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


def _gates(spec: Spec, row: KPIRow) -> dict[str, bool]:
    k = spec.kpis
    if row.status != "ok":
        return {"fits": False}
    checks = {
        "accuracy": (k.min_accuracy, row.accuracy, lambda lim, v: v >= lim),
        "latency_p50": (k.max_latency_p50_ms, row.latency_p50_ms, lambda lim, v: v <= lim),
        "latency_p99": (k.max_latency_p99_ms, row.latency_p99_ms, lambda lim, v: v <= lim),
        "energy": (k.max_energy_mj, row.energy_mj, lambda lim, v: v <= lim),
        "footprint": (k.max_footprint_kb, row.footprint_kb, lambda lim, v: v <= lim),
    }
    return {name: bool(ok(lim, v)) for name, (lim, v, ok) in checks.items() if lim is not None and v is not None}


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
