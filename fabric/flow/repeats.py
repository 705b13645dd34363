"""Repeated trials (issue #19 item 2): the run's model re-trained and re-measured with more seeds.

Why: one seed gives one point estimate; a HAR accuracy over 20 test recordings moves in 0.05 steps,
so a gate at 0.85 needs to know the spread. Repeat ``i`` (``i = 1 .. n-1``) is the run's own chain of
stages (encode -> train -> compress -> export -> compile -> evaluate, from :mod:`fabric.flow.stages`,
through the pipeline's cached runner) with seed :func:`repeat_seed` ``(spec.seed, i)``; repeat 0 is the
run itself. The data split stays the run's, so every seed is measured on the same test samples: the
spread is that of initialisation, batch order and encoder randomness. Golden checks and deployment
are not repeated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fabric.flow import stages
from fabric.flow.codecs import nir_from_bytes, program_from_bytes, unpack_spikes
from fabric.flow.rows import KPIRow
from fabric.kpis import METRICS, repeat_stats
from fabric.records import FitError
from fabric.spec import MAX_SEED, RepeatsSpec, Spec
from fabric.store.registry import ArtifactRecord, Registry

__all__ = ["repeat_seed", "repeat_spec", "measure_repeats", "stats_by_kind"]

Stage = Callable[[str, list[Any], Callable[[], ArtifactRecord]], ArtifactRecord]


def repeat_seed(seed: int, i: int) -> int:
    """The seed of repeat ``i``: ``seed + i`` (mod 2**32); repeat 0 is the spec's own seed, so the
    first repeat is the plain run and a spec with seed s + 1 shares repeat 1's cached stages."""
    return (seed + i) % (MAX_SEED + 1)


def repeat_spec(spec: Spec, i: int) -> Spec:
    """``spec`` as repeat ``i`` trains it: its seed replaced, no repeats of its own."""
    return spec.model_copy(update={"seed": repeat_seed(spec.seed, i), "repeats": RepeatsSpec()})


def stats_by_kind(values: dict[str, dict[str, list[float]]], confidence: float) -> dict[str, dict[str, Any]]:
    """kind -> row field -> :func:`fabric.kpis.repeat_stats` plus the ``values`` themselves."""
    return {kind: {f: repeat_stats(v, confidence) | {"values": [float(x) for x in v]} for f, v in per.items() if v}
            for kind, per in values.items()}


def _one_seed(stage: Stage, registry: Registry, spec: Spec, i: int, data_id: str, nir_id: str | None,
              module_digest: str | None, kinds: Sequence[str], *, progress: bool,
              log: Callable[[str], None]) -> dict[str, KPIRow | str]:
    """Repeat ``i``'s KPI row per kind (or the reason it has none)."""
    from fabric.kinds import code_digest, device_pool

    si = repeat_spec(spec, i)
    tag = f"#{i}"
    enc = stage(f"encode[{tag}]", [data_id, si.encoder.model_dump(), si.seed],
                lambda: stages.encode(registry, si, data_id))
    spikes, labels, splits, meta = unpack_spikes(registry.get(enc.id))
    train_mask, test_mask = splits == "train", splits == "test"
    n_out = int(meta["n_classes"])
    if nir_id is None:  # trained here: the run's train key with this seed
        key: list[Any] = [enc.id, si.model.model_dump(), si.train.model_dump(), si.seed]
        if module_digest is not None:
            key.append(module_digest)
        model = stage(f"train[{tag}]", key, lambda: stages.train(
            registry, si, enc.id, spikes[train_mask], labels[train_mask], n_out, progress=progress, log=log))
        model_id = model.id
        c = si.compress
        if any(v is not None for v in (c.prune, c.structured, c.qat_bits, c.state_bits)):
            comp = stage(f"compress[{tag}]", [model.id, enc.id, c.model_dump(), si.targets, si.seed,
                                              si.train.batch_size, si.eval_batch_size],
                         lambda: stages.compress(registry, si, model.id, enc.id, spikes, labels, train_mask,
                                                 test_mask, progress=progress, log=log))
            model_id = registry.get_json(comp.id)["deploy_model_id"]
        nir_id = stage(f"export[{tag}]", [model_id], lambda: stages.export(registry, si, model_id)).id
    graph = nir_from_bytes(registry.get(nir_id))
    out: dict[str, KPIRow | str] = {}
    for kind in kinds:
        pool = device_pool(kind)
        try:
            prog = stage(f"compile[{kind}{tag}]", [nir_id, kind, code_digest(kind)],
                         lambda pool=pool, kind=kind: stages.compile(registry, pool, graph, kind, nir_id, si.hash))
        except FitError as exc:
            out[kind] = f"seed {si.seed} does not fit: {exc}"
            continue
        program = program_from_bytes(registry.get(prog.id))
        ev = stage(f"evaluate[{kind}{tag}]", [prog.id, enc.id, si.early_exit.model_dump(), code_digest(kind)],
                   lambda pool=pool, program=program, prog=prog, kind=kind: stages.evaluate(
                       registry, pool, program, prog.id, enc.id, kind, spikes[test_mask], labels[test_mask], si,
                       progress))
        out[kind] = KPIRow(**registry.get_json(ev.id))
    return out


def measure_repeats(stage: Stage, registry: Registry, spec: Spec, data_id: str, rows: Sequence[KPIRow], *,
                    nir_id: str | None = None, module_digest: str | None = None, parents: Sequence[str] = (),
                    progress: bool = False, log: Callable[[str], None] = print) -> ArtifactRecord:
    """Repeats 1 .. n-1 of the run whose repeat-0 rows are ``rows``; stores the signed ``repeats``
    report: per kind, per KPI row field, n / mean / std / lower_ci / upper_ci / values.

    ``nir_id``: a pre-trained graph (``model.nir``): nothing is trained, only the encoding's seed
    varies. ``module_digest``: a user factory's source digest (part of the train key)."""
    n = spec.repeats.n
    kinds = [r.kind for r in rows if r.status == "ok"]
    values: dict[str, dict[str, list[float]]] = {k: {m.row_field: [] for m in METRICS} for k in kinds}
    notes: dict[str, list[str]] = {k: [] for k in kinds}

    def add(kind: str, row: KPIRow) -> None:
        for m in METRICS:
            v = getattr(row, m.row_field)
            if v is not None:
                values[kind][m.row_field].append(float(v))

    for r in rows:
        if r.status == "ok":
            add(r.kind, r)
    for i in range(1, n):
        for kind, got in _one_seed(stage, registry, spec, i, data_id, nir_id, module_digest, kinds,
                                   progress=progress, log=log).items():
            if isinstance(got, str):
                notes[kind].append(got)
            elif got.status == "ok":
                add(kind, got)
            else:
                notes[kind].append(f"seed {repeat_seed(spec.seed, i)}: {got.status} {got.reason}")
    seeds = [repeat_seed(spec.seed, i) for i in range(n)]
    doc = {"n": n, "confidence": spec.repeats.confidence, "seeds": seeds, "spec_hash": spec.hash,
           "split": "test", "kinds": stats_by_kind(values, spec.repeats.confidence),
           "notes": {k: v for k, v in notes.items() if v}}
    log(f"[repeats] {n} seeds on {', '.join(kinds) or 'no kind'}")
    return registry.put_json(doc, kind="report", name=f"{spec.name}/repeats", parents=list(parents),
                             spec_hash=spec.hash, seeds={f"seed_{i}": s for i, s in enumerate(seeds)},
                             extra={"what": "repeats", "n": n})
