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

A layer whose program entry carries ``conv`` geometry (and ``l<k>.conv_weight``, the kernel mantissas
``[C_out, C_in/groups, kh, kw]``) runs as Lava's own ``Conv`` process (PyConvModelFixed) instead:
input and output are (X, Y, C) = (W, H, C) arrays, reached from the fabric's flat [C, H, W] order
by port reshape + transpose; samples sit side by side as extra channel groups. PyConvModelFixed has
no weight exponent and no weight truncation, so the kernel first gets the Dense model's own
treatment (lava.utils.weightutils clip_weights + truncate_weights, then ``<< weight_exp``); a
negative ``weight_exp`` (a floor of the summed input, which scaled weights cannot reproduce) or a
sum that could reach Conv's 24-bit clamp keeps that layer on Dense, and the job status says why.
Lava has no pooling process: the fabric folds a pool into the next layer's matrix, and when that
layer is a conv the program carries the composed kernel (pool then conv is one conv), so it runs as
Conv; a pool feeding a linear layer runs as Dense.
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
    from lava.proc.conv.process import Conv
    from lava.proc.dense.process import Dense
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    from lava.proc.lif.process import LIF
    from lava.utils import weightutils

    return {"RunSteps": RunSteps, "Loihi2SimCfg": Loihi2SimCfg, "Dense": Dense, "Sink": Sink, "Source": Source,
            "LIF": LIF, "Conv": Conv, "weightutils": weightutils}


CONV_CLAMP = (1 << 23) - 1  # PyConvModelFixed clamps a_buf to signed 24 bits; Dense does not


def conv_kernel(lava: dict, m: dict, arrays: dict, i: int) -> tuple[np.ndarray | None, str]:
    """Kernel mantissas of conv layer ``i`` as Conv's fixed-point model must get them (Dense's clip,
    truncation and weight exponent applied), or ``(None, reason)`` when Conv cannot match Dense."""
    wu = lava["weightutils"]
    k = arrays[f"l{i}.conv_weight"].astype(np.int32)
    mode = wu.determine_sign_mode(arrays[f"l{i}.weights"])  # the sign mode Dense finds on the matrix
    k = wu.truncate_weights(wu.clip_weights(k, mode, num_bits=8), mode, int(m["num_weight_bits"]))
    exp = int(m["weight_exp"])
    if exp < 0:
        return None, f"weight_exp {exp} < 0 floors the summed input; Conv's fixed-point model has no exponent"
    k = k.astype(np.int64) << exp
    per_out = np.abs(k).reshape(k.shape[0], -1).sum(axis=1).max(initial=0)
    if per_out > CONV_CLAMP:
        return None, f"input sum up to {per_out} could reach Conv's 24-bit clamp"
    return k, ""


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
    used = timing.setdefault("layer_processes", [])
    for i, m in enumerate(layers):
        n = int(m["n_out"])
        lif = lava["LIF"](shape=(b * n,), du=int(m["du"]), dv=int(m["dv"]), vth=int(m["vth"]),
                          bias_mant=np.tile(arrays[f"l{i}.bias_mant"].astype(np.int64), b),
                          bias_exp=np.tile(arrays[f"l{i}.bias_exp"].astype(np.int64), b))
        kernel, why = conv_kernel(lava, m, arrays, i) if "conv" in m else (None, "")
        if kernel is not None:
            g = m["conv"]
            (c, h, wd), (co, ho, wo) = g["in_shape"], g["out_shape"]
            # fabric [O, I/g, kh, kw] cross-correlation -> Lava (O, kw, kh, I/g) convolution (it flips)
            lw = np.tile(kernel[:, :, ::-1, ::-1].transpose(0, 3, 2, 1), (b, 1, 1, 1))
            conv = lava["Conv"](weight=lw.astype(np.int32), input_shape=(wd, h, b * c),
                                padding=tuple(g["padding"][::-1]), stride=tuple(g["stride"][::-1]),
                                dilation=tuple(g["dilation"][::-1]), groups=b * int(g["groups"]),
                                num_weight_bits=int(m["num_weight_bits"]))
            if tuple(conv.output_shape) != (wo, ho, b * co):
                raise ValueError(f"layer {i}: Lava Conv output {conv.output_shape} != {(wo, ho, b * co)}")
            prev.reshape((b * c, h, wd)).transpose([2, 1, 0]).connect(conv.s_in)
            conv.a_out.transpose([2, 1, 0]).reshape((b * n,)).connect(lif.a_in)
            used.append({"layer": i, "processes": ["Conv", "LIF"]})
        else:
            w = arrays[f"l{i}.weights"].astype(np.int64)
            dense = lava["Dense"](weights=np.kron(eye, w), weight_exp=int(m["weight_exp"]),
                                  num_weight_bits=int(m["num_weight_bits"]))
            prev.connect(dense.s_in)
            dense.a_out.connect(lif.a_in)
            used.append({"layer": i, "processes": ["Dense", "LIF"], **({"conv_on_dense": why} if why else {})})
        sink = lava["Sink"](shape=(b * n,), buffer=steps)
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
                                   "layer_processes": runs[0]["layer_processes"] if runs else [],
                                   "wall_s": time.perf_counter() - t0})
        except Exception:  # reported to the caller, which raises
            status["ok"] = False
            status["jobs"].append({"id": job["id"], "ok": False, "error": traceback.format_exc()})
            break
    (work / "status.json").write_text(json.dumps(status))
    return 0 if status["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
