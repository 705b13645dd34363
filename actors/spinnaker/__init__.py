"""The spinnaker device kind: runtime, maths, constants.yaml (with public sources), reference adapter, fit checks."""

from actors.spinnaker.runtime import SpinnakerRuntime

__all__ = ["SpinnakerRuntime"]
