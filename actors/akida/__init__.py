"""The akida device kind: runtime, maths, constants.yaml (with public sources), reference adapter, fit checks."""

from actors.akida.runtime import AkidaRuntime

__all__ = ["AkidaRuntime"]
