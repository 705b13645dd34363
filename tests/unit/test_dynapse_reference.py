"""dynapse against SynSense Rockpool 3.1.0 DynapSim (DYNAP-SE2 model): a statistical golden check on the
same weights and chip instance (rates + output class within stated tolerances), a check that fails
when the reference disagrees or the outputs are silent, and Rockpool's CAM allocator as the fan-in
fit (64 entries fit, 65 are refused with its DRCError text). One small program, JIT paid once. No Ray."""

from __future__ import annotations

import nir
import numpy as np
import pytest

from actors.dynapse import reference as R
from actors.dynapse.runtime import DynapseRuntime
from fabric.kinds import capabilities
from fabric.records import FitError


def _lif(n: int, thr: float = 1.0) -> nir.LIF:
    return nir.LIF(tau=np.full(n, 0.02), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.full(n, thr),
                   v_reset=np.zeros(n))


def _graph(seed: int = 2) -> nir.NIRGraph:
    """A 4-class toy classifier: input pair k drives hidden triple k drives output k (plus weak cross-talk)."""
    rng = np.random.default_rng(seed)
    w0 = rng.uniform(0, 0.2, (12, 8))
    w1 = rng.uniform(0, 0.2, (4, 12))
    for k in range(4):
        w0[3 * k:3 * k + 3, 2 * k:2 * k + 2] += rng.uniform(0.8, 1.0, (3, 2))
        w1[k, 3 * k:3 * k + 3] += rng.uniform(0.8, 1.0, 3)
    nodes = {"input": nir.Input(input_type={"input": np.array([8])}),
             "fc0": nir.Affine(weight=w0.astype(np.float32), bias=np.zeros(12, np.float32)),
             "n0": _lif(12, 0.5),
             "fc1": nir.Affine(weight=w1.astype(np.float32), bias=np.zeros(4, np.float32)),
             "n1": _lif(4, 0.1),
             "output": nir.Output(output_type={"output": np.array([4])})}
    edges = [("input", "fc0"), ("fc0", "n0"), ("n0", "fc1"), ("fc1", "n1"), ("n1", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"dt": 1e-3})


def _spikes(n: int = 8, steps: int = 60) -> np.ndarray:
    """Sample i: input pair i % 4 at rate 0.5, the rest at 0.05."""
    rng = np.random.default_rng(1)
    rate = np.full((n, 1, 8), 0.05)
    for i in range(n):
        rate[i, 0, 2 * (i % 4):2 * (i % 4) + 2] = 0.5
    return (rng.random((n, steps, 8)) < rate).astype(np.float32)


@pytest.fixture(scope="module")
def checked() -> tuple[DynapseRuntime, object, np.ndarray, dict]:
    rt = DynapseRuntime()
    prog = rt.compile(_graph())
    x = _spikes()
    return rt, prog, x, rt.reference_check(prog, x)


def test_reference_capability_is_declared() -> None:
    assert "DynapSim" in (capabilities("dynapse").reference or "")


def test_dynapsim_agrees_statistically_on_the_same_chip(checked) -> None:
    rt, prog, x, out = checked
    f, tol = out["figures"], out["tolerances"]
    assert out["status"] == "statistical-pass", out["summary"]
    assert tol == R.TOLERANCES and out["samples"] == 8 and f["samples_with_output"] >= 4, f
    assert f["rate_correlation"] >= tol["rate_correlation_min"] and f["rate_mae_rel"] <= tol["rate_mae_rel_max"]
    assert f["class_agreement"] >= tol["class_agreement_min"] and f["neurons"] == 16
    assert "DynapSim" in out["summary"] and "statistical-pass" in out["summary"]


def test_check_fails_on_a_disagreeing_reference_and_on_silence(checked) -> None:
    rt, prog, x, _ = checked
    fabric = rt.layer_rasters(prog, x)
    assert sum(float(r.sum()) for r in fabric) > 0
    rng = np.random.default_rng(0)
    wrong = [r[:, :, rng.permutation(r.shape[2])] * 0 + (rng.random(r.shape) < 0.3) for r in fabric]
    bad = R.statistical_check(fabric, wrong, "test")
    assert bad["status"] == "statistical-fail" and bad["figures"]["rate_mae_rel"] > R.TOLERANCES["rate_mae_rel_max"]
    silent = [np.zeros_like(r) for r in fabric]
    res = R.statistical_check(silent, silent, "test")
    assert res["status"] == "statistical-fail" and "silent" in res["summary"]


def test_chip_instance_factors_are_the_emulators(checked) -> None:
    rt, prog, _, _ = checked
    f = rt.mismatch_factors(prog)
    assert len(f) == 2 and set(f[0]) == set(R.FACTOR_KEYS)
    assert 0.1 < float(np.std(f[0]["i_tau"])) < 0.35  # CV 0.2 drawn per neuron
    again = rt.mismatch_factors(prog)
    assert np.array_equal(f[1]["i_spkthr"], again[1]["i_spkthr"])  # seeded: the same chip


def test_rockpool_allocator_fits_64_cam_entries_and_refuses_65() -> None:
    assert R.cam_fit([np.ones((3, 64), dtype=np.int64)], 64) is None
    rec = np.ones((3, 3), dtype=np.int64) + np.eye(3, dtype=np.int64)  # 4 recurrent entries per neuron
    assert R.cam_fit([np.ones((3, 60), dtype=np.int64), rec], 64) is None  # input + recurrent = 64
    assert R.cam_fit([np.ones((3, 61), dtype=np.int64), rec], 64) == "Maximum synapse limit per neuron reached!"
    assert R.cam_fit([np.ones((3, 65), dtype=np.int64)], 64) == "Maximum synapse limit per neuron reached!"


def test_compile_carries_the_allocator_refusal_one_over() -> None:
    def g(n_in: int) -> nir.NIRGraph:
        return nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([n_in])}),
                                   "fc": nir.Affine(weight=np.ones((2, n_in), np.float32), bias=np.zeros(2, np.float32)),
                                   "n": _lif(2), "output": nir.Output(output_type={"output": np.array([2])})},
                            edges=[("input", "fc"), ("fc", "n"), ("n", "output")], metadata={"dt": 1e-3})
    rt = DynapseRuntime()
    assert rt.compile(g(64), {"weight_step": 1.0}).fit.ok
    with pytest.raises(FitError, match="Maximum synapse limit per neuron reached"):
        rt.compile(g(65), {"weight_step": 1.0})
