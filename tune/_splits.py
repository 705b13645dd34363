"""Split bookkeeping for a search: trials are selected on a validation split, never on the test split.

Why: choosing among many candidates by their test accuracy makes the test figure of the chosen one
optimistic (it was picked *because* it scored well there). So every trial is measured on ``val``;
the test split is measured once, afterwards, for the models on a front, and reported as such.

When the data has no ``val`` samples (the spec's ``dataset.val_fraction`` is 0 and the dataset
defines none), :data:`DEFAULT_VAL_FRACTION` of the *training* samples become ``val`` (stratified by
class, seeded by the spec's seed); the test split is never touched. For a ``dataset.path`` the
min-max normalisation was computed before that carve-out, so it saw the carved-out val samples
(never the test samples).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fabric.data.datasets import split

__all__ = ["DEFAULT_VAL_FRACTION", "with_validation"]

DEFAULT_VAL_FRACTION = 0.2  # of the non-test (training) samples, when the data has no val split


def with_validation(splits: np.ndarray, y: np.ndarray, seed: int, *, spec_fraction: float = 0.0,
                    fraction: float = DEFAULT_VAL_FRACTION) -> tuple[np.ndarray, dict[str, Any]]:
    """``splits`` with a ``val`` split (carved from ``train`` when there is none) and its record.

    The record (stored in the pareto artifact as ``splits``): ``counts`` per split, ``val_source``
    (``"spec"``: the spec's ``dataset.val_fraction``; ``"dataset"``: the data's own split;
    ``"default"``: carved here) and ``val_fraction`` (of all samples for ``spec``, of the training
    samples for ``default``, None for ``dataset``). Raises ValueError when no val sample results.
    """
    out = np.asarray(splits).astype("U5")
    if (out == "val").any():
        source, frac = ("spec", float(spec_fraction)) if spec_fraction > 0 else ("dataset", None)
    else:
        train = np.flatnonzero(out == "train")
        sub = split(len(train), 0.0, fraction, seed, labels=np.asarray(y)[train])
        out[train[sub == "val"]] = "val"
        source, frac = "default", float(fraction)
        if not (out == "val").any():
            raise ValueError(f"dataset: {len(train)} training samples are too few for a {fraction:.0%} validation "
                             "split; set dataset.val_fraction or use more data")
    if not (out == "train").any():
        raise ValueError("dataset: no training samples are left beside the validation split")
    counts = {s: int((out == s).sum()) for s in ("train", "val", "test")}
    return out, {"counts": counts, "val_source": source, "val_fraction": frac}
