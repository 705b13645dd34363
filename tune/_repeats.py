"""Repeated seeds for the front's picked models (issue #19 item 2, ``fabric tune --repeats N``).

Why: a front picked from one seed per candidate favours lucky seeds. Each front row's candidate (its
trial config) is re-trained with seeds :func:`fabric.flow.repeats.repeat_seed` ``(spec.seed, i)``,
compressed and compiled as its trial was, and measured on the **test** split on its kind; repeat 0 is
the row's own ``test_metrics``. The row gets ``repeats``: objective alias -> n / mean / std /
lower_ci / upper_ci / values (the Pareto artifact carries them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fabric.flow.repeats import repeat_seed
from fabric.kpis import objective_metrics, repeat_stats
from fabric.records import FitError
from fabric.spec import Spec
from fabric.store.registry import Registry
from tune._space import candidate_spec, compile_options, compress_trained
from tune._trainable import ROW_METRICS

__all__ = ["repeat_front"]


def repeat_front(registry: Registry, spec: Spec, rows: list[dict[str, Any]], indices: Sequence[int], x: Any,
                 y: np.ndarray, splits: np.ndarray, classes: list[Any], *, n: int, confidence: float = 0.95,
                 pool: Callable[[str], Any] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Add ``repeats`` to each measured row at ``indices`` (in place); returns the summary the
    Pareto artifact records (n, confidence, seeds, split). ``pool(kind)``: the device pool (default
    the Ray :class:`actors.cluster.pool.DevicePool`)."""
    from fabric.flow import stages
    from fabric.flow.codecs import nir_from_bytes, program_from_bytes
    from fabric.model.train import train_model

    if pool is None:
        from actors.cluster.pool import DevicePool as pool  # noqa: N813 - the Ray pool class as the factory
    seeds = [repeat_seed(spec.seed, i) for i in range(n)]
    summary = {"n": n, "confidence": confidence, "seeds": seeds, "split": "test"}
    picked = [i for i in indices if rows[i].get("status") == "ok" and rows[i].get("test_metrics")]
    if n < 2 or not picked:
        return summary
    train, test = splits == "train", splits == "test"
    by_trial: dict[str, list[int]] = {}
    for i in picked:
        by_trial.setdefault(rows[i]["trial_id"], []).append(i)
    log(f"[tune] repeats: {len(by_trial)} front candidates x {n - 1} more seeds, measured on the test split")
    for trial, idx in sorted(by_trial.items()):
        config = rows[idx[0]]["config"]
        values: dict[int, dict[str, list[float]]] = {
            i: {k: [float(rows[i]["test_metrics"][k])] for k in ROW_METRICS if rows[i]["test_metrics"].get(k) is not None}
            for i in idx}
        notes: dict[int, list[str]] = {i: [] for i in idx}
        for s in seeds[1:]:
            cand = candidate_spec(spec.model_copy(update={"seed": s}), config)
            spikes, meta = stages.encode_inputs(cand, x, classes)
            enc = stages.put_encoding(registry, cand, spikes, y, splits, meta, parents=[rows[idx[0]]["encoding_id"]],
                                      name=f"{cand.name}/{cand.encoder.name}")
            res = train_model(cand, spikes[train], y[train], len(classes), progress=False)
            model = compress_trained(res.model, config, cand, spikes[train], y[train])
            model_rec = stages.put_model(registry, cand, model, res, parents=[enc.id], tune_config=config,
                                         repeat_of=trial)
            nir_rec = stages.export(registry, cand, model_rec.id, model=model)
            graph = nir_from_bytes(registry.get(nir_rec.id))
            for i in idx:
                kind = rows[i]["kind"]
                dev = pool(kind)
                try:
                    prog = stages.compile(registry, dev, graph, kind, nir_rec.id, cand.hash,
                                          compile_options(kind, config))
                except (FitError, ValueError) as exc:
                    notes[i].append(f"seed {s} does not fit: {' '.join(str(exc).split())[:200]}")
                    continue
                ev = stages.evaluate(registry, dev, program_from_bytes(registry.get(prog.id)), prog.id, enc.id, kind,
                                     spikes[test], y[test], cand)
                for k, v in objective_metrics(registry.get_json(ev.id)).items():
                    if k in values[i] and v is not None:
                        values[i][k].append(float(v))
        for i in idx:
            rows[i]["repeats"] = {k: repeat_stats(v, confidence) | {"values": v} for k, v in values[i].items()}
            if notes[i]:
                rows[i]["repeat_notes"] = notes[i]
    return summary
