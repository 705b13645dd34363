"""DYNAP-SE accuracy under device mismatch, with plain vs mismatch-aware training (train.mismatch_cv).

Reproduces the figures in docs/devices_notes.md. Per training mode (plain, and mismatch-aware at each
CV of ``--train-cv``) it trains the spec's LIF MLP, exports NIR, compiles for the emulated DYNAP-SE and
measures test accuracy on the ideal chip (CV 0) and on ``--seeds`` mismatched chips (CV ``--cv``,
one seed = one chip instance, the same chips for both models). Also prints the float (cpu) accuracy.
Everything is emulated/modelled (actors/dynapse/runtime.py, actors/dynapse/dpi.py); nothing is measured on a chip.

    .venv/bin/python bench/mismatch_training.py [examples/digits.yaml] [--seeds 16] [--limit 400] [--epochs 20]
        [--train-cv 0.2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.dynapse.runtime import mismatch_accuracy  # noqa: E402
from fabric.data.datasets import load_builtin, split  # noqa: E402
from fabric.data.encode import encode  # noqa: E402
from fabric.kinds import make_runtime  # noqa: E402
from fabric.model.snn import export_nir  # noqa: E402
from fabric.model.train import train_model  # noqa: E402
from fabric.spec import load_spec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", nargs="?", default="examples/digits.yaml")
    ap.add_argument("--cv", type=float, default=0.2, help="chip mismatch CV at test (default 0.2)")
    ap.add_argument("--train-cv", default="0.2",
                    help="comma-separated train.mismatch_cv values, one mismatch-aware model each (default 0.2)")
    ap.add_argument("--seeds", type=int, default=16, help="mismatched chips per model (default 16)")
    ap.add_argument("--limit", type=int, default=400, help="test samples run on the DYNAP-SE emulator (default 400)")
    ap.add_argument("--epochs", type=int, default=20, help="train.epochs for every model (default 20; 0 = the spec's)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # reduction order fixed: the same models (and figures) on every run

    spec = load_spec(args.spec)
    ds = load_builtin(spec.dataset.name)
    splits = split(len(ds.y), spec.dataset.test_fraction, spec.dataset.val_fraction, spec.seed)
    x = encode(spec.encoder.name, ds.x, spec.encoder.timesteps, spec.seed, spec.encoder.params)
    tr, te = splits == "train", splits == "test"
    x_te, y_te = x[te][: args.limit], ds.y[te][: args.limit]
    n_out = int(ds.y.max()) + 1
    seeds = tuple(range(args.seeds))
    rows = []
    modes = [("plain", 0.0)] + [(f"mismatch-aware (train CV {float(c):g})", float(c))
                                for c in args.train_cv.split(",") if c.strip()]
    for label, cv in modes:
        train = {"mismatch_cv": cv} | ({"epochs": args.epochs} if args.epochs else {})
        s = spec.model_copy(update={"train": spec.train.model_copy(update=train)})
        t0 = time.perf_counter()
        res = train_model(s, x[tr], ds.y[tr], n_out, progress=False)
        graph = export_nir(res.model)
        cpu = make_runtime("cpu")
        cpu.load(cpu.compile(graph))
        float_acc = float(np.mean(cpu.run(x_te).predictions == y_te))
        prog = make_runtime("dynapse").compile(graph, {"mismatch_cv": args.cv})
        m = mismatch_accuracy(prog, x_te, y_te, cv=args.cv, seeds=seeds)
        rows.append((label, float_acc, m))
        print(f"{label}: trained in {time.perf_counter() - t0:.0f} s", flush=True)

    print(f"\nDYNAP-SE (emulated) accuracy, {spec.name}, {len(y_te)} test samples, chip mismatch CV {args.cv:g}, "
          f"chips = seeds {list(seeds)}")
    print(f"{'training':38s} {'float(cpu)':>10s} {'ideal chip':>10s} {'mismatch mean':>13s} {'std':>6s} per chip")
    for label, fa, m in rows:
        print(f"{label:38s} {fa:10.3f} {m['ideal']:10.3f} {m['mean']:13.3f} {m['std']:6.3f} "
              + " ".join(f"{a:.3f}" for a in m["mismatch"]))
    base = rows[0][2]["mean"]
    for label, _, m in rows[1:]:
        d = np.asarray(m["mismatch"]) - np.asarray(rows[0][2]["mismatch"])  # paired: the same chips
        print(f"\n{label}: ratio aware/plain mean accuracy under mismatch {m['mean'] / max(base, 1e-9):.3f}; "
              f"chip-paired difference {d.mean():+.3f} (standard error {d.std(ddof=1) / np.sqrt(len(d)):.3f}), "
              f"better on {int((d > 0).sum())} of {len(d)} chips")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
