"""IR and compile framework: NIR lowering (node-type -> handler maps), recurrent self-loops, hybrid partitions."""

from fabric.ir.fallback import (  # noqa: F401
    FALLBACK_MODES,
    Partition,
    split_for_fallback,
)
from fabric.ir.lowering import (  # noqa: F401
    DEFAULT_HANDLERS,
    NEURON_HANDLERS,
    SYNAPSE_HANDLERS,
    GraphStructureError,
    GraphValidationError,
    Handler,
    Layer,
    LoweringContext,
    UnsupportedNodeError,
    graph_dt,
    lower,
    merge_handlers,
    topological_order,
)
from fabric.ir.recurrent import (  # noqa: F401
    LI_HANDLERS,
    build_recurrent_graph,
    find_self_loops,
    has_recurrence,
    inline_subgraphs,
    lower_recurrent,
    readout_counts,
    simulate_recurrent,
    train_recurrent,
)
from fabric.ir.validate import validate_graph  # noqa: F401

__all__ = [
    "Partition",
    "split_for_fallback",
    "FALLBACK_MODES",
    "Layer",
    "LoweringContext",
    "Handler",
    "UnsupportedNodeError",
    "GraphStructureError",
    "GraphValidationError",
    "validate_graph",
    "DEFAULT_HANDLERS",
    "NEURON_HANDLERS",
    "SYNAPSE_HANDLERS",
    "lower",
    "merge_handlers",
    "graph_dt",
    "topological_order",
    "LI_HANDLERS",
    "inline_subgraphs",
    "find_self_loops",
    "has_recurrence",
    "lower_recurrent",
    "build_recurrent_graph",
    "simulate_recurrent",
    "readout_counts",
    "train_recurrent",
]
