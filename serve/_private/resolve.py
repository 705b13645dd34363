"""From a registry id to everything a server needs: program, encoder, shapes, classes and KPI gates.

Accepts a ``deployment`` artifact (JSON written by the pipeline) or walks the lineage of a
``program`` (program -> nir -> model -> encoding -> dataset); a ``model`` or ``nir`` id is accepted
too when ``kind`` names which compiled program to serve.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from fabric.store.registry import ArtifactRecord, Registry

__all__ = ["ModelInfo", "ResolveError", "resolve_model"]


class ResolveError(ValueError):
    """The id cannot be served: the message says which link of the lineage is missing or wrong."""


@dataclass(kw_only=True)
class ModelInfo:
    """What one served model version is: ids of its artifacts and how its inputs are encoded."""

    program_id: str
    kind: str
    model_id: str | None
    nir_id: str | None
    encoding_id: str | None
    encoder: dict[str, Any]  # {"name", "timesteps", "params", "seed"}
    n_in: int
    n_out: int
    classes: list[Any]
    input_shape: list[int] | None  # raw sample shape the encoder takes (None: spikes only)
    kpis: dict[str, Any] = field(default_factory=dict)
    spec_name: str | None = None
    spec_hash: str | None = None
    deployment_id: str | None = None
    serve: dict[str, Any] = field(default_factory=dict)  # the spec's serve section (serve._private.policy)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelInfo:
        return cls(**d)


def _parent(reg: Registry, rec: ArtifactRecord, kind: str) -> ArtifactRecord | None:
    for p in rec.parents:
        r = reg.record(p)
        if r.kind == kind:
            return r
    return None


def _spec_of(reg: Registry, spec_hash: str | None) -> dict[str, Any]:
    """The spec that built the model, from its stored KPI report (newest first); {} when none."""
    if not spec_hash:
        return {}
    reports = [r for r in reg.ls(kind="report") if r.spec_hash == spec_hash and r.name.endswith("/kpi-report")]
    for r in sorted(reports, key=lambda r: r.created, reverse=True):
        return reg.get_json(r.id).get("spec", {}) or {}
    return {}


def _spec_kpis(reg: Registry, spec_hash: str | None) -> tuple[dict[str, Any], str | None]:
    """KPI thresholds of the spec that built the model, from its stored KPI report (newest first)."""
    spec = _spec_of(reg, spec_hash)
    if not spec:
        return {}, None
    return {k: v for k, v in (spec.get("kpis") or {}).items() if v is not None}, spec.get("name")


def _find_program(reg: Registry, rec: ArtifactRecord, kind: str | None) -> ArtifactRecord:
    if kind is None:
        raise ResolveError(f"{rec.kind} artifact {rec.id[:12]} has one program per device kind: give --kind")
    nir_ids = {rec.id} if rec.kind == "nir" else {r.id for r in reg.ls(kind="nir") if rec.id in r.parents}
    progs = [r for r in reg.ls(kind="program") if set(r.parents) & nir_ids and (r.extra.get("kind") or r.device_id) == kind]
    if not progs:
        raise ResolveError(f"no {kind!r} program compiled from {rec.kind} {rec.id[:12]}; run the pipeline with "
                           f"targets including {kind!r}")
    return progs[0]


def _from_deployment(reg: Registry, rec: ArtifactRecord) -> ModelInfo:
    d = reg.get_json(rec.id)
    missing = [k for k in ("kind", "program_id", "encoder", "n_in", "n_out") if k not in d]
    if missing:
        raise ResolveError(f"deployment {rec.id[:12]} lacks field(s) {missing}")
    enc = d["encoder"]
    input_shape = None
    if d.get("encoding_id"):
        data = _parent(reg, reg.record(d["encoding_id"]), "dataset")
        input_shape = list(data.extra.get("shape", [])) if data is not None else None
    return ModelInfo(program_id=reg.resolve(d["program_id"]), kind=d["kind"], model_id=d.get("model_id"),
                     nir_id=d.get("nir_id"), encoding_id=d.get("encoding_id"),
                     encoder={"name": enc["name"], "timesteps": int(enc["timesteps"]), "params": enc.get("params") or {},
                              "seed": int(enc.get("seed", 0))},
                     n_in=int(d["n_in"]), n_out=int(d["n_out"]), classes=list(d.get("classes") or range(int(d["n_out"]))),
                     input_shape=input_shape, kpis={k: v for k, v in (d.get("kpis") or {}).items() if v is not None},
                     spec_name=d.get("spec_name"), spec_hash=d.get("spec_hash"), deployment_id=rec.id,
                     serve=dict(d.get("serve") or _spec_of(reg, d.get("spec_hash")).get("serve") or {}))


def resolve_model(registry: Registry, ref: str, kind: str | None = None) -> ModelInfo:
    """Resolve ``ref`` (deployment, program, or model/nir with ``kind``) to a :class:`ModelInfo`.

    Every record read is signature-checked by the registry; a broken link raises :class:`ResolveError`.
    """
    rec = registry.record(ref)
    if rec.kind == "deployment":
        info = _from_deployment(registry, rec)
    else:
        if rec.kind in ("model", "nir"):
            rec = _find_program(registry, rec, kind)
        if rec.kind != "program":
            raise ResolveError(f"artifact {rec.id[:12]} is a {rec.kind!r}; serve takes a deployment, program, model "
                               "or nir id")
        nir_rec = _parent(registry, rec, "nir")
        model_rec = _parent(registry, nir_rec, "model") if nir_rec else None
        enc_rec = _parent(registry, model_rec, "encoding") if model_rec else None
        if enc_rec is None:
            raise ResolveError(f"program {rec.id[:12]}: lineage program -> nir -> model -> encoding is incomplete")
        e = enc_rec.extra
        shape = e.get("shape") or [0, 0, 0]
        data_rec = _parent(registry, enc_rec, "dataset")
        classes = list((data_rec.extra.get("classes") if data_rec else None) or range(int(e["n_classes"])))
        kpis, spec_name = _spec_kpis(registry, rec.spec_hash)
        info = ModelInfo(program_id=rec.id, kind=str(rec.extra.get("kind") or rec.device_id), model_id=model_rec.id,
                         nir_id=nir_rec.id, encoding_id=enc_rec.id,
                         encoder={"name": e["encoder"], "timesteps": int(e["timesteps"]), "params": e.get("params") or {},
                                  "seed": int(e.get("seed", 0))},
                         n_in=int(shape[2]), n_out=int(e["n_classes"]), classes=classes,
                         input_shape=list(data_rec.extra.get("shape", [])) if data_rec else None,
                         kpis=kpis, spec_name=spec_name, spec_hash=rec.spec_hash,
                         serve=dict(_spec_of(registry, rec.spec_hash).get("serve") or {}))
    if kind is not None and info.kind != kind:
        raise ResolveError(f"artifact {ref} is a {info.kind!r} program, not {kind!r}")
    return info
