"""The fused LIF's data-dependent v-clip bound (``actors.loihi.fixed._clip_reachable``).

Why: the fast path skips the per-step clip when the drives actually seen cannot push ``v`` to
-(2^23-1); a wrong bound would silently drop clips. These pin the bound one step either side of the
limit and check the fast path against Lava's equations (int64) both when it clips and when it skips.
"""

from __future__ import annotations

import numpy as np

from actors.loihi.fixed import V_LIMIT, FixedLayer, _clip_reachable, _plan, emulate


def layer(n_in: int, n_out: int, dv: int, w: int, bias_mant: int = 0) -> FixedLayer:
    return FixedLayer(name="l", weights=np.full((n_out, n_in), w, np.int32), weight_exp=7, num_weight_bits=8,
                      du=4095, dv=dv, vth=1000, bias_mant=np.full(n_out, bias_mant, np.int32),
                      bias_exp=np.zeros(n_out, np.int32))


def lava_v_clips(lay: FixedLayer, x: np.ndarray) -> tuple[np.ndarray, int]:
    """Spikes and clip count from Lava's Dense -> LIF with du = 4095 (u is this step's input), int64."""
    bsz, steps, _ = x.shape
    w = lay.weights.astype(np.int64)  # mixed sign, 8 bits: effective weights are the weights
    a_buff = np.zeros((bsz, lay.n_out), np.int64)
    v = np.zeros((bsz, lay.n_out), np.int64)
    out = np.zeros((bsz, steps, lay.n_out), np.uint8)
    clips = 0
    for t in range(steps):
        a_in, a_buff = a_buff, ((x[:, t] != 0).astype(np.int64) @ w.T) << lay.weight_exp
        p = v * (4096 - lay.dv)
        v = np.sign(p) * (np.abs(p) >> 12) + (a_in << 6) + lay.bias_mant.astype(np.int64)
        clips += int((v < -V_LIMIT).sum())
        v = np.maximum(v, -V_LIMIT)
        s = v > (lay.vth << 6)
        out[:, t] = s
        v[s] = 0
    return out, clips


def test_bound_one_step_either_side_of_the_limit() -> None:
    plan = _plan(layer(4, 3, dv=4096 // 8, w=-1))  # 1/(1-c) = 8
    m = V_LIMIT // 8
    assert not _clip_reachable(np.full((1, 5, 3), -(m - 1), np.int32), plan, 100)
    assert _clip_reachable(np.full((1, 5, 3), -(m + 1), np.int32), plan, 100)
    # few steps: the geometric sum stops at `steps`
    assert not _clip_reachable(np.full((1, 2, 3), -(V_LIMIT // 3), np.int32), plan, 3)
    assert _clip_reachable(np.full((1, 2, 3), -(V_LIMIT // 3 + 1), np.int32), plan, 3)


def test_fast_path_clips_exactly_when_drives_reach_the_limit() -> None:
    rng = np.random.default_rng(5)
    # strong negative weights with no leak (dv = 0): v runs down to the clip within a few steps
    strong = layer(64, 8, dv=0, w=-255)
    x = (rng.random((3, 40, 64)) < 0.5).astype(np.uint8)
    want, clips = lava_v_clips(strong, x)
    em = emulate([strong], x, count_events=True)
    assert clips > 0 and em.v_clips == [clips]
    np.testing.assert_array_equal(em.rasters[0], want)
    # the same layer on a sparse input: the static bound says "can clip", the data says no
    sparse = np.zeros_like(x)
    sparse[:, 0, 0] = 1
    assert _plan(strong).v_clip
    want, clips = lava_v_clips(strong, sparse)
    em = emulate([strong], sparse, count_events=True)
    assert clips == 0 and em.v_clips == [0]
    np.testing.assert_array_equal(em.rasters[0], want)
