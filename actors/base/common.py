"""Helpers shared by runtimes: layers <-> program arrays, telemetry assembly."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

import numpy as np

from fabric.ir.lowering import Layer

__all__ = ["layers_to_arrays", "arrays_to_layers", "check_input", "native_stdout_to_stderr", "quiet_vendor_import"]

_FD_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet_vendor_import() -> Iterator[None]:
    """Import a vendor package without its import-time chatter on the root logger.

    Why: rockpool 3.1 logs "samna installation not found ..." through ``logging.root`` at WARNING on
    import (samna is deliberately absent: its import reinstalls it from an external index); a user of
    ``fabric run`` should not read about a package the fabric chose not to install.
    """
    import logging
    import warnings

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


@contextlib.contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """Send what native code writes to file descriptor 1 to stderr while the block runs.

    Why: vendor engines written in C++ (SANA-FE's ``Executed steps: [n/N]`` progress line) print on
    the process's stdout, which ``fabric run --json`` keeps for its one JSON document. Both paths are
    turned: fd 1 (plain ``printf``/``std::cout``) and ``sys.stdout`` (pybind11's ostream redirect).
    """
    with _FD_LOCK:
        sys.stdout.flush()
        try:
            saved = os.dup(1)
        except OSError:  # no fd 1 (embedded interpreters): nothing to guard
            yield
            return
        try:
            os.dup2(2, 1)
            with contextlib.redirect_stdout(sys.stderr):  # pybind11 engines may route std::cout via sys.stdout
                yield
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def layers_to_arrays(layers: list[Layer]) -> tuple[dict[str, np.ndarray], list[dict]]:
    arrays: dict[str, np.ndarray] = {}
    meta = []
    for i, layer in enumerate(layers):
        arrays[f"l{i}.weight"] = layer.weight.astype(np.float32)
        arrays[f"l{i}.bias"] = layer.bias.astype(np.float32)
        for k, v in layer.params.items():
            arrays[f"l{i}.{k}"] = v.astype(np.float64)
        meta.append({"name": layer.name, "neuron": layer.neuron, "params": sorted(layer.params),
                     "n_in": layer.n_in, "n_out": layer.n_out})
    return arrays, meta


def arrays_to_layers(arrays: dict[str, np.ndarray], meta: list[dict]) -> list[Layer]:
    return [
        Layer(name=m["name"], weight=arrays[f"l{i}.weight"].astype(np.float64),
              bias=arrays[f"l{i}.bias"].astype(np.float64), neuron=m["neuron"],
              params={k: arrays[f"l{i}.{k}"] for k in m["params"]})
        for i, m in enumerate(meta)
    ]


def check_input(spikes: np.ndarray, n_in: int, kind: str) -> np.ndarray:
    """Validate a spike batch ``[B, T, n_in]`` with an error that names what is wrong."""
    x = np.asarray(spikes)
    if x.ndim != 3:
        raise ValueError(f"{kind}: spikes must have shape [batch, timesteps, {n_in}], got {list(x.shape)}")
    if x.shape[2] != n_in:
        raise ValueError(f"{kind}: spikes last dimension must be {n_in} (program inputs), got {x.shape[2]}")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise ValueError(f"{kind}: spikes contain NaN or inf")
    return x
