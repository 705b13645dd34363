"""Model, training and compression: the LIF network and NIR export, the training loop, compression, the weight quantizer, mismatch-aware training, NeuroBench metrics, early exit.

Names are loaded on first use (PEP 562), not on import: device code imports
:mod:`fabric.model.mismatch` (numpy only) for the mismatch law, and must not pull in torch and
snntorch with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fabric.model.compress import (  # noqa: F401
        STATE_RANGE_THRESHOLDS,
        StateQuantized,
        Variant,
        base_model,
        clone,
        compress_variants,
        distinct_weight_values,
        fake_quant,
        finetune,
        magnitude_prune,
        measure,
        nonzero_weights,
        prune_masks,
        quantize_state,
        quantize_weights,
        structured_prune,
        target_weight_bits,
    )
    from fabric.model.distributed import (  # noqa: F401
        TrainCheckpoint,
        checkpoint_key,
        find_resume,
        load_checkpoint,
        pick_resume,
        resolve_use_gpu,
        store_checkpoint,
        train_with_ray,
    )
    from fabric.model.early_exit import EarlyExitResult, topk_cutoff  # noqa: F401
    from fabric.model.mismatch import (  # noqa: F401
        lognormal_factors,
        lognormal_params,
        mismatch_schedule,
        weight_mismatch,
    )
    from fabric.model.neurobench import STATIC_METRICS, WORKLOAD_METRICS, neurobench_metrics  # noqa: F401
    from fabric.model.quantize import check_bits, quantize_symmetric, symmetric_levels  # noqa: F401
    from fabric.model.snn import LayerStats, LifMLP, export_nir, simulate_layers  # noqa: F401
    from fabric.model.templates import TEMPLATES, conv_snn, cuba_mlp, recurrent, template_ref  # noqa: F401
    from fabric.model.train import (  # noqa: F401
        LoopState,
        TrainResult,
        build_model,
        is_checkpoint_epoch,
        pick_device,
        train_loop,
        train_model,
        train_on_cluster,
    )
    from fabric.model.user import (  # noqa: F401
        SUPPORTED_LAYERS,
        SequentialSNN,
        SumPool2d,
        UserModelError,
        build_user_model,
        check_graph_sizes,
        check_layers,
        export_sequential,
        is_user_checkpoint,
        load_factory,
        module_digest,
        read_nir_source,
        user_model_from_bytes,
        user_model_to_bytes,
    )

_HOME = {
    "compress": ["STATE_RANGE_THRESHOLDS", "Variant", "magnitude_prune", "prune_masks", "structured_prune",
                 "fake_quant", "quantize_weights", "StateQuantized", "quantize_state", "finetune",
                 "target_weight_bits", "compress_variants", "nonzero_weights", "distinct_weight_values",
                 "base_model", "clone", "measure"],
    "early_exit": ["EarlyExitResult", "topk_cutoff"],
    "mismatch": ["weight_mismatch", "lognormal_factors", "lognormal_params", "mismatch_schedule"],
    "neurobench": ["neurobench_metrics", "STATIC_METRICS", "WORKLOAD_METRICS"],
    "quantize": ["quantize_symmetric", "symmetric_levels", "check_bits"],
    "snn": ["LifMLP", "export_nir", "simulate_layers", "LayerStats"],
    "train": ["TrainResult", "LoopState", "train_loop", "train_model", "train_on_cluster", "build_model", "pick_device",
              "is_checkpoint_epoch"],
    "distributed": ["TrainCheckpoint", "train_with_ray", "store_checkpoint", "load_checkpoint", "find_resume",
                    "checkpoint_key", "pick_resume", "resolve_use_gpu"],
    "user": ["SUPPORTED_LAYERS", "UserModelError", "SequentialSNN", "load_factory", "module_digest", "check_layers",
             "build_user_model", "export_sequential", "user_model_to_bytes", "is_user_checkpoint",
             "user_model_from_bytes", "read_nir_source", "check_graph_sizes", "SumPool2d"],
    "templates": ["TEMPLATES", "template_ref", "conv_snn", "recurrent", "cuba_mlp"],
}
_MODULE_OF = {name: mod for mod, names in _HOME.items() for name in names}

__all__ = [name for names in _HOME.values() for name in names]


def __getattr__(name: str) -> Any:
    mod = _MODULE_OF.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
