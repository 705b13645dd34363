"""A refusal raised on a board actor must reach the pipeline intact (Ray pickles exceptions): a kind
that does not fit becomes a 'does not fit' row, never "Failed to deserialize exception"."""

from __future__ import annotations

import pickle

import nir
import numpy as np

from fabric.ir.lowering import UnsupportedNodeError
from fabric.records import FitError, FitItem, FitReport


def test_fit_error_round_trips_with_its_report():
    rep = FitReport(kind="fpga", items=[FitItem(name="layers", used=3, limit=2, unit="layers")])
    err = pickle.loads(pickle.dumps(FitError(rep)))
    assert isinstance(err, FitError) and err.report.kind == "fpga"
    assert str(err) == str(FitError(rep)) and "layers" in str(err)


def test_unsupported_node_error_round_trips_with_its_fields():
    node = nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    err = pickle.loads(pickle.dumps(UnsupportedNodeError("akida", "pool1", node, ["Affine", "LIF"])))
    assert isinstance(err, UnsupportedNodeError)
    assert (err.kind, err.node_name, err.node_type) == ("akida", "pool1", "AvgPool2d")
    assert "pool1" in str(err) and "AvgPool2d" in str(err) and "['Affine', 'LIF']" in str(err)
