"""Artifact codecs: the one place that turns stored artifact bytes into objects and back.

Every stage, Tune trial and CLI command that writes or reads an encoding, model, NIR graph, program or
dataset artifact goes through these functions, so a stored artifact is written one way and read one
way. The byte formats are the store's contract: artifact ids are the sha256 of these bytes and stage
cache keys are built from those ids, so changing an encoder here orphans every stored artifact.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from typing import Any

import nir
import numpy as np
import torch

from fabric.data.datasets import from_parquet_bytes as dataset_from_bytes
from fabric.data.datasets import to_parquet_bytes as dataset_to_bytes
from fabric.model.snn import LifMLP
from fabric.records import Program

__all__ = [
    "pack_spikes",
    "unpack_spikes",
    "model_to_bytes",
    "checkpoint_from_bytes",
    "model_from_bytes",
    "nir_to_bytes",
    "nir_from_bytes",
    "program_from_bytes",
    "dataset_to_bytes",
    "dataset_from_bytes",
]


# -- encoding artifacts: bit-packed spikes + labels + splits + encoder metadata (npz) ---------------
def pack_spikes(spikes: np.ndarray, labels: np.ndarray, splits: np.ndarray, meta: dict[str, Any]) -> bytes:
    """An encoding artifact's bytes: spikes packed 8 per byte along the feature axis."""
    buf = io.BytesIO()
    np.savez_compressed(buf, bits=np.packbits(spikes, axis=-1), shape=np.array(spikes.shape), labels=labels,
                        splits=splits.astype("U5"), meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return buf.getvalue()


def unpack_spikes(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """(spikes [N, T, C] uint8, labels, splits as object strings, encoder metadata) of an encoding."""
    with np.load(io.BytesIO(data)) as z:
        shape = tuple(int(s) for s in z["shape"])
        spikes = np.unpackbits(z["bits"], axis=-1, count=shape[-1]).reshape(shape)
        return spikes, z["labels"], z["splits"].astype(object), json.loads(bytes(z["meta"]).decode())


# -- model artifacts: a LifMLP checkpoint (torch.save of state dict + constructor arguments) -----------
def model_to_bytes(model: LifMLP, **extra: Any) -> bytes:
    """A model artifact's bytes; ``extra`` (e.g. a compressed variant's bit widths) rides along."""
    buf = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "n_in": model.fcs[0].in_features, "n_out": model.fcs[-1].out_features,
                "hidden": [fc.out_features for fc in model.fcs[:-1]], "beta": model.beta, "threshold": model.threshold,
                **extra}, buf)
    return buf.getvalue()


def checkpoint_from_bytes(data: bytes) -> dict[str, Any]:
    """The raw checkpoint dict of a model artifact (weights only: no pickled code is run)."""
    return torch.load(io.BytesIO(data), weights_only=True)


def model_from_bytes(data: bytes) -> LifMLP:
    """The exportable LIF network of a model artifact (baseline or any compressed variant), in eval mode."""
    ck = checkpoint_from_bytes(data)
    m = LifMLP(ck["n_in"], list(ck["hidden"]), ck["n_out"], ck["beta"], ck["threshold"])
    m.load_state_dict(ck["state_dict"])
    return m.eval()


# -- NIR artifacts: nir's own HDF5 file format ---------------------------------------------------------
def nir_to_bytes(graph: nir.NIRGraph) -> bytes:
    """The bytes of ``nir.write`` (nir writes files only, so through a temporary one)."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "g.nir")
        nir.write(p, graph)
        with open(p, "rb") as f:
            return f.read()


def nir_from_bytes(data: bytes) -> nir.NIRGraph:
    """Read with nir's own reader and type checks, then infer types: the validity contract."""
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "g.nir")
        with open(p, "wb") as f:
            f.write(data)
        g = nir.read(p)
    g.infer_types()
    return g


# -- program artifacts: a kind's compiled program (format owned by fabric.records.Program) -------------
def program_from_bytes(data: bytes) -> Program:
    """A program artifact's :class:`Program` (written by ``Program.to_bytes``)."""
    return Program.from_bytes(data)


# dataset artifacts (parquet) are coded by fabric.data.datasets; re-exported above under codec names:
# dataset_to_bytes(ds, splits) -> bytes, dataset_from_bytes(bytes) -> (Dataset, splits)
