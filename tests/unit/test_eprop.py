"""On-device e-prop learning of the ReckOn-style fpga kind (actors/fpga/runtime.py learn, actors/fpga/eprop.py)."""

from __future__ import annotations

import numpy as np
import pytest

from actors.fpga.eprop import forward_int
from fabric.ir.recurrent import build_recurrent_graph
from fabric.kinds import make_runtime
from fabric.records import Program

N_IN, N_HID, N_OUT, T = 24, 32, 3, 20


def task(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class k drives input channels 8k..8k+7 at 40 % per tick, every other channel fires at 5 %."""
    r = np.random.default_rng(seed)
    y = r.integers(0, N_OUT, n)
    p = np.full((n, N_IN), 0.05)
    for k in range(N_OUT):
        p[y == k, 8 * k:8 * (k + 1)] = 0.4
    return (r.random((n, T, N_IN)) < p[:, None, :]).astype(np.float32), y


def graph(output: str = "li"):
    rng = np.random.default_rng(0)
    return build_recurrent_graph(rng.normal(0, 0.5, (N_HID, N_IN)), rng.normal(0, 0.1, (N_HID, N_HID)),
                                 rng.normal(0, 0.3, (N_OUT, N_HID)), output=output, beta=0.9)


@pytest.fixture(scope="module")
def data():
    return task(240, 1), task(150, 2)


@pytest.mark.parametrize("feedback", ["symmetric", "random"])
def test_eprop_learns_on_device_well_above_chance(feedback, data):
    (x, y), (xt, yt) = data
    rt = make_runtime("fpga")
    before_prog = rt.compile(graph())
    rt.load(before_prog)
    before = float(np.mean(rt.run(xt).predictions == yt))
    learnt = rt.learn(x, y, epochs=4, lr=0.05, seed=0, feedback=feedback)
    after = float(np.mean(rt.run(xt).predictions == yt))
    assert after >= 0.9 and after - before >= 0.3, (before, after)  # chance is 1/3
    hist = learnt.meta["eprop"]["history"]
    assert len(hist) == 4 and hist[-1]["loss"] < hist[0]["loss"]
    # 8-bit weights throughout; the learnt program is a new artifact, the old one is unchanged
    for k in ("w_in", "w_rec", "w_out"):
        assert learnt.arrays[k].dtype == np.int8 and np.abs(learnt.arrays[k].astype(int)).max() <= 127
    assert learnt.digest != before_prog.digest and learnt.meta["eprop"]["parent"] == before_prog.digest
    assert not np.array_equal(learnt.arrays["w_in"], before_prog.arrays["w_in"])
    rt2 = make_runtime("fpga")
    rt2.load(Program.from_bytes(learnt.to_bytes()))
    np.testing.assert_array_equal(rt2.run(xt).counts, rt.run(xt).counts)


def test_eprop_is_deterministic_per_seed(data):
    (x, y), _ = data
    progs = []
    for _ in range(2):
        rt = make_runtime("fpga")
        rt.load(rt.compile(graph()))
        progs.append(rt.learn(x[:60], y[:60], epochs=1, lr=0.05, seed=3))
    assert progs[0].digest == progs[1].digest


def test_integer_forward_matches_the_emulator(data):
    """The learning rule's forward pass is the device datapath: same readout as FpgaRuntime.run."""
    from actors.fpga.eprop import EpropState

    _, (xt, _) = data
    rt = make_runtime("fpga")
    prog = rt.compile(graph())
    rt.load(prog)
    a = prog.arrays
    st = EpropState(w_in=a["w_in"].astype(np.int64), w_rec=a["w_rec"].astype(np.int64),
                    w_out=a["w_out"].astype(np.int64), thr_h=a["thr_h"], alpha=a["alpha"], kappa=int(a["kappa"][0]),
                    kappa_frac=7, shifts=tuple(int(s) for s in a["shifts"]), s_o=float(a["s_o"][0]),
                    bias_input=bool(prog.meta["bias_input"]))
    v_o = forward_int(st, xt[:20])
    np.testing.assert_allclose(v_o.mean(axis=1) / st.s_o, rt.run(xt[:20]).counts)


def test_learn_refuses_bad_input_with_a_clear_error(data):
    (x, y), _ = data
    rt = make_runtime("fpga")
    with pytest.raises(RuntimeError, match="no program loaded"):
        rt.learn(x, y)
    rt.load(rt.compile(graph(output="lif")))
    with pytest.raises(ValueError, match="leaky-integrator"):
        rt.learn(x, y)
    rt.load(rt.compile(graph()))
    with pytest.raises(ValueError, match="labels must be 240 integers in \\[0, 3\\)"):
        rt.learn(x, y + 5)
    with pytest.raises(ValueError, match="last dimension must be 24"):
        rt.learn(x[:, :, :10], y)
