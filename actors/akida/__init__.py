"""The akida device kind: runtime, maths, constants.yaml (with public sources), reference adapter, fit checks."""

from actors.akida.frame import FrameLayer, frame_forward, input_frame, v1_activation
from actors.akida.reference import (
           MapReport,
           akida_version,
           build_model,
           check_program,
           map_on_akd1000,
)
from actors.akida.runtime import AkidaRuntime

__all__ = ["AkidaRuntime", "FrameLayer", "frame_forward", "input_frame", "v1_activation", "MapReport",
           "akida_version", "build_model", "check_program", "map_on_akd1000"]
