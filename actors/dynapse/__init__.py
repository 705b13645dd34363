"""The dynapse device kind: runtime, maths, constants.yaml (with public sources), reference adapter, fit checks."""

from actors.dynapse.runtime import DynapseRuntime

__all__ = ["DynapseRuntime"]
