"""The loihi device kind: runtime, maths, constants.yaml (with public sources), reference adapter, fit checks."""

from actors.loihi.runtime import LoihiRuntime, device_part

__all__ = ["LoihiRuntime", "device_part"]
