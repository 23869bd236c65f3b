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

The Avenue-like variant (:func:`avenue_like_spec`, ``python -m memfuse.synthetic --variant
avenue_like``) is built to check direction-aware velocity, as CUHK Avenue needs:

- velocity in 8 orientation bins, each object's speed all in the bin of its heading
  (:func:`_velocity_bins`), so the magnitude is the sum over the bins;
- every object, in train and test, walks left or right along the walkway (headings 0 and
  pi, a normal spread of 0.15 rad clipped at 0.3 rad): only bins 0, 3, 4 and 7 ever hold a
  training object's speed;
- a fourth anomaly kind, ``direction``: a person of a normal appearance, walking posture
  and an ordinary speed (0.7-1.3, inside the training range) heading up or down the frame
  (pi/2 or 3 pi/2, +-0.3 rad), i.e. in bins 1, 2, 5 or 6, never used in training. Nothing
  but the orientation of its velocity differs from a normal walker (its skeleton is the
  same side-on walk; a real person walking towards the camera would also look different),
  so only a method whose velocity model sees the bins can find it, and a score built on
  the speed alone cannot: that is the gap the set is made to show. As for every kind (and
  in the default data), the anomalous object walks in addition to the normal ones, so
  labelled frames hold slightly more objects on average, which lifts any frame-max score
  slightly: a direction-blind score is not exactly at chance on this kind;
- the other kinds are made subtler than in the default data: the novel appearance lies
  0.35 of the way from a normal kind to a new one, the unusual posture is a 45 degree lean
  or arms raised half as far, the runner moves at 1.8-2.4 (normal speeds are about 1.0 +-
  0.25), just above the fastest normal walkers;
- normal test footage drifts from the training footage: test speeds x 1.05, appearance
  noise x 1.1 and one small offset (0.02 per dimension) added to every test appearance.

Eight train and eight test videos of 80-130 frames (the default data: seven and six), one
anomalous interval in each test video, the kinds in turn (direction, appearance, pose,
speed: two videos of each). The values above were chosen from this design before any
method was run on the result, and were not changed after.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import APPEARANCE_DIM
from .io import save_npy

ANOMALY_KINDS = ("appearance", "pose", "speed")  # the default data's kinds, in turn over the test videos
ALL_ANOMALY_KINDS = (*ANOMALY_KINDS, "direction")  # "direction": a normal speed in a heading never seen in training
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
    """Sizes and generative settings of the dataset.

    The fields after ``seed`` shape the variants (:func:`avenue_like_spec`); their defaults
    make the default data exactly, draw for draw, so the default dataset never changes."""

    train_videos: int = 7
    test_videos: int = 6
    min_frames: int = 80
    max_frames: int = 130
    max_objects: int = 7
    velocity_bins: int = 1
    normal_kinds: int = 6  # appearance clusters seen in training
    seed: int = 0
    anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS  # test video v holds anomaly_kinds[v % len(anomaly_kinds)]
    directions: tuple[float, ...] = ()  # headings (radians) objects walk along; () = any heading, uniformly
    direction_spread: float = 0.0  # std (radians) of a heading around its direction, clipped at 2 std
    novel_directions: tuple[float, ...] = (np.pi / 2, 3 * np.pi / 2)  # the "direction" anomaly's headings
    novel_direction_spread: float = 0.3  # half-width (radians) of the uniform spread around them
    novel_direction_speed: tuple[float, float] = (0.7, 1.3)  # its speed: an ordinary walk (normal ~ 1.0 +- 0.25)
    appearance_anomaly_mix: float = 1.0  # novel appearance = normal kind + mix * (new kind - normal); 1 = new kind
    pose_anomaly_strength: float = 1.0  # 1 = lying / arms fully up; less: a lean of strength x 90 deg, arms lower
    speed_anomaly_range: tuple[float, float] = (4.0, 6.0)  # the runner's speed (uniform)
    test_speed_scale: float = 1.0  # drift of the test footage: every test track's speed x this
    test_noise_scale: float = 1.0  # drift: the test tracks' appearance noise x this
    test_appearance_shift: float = 0.0  # drift: std per dimension of one offset added to every test appearance


def _skeleton(kind: str, height: float, phase: float, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """(17, 2) keypoints relative to the feet, for a walking or an anomalous posture.

    ``strength`` < 1 makes the anomalous postures subtler: "lying" becomes a lean of
    ``strength`` x 90 degrees, "arms_up" raises the arms ``strength`` as far."""
    pts = _STANDING.copy()
    swing = 0.08 * np.sin(phase)  # walking: legs and arms swing in opposition
    pts[[13, 15], 0] += swing
    pts[[14, 16], 0] -= swing
    pts[[9], 0] -= swing
    pts[[10], 0] += swing
    if strength != 1.0:  # the variants' subtler postures; the default data take the branch below
        if kind == "lying":  # the same sense of rotation as the full 90 degrees below: (x, y) -> (y, -x)
            a = strength * np.pi / 2
            pts = pts @ np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) + np.array([0.0, -0.1 * strength])
        elif kind == "arms_up":
            pts[[7, 8], 1] -= 0.55 * strength
            pts[[9, 10], 1] -= 0.85 * strength
    elif kind == "lying":  # rotate the whole body by 90 degrees
        pts = pts[:, ::-1] * np.array([1.0, -1.0]) + np.array([0.0, -0.1])
    elif kind == "arms_up":
        pts[[7, 8], 1] -= 0.55
        pts[[9, 10], 1] -= 0.85
    return pts * height + rng.normal(0, 0.6, pts.shape)


def _velocity_bins(speed: float, angle: float, bins: int) -> np.ndarray:
    """Spread a speed over orientation bins: all of it in the bin of the motion angle.

    Returns (bins,) float32; bin b covers headings [b, b + 1) x 2 pi / bins."""
    out = np.zeros(bins, dtype=np.float32)
    out[int((angle % (2 * np.pi)) / (2 * np.pi) * bins) % bins] = speed
    return out


def orientation_bin(angle: float, bins: int) -> int:
    """The orientation bin of a heading (radians), as :func:`_velocity_bins` puts it."""
    return int((angle % (2 * np.pi)) / (2 * np.pi) * bins) % bins


def _heading(spec: SyntheticSpec, rng: np.random.Generator) -> float:
    """A normal object's heading: uniform, or one of ``spec.directions`` with a clipped spread."""
    if not spec.directions:
        return rng.uniform(0, 2 * np.pi)  # the default data's single draw
    base = spec.directions[int(rng.integers(len(spec.directions)))]
    spread = spec.direction_spread
    # clipped, so a heading never strays into a bin that the variant keeps for anomalies
    return float(base + np.clip(rng.normal(0, spread), -2 * spread, 2 * spread)) if spread > 0 else float(base)


def make_video(
    n_frames: int,
    spec: SyntheticSpec,
    prototypes: np.ndarray,
    anomaly: str | None,
    rng: np.random.Generator,
    test: bool = False,
    appearance_shift: np.ndarray | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], np.ndarray]:
    """One video: per-frame lists of appearance (n_i, 512), velocity (n_i, B) and pose
    (p_i, 34) rows, and the frame labels (n_frames,) int64.

    ``prototypes``: (normal_kinds + 2, 512), the normal kinds then the two novel ones.
    ``test``: a test video, which takes the spec's drift (``test_*``); ``appearance_shift``
    (512,): the test footage's offset, added to every object's appearance."""
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
            "angle": _heading(spec, rng),
            "speed": abs(rng.normal(1.0, 0.25)),
            "height": rng.uniform(25, 35),
            "life": int(rng.integers(30, 90)),
            "phase": rng.uniform(0, 6.3),
            "person": rng.random() < 0.85,
            "anomalous": anomalous,
            "posture": "walking",
            "noise": rng.normal(0, 1, APPEARANCE_DIM) * 0.15,
        }
        # The drift of the test footage (the variants; 1.0 and 0.0 leave the default data as they were)
        if test and spec.test_speed_scale != 1.0:
            t["speed"] *= spec.test_speed_scale
        if test and spec.test_noise_scale != 1.0:
            t["noise"] = t["noise"] * spec.test_noise_scale
        if anomalous:
            if anomaly == "appearance":
                t["kind"], t["person"] = n_kinds + int(rng.integers(2)), False
            elif anomaly == "pose":
                t["posture"], t["person"] = ("lying" if rng.random() < 0.5 else "arms_up"), True
            elif anomaly == "speed":
                t["speed"], t["person"] = rng.uniform(*spec.speed_anomaly_range), True
            elif anomaly == "direction":  # an ordinary walker, but heading where nobody walks in training
                base = spec.novel_directions[int(rng.integers(len(spec.novel_directions)))]
                half = spec.novel_direction_spread
                t["angle"] = float(base + rng.uniform(-half, half))
                t["speed"], t["person"] = rng.uniform(*spec.novel_direction_speed), True
            else:
                raise ValueError(f"unknown anomaly kind {anomaly!r}: expected one of {ALL_ANOMALY_KINDS}")
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
            row = prototypes[t["kind"]] + t["noise"] + rng.normal(0, 0.05, APPEARANCE_DIM)
            frame_app.append(row if appearance_shift is None else row + appearance_shift)
            frame_vel.append(_velocity_bins(t["speed"] * rng.uniform(0.9, 1.1), t["angle"], spec.velocity_bins))
            if t["person"] and rng.random() < 0.97:  # the pose detector misses a few people
                # AI-VAD's pose rows are keypoints relative to the person's box corner
                pts = _skeleton(t["posture"], t["height"], t["phase"], rng, spec.pose_anomaly_strength)
                frame_pose.append((pts - pts.min(0)).reshape(-1))
        if not frame_app:  # AI-VAD: a frame without boxes gets one whole-frame entry
            frame_app.append(prototypes[0] * 0.2)
            frame_vel.append(np.zeros(spec.velocity_bins, dtype=np.float32))
        app.append(np.asarray(frame_app, dtype=np.float32))
        vel.append(np.asarray(frame_vel, dtype=np.float32))
        pose.append(np.asarray(frame_pose, dtype=np.float32).reshape(-1, 34))
    return app, vel, pose, labels


def _object_array(frames: list[np.ndarray]) -> np.ndarray:
    """(F,) object array of the per-frame arrays, AI-VAD's layout."""
    out = np.empty(len(frames), dtype=object)
    out[:] = frames
    return out


def make_dataset(root: Path | str, name: str = "synthetic", spec: SyntheticSpec | None = None) -> Path:
    """Write an AI-VAD-format dataset to ``root/name`` and return that folder.

    Writes extracted_features/{train,test}/{velocity,deep_features,pose}.npy,
    {train,test}_clip_lengths.npy, frame_labels.npy and anomaly_kinds.npy (the kind of each
    test video's anomaly, for per-kind analysis)."""
    spec = spec or SyntheticSpec()
    unknown = set(spec.anomaly_kinds) - set(ALL_ANOMALY_KINDS)
    if unknown or not spec.anomaly_kinds:
        raise ValueError(f"anomaly_kinds {spec.anomaly_kinds}: expected some of {ALL_ANOMALY_KINDS}")
    rng = np.random.default_rng(spec.seed)
    prototypes = rng.normal(0, 0.5, (spec.normal_kinds + 2, APPEARANCE_DIM)).astype(np.float32)
    if spec.appearance_anomaly_mix != 1.0:
        # the two novel kinds moved towards normal kinds 0 and 1: a smaller appearance offset
        mix = np.float32(spec.appearance_anomaly_mix)
        normal, novel = prototypes[:2], prototypes[spec.normal_kinds :]
        prototypes[spec.normal_kinds :] = normal + mix * (novel - normal)
    # Only the variants draw the test footage's offset, after everything the default data draw first
    shift = None
    if spec.test_appearance_shift > 0:
        shift = rng.normal(0, spec.test_appearance_shift, APPEARANCE_DIM).astype(np.float32)
    base = Path(root) / name
    kinds = [spec.anomaly_kinds[v % len(spec.anomaly_kinds)] for v in range(spec.test_videos)]
    for split, n_videos in (("train", spec.train_videos), ("test", spec.test_videos)):
        app, vel, pose, labels, lengths = [], [], [], [], []
        test = split == "test"
        for v in range(n_videos):
            n = int(rng.integers(spec.min_frames, spec.max_frames + 1))
            a, ve, p, lb = make_video(
                n,
                spec,
                prototypes,
                kinds[v] if test else None,
                rng,
                test=test,
                appearance_shift=shift if test else None,
            )
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


def avenue_like_spec(seed: int = 0) -> SyntheticSpec:
    """The Avenue-like variant (module docstring): 8 velocity bins, walkers along a walkway
    (left or right), a ``direction`` anomaly kind beside subtler appearance, pose and speed
    ones, and normal test footage that drifts a little from the training footage."""
    return SyntheticSpec(
        train_videos=8,
        test_videos=8,
        min_frames=80,
        max_frames=130,
        max_objects=7,
        velocity_bins=8,
        normal_kinds=6,
        seed=seed,
        anomaly_kinds=("direction", "appearance", "pose", "speed"),
        directions=(0.0, np.pi),  # right and left along the walkway
        direction_spread=0.15,  # clipped at 0.3 rad: bins 0 and 7 (right), 3 and 4 (left) only
        novel_directions=(np.pi / 2, 3 * np.pi / 2),  # across the walkway: bins 1-2 and 5-6
        novel_direction_spread=0.3,
        novel_direction_speed=(0.7, 1.3),
        appearance_anomaly_mix=0.35,
        pose_anomaly_strength=0.5,
        speed_anomaly_range=(1.8, 2.4),
        test_speed_scale=1.05,
        test_noise_scale=1.1,
        test_appearance_shift=0.02,
    )


AVENUE_LIKE = avenue_like_spec()
VARIANTS = {"default": SyntheticSpec, "avenue_like": avenue_like_spec}  # name -> spec(seed=...)
VARIANT_NAMES = {"default": "synthetic", "avenue_like": "avenue_like"}  # the dataset folder each makes by default


def main(argv: list[str] | None = None) -> None:
    """``python -m memfuse.synthetic [--variant V] [--name NAME] [--out-root DIR] [--seed S]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m memfuse.synthetic",
        description="Write a synthetic dataset in AI-VAD's feature format to OUT_ROOT/NAME/.",
    )
    parser.add_argument(
        "--variant", choices=sorted(VARIANTS), default="default", help="which dataset (default: default)"
    )
    parser.add_argument("--name", default=None, help="dataset folder name (default: synthetic, or the variant's name)")
    parser.add_argument("--out-root", default="data", help="folder to write NAME/ into (default: data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    name = args.name or VARIANT_NAMES[args.variant]
    base = make_dataset(args.out_root, name, VARIANTS[args.variant](seed=args.seed))
    print(f"made the {args.variant} synthetic dataset in {base} (seed {args.seed})")


if __name__ == "__main__":
    main()
