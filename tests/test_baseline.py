"""AI-VAD baseline scorer: kNN, GMM, calibration and the CLI on toy sets with known answers."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memfuse.baseline import (
    calibrate,
    evaluate_baseline,
    frame_max,
    knn_distance,
    knn_object_scores,
    l2_normalise,
    normalise_pose,
    score_baseline,
    velocity_object_scores,
)
from memfuse.data import Ragged, Split

ROOT = Path(__file__).resolve().parent.parent


def rag(values, counts):
    values = np.asarray(values, dtype=np.float32)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    assert offsets[-1] == len(values)
    return Ragged(values, offsets)


def brute_nn(q, r, exclude_self=False):
    d = np.sqrt(((q[:, None, :].astype(np.float64) - r[None, :, :]) ** 2).sum(-1))
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    return d.min(1)


# ---------------------------------------------------------------- kNN
def test_knn_matches_brute_force_and_chunking_is_exact():
    rng = np.random.default_rng(0)
    r, q = rng.normal(size=(300, 16)).astype(np.float32), rng.normal(size=(77, 16)).astype(np.float32)
    want = brute_nn(q, r)
    one_shot = knn_distance(q, r, q_chunk=10_000, r_chunk=10_000)
    chunked = knn_distance(q, r, q_chunk=7, r_chunk=13)
    np.testing.assert_allclose(one_shot, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(chunked, one_shot, rtol=1e-5, atol=1e-5)


def test_knn_self_match_exclusion_leave_one_out():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(101, 8)).astype(np.float32)
    assert np.allclose(knn_distance(x, x), 0, atol=1e-3)  # every row finds itself
    want = brute_nn(x, x, exclude_self=True)
    for qc, rc in ((1000, 1000), (9, 11), (16, 5)):  # diagonal crosses block borders
        np.testing.assert_allclose(
            knn_distance(x, x, exclude_self=True, q_chunk=qc, r_chunk=rc), want, rtol=1e-4, atol=1e-4
        )
    # an exact duplicate elsewhere still counts (only the row itself is excluded)
    y = np.concatenate([x, x[:1]])
    assert knn_distance(y, y, exclude_self=True)[0] < 1e-3


def test_knn_exclude_self_requires_same_rows():
    with pytest.raises(ValueError):
        knn_distance(np.zeros((3, 2)), np.zeros((4, 2)), exclude_self=True)


# ---------------------------------------------------------------- normalisation
def test_pose_normalisation_removes_position_and_scale_keeps_shape():
    rng = np.random.default_rng(2)
    kp = rng.normal(size=(17, 2)).astype(np.float32)
    moved = kp * 3.5 + np.array([100.0, -40.0], dtype=np.float32)
    a, b = normalise_pose(np.stack([kp.ravel(), moved.ravel()]))
    np.testing.assert_allclose(a, b, atol=1e-5)
    n = a.reshape(17, 2)
    np.testing.assert_allclose(n.mean(0), 0, atol=1e-5)
    assert np.isclose(n[:, 1].max() - n[:, 1].min(), 1.0)
    lying = normalise_pose(kp[:, ::-1].reshape(1, -1))[0]  # rotated: a different pose
    assert np.linalg.norm(lying - a) > 0.1
    assert np.all(normalise_pose(np.zeros((1, 34))) == 0)  # zero-height row: no division by 0


def test_l2_normalise():
    x = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(x, [[0.6, 0.8], [0.0, 0.0]])


# ---------------------------------------------------------------- frame scores, calibration
def test_frame_max_and_empty_frames():
    offsets = np.array([0, 2, 2, 5, 6])
    out = frame_max(np.array([1.0, 3.0, 5.0, 2.0, 4.0, -1.0]), offsets)
    np.testing.assert_array_equal(out[[0, 2, 3]], [3.0, 5.0, -1.0])
    assert np.isnan(out[1])


def test_calibration_uses_train_min_max_and_fills_empty_frames_with_min():
    train = np.array([2.0, np.nan, 4.0, 6.0])
    s, lo, hi = calibrate(np.array([4.0, np.nan, 10.0]), train)
    assert (lo, hi) == (2.0, 6.0)
    np.testing.assert_allclose(s, [0.5, 0.0, 2.0])


def test_gmm_ranks_a_fast_object_higher():
    rng = np.random.default_rng(3)
    train = np.abs(rng.normal(1.0, 0.2, size=(500, 1)))
    _, s = velocity_object_scores(train, np.array([[1.0], [5.0]]), components=2)
    assert s[1] > s[0]


# ---------------------------------------------------------------- end to end on a toy set
def toy_splits(n_train=200, n_test=60, seed=0):
    """One object and one person per frame; test frames 40-49 have an odd appearance,
    50-54 a fast object, 55-59 a lying pose. Frame 5 of test has no person."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(3, 512)).astype(np.float32)
    base_pose = rng.normal(size=(17, 2)).astype(np.float32) * np.array([0.3, 1.0], dtype=np.float32)

    def make(n, odd_app=(), fast=(), lying=(), no_person=()):
        app = protos[rng.integers(0, 2, n)] + 0.05 * rng.normal(size=(n, 512)).astype(np.float32)
        vel = np.abs(rng.normal(1.0, 0.1, size=(n, 1))).astype(np.float32)
        poses = []
        for f in range(n):
            kp = base_pose + 0.02 * rng.normal(size=(17, 2)).astype(np.float32)
            if f in lying:
                kp = kp[:, ::-1]
            poses.append((kp * rng.uniform(30, 60) + rng.uniform(0, 300, 2)).ravel())
        for f in odd_app:
            app[f] = protos[2] + 0.05 * rng.normal(size=512)
        for f in fast:
            vel[f] = 6.0
        keep = [f for f in range(n) if f not in no_person]
        pose = rag(np.array(poses)[keep], [0 if f in no_person else 1 for f in range(n)])
        return Split(app=rag(app, [1] * n), pose=pose, vel=rag(vel, [1] * n))

    train = make(n_train)
    test = make(n_test, odd_app=range(40, 50), fast=range(50, 55), lying=range(55, 60), no_person=(5,))
    labels = np.zeros(n_test, dtype=np.int64)
    labels[40:] = 1
    return train, test, labels


def test_score_baseline_finds_each_modalitys_anomaly():
    train, test, labels = toy_splits()
    ends = np.array([30, 60])
    out = score_baseline(train, test, ends, gmm_components=2, sigma=0, q_chunk=16, r_chunk=50)
    f = out["frame"]
    # the odd objects of each modality get that modality's top scores
    assert set(np.argsort(f["app"])[-10:]) == set(range(40, 50))
    assert set(np.argsort(f["vel"])[-5:]) == set(range(50, 55))
    assert set(np.argsort(f["pose"])[-5:]) == set(range(55, 60))
    assert f["pose"][5] == 0.0  # frame without a person: the train minimum
    np.testing.assert_allclose(out["combined"], f["vel"] + f["pose"] + f["app"])
    metrics = evaluate_baseline(out, labels, ends)
    assert metrics["micro_auc"] > 0.99
    assert set(metrics["per_modality"]) == {"vel", "pose", "app"}
    # chunking does not change the answer
    big = score_baseline(train, test, ends, sigma=0, q_chunk=10_000, r_chunk=10_000)
    for m in f:
        np.testing.assert_allclose(big["frame"][m], f[m], rtol=1e-4, atol=1e-5)


def test_cli_writes_scores_and_metrics(tmp_path):
    from memfuse.synthetic import SyntheticSpec, make_dataset

    make_dataset(tmp_path, "toy", SyntheticSpec(train_videos=2, test_videos=3, min_frames=40, max_frames=50))
    out = tmp_path / "results" / "toy"
    cmd = [
        sys.executable,
        "baseline.py",
        "--dataset",
        "toy",
        "--data-root",
        str(tmp_path),
        "--results-root",
        str(tmp_path / "results"),
        "--device",
        "cpu",
    ]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    scores = np.load(out / "baseline_scores.npy")
    assert scores.shape == (int(np.load(tmp_path / "toy" / "test_clip_lengths.npy")[-1]),)
    m = json.loads((out / "baseline_metrics.json").read_text())["baseline"]
    assert {"micro_auc", "macro_auc", "eer", "per_modality"} <= set(m)
    # one writer per file: a recipe's metrics.json is never touched by the baseline
    assert not (out / "metrics.json").exists()


def test_a_train_rows_exact_copies_count_as_itself():
    """Poses reused on the frames between posed ones (stage 0 --pose-every) are copies:
    a train row's leave-one-out distance skips them and reaches the nearest other row."""
    train = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [3.0, 4.0], [3.0, 4.0], [10.0, 0.0]], np.float32)
    test = np.array([[0.0, 0.0], [6.0, 8.0]], np.float32)
    tr, te = knn_object_scores(train, test)
    np.testing.assert_allclose(tr, [5.0, 5.0, 5.0, 5.0, 5.0, np.hypot(7.0, 4.0)], rtol=1e-5)
    np.testing.assert_allclose(te, [0.0, 5.0], atol=1e-5)
