"""memfuse.metrics: ROC, AUC, EER and score smoothing."""

import numpy as np
import pytest

from memfuse.metrics import equal_error_rate, macro_auc, micro_auc, smooth_scores


# ---------------------------------------------------------------- metrics
def test_roc_and_auc_agree_with_scikit_learn_including_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(size=500) + labels, 1)  # many ties
    assert micro_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="single class"):
        micro_auc(scores, np.zeros(500))


def test_micro_auc_and_eer_known_values():
    labels = np.array([0, 0, 1, 1])
    assert micro_auc(np.array([0.1, 0.4, 0.35, 0.8]), labels) == pytest.approx(0.75)
    assert equal_error_rate(np.array([0.1, 0.2, 0.8, 0.9]), labels) == pytest.approx(0.0)
    assert equal_error_rate(np.array([0.9, 0.8, 0.2, 0.1]), labels) == pytest.approx(1.0)
    assert equal_error_rate(np.array([0.1, 0.4, 0.35, 0.8]), labels) == pytest.approx(0.5)


def test_macro_auc_pads_single_class_videos():
    scores = np.array([0.1, 0.9, 0.2, 0.3, 0.5])
    labels = np.array([0, 1, 0, 0, 0])
    # video 1 perfectly ranked; video 2 all normal: padded with (0, 0) and (1, 1) it scores
    # 0, 0.5, 1 (scaled) + pads -> labels [0,0,0,0,1], scores [0,.5,1,0,1]: AUC 0.875
    assert macro_auc(scores, labels, np.array([2, 5])) == pytest.approx((1.0 + 0.875) / 2)


def test_smoothing_per_video_does_not_leak():
    s = np.array([0, 0, 0, 10, 10, 10], dtype=float)
    per_video = smooth_scores(s, np.array([3, 6]), sigma=1)
    whole = smooth_scores(s, np.array([3, 6]), sigma=1, per_video=False)
    np.testing.assert_allclose(per_video, s)
    assert whole[2] > 0
