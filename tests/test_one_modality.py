"""bench/one_modality.py's build (not stage 0) on a tiny fake Ped2: labels, the 3x frame
selection, and the rotated region and pose."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench import one_modality as M
from memfuse.data import load_labels
from memfuse.io import InputError

W, H, N = 48, 32, 24  # frame size, frames per video
PLAN = M.Plan(
    train_videos=("01",), test_sources=("02", "03"), speed_stretches=((0.25, 4),), rotate_start=0.5, rotate_frames=5
)


def fake_ped2(root: Path) -> Path:
    """Three grey videos of N frames in Ped2's layout, one walker box (moving right) and one
    smaller box per frame, and one pose per frame fitting the walker's box."""
    rng = np.random.default_rng(0)
    src = root / "ped2"
    boxes, poses = [], []
    for v in ("01", "02", "03"):
        folder = src / "training" / "frames" / v
        folder.mkdir(parents=True)
        for t in range(N):
            img = rng.integers(0, 256, (H, W), dtype=np.uint8)
            assert cv2.imwrite(str(folder / f"{t + 1:03d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            walker = np.array([5.3 + t, 4.6, 17.2 + t, 28.9], dtype=np.float32)  # 11.9 x 24.3, person-shaped
            boxes.append(np.stack([np.array([30.0, 2.0, 36.0, 9.0], dtype=np.float32), walker]))
            kp = np.stack([np.linspace(1, 11, 17), np.linspace(1, 24, 17)], axis=1)  # inside the walker's box
            poses.append(np.stack([kp.reshape(-1), kp.reshape(-1) * 0.2]))  # row 1: much smaller than any box
    for name, arr in (("ped2_bboxes_train.npy", boxes), ("extracted_features/train/pose.npy", poses)):
        out = np.empty(len(arr), dtype=object)
        for i, a in enumerate(arr):
            out[i] = a
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        np.save(src / name, out, allow_pickle=True)
    np.save(src / "train_clip_lengths.npy", np.array([N, 2 * N, 3 * N]))
    return src


def test_speed_selection_keeps_every_third_frame_and_labels_the_jumps():
    idx, labels = M.speed_selection(24, ((0.25, 4),), 3)
    assert idx.tolist() == [0, 1, 2, 3, 4, 5, 6, 9, 12, 15, 18, 19, 20, 21, 22, 23]
    assert labels.tolist() == [0] * 7 + [1] * 4 + [0] * 5
    # Ped2's 150-frame videos: 30 fast frames of 90 source frames, labelled exactly
    idx, labels = M.speed_selection(150, ((0.25, 30),), 3)
    assert len(idx) == 90 and labels.sum() == 30 and (np.diff(idx)[labels[1:] == 1] == 3).all()
    assert (np.diff(idx)[labels[1:] == 0] == 1).all()
    with pytest.raises(InputError):
        M.speed_selection(60, ((0.25, 30),), 3)


def test_build_labels_speed_and_rotation(tmp_path):
    src = fake_ped2(tmp_path)
    videos = M.load_source(src)
    train, test = M.make_videos(src, PLAN)
    assert [v.name for v in train] == ["01"] and [(v.name, v.kind, v.source) for v in test] == [
        ("01", "speed", "02"),
        ("02", "speed", "03"),
        ("03", "rotated", "02"),
        ("04", "rotated", "03"),
    ]
    # speed: the kept frames are source files with their own boxes and poses
    speed, s = test[0], videos["02"]
    idx, labels = M.speed_selection(N, PLAN.speed_stretches, 3)
    assert speed.frames == [s.frames[i] for i in idx] and np.array_equal(speed.labels, labels)
    assert all(np.array_equal(b, s.boxes[i]) for b, i in zip(speed.boxes, idx))
    # rotated: frames 12..16 (0-based) hold the walker's crop upside down, and its pose
    rot, s = test[2], videos["02"]
    assert rot.labels.tolist() == [0] * 12 + [1] * 5 + [0] * 7
    for t in range(N):
        src_img = cv2.imread(str(s.frames[t]), cv2.IMREAD_UNCHANGED)
        if not rot.labels[t]:
            assert rot.frames[t] == s.frames[t] and np.array_equal(rot.poses[t], s.poses[t])
            continue
        x1, y1 = s.boxes[t][1][:2]
        r0, r1, c0, c1 = rot.info["rotated"][t - 12]["region"]
        assert (r1 - r0, c1 - c0) == (24, 12)  # the walker's box size, rounded
        assert abs((c0 + c1) / 2 - (x1 + 11.9 / 2)) <= 0.5  # on the walker, also at the stretch ends
        out = rot.frames[t]
        assert np.array_equal(out[r0:r1, c0:c1], np.rot90(src_img[r0:r1, c0:c1], 2))
        outside = np.ones_like(out, dtype=bool)
        outside[r0:r1, c0:c1] = False
        assert np.array_equal(out[outside], src_img[outside])
        # pose row 0 (the one fitting the walker) turned about the region's centre; row 1 untouched
        kp, new = s.poses[t][0].reshape(17, 2), rot.poses[t][0].reshape(17, 2)
        assert np.allclose(x1 + new[:, 0], c0 + c1 - (x1 + kp[:, 0]))
        assert np.allclose(y1 + new[:, 1], r0 + r1 - (y1 + kp[:, 1]))
        assert np.array_equal(rot.poses[t][1], s.poses[t][1])
        assert rot.info["rotated"][t - 12]["box_row"] == 1 and rot.info["rotated"][t - 12]["pose_row"] == 0


def test_build_writes_a_dataset_stage0_reads(tmp_path):
    src = fake_ped2(tmp_path)
    base, built = M.build(src, tmp_path / "data", PLAN)
    assert built and (base / "build.json").exists() and (base / "README.md").exists()
    assert sorted(p.name for p in (base / "testing" / "frames").iterdir()) == ["01", "02", "03", "04"]
    ends = np.load(base / "test_clip_lengths.npy")
    assert ends.tolist() == [16, 32, 56, 80]
    assert np.load(base / "train_clip_lengths.npy").tolist() == [N]
    labels = load_labels(tmp_path / "data", M.DATASET, ends)
    assert labels.sum() == 2 * 4 + 2 * 5
    assert np.load(base / "anomaly_kinds.npy").tolist() == ["speed"] * 2 + ["rotated"] * 2
    boxes = np.load(base / f"{M.DATASET}_bboxes_test.npy", allow_pickle=True)
    poses = np.load(base / "extracted_features" / "test" / "pose.npy", allow_pickle=True)
    assert len(boxes) == len(poses) == ends[-1]
    # a copied frame is the source file byte for byte; an edited one decodes close to its edit
    assert (base / "testing/frames/01/008.jpg").read_bytes() == (src / "training/frames/02/010.jpg").read_bytes()
    _, test = M.make_videos(src, PLAN)
    written = cv2.imread(str(base / "testing/frames/03/013.jpg"), cv2.IMREAD_UNCHANGED)
    assert np.abs(written.astype(int) - test[2].frames[12].astype(int)).mean() < 3
    # stage 0's own checks of frames against boxes pass
    from memfuse.extract.pipeline import prepare_split

    for split in ("train", "test"):
        prepare_split(M.DATASET, tmp_path / "data", split)
    # a complete build is kept; a missing source file is one clear error
    assert M.build(src, tmp_path / "data", PLAN) == (base, False)
    (src / "ped2_bboxes_train.npy").unlink()
    with pytest.raises(InputError, match="ped2_bboxes_train.npy"):
        M.build(src, tmp_path / "data", PLAN, force=True)


def test_track_follows_the_person_in_view_longest():
    """A larger walker who leaves after two frames loses to one in view throughout; a box
    merging two walkers (twice the height) is not the same person."""
    big = np.array([0.0, 0.0, 20.0, 40.0])
    small = np.array([50.0, 0.0, 60.0, 20.0])
    frames = [np.stack([big, small]), np.stack([big + 1, small + 1]), np.stack([small + 2])]
    frames.append(np.stack([small + [2, 0, 2, 20], small + 3]))  # row 0: as tall as two walkers
    assert M.track(frames) == [1, 1, 0, 1]
