"""Bit-exactness of the Loihi emulator against Lava 0.10 itself (``Loihi2SimCfg(select_tag="fixed_pt")``).

Lava is found exactly as production code finds it: ``$FABRIC_LAVA_PYTHON``, else
``toolchains/lava/.venv/bin/python`` (``make setup-lava``). Without it these tests fail with
GoldenUnavailable and its reason; they are never skipped.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from actors.loihi.fixed import FixedLayer, effective_weights, emulate, fixed_program, program_layers
from actors.loihi.golden import (
    REPO_ROOT,
    GoldenUnavailable,
    golden_check,
    golden_check_many,
    lava_python,
)
from actors.loihi.runtime import LoihiRuntime
from fabric.model.snn import LifMLP, export_nir

pytestmark = pytest.mark.integration

N_NETS = 100


def _layer(rng: np.random.Generator, name: str, n_in: int, n_out: int, rate: float, stress: str) -> FixedLayer:
    """Random Lava fixed-point layer over the whole register space: every sign mode, 1..8 weight
    bits, weight_exp -8..7, any du/dv, 17-bit vth, 13-bit bias with exponent. ``stress`` "wrap"
    overflows the 24-bit current, "clip" saturates the voltage."""
    mode = {"wrap": "exc", "clip": "inh"}.get(stress) or str(rng.choice(["mixed", "exc", "inh", "zero"], p=[.7, .15, .1, .05]))
    w = rng.integers(-256, 256, (n_out, n_in))
    w = {"exc": np.abs(w), "inh": -np.abs(w), "zero": 0 * w}.get(mode, w)
    nwb = int(rng.integers(1, 9)) if rng.random() < 0.1 else int(rng.integers(3, 9))
    wexp = int(rng.integers(-8, 4))
    du = 4095 if rng.random() < 0.5 else int(rng.integers(0, 4096))
    dv = int(rng.choice([0, 4095, int(rng.integers(0, 4096))]))
    if stress:
        nwb, wexp, du, dv = 8, int(rng.integers(5, 8)), int(rng.integers(0, 64)), 0
    we = effective_weights(w, nwb).astype(float)
    drive = (np.sqrt((we**2).sum(1).mean() * rate) + abs(we.sum(1)).mean() * rate) * 2.0**wexp * 64 * min(4096 / (du + 1), 8)
    vth = 0 if rng.random() < 0.05 else int(np.clip(max(drive, 1.0) * rng.uniform(0.05, 1.0) / 64, 0, 2**17 - 1))
    bias_on = rng.random() < 0.4 or mode in ("inh", "zero")  # silent otherwise
    lo = 0 if mode in ("inh", "zero") else -4096
    return FixedLayer(name=name, weights=w.astype(np.int32), weight_exp=wexp, num_weight_bits=nwb, du=du, dv=dv, vth=vth,
                      bias_mant=(rng.integers(lo, 4096, n_out) * bias_on).astype(np.int32),
                      bias_exp=rng.integers(0, 8, n_out).astype(np.int32))


def random_net(rng: np.random.Generator, tries: int = 6) -> tuple[list[FixedLayer], np.ndarray]:
    """1-3 layers of 1-24 neurons, 1-4 samples x 4-15 steps; redrawn (a few times) until every
    layer spikes but not on every step, so the comparison is informative."""
    stress = str(rng.choice(["", "wrap", "clip"], p=[0.8, 0.1, 0.1]))
    for _ in range(tries):
        sizes = [int(s) for s in rng.integers(1, 25, int(rng.integers(2, 5)))]
        if stress:
            sizes[0] = max(sizes[0], 12)
        layers = [_layer(rng, f"l{i}", a, b, 0.5 if i == 0 else 0.3, stress if i == 0 else "")
                  for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False))]
        x = (rng.random((int(rng.integers(1, 5)), int(rng.integers(4, 16)), sizes[0])) < rng.uniform(0.2, 0.6))
        if stress or all(r.any() and not r.all() for r in emulate(layers, x).rasters):
            break
    return layers, x.astype(np.uint8)


def test_bit_exact_on_100_random_networks() -> None:
    rng = np.random.default_rng(20240601)
    nets = [random_net(rng) for _ in range(N_NETS)]
    programs = [fixed_program(layers) for layers, _ in nets]
    emulations = [emulate(layers, x, count_events=True) for layers, x in nets]
    results = golden_check_many(programs, [x for _, x in nets], emulations=emulations)
    bad = [(i, r.summary()) for i, r in enumerate(results) if not r.bit_exact]
    assert not bad, bad[:3]
    # the comparison covered what matters: spiking layers of every shape, current wraps, voltage clips
    active = [bool(r.any()) for em in emulations for r in em.rasters]
    assert sum(active) >= 0.9 * len(active)
    assert sum(sum(em.u_wraps) > 0 for em in emulations) >= 5
    assert sum(sum(em.v_clips) > 0 for em in emulations) >= 5
    assert {len(layers) for layers, _ in nets} == {1, 2, 3}
    assert sum(r.samples * r.steps * r.layers for r in results) > 1000


def _cuba_if_graph() -> nir.NIRGraph:
    rng = np.random.default_rng(5)
    n_in, n_h, n_out = 12, 9, 4
    nodes = {
        "input": nir.Input(input_type={"input": np.array([n_in])}),
        "fc0": nir.Affine(weight=rng.normal(0, 0.6, (n_h, n_in)).astype(np.float32), bias=np.full(n_h, 0.02, np.float32)),
        "cuba": nir.CubaLIF(tau_syn=np.full(n_h, 0.005), tau_mem=np.full(n_h, 0.02), r=np.full(n_h, 20.0),
                            v_leak=np.zeros(n_h), v_threshold=np.full(n_h, 1.0)),
        "fc1": nir.Linear(weight=rng.normal(0, 0.8, (n_out, n_h)).astype(np.float32)),
        "if": nir.IF(r=np.ones(n_out), v_threshold=np.full(n_out, 0.7)),
        "output": nir.Output(output_type={"output": np.array([n_out])}),
    }
    edges = [("input", "fc0"), ("fc0", "cuba"), ("cuba", "fc1"), ("fc1", "if"), ("if", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def test_compiled_programs_bit_exact_and_runtime_golden_mode() -> None:
    torch.manual_seed(3)
    model = LifMLP(20, [16, 12], 5, beta=0.85, threshold=0.8)
    with torch.no_grad():
        for fc in model.fcs:
            fc.weight.mul_(2.5)
    graphs = [export_nir(model), _cuba_if_graph()]
    rng = np.random.default_rng(9)
    programs, inputs = [], []
    for g in graphs:
        prog = LoihiRuntime().compile(g)
        programs.append(prog)
        inputs.append((rng.random((6, 20, prog.meta["n_in"])) < 0.4).astype(np.uint8))
    results = golden_check_many(programs, inputs)
    assert all(r.bit_exact for r in results), [r.summary() for r in results]
    assert all(min(emulate(program_layers(p), x).spikes) > 0 for p, x in zip(programs, inputs, strict=True))
    # the runtime in golden mode checks every run against Lava and says so in the telemetry
    rt = LoihiRuntime(golden=True)
    rt.load(programs[0])
    res = rt.run(inputs[0])
    assert rt.last_golden is not None and rt.last_golden.bit_exact
    assert "bit-exact" in res.telemetry.sources["golden"]
    assert rt.last_golden.steps == 20 + 3  # the padded schedule the runtime actually ran


def test_mismatch_is_reported_with_location() -> None:
    layer = FixedLayer(name="l0", weights=np.array([[60, -20, 90]], dtype=np.int32), weight_exp=0, num_weight_bits=8,
                       du=4095, dv=200, vth=100, bias_mant=np.zeros(1, np.int32), bias_exp=np.zeros(1, np.int32))
    shifted = replace(layer, vth=150)  # a_in = 130: u = 8320 crosses 100 << 6 in one step, 150 << 6 in two
    x = np.zeros((2, 10, 3), dtype=np.uint8)
    x[:, 2:, 0] = 1
    x[:, 2:, 2] = 1
    wrong = emulate([shifted], x)
    assert not np.array_equal(wrong.rasters[0], emulate([layer], x).rasters[0])
    res = golden_check(fixed_program([layer]), x, emulation=wrong)
    assert not res.bit_exact and res.mismatches > 0
    fm = res.first_mismatch
    assert fm is not None and fm["layer"] == 0 and fm["step"] >= 3 and fm["lava"] != fm["emulator"]
    assert "MISMATCH" in res.summary()


def test_absent_lava_gives_clear_golden_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    prog = fixed_program([FixedLayer(name="l", weights=np.ones((1, 1), np.int32), weight_exp=0, num_weight_bits=8,
                                     du=4095, dv=0, vth=1, bias_mant=np.zeros(1, np.int32), bias_exp=np.zeros(1, np.int32))])
    x = np.ones((1, 4, 1), dtype=np.uint8)
    monkeypatch.setenv("FABRIC_LAVA_PYTHON", str(tmp_path / "absent" / "python"))
    with pytest.raises(GoldenUnavailable, match="no Lava python at") as info:
        golden_check(prog, x)
    assert "make setup-lava" in info.value.reason
    # an interpreter without lava (this test's own) is reported as such, with the import error
    monkeypatch.setenv("FABRIC_LAVA_PYTHON", sys.executable)
    with pytest.raises(GoldenUnavailable, match="cannot import lava") as info:
        golden_check(prog, x)
    assert sys.executable in info.value.reason
    monkeypatch.delenv("FABRIC_LAVA_PYTHON")
    assert lava_python() == REPO_ROOT / "toolchains" / "lava" / ".venv" / "bin" / "python"
