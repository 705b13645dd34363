"""The akida device kind: runtime, maths, constants.yaml (with public sources), reference adapter, fit checks."""

from actors.akida.frame import FrameLayer, frame_forward, input_frame, v1_activation
from actors.akida.reference import (
           MapReport,
           akida_version,
           build_model,
           check_program,
           conv_geometry,
           map_on_akd1000,
           same_pads,
)
from actors.akida.runtime import AkidaRuntime

__all__ = ["AkidaRuntime", "FrameLayer", "frame_forward", "input_frame", "v1_activation", "MapReport",
           "akida_version", "build_model", "check_program", "conv_geometry", "map_on_akd1000", "same_pads"]
