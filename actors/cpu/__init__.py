"""The cpu device kind: runtime, maths, constants.yaml (with public sources), reference adapter, fit checks."""

from actors.cpu.runtime import CpuRuntime

__all__ = ["CpuRuntime"]
