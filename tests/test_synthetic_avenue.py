"""The Avenue-like synthetic variant (memfuse/synthetic.py, ``avenue_like_spec``) and the
default synthetic data it must leave unchanged."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import numpy as np
import pytest

from memfuse import data as D
from memfuse.synthetic import (
    AVENUE_LIKE,
    SyntheticSpec,
    avenue_like_spec,
    main,
    make_dataset,
    orientation_bin,
)

ROOT = Path(__file__).resolve().parents[1]

# Content checksums of make_dataset's output computed before the variant's fields existed:
# the default data, the end-to-end test's tiny data and a tiny 8-bin set must stay the same.
DEFAULT_CHECKSUMS = {
    "default": (SyntheticSpec(), "f73ec5361fab7d7cc36b43303c02c540f9aced385988ee96c4ade23f88c3e38f"),
    "run_all_tiny": (
        SyntheticSpec(train_videos=3, test_videos=3, min_frames=60, max_frames=80, max_objects=6, seed=1),
        "0fb3f0382f3213f0739d49855c571454a8bb0b27e4d885494ab452d66e43a1c6",
    ),
    "tiny_8_bins": (
        SyntheticSpec(train_videos=2, test_videos=3, min_frames=30, max_frames=40, velocity_bins=8, seed=3),
        "75b8601fa4dfb2e01b10ab4e4d71db542309ad2ce172abe1a783b8a1039052ea",
    ),
}


def content_checksum(base: Path) -> str:
    """SHA-256 over every .npy under ``base``: its relative path, then each array's (each
    frame's, for object arrays) dtype, shape and bytes. Independent of how numpy pickles."""
    h = hashlib.sha256()
    for path in sorted(base.rglob("*.npy")):
        h.update(path.relative_to(base).as_posix().encode())
        arr = np.load(path, allow_pickle=True)
        for x in list(arr) if arr.dtype == object else [arr]:
            x = np.ascontiguousarray(x)
            h.update(f"{x.dtype.str}{x.shape}".encode())
            h.update(x.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("which", sorted(DEFAULT_CHECKSUMS))
def test_default_data_unchanged(tmp_path: Path, which: str) -> None:
    spec, expected = DEFAULT_CHECKSUMS[which]
    assert content_checksum(make_dataset(tmp_path, "synthetic", spec)) == expected


@pytest.fixture(scope="module")
def avenue(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The variant made by its command, loaded: velocity (F,) object arrays of (n_i, 8) per
    split, test labels (F_test,), per-video frame slices and kinds."""
    root = tmp_path_factory.mktemp("data")
    main(["--variant", "avenue_like", "--out-root", str(root)])
    base = root / "avenue_like"
    vel = {s: np.load(base / "extracted_features" / s / "velocity.npy", allow_pickle=True) for s in ("train", "test")}
    ends = np.load(base / "test_clip_lengths.npy")
    starts = np.concatenate([[0], ends[:-1]])
    return {
        "root": root,
        "base": base,
        "vel": vel,
        "labels": np.load(base / "frame_labels.npy").ravel(),
        "videos": [slice(int(a), int(b)) for a, b in zip(starts, ends)],
        "kinds": list(np.load(base / "anomaly_kinds.npy")),
    }


def _train_bins(avenue: dict) -> tuple[np.ndarray, float, float]:
    """The orientation bins that hold a training object's speed, and the training speed range."""
    rows = np.concatenate(list(avenue["vel"]["train"]))
    moving = rows[rows.sum(1) > 0]
    return np.unique(moving.argmax(1)), float(moving.sum(1).min()), float(moving.sum(1).max())


def test_layout_and_eight_bins(avenue: dict) -> None:
    default_files = {
        p.relative_to(avenue["root"] / "synthetic").as_posix()
        for p in make_dataset(avenue["root"], "synthetic", SyntheticSpec(train_videos=1, test_videos=1)).rglob("*")
    }
    assert {p.relative_to(avenue["base"]).as_posix() for p in avenue["base"].rglob("*")} == default_files
    for split in ("train", "test"):
        assert all(f.ndim == 2 and f.shape[1] == 8 for f in avenue["vel"][split])
    # at most one bin per object holds its speed: the magnitude is the sum over the bins
    rows = np.concatenate([np.concatenate(list(v)) for v in avenue["vel"].values()])
    assert ((rows > 0).sum(1) <= 1).all()
    summary = D.validate_dataset(avenue["root"], "avenue_like")  # the pipeline's own checks
    assert summary["velocity_bins"] == 8


def test_training_walks_along_the_walkway(avenue: dict) -> None:
    bins, _, _ = _train_bins(avenue)
    walkway = {orientation_bin(a + d, 8) for a in AVENUE_LIKE.directions for d in (-0.3, 0.3)}
    assert set(bins.tolist()) == walkway == {0, 3, 4, 7}
    novel = {orientation_bin(a + d, 8) for a in AVENUE_LIKE.novel_directions for d in (-0.3, 0.3)}
    assert novel.isdisjoint(walkway)


def test_direction_anomaly_normal_speed_unseen_heading(avenue: dict) -> None:
    train_bins, lo, hi = _train_bins(avenue)
    train_speeds = np.concatenate(list(avenue["vel"]["train"])).sum(1)
    train_mean = float(train_speeds[train_speeds > 0].mean())
    labels, test_vel = avenue["labels"], avenue["vel"]["test"]
    assert avenue["kinds"].count("direction") >= 2
    for video, kind in zip(avenue["videos"], avenue["kinds"]):
        unseen_speeds = []
        for f in range(video.start, video.stop):
            rows = test_vel[f]
            unseen = (rows.sum(1) > 0) & ~np.isin(rows.argmax(1), train_bins)
            if kind == "direction" and labels[f]:
                assert unseen.sum() == 1, f"frame {f}: the anomalous walker, and only it, heads an unseen way"
                unseen_speeds.append(float(rows[unseen].sum()))
            else:  # normal objects and the other kinds keep to the walkway's headings
                assert not unseen.any(), f"frame {f} ({kind}, label {labels[f]})"
        if kind == "direction":
            speeds = np.array(unseen_speeds)
            assert len(speeds) > 0 and lo <= speeds.min() and speeds.max() <= hi
            assert abs(speeds.mean() - train_mean) < 0.25  # an ordinary pace, not a runner's


def test_labels_cover_one_interval_per_video(avenue: dict) -> None:
    labels = avenue["labels"]
    assert len(labels) == avenue["videos"][-1].stop == len(avenue["vel"]["test"])
    assert set(np.unique(labels).tolist()) == {0, 1}
    assert len(avenue["kinds"]) == len(avenue["videos"]) == AVENUE_LIKE.test_videos
    assert set(avenue["kinds"]) == {"appearance", "pose", "speed", "direction"}
    for video in avenue["videos"]:
        lab = labels[video]
        on = np.flatnonzero(lab)
        assert len(on) > 0 and (np.diff(on) == 1).all(), "one contiguous anomalous interval"
        assert lab[0] == 0 and lab[-1] == 0


def test_speed_anomaly_is_about_twice_normal(avenue: dict) -> None:
    _, _, hi = _train_bins(avenue)
    labels, test_vel = avenue["labels"], avenue["vel"]["test"]
    for video, kind in zip(avenue["videos"], avenue["kinds"]):
        if kind != "speed":
            continue
        fastest = np.array([test_vel[f].sum(1).max() for f in range(video.start, video.stop)])
        on = labels[video] == 1
        assert 1.6 <= fastest[on].min() and fastest[on].max() <= 2.7  # ~2x the normal ~1.0
        assert np.median(fastest[on]) > hi  # above every training speed, mostly


def test_variant_is_deterministic_and_seeded(tmp_path: Path) -> None:
    small = {"train_videos": 1, "test_videos": 2, "min_frames": 30, "max_frames": 40}
    a = make_dataset(tmp_path / "a", "x", SyntheticSpec(**{**vars(avenue_like_spec(1)), **small}))
    b = make_dataset(tmp_path / "b", "x", SyntheticSpec(**{**vars(avenue_like_spec(1)), **small}))
    c = make_dataset(tmp_path / "c", "x", SyntheticSpec(**{**vars(avenue_like_spec(2)), **small}))
    assert content_checksum(a) == content_checksum(b) != content_checksum(c)


def test_dataset_constants_are_avenues() -> None:
    def settings(name: str) -> dict:
        return tomllib.loads((ROOT / "config" / "datasets" / f"{name}.toml").read_text())["settings"]

    assert settings("avenue_like") == settings("avenue")
    assert settings("avenue_like")["VELOCITY_BINS"] == AVENUE_LIKE.velocity_bins
