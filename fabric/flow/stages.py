"""The stage library: one public function per stage of the NMLOps job, each taking explicit inputs (a
registry, the spec, artifact ids / arrays, a device pool or runtime) and returning the stored
:class:`ArtifactRecord`.

The pipeline graph (:func:`fabric.flow.pipeline.run_pipeline`, which adds caching and resume), Tune
trials, ``fabric compare`` and drift all call these, so an artifact kind is produced by one piece of
code whoever asks for it. Where a caller has to act between computing and storing (a Tune trial
checks fit before storing the encoding, and compresses before storing the model), the stage is also
offered as its two halves (``encode_inputs`` + ``put_encoding``, ``put_model``, ``load_dataset`` +
``put_dataset``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import nir
import numpy as np

from fabric.data.datasets import Dataset
from fabric.data.encode import encode_with_meta
from fabric.flow.codecs import (
    checkpoint_from_bytes,
    dataset_from_bytes,
    model_from_bytes,
    model_to_bytes,
    nir_from_bytes,
    nir_to_bytes,
    pack_spikes,
)
from fabric.flow.datasource import DatasetSource, check_dataset, store_dataset
from fabric.flow.rows import KPIRow
from fabric.kpis import row_bands, row_from_telemetry
from fabric.model.snn import LifMLP, export_nir
from fabric.model.train import TrainResult, train_model
from fabric.model.user import (
    SequentialSNN,
    build_user_model,
    check_graph_sizes,
    export_sequential,
    is_user_checkpoint,
    load_factory,
    module_digest,
    read_nir_source,
    user_model_from_bytes,
    user_model_to_bytes,
)
from fabric.records import Program
from fabric.spec import Spec, SpecError
from fabric.store.registry import ArtifactRecord, Registry

__all__ = [
    "LATENCY_PROBE",
    "requirements",
    "check_dataset",
    "load_dataset",
    "put_dataset",
    "data",
    "encode_inputs",
    "put_encoding",
    "encode",
    "put_model",
    "train",
    "load_model",
    "ModelSource",
    "check_model",
    "check_user_model",
    "import_nir",
    "neurobench",
    "compress",
    "export",
    "compile",
    "evaluate",
    "golden",
    "deploy",
    "report",
]

LATENCY_PROBE = 32  # samples run one at a time for the latency distribution


def _seeds(spec: Spec) -> dict[str, int]:
    return {"seed": spec.seed}


# -- requirements ---------------------------------------------------------------------------------------
def requirements(registry: Registry, spec: Spec) -> ArtifactRecord:
    """The validated spec itself, so every run's lineage starts from what was asked."""
    return registry.put_json({"spec": spec.to_dict(), "spec_hash": spec.hash}, kind="report",
                             name=f"{spec.name}/requirements", spec_hash=spec.hash, seeds=_seeds(spec),
                             extra={"what": "validated spec"})


# -- data -----------------------------------------------------------------------------------------------
# check_dataset (re-exported from fabric.flow.datasource): resolve and validate the spec's dataset before
# any work; raises SpecError naming the field (dataset.version: ...) and stores nothing


def load_dataset(spec: Spec, registry: Registry | None = None, *,
                 source: DatasetSource | None = None) -> tuple[Dataset, np.ndarray]:
    """The spec's dataset and its train/val/test split (nothing stored): a built-in split with the
    spec's seed, a stored version with its own split, a path ingested and split like ``fabric data
    ingest`` does. ``registry`` resolves a ``dataset.version``; ``source``: an earlier check's result."""
    return (source or check_dataset(registry, spec)).load(spec)


def put_dataset(registry: Registry, spec: Spec, ds: Dataset, splits: np.ndarray, *,
                source: DatasetSource | None = None) -> ArtifactRecord:
    """Store a dataset with its split as the ``dataset`` artifact (parquet)."""
    return store_dataset(registry, spec, source or check_dataset(registry, spec), ds, splits)


def data(registry: Registry, spec: Spec, source: DatasetSource | None = None) -> ArtifactRecord:
    """Load the spec's dataset, split it, store it (a version named as is: that version's record)."""
    return store_dataset(registry, spec, source or check_dataset(registry, spec))


# -- encode ---------------------------------------------------------------------------------------------
def encode_inputs(spec: Spec, x: Any, classes: Sequence[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Spikes of ``x`` with the spec's encoder, and the metadata stored with them (every encoder
    parameter, defaults resolved, the input kind, the decoder, the classes)."""
    spikes, meta = encode_with_meta(spec.encoder.name, x, spec.encoder.timesteps, spec.seed, spec.encoder.params)
    return spikes, meta | {"n_classes": len(classes), "classes": list(classes)}


def put_encoding(registry: Registry, spec: Spec, spikes: np.ndarray, labels: np.ndarray, splits: np.ndarray,
                 meta: dict[str, Any], *, parents: list[str], name: str) -> ArtifactRecord:
    """Store spikes + labels + splits + encoder metadata as the ``encoding`` artifact."""
    return registry.put(pack_spikes(spikes, labels, splits, meta), kind="encoding", name=name, parents=parents,
                        spec_hash=spec.hash, seeds=_seeds(spec), extra=meta | {"shape": list(spikes.shape)})


def encode(registry: Registry, spec: Spec, data_id: str) -> ArtifactRecord:
    """Encode a stored dataset artifact with the spec's encoder."""
    ds, sp = dataset_from_bytes(registry.get(data_id))
    spikes, meta = encode_inputs(spec, ds.x, ds.classes)
    return put_encoding(registry, spec, spikes, ds.y, sp, meta, parents=[data_id],
                        name=f"{ds.name}/{spec.encoder.name}")


# -- train ----------------------------------------------------------------------------------------------
def put_model(registry: Registry, spec: Spec, model: LifMLP | SequentialSNN, res: TrainResult, *,
              parents: list[str], **extra: Any) -> ArtifactRecord:
    """Store a trained network as the ``model`` artifact, with its training record (``res``) and
    ``extra`` (e.g. ``variant`` for the pipeline, the trial's config for Tune). A user factory's model
    is stored as its factory reference + params + source digest + state dict."""
    if isinstance(model, SequentialSNN):
        return registry.put(user_model_to_bytes(model), kind="model", name=f"{spec.name}/user", parents=parents,
                            spec_hash=spec.hash, seeds=_seeds(spec),
                            extra={"history": res.history, "train_seconds": res.seconds, "device": res.device,
                                   "factory": model.factory, "params": model.params, **extra})
    return registry.put(model_to_bytes(model), kind="model", name=f"{spec.name}/lif_mlp", parents=parents,
                        spec_hash=spec.hash, seeds=_seeds(spec),
                        extra={"history": res.history, "train_seconds": res.seconds, "device": res.device,
                               "template": spec.model.template, **extra})


def train(registry: Registry, spec: Spec, enc_id: str, x: np.ndarray, y: np.ndarray, n_out: int, *,
          progress: bool = True, log: Callable[[str], None] = print, checkpoint_key: str | None = None,
          resume: bool = True) -> ArtifactRecord:
    """Train the baseline model on ``x``/``y`` (the encoding's train split): through Ray Train when Ray
    is up (``train.workers``, a GPU when there is one; checkpoint artifacts every
    ``train.checkpoint_every`` epochs under ``checkpoint_key``, default the spec hash + encoding, and
    resuming from the latest one when ``resume``), else in this process."""
    import ray

    # Ray Train workers open the registry themselves; a remote (s3://...) store's credentials do not reach
    # them yet, so remote stores train in this process (known gap, issue #19 item 4)
    if ray.is_initialized() and "://" not in str(registry.store.url):
        from fabric.model.distributed import checkpoint_key as make_key
        from fabric.model.distributed import train_with_ray

        key = checkpoint_key or make_key(spec.hash, enc_id)
        res = train_with_ray(spec, x, y, n_out, registry=registry, key=key, parents=[enc_id], progress=progress,
                             resume=resume)
        if res.start_epoch:
            log(f"[train] resumed from the checkpoint after epoch {res.start_epoch}")
    else:
        res = train_model(spec, x, y, n_out, progress=progress)
    last = res.history[-1]
    log(f"[train] {len(res.history)} epochs in {res.seconds:.1f}s on {res.device}: loss {last['loss']:.3f}, "
        f"train accuracy {last['train_accuracy']:.3f}")
    return put_model(registry, spec, res.model, res, parents=[enc_id], variant="baseline")


def load_model(registry: Registry, model_id: str) -> LifMLP | SequentialSNN:
    """The exportable network of a model artifact (baseline or any compressed variant; a user model
    is rebuilt with its factory)."""
    data = registry.get(model_id)
    if is_user_checkpoint(checkpoint_from_bytes(data)):
        return user_model_from_bytes(data)
    return model_from_bytes(data)


# -- the model's source (checked before anything is stored) --------------------------------------------
@dataclass(frozen=True)
class ModelSource:
    """What :func:`check_model` found: the bytes of a ``model.nir`` graph, or the sha256 of a
    ``model.module`` factory's source file (part of the train key); both None for the template."""

    nir_bytes: bytes | None = None
    digest: str | None = None
    zoo: Any = None  # the fabric.flow.zoo.ZooEntry of a model.zoo spec


def check_model(registry: Registry | None, spec: Spec) -> ModelSource:
    """Read ``model.nir`` (nir.read + type inference), import ``model.module``'s factory or resolve
    ``model.zoo``'s entry, before any work: a failure is one :class:`fabric.spec.SpecError` line
    naming the field, nothing stored. A zoo entry holding an imported NIR graph comes back as its bytes."""
    if spec.model.zoo is not None:
        from fabric.flow.zoo import ZooError, resolve

        if registry is None:
            raise SpecError([("model.zoo", "a zoo entry is resolved in a registry; none given")])
        try:
            entry = resolve(registry, spec.model.zoo, spec.model.version)
        except ZooError as exc:
            raise SpecError([("model.zoo", str(exc))]) from None
        if entry.model_kind == "nir":
            if spec.train.epochs:
                raise SpecError([("train.epochs", f"zoo entry {entry.name} v{entry.version} is an imported NIR "
                                                  "graph: it cannot be fine-tuned; set train.epochs: 0")])
            return ModelSource(nir_bytes=registry.get(entry.model_id), zoo=entry)
        return ModelSource(zoo=entry)
    if spec.model.nir is not None:
        return ModelSource(nir_bytes=read_nir_source(spec.model.nir, registry))
    if spec.model.module is not None:
        load_factory(spec.model.module)
        return ModelSource(digest=module_digest(spec.model.module))
    return ModelSource()


def check_user_model(spec: Spec, n_in: int, n_out: int) -> None:
    """Build the user factory's network once for the encoded sizes (its layers, input and output size
    checked) in this process, so a bad model is one line naming ``model.module`` before training."""
    build_user_model(spec.model.module, spec.model.params, n_in, n_out, spec.seed)


# -- import (model.nir: a pre-trained graph instead of train/neurobench/compress/export) ----------------
def import_nir(registry: Registry, spec: Spec, data: bytes, n_in: int, n_out: int) -> ArtifactRecord:
    """Store a pre-trained NIR graph (``data``: bytes read by :func:`fabric.model.user.read_nir_source`)
    as the ``nir`` artifact, once its Input/Output sizes match the encoded features and class count."""
    graph = nir_from_bytes(data)
    check_graph_sizes(graph, n_in, n_out)
    return registry.put(data, kind="nir", name=f"{spec.name}.nir", spec_hash=spec.hash, seeds=_seeds(spec),
                        extra={"nodes": list(graph.nodes), "format": "nir-hdf5", "source": spec.model.nir,
                               "producer": (graph.metadata or {}).get("producer", "external")})


# -- neurobench -----------------------------------------------------------------------------------------
def neurobench(registry: Registry, spec: Spec, model_id: str, enc_id: str, x: np.ndarray,
               y: np.ndarray) -> ArtifactRecord:
    """NeuroBench static + workload metrics of a model on ``x``/``y`` (the test split)."""
    from fabric.model.neurobench import neurobench_metrics

    model = load_model(registry, model_id)
    res = neurobench_metrics(model, x, y, spec.eval_batch_size)
    return registry.put_json(res, kind="report", name=f"{spec.name}/neurobench", parents=[model_id, enc_id],
                             spec_hash=spec.hash, seeds=_seeds(spec), extra={"metrics": sorted(res)})


# -- compress -------------------------------------------------------------------------------------------
def compress(registry: Registry, spec: Spec, model_id: str, enc_id: str, spikes: np.ndarray, labels: np.ndarray,
             train_mask: np.ndarray, test_mask: np.ndarray, *, progress: bool = True,
             log: Callable[[str], None] = print) -> ArtifactRecord:
    """Each ``spec.compress`` variant stored as a model artifact and measured against the baseline;
    returns the compression report (which names the variant to deploy)."""
    from fabric.model.compress import base_model, compress_variants, measure

    base = load_model(registry, model_id)
    xt, yt = spikes[test_mask], labels[test_mask]
    rows = [{"variant": "baseline", "model_id": model_id, "params": {}} | measure(base, xt, yt, spec.eval_batch_size)]
    variants = compress_variants(base, spikes[train_mask], labels[train_mask], spec.compress, list(spec.targets),
                                 seed=spec.seed, batch_size=spec.train.batch_size, progress=progress, log=log)
    prev = model_id
    for v in variants:
        m = base_model(v.model)
        rec = registry.put(model_to_bytes(m, variant=v.name, state_bits=v.params.get("state_bits"),
                                          weight_bits=v.params.get("weight_bits")),
                           kind="model", name=f"{spec.name}/lif_mlp-{v.name}", parents=sorted({model_id, prev}),
                           spec_hash=spec.hash, seeds=_seeds(spec),
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
                             seeds=_seeds(spec), extra={"variants": [r["variant"] for r in rows],
                                                        "deploy": chosen["variant"]})


# -- export ---------------------------------------------------------------------------------------------
def export(registry: Registry, spec: Spec, model_id: str, *,
           model: LifMLP | SequentialSNN | None = None) -> ArtifactRecord:
    """Export a model artifact to NIR, validated by reading it back with nir's type checks.

    ``model``: the network of ``model_id`` when the caller still holds it (saves reloading it)."""
    net = load_model(registry, model_id) if model is None else model
    meta = {"timesteps": spec.encoder.timesteps, "model_artifact": model_id}
    graph = export_sequential(net, metadata=meta) if isinstance(net, SequentialSNN) else export_nir(net, metadata=meta)
    blob = nir_to_bytes(graph)
    nir_from_bytes(blob)  # must pass nir.read + type inference
    return registry.put(blob, kind="nir", name=f"{spec.name}.nir", parents=[model_id], spec_hash=spec.hash,
                        seeds=_seeds(spec), extra={"nodes": list(graph.nodes), "format": "nir-hdf5"})


# -- compile --------------------------------------------------------------------------------------------
def compile(registry: Registry, compiler: Any, graph: nir.NIRGraph, kind: str, nir_id: str, spec_hash: str,
            options: dict[str, Any] | None = None) -> ArtifactRecord:
    """Compile ``graph`` for ``kind`` and store the program.

    ``compiler``: anything with ``compile(graph, options)``: a device pool (compiles on a board actor)
    or a runtime (compiles in this process). Raises :class:`fabric.records.FitError` if it does not fit.
    """
    program = compiler.compile(graph, options)
    return registry.put(program.to_bytes(), kind="program", name=f"{kind}-program", parents=[nir_id],
                        spec_hash=spec_hash, device_id=kind, extra={"kind": kind, "fit": program.fit.to_dict()})


# -- evaluate -------------------------------------------------------------------------------------------
def evaluate(registry: Registry, pool: Any, program: Program, prog_id: str, enc_id: str, kind: str,
             x: np.ndarray, y: np.ndarray, spec: Spec, progress: bool = False) -> ArtifactRecord:
    """Run the program on the pool's boards: batched for accuracy, energy, spikes and early exit, then
    :data:`LATENCY_PROBE` samples one at a time for the latency distribution; stores the KPI row."""
    from tqdm.auto import tqdm

    from fabric.model.early_exit import topk_cutoff

    bs = spec.eval_batch_size
    batches = [x[i:i + bs] for i in range(0, len(x), bs)]
    probe = [x[i:i + 1] for i in range(min(LATENCY_PROBE, len(x)))]
    with tqdm(total=len(batches) + len(probe), desc=f"evaluate {kind}", unit="batch", disable=not progress,
              leave=False) as bar:
        results = pool.run(program, batches, record_raster=True, progress=bar)
        singles = pool.run(program, probe, progress=bar)
    preds = np.concatenate([r.predictions for r in results])
    # kinds without a time axis (akida runs one frame per sample) return no raster: no early exit there
    has_raster = all(r.raster is not None and np.ndim(r.raster) == 3 for r in results)
    ee = (topk_cutoff(np.concatenate([r.raster for r in results]), k=spec.early_exit.k, patience=spec.early_exit.patience)
          if has_raster else None)
    n = len(x)
    row = KPIRow(
        kind=kind, status="ok",
        **row_from_telemetry([r.telemetry for r in results], [r.telemetry for r in singles], preds, y),
        **row_bands([r.telemetry for r in results], [r.telemetry for r in singles]),
        early_exit_accuracy=None if ee is None else float((ee.predictions == y).mean()),
        early_exit_steps_saved=None if ee is None else ee.saved_fraction,
    )
    return registry.put_json(asdict(row), kind="report", name=f"{kind}-evaluation", parents=[prog_id, enc_id],
                             spec_hash=spec.hash, device_id=kind, extra={"kind": kind, "test_samples": n})


# -- golden ---------------------------------------------------------------------------------------------
def golden(registry: Registry, program: Program, prog_id: str, enc_id: str, kind: str, x: np.ndarray,
           spec_hash: str) -> ArtifactRecord:
    """Agreement of the device program with the kind's reference engine on a few test samples."""
    from fabric.kinds import capabilities, make_runtime

    ref = make_runtime(kind) if capabilities(kind).reference else None
    if ref is None:
        out = {"kind": kind, "status": "no reference", "summary": f"no golden reference for {kind}", "samples": 0}
    else:
        out = {"kind": kind, **ref.reference_check(program, x)}
    return registry.put_json(out, kind="report", name=f"{kind}-golden", parents=[prog_id, enc_id],
                             spec_hash=spec_hash, device_id=kind, extra={"kind": kind, "status": out["status"]})


# -- deploy ---------------------------------------------------------------------------------------------
def deploy(registry: Registry, spec: Spec, kind: str, prog_id: str, ev_id: str, model_id: str, nir_id: str,
           enc_meta: dict[str, Any], enc_id: str, n_in: int, n_out: int) -> ArtifactRecord:
    """The deployment record the Serve room consumes (fields fixed by issue #6). ``version`` is 1 + the
    deployments of this spec name and kind already in the store; the pipeline caches the stage, so a
    rerun of the same inputs returns the same record and version."""
    earlier = [r for r in registry.ls("deployment") if r.name == f"{spec.name}/{kind}"]
    dep = {"kind": kind, "program_id": prog_id, "model_id": model_id, "nir_id": nir_id, "encoding_id": enc_id,
           "encoder": {"name": enc_meta["encoder"], "timesteps": int(enc_meta["timesteps"]),
                       "params": dict(enc_meta["params"]), "seed": int(enc_meta["seed"])},
           "n_in": int(n_in), "n_out": int(n_out), "classes": list(enc_meta.get("classes", [])),
           "kpis": spec.kpis.model_dump(), "spec_name": spec.name, "spec_hash": spec.hash,
           "version": len(earlier) + 1}
    return registry.put_json(dep, kind="deployment", name=f"{spec.name}/{kind}", parents=[prog_id, ev_id],
                             spec_hash=spec.hash, device_id=kind, extra={"kind": kind, "version": dep["version"]})


# -- report ---------------------------------------------------------------------------------------------
def report(registry: Registry, spec: Spec, doc: dict[str, Any],
           parents: list[str]) -> tuple[ArtifactRecord, ArtifactRecord, ArtifactRecord]:
    """Store a run's KPI report ``doc`` (JSON), its KPI plot (PNG) and its Markdown rendering.

    ``doc`` needs ``kpis`` (rows with ``passed``), ``compression`` and ``deployments``, as the pipeline
    writes it. Returns (report, png, markdown) records."""
    from fabric.report import render_kpi_png, render_markdown

    sh = spec.hash
    rep = registry.put_json(doc, kind="report", name=f"{spec.name}/kpi-report", parents=parents, spec_hash=sh,
                            seeds=_seeds(spec), extra={"passed": all(r["passed"] for r in doc["kpis"]),
                                                       "targets": spec.targets, "deployed": sorted(doc["deployments"])})
    png = registry.put(render_kpi_png(doc["kpis"], spec.name, doc["compression"]), kind="report",
                       name=f"{spec.name}/kpis.png", parents=[rep.id], spec_hash=sh, extra={"format": "png"})
    md = registry.put(render_markdown(doc, png.id).encode(), kind="report", name=f"{spec.name}/report.md",
                      parents=[rep.id, png.id], spec_hash=sh, extra={"format": "markdown"})
    return rep, png, md
