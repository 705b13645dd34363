"""Loihi emulator vs Lava 0.10 fixed_pt on the same program and the same inputs.

Prints whether the emulator is bit-exact with Lava on the samples Lava ran, and sample-timesteps per
second of: the emulator at batch 1 and 256; Lava (one sample per run, a few samples measured and
extrapolated linearly, since Lava has no batch dimension: 256 samples cost 256 runs); and bare torch
matmuls of the same layer shapes over all samples and steps: float32, and the exact int8 GEMM
(``torch._int_mm``) the emulator uses for its synaptic accumulation (its roofline). Lava is given two figures: end to end per sample (build + run, what a
user pays per sample) and marginal per step (slope between a short and a long run, excluding start-up,
the most favourable to Lava). Ratios use the marginal figure unless said otherwise.

Usage: python bench/loihi_vs_lava.py [--timesteps 100] [--lava-samples 3] [--sizes 256,128,10]
Needs the Lava toolchain (FABRIC_LAVA_PYTHON or toolchains/lava/.venv). Exit 1 if not bit-exact.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from actors.loihi.fixed import (  # noqa: E402
    _HAVE_INT_MM,
    _accumulate,
    _column_counts,
    _lif_fast,
    _plan,
    emulate,
    program_layers,
)
from actors.loihi.golden import run_lava  # noqa: E402
from actors.loihi.runtime import HANDLERS, LoihiRuntime  # noqa: E402
from fabric.ir.lowering import lower  # noqa: E402
from fabric.model.snn import LifMLP, export_nir, simulate_layers  # noqa: E402


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` wall-clock timings (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _lif_copy(acc: np.ndarray, plan: object, out: np.ndarray) -> None:
    """The fused LIF on a copy (it scales the sums in place); the copy's cost is subtracted."""
    _lif_fast(acc.copy(), plan, out, None)


def breakdown(layers: list, x: np.ndarray, repeats: int = 3) -> list[tuple[str, float]]:
    """Where the emulator's time goes: process CPU milliseconds (summed over threads, so other load on
    the machine inflates it less than wall time) of each phase over the whole batch, unsplit. Phases:
    input spike counting, then per layer the exact int8/BLAS accumulation, the per-step LIF update
    and the output spike counting (fast-path layers; other layers show nan for the LIF update)."""
    def cpu(fn: Callable[[], object]) -> float:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        return best * 1e3

    bsz, steps, _ = x.shape
    h = np.ascontiguousarray(x).view(np.bool_)
    rows: list[tuple[str, float]] = [("input spike counts", cpu(partial(_column_counts, h)))]
    for layer in layers:
        plan = _plan(layer)
        flat = h.reshape(bsz * steps, -1).view(np.int8)
        rows.append((f"{layer.name}: accumulate ({plan.w_t.dtype} GEMM)", cpu(partial(_accumulate, flat, plan))))
        acc = _accumulate(flat, plan).reshape(bsz, steps, -1)
        out = np.empty((bsz, steps, layer.n_out), dtype=np.bool_)
        if plan.u_simple and plan.rec_t is None:
            rows.append((f"{layer.name}: LIF update (fused, {steps} steps)", cpu(partial(_lif_copy, acc, plan, out))
                         - cpu(acc.copy)))
            rows.append((f"{layer.name}: output spike counts", cpu(partial(_column_counts, out))))
        else:
            rows.append((f"{layer.name}: LIF update", float("nan")))
            out = emulate([layer], h).rasters[0].view(np.bool_)
        h = out
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timesteps", type=int, default=100)
    ap.add_argument("--short-timesteps", type=int, default=20, help="short Lava run for the per-step slope")
    ap.add_argument("--lava-samples", type=int, default=3)
    ap.add_argument("--sizes", default="256,128,10", help="layer sizes n_in,hidden...,n_out")
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    steps, short, k = args.timesteps, args.short_timesteps, args.lava_samples

    torch.manual_seed(0)
    model = LifMLP(sizes[0], sizes[1:-1], sizes[-1], beta=0.9, threshold=1.0)
    with torch.no_grad():
        for fc in model.fcs:
            fc.weight.mul_(2.0)
    program = LoihiRuntime().compile(export_nir(model))
    layers = program_layers(program)
    rng = np.random.default_rng(0)
    x = (rng.random((args.batch, steps, sizes[0])) < rng.uniform(0.05, 0.3, (args.batch, 1, sizes[0]))).astype(np.uint8)

    # emulator
    em = emulate(layers, x)
    t_b1 = best_of(lambda: emulate(layers, x[:1]), 5)
    t_bn = best_of(lambda: emulate(layers, x), 3)
    emu_b1 = steps / t_b1
    emu_bn = args.batch * steps / t_bn

    # bare torch matmul of the same shapes (float32, all samples x steps at once)
    mats = [(torch.rand(args.batch * steps, fl.n_in), torch.rand(fl.n_in, fl.n_out)) for fl in layers]
    t_mm = best_of(lambda: [a @ w for a, w in mats], 5)
    roof = args.batch * steps / t_mm
    # the emulator's own accumulation is an exact int8 GEMM where torch has one (torch._int_mm)
    roof8 = float("nan")
    if _HAVE_INT_MM:
        mats8 = [(torch.randint(0, 2, (args.batch * steps, fl.n_in), dtype=torch.int8),
                  torch.randint(-127, 128, (fl.n_in, fl.n_out), dtype=torch.int8)) for fl in layers]
        roof8 = args.batch * steps / best_of(lambda: [torch._int_mm(a, w) for a, w in mats8], 5)

    # Lava: k samples, one per run, at the full length and at a short length (per-step slope)
    (lava_full, lava_short), info = run_lava([(program, x[:k]), (program, x[:k, :short])], block=1)
    runs_full, runs_short = info["jobs"][0]["runs"], info["jobs"][1]["runs"]
    e2e = float(np.mean([r["build_s"] + r["run_s"] for r in runs_full]))
    per_step = (np.mean([r["run_s"] for r in runs_full]) - np.mean([r["run_s"] for r in runs_short])) / (steps - short)
    lava_e2e = steps / e2e
    lava_marg = 1.0 / per_step if per_step > 0 else float("nan")

    # quantization: the same net in float (fabric.model.snn) vs the fixed-point emulator, aligned output
    runtime = LoihiRuntime()
    runtime.load(program)
    fixed_counts = runtime.run(x).counts
    ctx = lower(export_nir(model), "loihi", HANDLERS)
    float_counts = simulate_layers(ctx.layers, x, ctx.dt)[0].sum(axis=1)
    agree = float((float_counts.argmax(1) == fixed_counts.argmax(1)).mean())
    corr = float(np.corrcoef(float_counts.ravel(), fixed_counts.ravel())[0, 1])
    wq = max(q["weight_rel_error"] for q in program.meta["quantization"])

    exact = all(np.array_equal(lr, er[:k]) for lr, er in zip(lava_full, em.rasters, strict=True))
    exact_short = all(np.array_equal(lr, emulate(layers, x[:k, :short]).rasters[i])
                      for i, lr in enumerate(lava_short))
    bit_exact = exact and exact_short
    spikes = [int(r.sum()) for r in em.rasters]

    print(f"loihi emulator vs Lava {info['lava_version']} fixed_pt  (network {sizes}, {steps} steps, "
          f"batch {args.batch}, torch threads {torch.get_num_threads()})")
    print(f"  spikes per layer over the batch: {spikes}")
    print(f"  bit-exact on {k} samples x {len(layers)} layers ({steps} and {short} steps): {'yes' if bit_exact else 'NO'}")
    print(f"  quantization: max relative weight error {100 * wq:.2f} %; vs float model: argmax agreement "
          f"{100 * agree:.1f} %, output-count correlation {corr:.4f}")
    print("  sample-timesteps/s:")
    print(f"    emulator batch 1          {emu_b1:14,.0f}")
    print(f"    emulator batch {args.batch:<10} {emu_bn:14,.0f}")
    print(f"    Lava end-to-end/sample    {lava_e2e:14,.1f}   ({e2e:.3f} s per {steps}-step sample incl. build+start-up)")
    print(f"    Lava marginal per step    {lava_marg:14,.1f}   ({per_step * 1e3:.3f} ms/step, start-up excluded)")
    print(f"    torch matmul roofline     {roof:14,.0f}   (batch {args.batch}, float32, same layer shapes)")
    print(f"    torch int8 GEMM roofline  {roof8:14,.0f}   (torch._int_mm, the emulator's accumulation path)")
    print("  ratios:")
    print(f"    emulator/Lava batch 1:              {emu_b1 / lava_marg:10,.0f}x marginal   {emu_b1 / lava_e2e:10,.0f}x end-to-end")
    print(f"    emulator/Lava batch {args.batch:<4}:          {emu_bn / lava_marg:10,.0f}x marginal   "
          f"{emu_bn / lava_e2e:10,.0f}x end-to-end  (Lava extrapolated: {args.batch} samples = {args.batch} runs)")
    print(f"    emulator/torch fp32 matmul:         {emu_bn / roof:10.3f}  (>1: the int8 GEMM beats the fp32 roofline)")
    print(f"    emulator/torch int8 GEMM:           {emu_bn / roof8:10.3f}  (fraction of the bare accumulation cost)")
    rows = breakdown(layers, x)
    total = sum(ms for _, ms in rows if ms == ms)
    print(f"  where the time goes (process CPU ms over batch {args.batch} x {steps} steps, unsplit; the emulator "
          "splits the batch over threads):")
    for name, ms in rows:
        print(f"    {name:<48} {ms:8.2f} ms  {100 * ms / total:5.1f} %")
    target = emu_bn / lava_marg >= 1000
    print(f"  target emulator >= 1000x Lava at batch {args.batch} (marginal): {'met' if target else 'NOT met'}")
    return 0 if bit_exact else 1


if __name__ == "__main__":
    sys.exit(main())
