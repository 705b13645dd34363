import numpy as np
import pytest

from fabric.model.early_exit import topk_cutoff


def test_exits_when_top1_is_stable_and_runs_full_otherwise():
    r = np.zeros((2, 10, 3), dtype=np.uint8)
    r[0, :, 1] = 1  # sample 0: class 1 leads from step 0
    r[1, 0, 0] = 1  # sample 1: classes 0 and 2 swap the lead every step
    r[1, 2::2, 0] = 2
    r[1, 1::2, 2] = 2
    res = topk_cutoff(r, k=1, patience=3)
    assert res.exit_step[0] == 4  # stable at steps 1, 2, 3 after step 0
    assert res.predictions[0] == 1
    assert res.exit_step[1] == 10 and res.predictions[1] == np.argmax(r[1].sum(0))
    assert 0 < res.saved_fraction < 1


def test_silent_samples_do_not_exit_early():
    r = np.zeros((1, 8, 4), dtype=np.uint8)
    assert topk_cutoff(r, k=1, patience=2).exit_step[0] == 8


def test_predictions_at_full_horizon_match_argmax_when_never_stable():
    rng = np.random.default_rng(0)
    r = (rng.random((50, 20, 5)) < 0.3).astype(np.uint8)
    res = topk_cutoff(r, k=2, patience=25)  # patience longer than T: never exits
    assert (res.exit_step == 20).all()
    np.testing.assert_array_equal(res.predictions, r.sum(1).argmax(1))


@pytest.mark.parametrize("kw,msg", [({"k": 0}, "k must be"), ({"k": 5}, "k must be"), ({"patience": 0}, "patience")])
def test_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        topk_cutoff(np.zeros((1, 4, 5)), **kw)
