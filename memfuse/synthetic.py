"""A synthetic dataset in AI-VAD's feature format, so the whole pipeline runs anywhere.

Each frame holds a few objects (people walking through a scene). Every object has a
512-d appearance (one of a few normal "kinds" plus noise, standing in for CLIP
embeddings), a 17-keypoint skeleton relative to the person's box corner, in pixels, as in
AI-VAD's pose files (persons only), and a speed.
Objects move along tracks, so features change smoothly over time as in real video.

Each test video holds one labelled anomalous interval of one kind:

- ``appearance``: an object of a kind never seen in training (a cart, a bike),
- ``pose``: a person in an unusual posture (lying, arms up),
- ``speed``: a person running (velocity several times the normal range).

The frames of the interval are labelled 1. Frames without any person (pose rows = 0)
occur in train and test, as in Ped2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import APPEARANCE_DIM
from .io import save_npy

ANOMALY_KINDS = ("appearance", "pose", "speed")
FRAME_W, FRAME_H = 360, 240

# A standing person's 17 COCO keypoints (x, y) relative to the feet centre, height 1.
_STANDING = np.array(
    [
        [0.00, -0.95],
        [-0.03, -0.97],
        [0.03, -0.97],
        [-0.06, -0.95],
        [0.06, -0.95],  # nose, eyes, ears
        [-0.12, -0.80],
        [0.12, -0.80],
        [-0.16, -0.60],
        [0.16, -0.60],
        [-0.17, -0.42],
        [0.17, -0.42],  # shoulders, elbows, wrists
        [-0.08, -0.48],
        [0.08, -0.48],
        [-0.09, -0.25],
        [0.09, -0.25],
        [-0.10, 0.00],
        [0.10, 0.00],  # hips, knees, ankles
    ]
)


@dataclass
class SyntheticSpec:
    """Sizes of the generated dataset."""

    train_videos: int = 7
    test_videos: int = 6
    min_frames: int = 80
    max_frames: int = 130
    max_objects: int = 7
    velocity_bins: int = 1
    normal_kinds: int = 6  # appearance clusters seen in training
    seed: int = 0


def _skeleton(kind: str, height: float, phase: float, rng: np.random.Generator) -> np.ndarray:
    """(17, 2) keypoints relative to the feet, for a walking or an anomalous posture."""
    pts = _STANDING.copy()
    swing = 0.08 * np.sin(phase)  # walking: legs and arms swing in opposition
    pts[[13, 15], 0] += swing
    pts[[14, 16], 0] -= swing
    pts[[9], 0] -= swing
    pts[[10], 0] += swing
    if kind == "lying":  # rotate the whole body by 90 degrees
        pts = pts[:, ::-1] * np.array([1.0, -1.0]) + np.array([0.0, -0.1])
    elif kind == "arms_up":
        pts[[7, 8], 1] -= 0.55
        pts[[9, 10], 1] -= 0.85
    return pts * height + rng.normal(0, 0.6, pts.shape)


def _velocity_bins(speed: float, angle: float, bins: int) -> np.ndarray:
    """Spread a speed over orientation bins: all of it in the bin of the motion angle."""
    out = np.zeros(bins, dtype=np.float32)
    out[int((angle % (2 * np.pi)) / (2 * np.pi) * bins) % bins] = speed
    return out


def make_video(
    n_frames: int, spec: SyntheticSpec, prototypes: np.ndarray, anomaly: str | None, rng: np.random.Generator
):
    """One video: per-frame lists of appearance, velocity, pose rows and frame labels."""
    n_kinds = spec.normal_kinds
    app, vel, pose = [], [], []
    labels = np.zeros(n_frames, dtype=np.int64)
    if anomaly is not None:
        length = int(rng.integers(n_frames // 3, n_frames // 2))
        start = int(rng.integers(5, n_frames - length - 5))
        labels[start : start + length] = 1

    # Tracks: each object enters, walks for a while and leaves.
    tracks: list[dict] = []

    def new_track(anomalous: bool) -> dict:
        kind = int(rng.integers(n_kinds))
        t = {
            "kind": kind,
            "x": rng.uniform(20, FRAME_W - 20),
            "y": rng.uniform(60, FRAME_H - 10),
            "angle": rng.uniform(0, 2 * np.pi),
            "speed": abs(rng.normal(1.0, 0.25)),
            "height": rng.uniform(25, 35),
            "life": int(rng.integers(30, 90)),
            "phase": rng.uniform(0, 6.3),
            "person": rng.random() < 0.85,
            "anomalous": anomalous,
            "posture": "walking",
            "noise": rng.normal(0, 1, APPEARANCE_DIM) * 0.15,
        }
        if anomalous:
            if anomaly == "appearance":
                t["kind"], t["person"] = n_kinds + int(rng.integers(2)), False
            elif anomaly == "pose":
                t["posture"], t["person"] = ("lying" if rng.random() < 0.5 else "arms_up"), True
            elif anomaly == "speed":
                t["speed"], t["person"] = rng.uniform(4.0, 6.0), True
        return t

    for f in range(n_frames):
        tracks = [t for t in tracks if t["life"] > 0 and not (t["anomalous"] and not labels[f])]
        if labels[f] and not any(t["anomalous"] for t in tracks):
            tracks.append(new_track(True))
        while (
            sum(not t["anomalous"] for t in tracks) < rng.integers(1, spec.max_objects)
            and len(tracks) < spec.max_objects
        ):
            tracks.append(new_track(False))
        frame_app, frame_vel, frame_pose = [], [], []
        for t in tracks:
            t["life"] -= 1
            t["phase"] += 0.35 * t["speed"]
            t["x"] = (t["x"] + t["speed"] * np.cos(t["angle"])) % FRAME_W
            t["y"] = np.clip(t["y"] + t["speed"] * np.sin(t["angle"]) * 0.3, 60, FRAME_H - 10)
            frame_app.append(prototypes[t["kind"]] + t["noise"] + rng.normal(0, 0.05, APPEARANCE_DIM))
            frame_vel.append(_velocity_bins(t["speed"] * rng.uniform(0.9, 1.1), t["angle"], spec.velocity_bins))
            if t["person"] and rng.random() < 0.97:  # the pose detector misses a few people
                # AI-VAD's pose rows are keypoints relative to the person's box corner
                pts = _skeleton(t["posture"], t["height"], t["phase"], rng)
                frame_pose.append((pts - pts.min(0)).reshape(-1))
        if not frame_app:  # AI-VAD: a frame without boxes gets one whole-frame entry
            frame_app.append(prototypes[0] * 0.2)
            frame_vel.append(np.zeros(spec.velocity_bins, dtype=np.float32))
        app.append(np.asarray(frame_app, dtype=np.float32))
        vel.append(np.asarray(frame_vel, dtype=np.float32))
        pose.append(np.asarray(frame_pose, dtype=np.float32).reshape(-1, 34))
    return app, vel, pose, labels


def _object_array(frames: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(frames), dtype=object)
    out[:] = frames
    return out


def make_dataset(root: Path | str, name: str = "synthetic", spec: SyntheticSpec | None = None) -> Path:
    """Write an AI-VAD-format dataset to ``root/name`` and return that folder.

    Writes extracted_features/{train,test}/{velocity,deep_features,pose}.npy,
    {train,test}_clip_lengths.npy, frame_labels.npy and anomaly_kinds.npy (the kind of each
    test video's anomaly, for per-kind analysis)."""
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    prototypes = rng.normal(0, 0.5, (spec.normal_kinds + 2, APPEARANCE_DIM)).astype(np.float32)
    base = Path(root) / name
    kinds = [ANOMALY_KINDS[v % len(ANOMALY_KINDS)] for v in range(spec.test_videos)]
    for split, n_videos in (("train", spec.train_videos), ("test", spec.test_videos)):
        app, vel, pose, labels, lengths = [], [], [], [], []
        for v in range(n_videos):
            n = int(rng.integers(spec.min_frames, spec.max_frames + 1))
            a, ve, p, lb = make_video(n, spec, prototypes, kinds[v] if split == "test" else None, rng)
            app += a
            vel += ve
            pose += p
            labels.append(lb)
            lengths.append(n)
        # Some frames without any detected person, as in Ped2.
        for f in rng.choice(len(pose), size=max(1, len(pose) // 200), replace=False):
            pose[f] = np.zeros((0, 34), dtype=np.float32)
        out = base / "extracted_features" / split
        save_npy(out / "deep_features.npy", _object_array(app))
        save_npy(out / "velocity.npy", _object_array(vel))
        save_npy(out / "pose.npy", _object_array(pose))
        save_npy(base / f"{split}_clip_lengths.npy", np.cumsum(lengths).astype(np.int64))
        if split == "test":
            save_npy(base / "frame_labels.npy", np.concatenate(labels)[None, :])
            save_npy(base / "anomaly_kinds.npy", np.array(kinds))
    return base
