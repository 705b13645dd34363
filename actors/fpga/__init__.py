"""The fpga device kind: runtime, maths, constants.yaml (with public sources), reference adapter, fit checks."""

from actors.fpga.runtime import FpgaRuntime

__all__ = ["FpgaRuntime"]
