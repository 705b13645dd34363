"""Hardware-in-the-loop multi-objective AutoML on Ray Tune (issue #7, NMLOps stage 10).

``fabric tune SPEC`` samples candidates from ``spec.search_space`` (encoder parameters, timesteps,
neuron beta/threshold, hidden sizes, learning rate, weight bits, sparsity and its kind (unstructured
weights or structured neurons), encoder choice, the spike-rate and early-exit loss weights
(``train.rate_reg`` / ``train.exit_reg``) and the early-exit patience; :data:`DEFAULT_SPACE`
when the spec names none) with Ray Tune's ``OptunaSearch`` and a seeded NSGA-II sampler. Each trial (1 CPU):

1. compiles an *untrained* model of the candidate's shape for every kind in-process; a kind it cannot
   fit is recorded with the FitError text, and a candidate that fits no kind is never trained;
2. trains with snntorch, reporting ``train_loss`` per epoch: ASHA stops poor training curves early
   (a multi-objective searcher gives a scheduler no single metric, so the scheduler watches the
   training curve instead);
3. prunes/quantizes (``sparsity``, ``weight_bits``), exports NIR, compiles per kind, and measures on
   the shared device actors through ``actors.cluster.pool.DevicePool`` (queued when boards are busy),
   on the **validation** split.

Method (issue #19):

- *Selection on validation.* Trials are measured and selected on ``val`` (the spec's
  ``dataset.val_fraction``, the data's own val split, or else :data:`DEFAULT_VAL_FRACTION` = 20 % of
  the training samples, stratified and seeded; see :mod:`tune._splits`). After the search, each
  front model is measured once on ``test`` (``test_metrics``): reported, never used to select.
- *Per-kind objectives.* The searcher gets one objective per (kind, objective) pair
  (``accuracy@loihi``, ``latency_ms@fpga``, ...; :func:`objective_names`), and a kind a candidate did
  not fit gets the worst value there (accuracy 0, costs +inf). Why this and not kind as a search
  dimension or a per-kind scalarisation: a trial trains one model and measures it on every kind
  anyway (one training, several cheap measurements), so a kind dimension would train a model per kind
  and halve the measurements per trial; a scalarisation needs weights and per-kind scales that nobody
  can state up front. Per-kind objectives let NSGA-II's non-dominated sorting compare candidates only
  figure by figure on the same kind, so no 0.15 ms figure is ever averaged with a 26 ms one. The
  artifact then holds one Pareto front per kind (:func:`pareto_fronts`).
- *Repeated seeds.* ``--repeats N`` (or the spec's ``repeats.n``) re-trains each front candidate with
  N seeds and measures it on test (:func:`repeat_front`); the rows carry ``repeats``.

Killed trials are retried (``FailureConfig(max_failures)``); device actors restart (``max_restarts``)
and retry their in-flight task; ``resume`` restores an interrupted experiment (``Tuner.restore``).

Pareto artifact (registry kind ``"pareto"``, JSON; the dashboard reads this)::

    {"experiment": str, "spec_hash": str,
     "objectives": {"accuracy": "max", "latency_ms": "min", "energy_mj": "min", "footprint_kb": "min"},
     "selected_on": "val", "reported_on": "test",   # which split each figure comes from
     "splits": {"counts": {"train": n, "val": n, "test": n}, "val_source": "spec"|"dataset"|"default",
                "val_fraction": float|null},
     "trials": [{"trial_id": str, "config": {...sampled values...}, "kind": str,
                 "metrics": {"accuracy", "latency_ms", "energy_mj", "footprint_kb"},  # floats or null
                 "model_id": str|null, "program_id": str|null,
                 "status": "ok"|"does not fit"|"stopped early"|"error"|"not run",
                 "on_front": bool, "fit_error": str|null,
                 "evaluation_id": str|null, "emulated": bool|null, "epochs": int|null,  # additive extras
                 "encoding_id": str|null,
                 "test_metrics": {same keys}|null, "test_evaluation_id": str|null,  # front rows only
                 "repeats": {objective: {n, mean, std, lower_ci, upper_ci, confidence, values}}}],  # --repeats
     "fronts": {kind: [int, ...]},   # per kind: indices into "trials" of that kind's front, ascending
     "front": [int, ...],   # the union of "fronts", ascending (rows with on_front true)
     "repeats": {"n": int, "confidence": float, "seeds": [int, ...], "split": "test"},  # --repeats only
     "figure_splits": {"metrics": "val", "test_metrics": "test", "repeats": "test"},  # a row field -> its split
     "notes": str}

One row per (trial, kind); ``metrics`` are validation figures (what selected), ``test_metrics`` the
test split's. Each kind's front is over that kind's rows only (a model measured on two kinds is a
point on each kind's front, or not). ``latency_ms`` is device time per inference (p50 at batch 1) and ``energy_mj`` energy per
inference: modelled for emulated kinds (constants and sources in ``actors/<kind>/constants.yaml``).
Parents of the artifact are the dataset and every trial's model and program artifacts; a PNG
(kind ``"report"``, name ``<spec>/pareto.png``) has the pareto artifact as its parent.
"""

from __future__ import annotations

from typing import Any

# public name -> private module; imported on first use so `fabric --help` does not import torch/ray
_EXPORTS = {
    "OBJECTIVES": "_pareto", "SelectError": "_pareto", "feasible": "_pareto", "pareto_front": "_pareto",
    "parse_select": "_pareto", "select": "_pareto", "pareto_fronts": "_pareto", "front_union": "_pareto",
    "select_per_kind": "_pareto", "objective_names": "_pareto", "per_kind_objectives": "_pareto",
    "DEFAULT_VAL_FRACTION": "_splits", "with_validation": "_splits", "measure_test": "_run",
    "TuneError": "_run", "TuneResult": "_run", "default_storage_path": "_run", "latest_experiment": "_run",
    "run_tune": "_run",
    "DEFAULT_SPACE": "_space", "candidate_spec": "_space", "check_fit": "_space", "compress": "_space",
    "effective_space": "_space", "repeat_front": "_repeats",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"tune.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tune' has no attribute {name!r}")


__all__ = [
    "DEFAULT_SPACE",
    "DEFAULT_VAL_FRACTION",
    "OBJECTIVES",
    "SelectError",
    "TuneError",
    "TuneResult",
    "candidate_spec",
    "check_fit",
    "compress",
    "default_storage_path",
    "effective_space",
    "feasible",
    "front_union",
    "latest_experiment",
    "measure_test",
    "objective_names",
    "pareto_front",
    "pareto_fronts",
    "parse_select",
    "per_kind_objectives",
    "repeat_front",
    "run_tune",
    "select",
    "select_per_kind",
    "with_validation",
]
