"""The xylo device kind (SynSense Xylo Audio 2): runtime, integer core maths, XyloSim reference, constants."""

from actors.xylo.core import XyloSpec, evolve
from actors.xylo.reference import check_program, xylosim_run, xylosim_version
from actors.xylo.runtime import XyloRuntime

__all__ = ["XyloRuntime", "XyloSpec", "evolve", "check_program", "xylosim_run", "xylosim_version"]
