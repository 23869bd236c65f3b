"""Frame terms, their calibration on normal frames and their combination (memfuse.scoring),
and the held-out calibration by cross-fitting (memfuse.calibration)."""

import numpy as np
import pytest
import torch

from memfuse.calibration import FitSettings, cross_fit, nearest_train_distance, object_folds, video_folds
from memfuse.scoring import (
    MIN_HEIGHT_SHARE,
    TAIL_QUANTILE,
    Calibration,
    combine,
    combine_values,
    masked_frame_max,
    object_scores,
    parse_terms,
    relative_speed,
)


def test_masked_frame_max_ignores_padding_and_marks_empty_frames():
    values = np.array([[1.0, 5.0, 9.0], [2.0, 0.5, 7.0], [3.0, 3.0, 3.0]])
    padded = np.array([[False, False, True], [False, True, True], [True, True, True]])
    out = masked_frame_max(values, padded)
    assert out[0] == 5.0 and out[1] == 2.0 and np.isnan(out[2])


def test_relative_speed_is_the_speed_at_the_reference_height():
    speed = np.array([2.0, 2.0, 2.0, 2.0, 3.0], np.float32)
    heights = np.array([100.0, 50.0, 200.0, 1.0, np.nan])  # near, far, very near, a flicker, whole frame
    out = relative_speed(speed, heights, reference=100.0)
    # a far person's 2 px a frame is a near one's 4; a whole-frame entry keeps its speed
    np.testing.assert_allclose(out, [2.0, 4.0, 1.0, 2.0 / MIN_HEIGHT_SHARE, 3.0], rtol=1e-6)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(relative_speed(speed, None, 100.0), speed)  # no boxes: the plain speed
    np.testing.assert_array_equal(relative_speed(speed, heights, None), speed)


def test_calibration_z_uses_reference_frames_only_and_fills_empty_frames_with_the_minimum():
    c = Calibration.fit(np.array([1.0, 2.0, 3.0, np.nan]))
    assert c.mean == pytest.approx(2.0) and c.std == pytest.approx(np.std([1.0, 2.0, 3.0])) and c.floor == 1.0
    np.testing.assert_allclose(c.z(np.array([2.0, np.nan, 2.0 + c.std])), [0.0, (1.0 - 2.0) / c.std, 1.0])
    assert Calibration.fit(np.array([4.0, 4.0])).std == 1.0  # constant term: centred, not divided by 0


def test_evidence_is_minus_log_of_the_reference_share_above_with_an_exponential_tail():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=20000)
    c = Calibration.fit(reference)
    median, top = np.median(reference), reference.max()
    assert c.evidence(np.array([median]))[0] == pytest.approx(np.log(2), abs=0.02)
    assert c.evidence(np.array([reference.min() - 1, np.nan])).tolist() == [0.0, 0.0]  # nothing unusual
    # continuous at the threshold, then rising past the largest reference value instead of saturating
    at = c.evidence(np.array([c.threshold - 1e-9, c.threshold + 1e-9]))
    assert at[0] == pytest.approx(-np.log(1 - TAIL_QUANTILE), rel=1e-3) and at[1] == pytest.approx(at[0], rel=1e-3)
    far = c.evidence(np.array([top, top + 1, top + 2]))
    assert far[0] > np.log(len(reference)) - 2 and far[1] > far[0] + 0.5 and far[2] > far[1] + 0.5
    # monotone everywhere
    grid = np.linspace(-5, 8, 500)
    assert (np.diff(c.evidence(grid)) >= -1e-12).all()
    # a term without signal adds about 1 per frame (-log of a uniform share), whatever its scale
    fresh = rng.normal(size=20000)
    assert c.evidence(fresh).mean() == pytest.approx(1.0, abs=0.05)
    scaled = Calibration.fit(reference * 1000)
    np.testing.assert_allclose(scaled.evidence(fresh * 1000), c.evidence(fresh), rtol=1e-6, atol=1e-9)


def test_combine_calibrates_so_scale_does_not_set_the_weight():
    rng = np.random.default_rng(0)
    train = {"pose": rng.normal(0, 1, 5000), "vel": rng.normal(0, 1000, 5000)}
    test = {"pose": np.array([0.0, 3.0]), "vel": np.array([3000.0, 0.0])}
    for how in ("tail", "z", "tail_max"):
        total, values, calibration = combine(train, test, ("pose", "vel"), how)
        # each test frame is 3 reference sigmas out in one term: equal totals, whatever the raw scale
        assert total[0] == pytest.approx(total[1], rel=0.1), how
    assert set(values) == {"pose", "vel"} and calibration["vel"]["std"] > 500
    with pytest.raises(ValueError, match="classifier"):
        parse_terms("classifier,speed")
    assert parse_terms("vel, classifier") == ("classifier", "vel")
    with pytest.raises(ValueError, match="tail"):
        combine(train, test, ("pose",), "mean")


def test_terms_of_one_source_count_once():
    v = {"app": np.array([2.0, 0.0]), "app_rec": np.array([0.0, 0.0]), "vel": np.array([0.0, 1.0])}
    # z: a source's mean; tail: its strongest term; tail_max: the strongest of all
    np.testing.assert_allclose(combine_values(v, ("app", "app_rec", "vel"), "z"), [1.0, 1.0])
    np.testing.assert_allclose(combine_values(v, ("app", "app_rec", "vel"), "tail"), [2.0, 1.0])
    np.testing.assert_allclose(combine_values(v, ("app", "app_rec", "vel"), "tail_max"), [2.0, 1.0])
    np.testing.assert_allclose(combine_values(v, ("app", "vel"), "z"), [2.0, 1.0])


def test_an_uninformative_term_drags_the_tail_sum_less_than_the_z_sum():
    """One term carries the anomalies, a skewed one carries only noise: summed evidence
    ranks the anomalous frames above the normal ones more often than summed z-scores."""
    from memfuse.metrics import roc_auc

    rng = np.random.default_rng(1)
    n = 4000
    reference = {"vel": rng.normal(size=n), "app": rng.lognormal(sigma=1.0, size=n)}
    labels = np.r_[np.zeros(n), np.ones(200)]
    test = {"vel": np.r_[rng.normal(size=n), rng.normal(4.0, 1.0, 200)], "app": rng.lognormal(sigma=1.0, size=n + 200)}
    auc = {how: roc_auc(labels, combine(reference, test, ("app", "vel"), how)[0]) for how in ("tail", "z")}
    assert auc["tail"] > auc["z"] + 0.005


def test_object_scores_are_each_objects_share_combined_as_the_frame_score():
    rng = np.random.default_rng(0)
    ref = {"app": rng.normal(size=500), "vel": rng.normal(size=500)}
    _, _, calibration = combine(ref, ref, ("app", "vel"), "tail")
    obj = {"app": np.array([[0.0, 3.0], [1.0, 0.0]]), "vel": np.array([[2.0, 0.0], [0.5, 0.0]])}
    padded = np.array([[False, False], [False, True]])
    per = object_scores(obj, padded, calibration, ("classifier", "app", "vel"), "tail")
    # a one-object frame: its object's share is the frame's object-term score
    frame = combine(ref, {"app": np.array([1.0]), "vel": np.array([0.5])}, ("app", "vel"), "tail")[0]
    assert per[1, 0] == pytest.approx(frame[0], rel=1e-5) and np.isnan(per[1, 1])
    assert per[0, 0] > 0 and per[0, 1] > per[0, 0]  # 3 sigmas of appearance outweigh 2 of speed
    assert object_scores(obj, padded, calibration, ("classifier",), "tail") is None


def test_video_folds_deal_whole_videos_round_robin():
    ends = np.array([3, 5, 9, 10, 12])  # 5 videos of 3, 2, 4, 1, 2 frames
    np.testing.assert_array_equal(video_folds(ends, 2), [0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(video_folds(ends[:2], 4), [0, 0, 0, 1, 1])  # at most one fold per video
    np.testing.assert_array_equal(object_folds(np.array([0, 1, 0]), np.array([0, 2, 2, 5])), [0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match="2 train videos"):
        video_folds(np.array([7]), 4)
    with pytest.raises(ValueError, match="2 folds"):
        video_folds(ends, 1)


def test_nearest_train_distance_sees_an_unseen_direction_at_a_normal_speed():
    rng = np.random.default_rng(0)
    bins = 8
    train = np.zeros((400, bins), np.float32)
    train[:200, 0] = rng.uniform(1, 2, 200)  # walking right
    train[200:, 4] = rng.uniform(1, 2, 200)  # walking left
    fold = np.arange(400) % 4
    test = np.zeros((2, bins), np.float32)
    test[0, 0], test[1, 2] = 1.5, 1.5  # right (seen), up (never seen): the same speed
    heldout, scores = nearest_train_distance(train, fold, test)
    assert heldout.shape == (400,) and np.isfinite(heldout).all() and heldout.max() < 0.2
    assert scores[1] > 1.0 > 0.2 > scores[0]


def test_cross_fitting_scores_each_video_with_models_that_never_saw_it():
    """Video 3's objects come from a cluster no other video shows: models fitted on all
    videos place them close (they saw them), the out-of-fold models far."""
    rng = np.random.default_rng(0)
    per_video, videos, dim = 60, 4, 512
    centres = rng.normal(size=(videos, dim)).astype(np.float32)
    centres[:3] = centres[0]  # videos 0-2 show the same scene, video 3 another
    app = np.concatenate([c + 0.05 * rng.normal(size=(per_video, dim)) for c in centres]).astype(np.float32)
    pose = np.concatenate([c[:34] + 0.05 * rng.normal(size=(per_video, 34)) for c in centres]).astype(np.float32)
    fold = np.repeat(np.arange(videos), per_video)
    fs = FitSettings(
        ae_epochs=30,
        ae_lr=1e-2,
        ae_batch_size=64,
        ae_select="train",
        memory_size=8,
        kmeans_seed=0,
        memory_epochs=5,
        memory_lr=1e-2,
        memory_batch_size=64,
        weights=(5.0, 1.0, 1.0),
        top_k=2,
        margin=1.0,
        cosine_t_max={"app": 0, "pose": 0},
        stale_step=False,
        seed=0,
    )
    torch.manual_seed(0)
    codes = app[:, :34] * 3.0  # any fixed encoder: the memories are fitted in its code space
    out = cross_fit(app, codes, fold, pose, fold, fs, torch.device("cpu"))
    assert all(np.isfinite(v).all() and v.shape == (len(app),) for v in out.values())
    for key in ("app_dist", "app_rec", "pose_dist"):
        seen, unseen = out[key][fold < 3].mean(), out[key][fold == 3].mean()
        assert unseen > 3 * seen, key
