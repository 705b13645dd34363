"""Model, training and compression: the LIF network and NIR export, the training loop, compression, mismatch-aware training, NeuroBench metrics, early exit."""

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
from fabric.model.early_exit import (  # noqa: F401
    EarlyExitResult,
    topk_cutoff,
)
from fabric.model.mismatch import (  # noqa: F401
    lognormal_factors,
    mismatch_schedule,
    weight_mismatch,
)
from fabric.model.neurobench import (  # noqa: F401
    STATIC_METRICS,
    WORKLOAD_METRICS,
    neurobench_metrics,
)
from fabric.model.snn import (  # noqa: F401
    LayerStats,
    LifMLP,
    export_nir,
    simulate_layers,
)
from fabric.model.train import (  # noqa: F401
    TrainResult,
    build_model,
    pick_device,
    train_model,
    train_on_cluster,
)

__all__ = [
    "STATE_RANGE_THRESHOLDS",
    "Variant",
    "magnitude_prune",
    "prune_masks",
    "structured_prune",
    "fake_quant",
    "quantize_weights",
    "StateQuantized",
    "quantize_state",
    "finetune",
    "target_weight_bits",
    "compress_variants",
    "nonzero_weights",
    "distinct_weight_values",
    "base_model",
    "clone",
    "measure",
    "EarlyExitResult",
    "topk_cutoff",
    "weight_mismatch",
    "lognormal_factors",
    "mismatch_schedule",
    "neurobench_metrics",
    "STATIC_METRICS",
    "WORKLOAD_METRICS",
    "LifMLP",
    "export_nir",
    "simulate_layers",
    "LayerStats",
    "TrainResult",
    "train_model",
    "train_on_cluster",
    "build_model",
    "pick_device",
]
