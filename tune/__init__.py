"""Hardware-in-the-loop multi-objective AutoML on Ray Tune (issue #7, NMLOps stage 10).

``fabric tune SPEC`` samples candidates from ``spec.search_space`` (encoder parameters, timesteps,
neuron beta/threshold, hidden sizes, learning rate, weight bits, sparsity; :data:`DEFAULT_SPACE`
when the spec names none) with Ray Tune's ``OptunaSearch`` over four objectives with a seeded
NSGA-II sampler. Each trial (1 CPU):

1. compiles an *untrained* model of the candidate's shape for every kind in-process; a kind it cannot
   fit is recorded with the FitError text, and a candidate that fits no kind is never trained;
2. trains with snntorch, reporting ``train_loss`` per epoch: ASHA stops poor training curves early
   (a multi-objective searcher gives a scheduler no single metric, so the scheduler watches the
   training curve instead);
3. prunes/quantizes (``sparsity``, ``weight_bits``), exports NIR, compiles per kind, and measures on
   the shared device actors through ``actors.cluster.pool.DevicePool`` (queued when boards are busy).

Killed trials are retried (``FailureConfig(max_failures)``); device actors restart (``max_restarts``)
and retry their in-flight task; ``resume`` restores an interrupted experiment (``Tuner.restore``).

Pareto artifact (registry kind ``"pareto"``, JSON; the dashboard reads this)::

    {"experiment": str, "spec_hash": str,
     "objectives": {"accuracy": "max", "latency_ms": "min", "energy_mj": "min", "footprint_kb": "min"},
     "trials": [{"trial_id": str, "config": {...sampled values...}, "kind": str,
                 "metrics": {"accuracy", "latency_ms", "energy_mj", "footprint_kb"},  # floats or null
                 "model_id": str|null, "program_id": str|null,
                 "status": "ok"|"does not fit"|"stopped early"|"error"|"not run",
                 "on_front": bool, "fit_error": str|null,
                 "evaluation_id": str|null, "emulated": bool|null, "epochs": int|null}],  # additive extras
     "front": [int, ...],   # indices into "trials" (each entry is one (trial, kind) row), ascending
     "notes": str}

One row per (trial, kind); the front is over those rows (a model measured on two kinds is two
points). ``latency_ms`` is device time per inference (p50 at batch 1) and ``energy_mj`` energy per
inference: modelled for emulated kinds (constants and sources in ``actors/<kind>/constants.yaml``).
Parents of the artifact are the dataset and every trial's model and program artifacts; a PNG
(kind ``"report"``, name ``<spec>/pareto.png``) has the pareto artifact as its parent.
"""

from __future__ import annotations

from typing import Any

# public name -> private module; imported on first use so `fabric --help` does not import torch/ray
_EXPORTS = {
    "OBJECTIVES": "_pareto", "SelectError": "_pareto", "feasible": "_pareto", "pareto_front": "_pareto",
    "parse_select": "_pareto", "select": "_pareto",
    "TuneError": "_run", "TuneResult": "_run", "default_storage_path": "_run", "latest_experiment": "_run",
    "run_tune": "_run",
    "DEFAULT_SPACE": "_space", "candidate_spec": "_space", "check_fit": "_space", "compress": "_space",
    "effective_space": "_space",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"tune.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'tune' has no attribute {name!r}")


__all__ = [
    "DEFAULT_SPACE",
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
    "latest_experiment",
    "pareto_front",
    "parse_select",
    "run_tune",
    "select",
]
