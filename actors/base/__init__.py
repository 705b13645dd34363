"""What every device kind shares: the DeviceRuntime protocol, the emulated-runtime base, the energy
model and device constants, and small array helpers. The Ray layer is :mod:`actors.cluster`."""

from actors.base.common import arrays_to_layers, check_input, layers_to_arrays
from actors.base.emulated import DeviceRun, EmulatedRuntime, raise_if_unfit, rate_to_raster
from actors.base.energy import (
    BAND_ENDS,
    Constant,
    ConstantsError,
    DeviceConstants,
    banded,
    load_constants,
    modelled_energy,
    parse_constants,
)
from actors.base.protocol import DeviceRuntime

__all__ = ["DeviceRuntime", "EmulatedRuntime", "DeviceRun", "raise_if_unfit", "rate_to_raster", "DeviceConstants",
           "Constant", "load_constants", "modelled_energy", "banded", "parse_constants", "ConstantsError", "BAND_ENDS",
           "arrays_to_layers", "layers_to_arrays", "check_input"]
