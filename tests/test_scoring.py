"""Frame terms and their train-standardised sum (memfuse.scoring), and the fusion's pooled head."""

import numpy as np
import pytest

from memfuse.scoring import Standardiser, combine, masked_frame_max, parse_terms, sum_by_group


def test_masked_frame_max_ignores_padding_and_marks_empty_frames():
    values = np.array([[1.0, 5.0, 9.0], [2.0, 0.5, 7.0], [3.0, 3.0, 3.0]])
    padded = np.array([[False, False, True], [False, True, True], [True, True, True]])
    out = masked_frame_max(values, padded)
    assert out[0] == 5.0 and out[1] == 2.0 and np.isnan(out[2])


def test_standardiser_uses_train_frames_only_and_fills_empty_frames_with_the_train_minimum():
    st = Standardiser.fit(np.array([1.0, 2.0, 3.0, np.nan]))
    assert st.mean == pytest.approx(2.0) and st.std == pytest.approx(np.std([1.0, 2.0, 3.0])) and st.floor == 1.0
    z = st(np.array([2.0, np.nan, 2.0 + st.std]))
    np.testing.assert_allclose(z, [0.0, (1.0 - 2.0) / st.std, 1.0])
    assert Standardiser.fit(np.array([4.0, 4.0])).std == 1.0  # constant term: centred, not divided by 0


def test_combine_sums_standardised_terms_so_scale_does_not_set_the_weight():
    rng = np.random.default_rng(0)
    train = {"pose": rng.normal(0, 1, 500), "vel": rng.normal(0, 1000, 500)}
    test = {"pose": np.array([0.0, 3.0]), "vel": np.array([3000.0, 0.0])}
    total, z, stats = combine(train, test, ("pose", "vel"))
    # each test frame is 3 train-sigmas out in one term: equal totals, whatever the raw scale
    assert total[0] == pytest.approx(total[1], rel=0.1)
    assert set(z) == {"pose", "vel"} and stats["vel"]["std"] > 500
    with pytest.raises(ValueError, match="classifier"):
        parse_terms("classifier,speed")
    assert parse_terms("vel, classifier") == ("classifier", "vel")


def test_terms_of_one_source_share_one_vote():
    z = {"app": np.array([2.0, 0.0]), "app_rec": np.array([0.0, 0.0]), "vel": np.array([0.0, 1.0])}
    np.testing.assert_allclose(
        sum_by_group(z, ("app", "app_rec", "vel")), [1.0, 1.0]
    )  # appearance: mean of its two terms
    np.testing.assert_allclose(sum_by_group(z, ("app", "vel")), [2.0, 1.0])
