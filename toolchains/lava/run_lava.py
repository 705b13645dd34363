"""Golden reference runner: Loihi programs through Lava's bit-accurate fixed-point process models.

Runs under the Lava toolchain interpreter (Python 3.10, lava-nc 0.10, numpy < 2), never imported by
the fabric. Usage: ``run_lava.py WORKDIR``. WORKDIR/jobs.json lists ``{"id", "program", "spikes"}``
entries (and optionally ``block``, samples per Lava run): ``program`` is a fabric Program file (npz
with a ``__meta__`` JSON entry, see docs/loihi_program_format.md) and ``spikes`` an npy
``[B, T, n_in]``. For every job and layer ``k`` this writes ``WORKDIR/<id>_l<k>.npy`` (uint8
``[B, T, n_k]``, the spikes Lava's LIF ``s_out`` sent at each step) and finally
WORKDIR/status.json (Lava version, per-run build and run timings, or the error).

Network per sample block: RingBuffer(source) -> Dense -> LIF -> Dense -> LIF ... with a sink
RingBuffer on every LIF, run with ``Loihi2SimCfg(select_tag="fixed_pt")`` (PyDenseModelBitAcc,
PyLifModelBitAcc). Several samples share one run as copies of the network side by side: a
block-diagonal weight matrix (zero off-diagonal blocks add nothing, and keep Lava's sign mode), the
biases tiled. Exit status 3 means Lava cannot be imported (the caller reports it as unavailable).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np

MAX_BLOCK_WEIGHTS = 1 << 21  # entries of the largest block-diagonal matrix one run may build


def _import_lava() -> dict:
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF

    return {"RunSteps": RunSteps, "Loihi2SimCfg": Loihi2SimCfg, "Dense": Dense, "Sink": Sink, "Source": Source,
            "LIF": LIF}


def load_program(path: Path) -> tuple[list, dict]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(bytes(z["__meta__"]).decode())
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
    if meta.get("kind") != "loihi":
        raise ValueError(f"{path.name}: program kind is {meta.get('kind')!r}, expected 'loihi'")
    return meta["meta"]["layers"], arrays


def run_block(lava: dict, layers: list, arrays: dict, x: np.ndarray, timing: dict) -> list:
    """One Lava run of ``b`` samples side by side; returns per-layer rasters ``[b, T, n]``.
    ``timing`` receives build_s (process graph construction) and run_s (the ``run`` call: process
    start-up, compilation and all steps)."""
    t_build = time.perf_counter()
    b, steps, n_in = x.shape
    data = np.ascontiguousarray((x != 0).transpose(0, 2, 1).reshape(b * n_in, steps)).astype(np.int32)
    src = lava["Source"](data=data)
    prev = src.s_out
    sinks = []
    eye = np.eye(b, dtype=np.int64)
    for i, m in enumerate(layers):
        w = arrays[f"l{i}.weights"].astype(np.int64)
        dense = lava["Dense"](weights=np.kron(eye, w), weight_exp=int(m["weight_exp"]),
                              num_weight_bits=int(m["num_weight_bits"]))
        n = int(m["n_out"])
        lif = lava["LIF"](shape=(b * n,), du=int(m["du"]), dv=int(m["dv"]), vth=int(m["vth"]),
                          bias_mant=np.tile(arrays[f"l{i}.bias_mant"].astype(np.int64), b),
                          bias_exp=np.tile(arrays[f"l{i}.bias_exp"].astype(np.int64), b))
        sink = lava["Sink"](shape=(b * n,), buffer=steps)
        prev.connect(dense.s_in)
        dense.a_out.connect(lif.a_in)
        lif.s_out.connect(sink.a_in)
        sinks.append((sink, n))
        prev = lif.s_out
    timing["build_s"] = time.perf_counter() - t_build
    try:
        t_run = time.perf_counter()
        src.run(condition=lava["RunSteps"](num_steps=steps), run_cfg=lava["Loihi2SimCfg"](select_tag="fixed_pt"))
        timing["run_s"] = time.perf_counter() - t_run
        out = []
        for sink, n in sinks:
            r = np.asarray(sink.data.get()).reshape(b, n, steps).transpose(0, 2, 1)
            out.append(np.rint(r).astype(np.uint8))
    finally:
        src.stop()
    return out


def block_size(layers: list, n_samples: int) -> int:
    biggest = max(int(m["n_in"]) * int(m["n_out"]) for m in layers)
    b = 1
    while b < n_samples and (b + 1) ** 2 * biggest <= MAX_BLOCK_WEIGHTS:
        b += 1
    return b


def main(argv: list) -> int:
    if len(argv) != 2:
        print("usage: run_lava.py WORKDIR", file=sys.stderr)
        return 2
    work = Path(argv[1])
    try:
        lava = _import_lava()
        from importlib.metadata import version

        lava_version = version("lava-nc")
    except Exception as exc:  # any import failure means "no Lava here"
        msg = f"cannot import lava with {sys.executable} (Python {sys.version.split()[0]}): {exc!r}"
        (work / "status.json").write_text(json.dumps({"ok": False, "unavailable": msg}))
        print(msg, file=sys.stderr)
        return 3
    jobs = json.loads((work / "jobs.json").read_text())["jobs"]
    status = {"ok": True, "lava_version": lava_version, "python": sys.version.split()[0], "jobs": []}
    for job in jobs:
        t0 = time.perf_counter()
        try:
            layers, arrays = load_program(work / job["program"])
            x = np.load(work / job["spikes"])
            rasters = [[] for _ in layers]
            b = int(job.get("block") or block_size(layers, x.shape[0]))
            runs = []
            for s0 in range(0, x.shape[0], b):
                timing = {"samples": int(min(b, x.shape[0] - s0))}
                for k, r in enumerate(run_block(lava, layers, arrays, x[s0:s0 + b], timing)):
                    rasters[k].append(r)
                runs.append(timing)
            for k, parts in enumerate(rasters):
                np.save(work / f"{job['id']}_l{k}.npy", np.concatenate(parts, axis=0))
            status["jobs"].append({"id": job["id"], "ok": True, "runs": runs, "block": b,
                                   "wall_s": time.perf_counter() - t0})
        except Exception:  # reported to the caller, which raises
            status["ok"] = False
            status["jobs"].append({"id": job["id"], "ok": False, "error": traceback.format_exc()})
            break
    (work / "status.json").write_text(json.dumps(status))
    return 0 if status["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
