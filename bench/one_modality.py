"""Ped2 footage with one-modality anomalies: a dataset whose test anomalies show in velocity
only, or in appearance and pose only, built from Ped2's *training* videos, and its features.

    python bench/one_modality.py                      # build data/ped2_onemod/, then stage 0 on it
    python bench/one_modality.py --force              # rebuild and re-extract
    python run_all.py --dataset ped2_onemod --data-root data --compare none --no-annotate

Ped2's test split is never read. What it makes (``OUT_ROOT/ped2_onemod/``, laid out as
Ped2 is, so stage 0 and the pipeline read it as a dataset of frames + boxes + poses):

- training: Ped2 training videos 01-12 unchanged (frame files copied byte for byte, their
  AI-VAD boxes and poses);
- testing, from Ped2 training videos 13-16 (never in the training split), 8 videos:

  - 01-04 "speed" (velocity-only anomaly), from 13, 14, 15, 16: one stretch played at 3x. With
    n the source video's frames and s = floor(0.25 n) (source frame s + 1, 1-based), the
    output keeps source frames 0..s, then s+3, s+6, ..., s+90 (every 3rd source frame, 30
    output frames), then s+91..n-1, each with its own boxes and poses. The anomalous frames
    are exactly those 30: the output frames reached from the one before by a 3-frame jump,
    which is where the optical flow sees 3x motion. Every frame is a normal frame of the
    footage, so appearance and pose stay normal. 120 frames from 13 (180), 90 from the others (150).
  - 05-08 "rotated" (appearance and pose anomaly), from 13, 14, 15, 16: 40 frames from
    source frame floor(0.4 n) on (0-based; frames 73-112 of 13, 61-100 of the others, 1-based)
    show one person upside down: a region of that person's box size (the median of their
    AI-VAD boxes over the stretch), centred on a line fitted to their box centres over 9 frames, is
    replaced by itself rotated 180 degrees, and their pose row is rotated 180 degrees about
    the region's centre. (Rotating each frame's own box made the patch jump with the
    detector's jitter in box size: 1.3-2.1x the flow in the box, a velocity anomaly too.) The
    person is the box of the stretch's first frame that can be followed longest (each next
    frame's box of highest IoU, at least 0.3, height within 1.33x), then person-shaped (taller
    than wide), then largest; on all four videos it is followed over all 40 frames. Poses are
    AI-VAD's, relative to a box's top-left corner and not matched to boxes: the rotated row is
    the one whose keypoints fit inside that box with the extent closest to the box's (the best
    fit when none fits). Speed unchanged, but for the flip itself: the flow in the person's
    box is 1.05-1.2x that of the unedited footage inside the stretch (median of each frame's
    largest box velocity), with one-frame spikes of about 2-3x where the flip starts (a labelled
    frame) and ends (the first unlabelled frame after it). The edited frames are re-encoded as
    JPEG quality 95, every other frame is copied. Labelled: the 40 frames with a rotated region.

Stretch positions are fixed fractions of each video: the build is deterministic. Also written:
``ped2_onemod_bboxes_{train,test}.npy``, ``extracted_features/{train,test}/pose.npy``,
``{train,test}_clip_lengths.npy``, ``frame_labels_ped2_onemod.npy`` (1, F), ``anomaly_kinds.npy``
(per test video, for run_all.py's per-kind AUC), ``README.md`` and ``build.json`` (every
choice made: source frames, tracked boxes, pose rows; written last, so a build without it is
incomplete and is redone). Then stage 0 (``memfuse.extract.extract_dataset``) makes the
features with data/ped2's settings (hog, dis_fine, 1 velocity bin, boxes given, poses
copied), one worker, and the script checks extract_meta.json says so.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memfuse.io import InputError, atomic_path, load_object_npy, save_json, save_npy  # noqa: E402

DATASET = "ped2_onemod"
SOURCE_BOXES = "ped2_bboxes_train.npy"  # AI-VAD's boxes of Ped2's training videos
SOURCE_POSES = Path("extracted_features") / "train" / "pose.npy"
SOURCE_LENGTHS = "train_clip_lengths.npy"
JPEG_QUALITY = 95  # Ped2's frames were converted to JPEG at this quality
TRACK_IOU = 0.3  # a box is the tracked person's in the next frame at this IoU or more
TRACK_HEIGHT_RATIO = 1.33  # and with at most this height change (a box merging two walkers is not)
LOST_IOU = 0.1  # once the person is lost: the loosest link, below it the largest person again
REGION_SMOOTH = 4  # frames either side over which the rotated region's centre is smoothed
POSE_FIT_TOLERANCE = 1.0  # px a keypoint may lie outside a box and still fit inside it


@dataclass(frozen=True)
class Plan:
    """Which source videos go where and where the anomalies are (fractions of each video)."""

    train_videos: tuple[str, ...] = tuple(f"{i:02d}" for i in range(1, 13))
    test_sources: tuple[str, ...] = ("13", "14", "15", "16")
    speed_factor: int = 3
    # (start as a fraction of the source video, output frames at speed_factor x)
    speed_stretches: tuple[tuple[float, int], ...] = ((0.25, 30),)
    rotate_start: float = 0.4
    rotate_frames: int = 40


@dataclass
class SourceVideo:
    """One Ped2 training video: its frame files and each frame's boxes and poses."""

    name: str
    frames: list[Path]
    boxes: list[np.ndarray]
    poses: list[np.ndarray]


@dataclass
class OutVideo:
    """One video of the built dataset. A frame is a source file to copy or an edited image."""

    name: str
    kind: str  # normal | speed | rotated
    source: str
    frames: list[Path | np.ndarray]
    boxes: list[np.ndarray]
    poses: list[np.ndarray]
    labels: np.ndarray
    info: dict = field(default_factory=dict)


# ---- source ------------------------------------------------------------------------------------
def load_source(source: Path) -> dict[str, SourceVideo]:
    """Ped2's training videos with their AI-VAD boxes and poses, by video name; checks that
    frames, boxes, poses and clip lengths agree (InputError naming the file otherwise)."""
    from memfuse.extract.frames import list_videos, load_boxes

    videos = list_videos(source / "training" / "frames")
    boxes = load_boxes(source / SOURCE_BOXES)
    poses = load_object_npy(source / SOURCE_POSES, f"missing pose file {source / SOURCE_POSES}")
    lengths = load_object_npy(source / SOURCE_LENGTHS, f"missing clip lengths file {source / SOURCE_LENGTHS}")
    ends = np.cumsum([len(v.frames) for v in videos])
    if not np.array_equal(np.asarray(lengths).ravel().astype(np.int64), ends):
        raise InputError(f"{source / SOURCE_LENGTHS}: cumulative lengths disagree with the frame folders")
    for path, arr in ((source / SOURCE_BOXES, boxes), (source / SOURCE_POSES, poses)):
        if len(arr) != ends[-1]:
            raise InputError(f"{path}: {len(arr)} frames but the training frame folders have {ends[-1]}")
    out, start = {}, 0
    for v, end in zip(videos, ends):
        rows = range(start, int(end))
        out[v.name] = SourceVideo(
            v.name,
            list(v.frames),
            [np.asarray(boxes[i], dtype=np.float32).reshape(-1, 4) for i in rows],
            [np.asarray(poses[i]).reshape(-1, 34) for i in rows],
        )
        start = int(end)
    return out


# ---- speed: a stretch played at 3x -------------------------------------------------------------
def speed_selection(n: int, stretches: tuple[tuple[float, int], ...], factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Source frame of each output frame, and its 0/1 label, for a video of ``n`` frames.

    Each stretch (start fraction f, k outputs) starts at source frame s = floor(f n): frames
    up to s are kept, then s + factor, ..., s + k factor, then the next frame on. An output
    frame is anomalous when it is ``factor`` source frames after the one before it: what the
    flow between consecutive output frames sees as fast motion."""
    picked: list[int] = []
    cur = 0  # first source frame not yet passed
    for frac, k in sorted(stretches):
        s = int(math.floor(frac * n))
        if s < cur or s + k * factor >= n:
            raise InputError(
                f"a {n}-frame video cannot hold a {k}-frame stretch at {factor}x from frame {s} after frame {cur - 1}"
            )
        picked += list(range(cur, s + 1)) + [s + j * factor for j in range(1, k + 1)]
        cur = s + k * factor + 1
    picked += list(range(cur, n))
    idx = np.asarray(picked, dtype=np.int64)
    labels = np.zeros(len(idx), dtype=np.int64)
    labels[1:] = np.diff(idx) == factor
    return idx, labels


def make_speed(src: SourceVideo, name: str, plan: Plan) -> OutVideo:
    idx, labels = speed_selection(len(src.frames), plan.speed_stretches, plan.speed_factor)
    fast = np.flatnonzero(labels)
    return OutVideo(
        name,
        "speed",
        src.name,
        [src.frames[i] for i in idx],
        [src.boxes[i] for i in idx],
        [src.poses[i] for i in idx],
        labels,
        {
            "factor": plan.speed_factor,
            "source_frames": (idx + 1).tolist(),  # 1-based, as the frame files are named
            "anomalous_output_frames": _ranges(fast + 1),
        },
    )


# ---- rotated: one person upside down -----------------------------------------------------------
Region = tuple[int, int, int, int]  # r0, r1, c0, c1: rows r0:r1, columns c0:c1 of a frame


def rotation_regions(boxes: list[np.ndarray | None], width: int, height: int) -> list[Region | None]:
    """The region rotated in each frame of the stretch (None where the person has no box).

    Every region has the tracked boxes' median size and is centred on a line fitted to their
    centres over REGION_SMOOTH frames either side, clipped to the frame. Rotating each frame's own
    box instead made the rotated patch jump with the detector's jitter in box size (the
    content is anchored at the opposite corner): the flow in the box rose 1.3-2.1x on
    Ped2, a velocity anomaly as well; the steady region keeps it within 1.05-1.2x."""
    have = [t for t, b in enumerate(boxes) if b is not None]
    if not have:
        return [None] * len(boxes)
    known = np.array([boxes[t] for t in have], dtype=np.float64)
    w, h = (max(int(round(float(v))), 1) for v in np.median(known[:, 2:] - known[:, :2], axis=0))
    centres = (known[:, :2] + known[:, 2:]) / 2
    out: list[Region | None] = []
    for t, b in enumerate(boxes):
        if b is None:
            out.append(None)
            continue
        near = np.abs(np.asarray(have) - t) <= REGION_SMOOTH
        ts = np.asarray(have)[near]
        # a straight line through the window's centres, read at t: a steady walk is followed
        # without lag, also at the stretch's ends where the window is one-sided
        cx, cy = (
            np.polyval(np.polyfit(ts, centres[near, i], 1), t) if len(ts) > 1 else centres[near, i][0] for i in (0, 1)
        )
        c0, r0 = int(round(cx - w / 2)), int(round(cy - h / 2))
        region = (max(r0, 0), min(r0 + h, height), max(c0, 0), min(c0 + w, width))
        out.append(region if region[1] > region[0] and region[3] > region[2] else None)  # None: off the frame
    return out


def rotate_region(img: np.ndarray, region: Region) -> np.ndarray:
    """A copy of ``img`` whose ``region`` is itself rotated 180 degrees."""
    r0, r1, c0, c1 = region
    out = img.copy()
    out[r0:r1, c0:c1] = np.rot90(img[r0:r1, c0:c1], 2)
    return out


def rotate_pose(pose: np.ndarray, box: np.ndarray, region: Region) -> np.ndarray:
    """A (34,) pose relative to ``box``'s top-left corner, rotated 180 degrees about the
    centre of ``region`` as its pixels are (pixel c spans [c, c + 1), so X -> c0 + c1 - X)."""
    r0, r1, c0, c1 = region
    x1, y1 = float(box[0]), float(box[1])
    kp = np.asarray(pose, dtype=np.float64).reshape(17, 2)
    # frame x = x1 + px, rotated x = c0 + c1 - (x1 + px), relative again: minus x1
    out = np.stack([(c0 + c1 - 2 * x1) - kp[:, 0], (r0 + r1 - 2 * y1) - kp[:, 1]], axis=1)
    return out.reshape(-1).astype(np.asarray(pose).dtype)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n,) IoU of one box with each of ``boxes`` (x1, y1, x2, y2)."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    return inter / np.maximum(_area(box) + _area(boxes) - inter, 1e-9)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.prod(np.clip(boxes[..., 2:] - boxes[..., :2], 0, None), axis=-1)


def largest_person(boxes: np.ndarray) -> int:
    """Row of the largest box taller than wide (a walker, not a group side by side), else
    of the largest box; ties go to the first row."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    area = np.where(h >= w, w * h, -1.0)
    return int(np.argmax(area)) if area.max() >= 0 else int(np.argmax(w * h))


def same_person(last: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n,) IoU of each box with the person's last box where it can be that person (IoU at
    least TRACK_IOU, height within TRACK_HEIGHT_RATIO), else -1."""
    h = boxes[:, 3] - boxes[:, 1]
    ratio = np.maximum(h, 1e-9) / max(float(last[3] - last[1]), 1e-9)
    overlap = iou(last, boxes)
    ok = (overlap >= TRACK_IOU) & (ratio <= TRACK_HEIGHT_RATIO) & (ratio >= 1 / TRACK_HEIGHT_RATIO)
    return np.where(ok, overlap, -1.0)


def link(frames_boxes: list[np.ndarray], row: int) -> list[int]:
    """Box rows of the person of ``frames_boxes[0][row]`` from the first frame on, as long as
    each next frame has a box that can be them (:func:`same_person`)."""
    rows, last = [row], frames_boxes[0][row]
    for b in frames_boxes[1:]:
        score = same_person(last, b) if len(b) else np.array([-1.0])
        if score.max() < 0:
            break
        rows.append(int(np.argmax(score)))
        last = b[rows[-1]]
    return rows


def track(frames_boxes: list[np.ndarray]) -> list[int | None]:
    """The rotated person's box row in each frame (None: a frame without boxes).

    The person is the first frame's box followed longest (a walker who stays in view and
    apart from others), then person-shaped, then of the largest mean area. Once they are
    lost (out of view, merged with another walker's box), each frame takes the box of
    highest IoU with the last (at least LOST_IOU), else the largest person again."""
    rows: list[int | None] = []
    if len(frames_boxes) and len(frames_boxes[0]):
        first = frames_boxes[0]
        w, h = first[:, 2] - first[:, 0], first[:, 3] - first[:, 1]

        def rank(r: int) -> tuple:
            linked = link(frames_boxes, r)
            area = np.mean([_area(frames_boxes[t][i]) for t, i in enumerate(linked)])
            return len(linked), bool(h[r] >= w[r]), float(area), -r

        rows = list(link(frames_boxes, max(range(len(first)), key=rank)))
    last = frames_boxes[len(rows) - 1][rows[-1]] if rows else None
    for b in frames_boxes[len(rows) :]:
        if len(b) == 0:
            rows.append(None)
            continue
        overlap = iou(last, b) if last is not None else np.zeros(len(b))
        row = int(np.argmax(overlap)) if overlap.max() >= LOST_IOU else largest_person(b)
        rows.append(row)
        last = b[row]
    return rows


def match_pose(poses: np.ndarray, box: np.ndarray) -> tuple[int | None, bool]:
    """The pose row belonging to ``box`` and whether its keypoints fit inside it. Poses are
    relative to their box's top-left corner, so a row fits when its keypoints lie in
    [0, w] x [0, h]; the best fit is the row whose keypoint extent is closest (L1) to the
    box's [0, 0, w, h]. (None, False) for a frame without poses."""
    if len(poses) == 0:
        return None, False
    w, h = float(box[2] - box[0]), float(box[3] - box[1])
    kp = np.asarray(poses, dtype=np.float64).reshape(len(poses), 17, 2)
    lo, hi = kp.min(axis=1), kp.max(axis=1)
    tol = POSE_FIT_TOLERANCE
    inside = (lo >= -tol).all(axis=1) & (hi[:, 0] <= w + tol) & (hi[:, 1] <= h + tol)
    cost = np.abs(lo).sum(axis=1) + np.abs(hi[:, 0] - w) + np.abs(hi[:, 1] - h)
    row = int(np.argmin(np.where(inside, cost, cost + 1e9)))  # a row that fits beats any that does not
    return row, bool(inside[row])


def read_image(path: Path) -> np.ndarray:
    """A frame as stored (Ped2's are one-channel grey), so edits keep its channels."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(f"cannot read frame image {path}")
    return img


def make_rotated(src: SourceVideo, name: str, plan: Plan) -> OutVideo:
    n = len(src.frames)
    start = int(math.floor(plan.rotate_start * n))
    if start + plan.rotate_frames > n:
        raise InputError(f"video {src.name} ({n} frames) cannot hold {plan.rotate_frames} rotated frames from {start}")
    frames: list[Path | np.ndarray] = list(src.frames)
    poses = [p.copy() for p in src.poses]
    labels = np.zeros(n, dtype=np.int64)
    stretch = list(range(start, start + plan.rotate_frames))
    rows = track([src.boxes[t] for t in stretch])
    boxes = [None if r is None else src.boxes[t][r] for t, r in zip(stretch, rows)]
    height, width = read_image(src.frames[start]).shape[:2]
    detail = []
    for t, row, box, region in zip(stretch, rows, boxes, rotation_regions(boxes, width, height)):
        if box is None or region is None:  # nothing to rotate in this frame: it stays normal, and unlabelled
            detail.append({"frame": t + 1, "box_row": None, "pose_row": None, "region": None})
            continue
        frames[t] = rotate_region(read_image(src.frames[t]), region)
        pose_row, fits = match_pose(src.poses[t], box)
        if pose_row is not None:
            poses[t][pose_row] = rotate_pose(src.poses[t][pose_row], box, region)
        labels[t] = 1
        detail.append(
            {
                "frame": t + 1,
                "box_row": row,
                "box": [round(float(v), 3) for v in box],
                "region": list(region),
                "pose_row": pose_row,
                "pose_fits_box": fits,
            }
        )
    return OutVideo(
        name,
        "rotated",
        src.name,
        frames,
        list(src.boxes),
        poses,
        labels,
        {"anomalous_output_frames": _ranges(np.flatnonzero(labels) + 1), "rotated": detail},
    )


def _ranges(frames: np.ndarray) -> list[list[int]]:
    """Sorted frame numbers -> [[first, last], ...] runs."""
    runs: list[list[int]] = []
    for f in (int(x) for x in frames):
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return runs


# ---- the dataset -------------------------------------------------------------------------------
def make_videos(source: Path, plan: Plan) -> tuple[list[OutVideo], list[OutVideo]]:
    """The training and test videos of the dataset, in memory (nothing is written)."""
    videos = load_source(source)
    for name in (*plan.train_videos, *plan.test_sources):
        if name not in videos:
            raise InputError(f"no training video {name} in {source / 'training' / 'frames'}")
    if set(plan.train_videos) & set(plan.test_sources):
        raise InputError(f"videos {sorted(set(plan.train_videos) & set(plan.test_sources))} in both splits")
    train = [
        OutVideo(v, "normal", v, list(s.frames), s.boxes, s.poses, np.zeros(len(s.frames), np.int64))
        for v, s in ((v, videos[v]) for v in plan.train_videos)
    ]
    k = len(plan.test_sources)
    test = [make_speed(videos[v], f"{i + 1:02d}", plan) for i, v in enumerate(plan.test_sources)]
    test += [make_rotated(videos[v], f"{k + i + 1:02d}", plan) for i, v in enumerate(plan.test_sources)]
    return train, test


def _object_array(items: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        out[i] = x
    return out


def write_frame(frame: Path | np.ndarray, dst: Path) -> None:
    """Copy a source frame file as it is, or encode an edited image as JPEG; atomically."""
    with atomic_path(dst) as tmp:
        if isinstance(frame, Path):
            shutil.copyfile(frame, tmp)
        else:
            import cv2

            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise InputError(f"cannot encode {dst}")
            tmp.write_bytes(buf.tobytes())


def write_split(base: Path, split: str, videos: list[OutVideo]) -> None:
    folder = base / {"train": "training", "test": "testing"}[split] / "frames"
    for v in videos:
        for j, frame in enumerate(v.frames):
            write_frame(frame, folder / v.name / f"{j + 1:03d}.jpg")
    save_npy(base / f"{DATASET}_bboxes_{split}.npy", _object_array([b for v in videos for b in v.boxes]))
    save_npy(base / "extracted_features" / split / "pose.npy", _object_array([p for v in videos for p in v.poses]))
    save_npy(base / f"{split}_clip_lengths.npy", np.cumsum([len(v.frames) for v in videos]).astype(np.int64))


def video_record(v: OutVideo) -> dict:
    return {
        "name": v.name,
        "kind": v.kind,
        "source_video": v.source,
        "frames": len(v.frames),
        "anomalous_frames": int(v.labels.sum()),
        **v.info,
    }


def readme_text(manifest: dict) -> str:
    """data/ped2_onemod/README.md: what each test video is and how it was made."""
    plan = manifest["plan"]
    lines = [
        "# ped2_onemod: Ped2 footage with one-modality anomalies",
        "",
        "Made by `python bench/one_modality.py` (its docstring has the details) from UCSD Ped2's",
        f"training videos only ({manifest['source']}); Ped2's test split is not used. Laid out as Ped2:",
        "`{training,testing}/frames/NN/FFF.jpg`, `ped2_onemod_bboxes_{train,test}.npy` (AI-VAD's boxes),",
        "`extracted_features/{train,test}/pose.npy` (AI-VAD's poses, relative to a box's top-left corner),",
        "`{train,test}_clip_lengths.npy`, `frame_labels_ped2_onemod.npy` (1, F) 0/1, `anomaly_kinds.npy`",
        "(one kind per test video), `build.json` (every choice: source frames, tracked boxes, pose rows).",
        "Stage 0 adds `extracted_features/{train,test}/{velocity,deep_features}.npy`.",
        "",
        f"Training: Ped2 training videos {', '.join(plan['train_videos'])}, unchanged.",
        "",
        "| test video | kind | from Ped2 train video | frames | anomalous frames (1-based) | how |",
        "|---|---|---|---|---|---|",
    ]
    for v in manifest["test"]:
        runs = ", ".join(f"{a}-{b}" for a, b in v["anomalous_output_frames"])
        if v["kind"] == "speed":
            how = (
                f"velocity only: the anomalous frames keep 1 source frame in {v['factor']} "
                f"(source frames {v['source_frames'][v['anomalous_output_frames'][0][0] - 1]}-"
                f"{v['source_frames'][v['anomalous_output_frames'][-1][1] - 1]}), the rest at normal speed"
            )
        else:
            rows = v["rotated"]
            fits = sum(bool(r.get("pose_fits_box")) for r in rows)
            how = (
                "appearance + pose only: one tracked person's region (their box's median size, centre "
                "smoothed over 9 frames) rotated 180 degrees and its "
                f"pose row rotated with it (pose fits the box in {fits} of {len(rows)} frames); speed unchanged"
            )
        lines.append(f"| {v['name']} | {v['kind']} | {v['source_video']} | {v['frames']} | {runs} | {how} |")
    lines += [
        "",
        f"Test: {manifest['test_frames']} frames, {manifest['test_anomalous_frames']} anomalous.",
        "Rotated videos: the flow sees the flip where it starts and ends (one-frame velocity spikes of",
        "about 2-3x, the end one on the first unlabelled frame); inside the stretch the flow in the",
        "person's box is 1.05-1.2x the unedited footage's.",
        "Frames of the speed videos and unedited frames of the rotated videos are Ped2's files, copied;",
        f"edited frames are re-encoded as JPEG quality {JPEG_QUALITY}.",
        "",
    ]
    return "\n".join(lines)


def build(source: Path | str, out_root: Path | str, plan: Plan = Plan(), force: bool = False) -> tuple[Path, bool]:
    """Write the dataset to ``out_root/ped2_onemod``; returns (its folder, whether it was
    built now). A complete build of the same plan and source is kept unless ``force``."""
    source, base = Path(source), Path(out_root) / DATASET
    src, dst = source.resolve(), base.resolve()
    if dst == src or src in dst.parents or dst in src.parents:
        raise InputError(f"{base} and the source {source} overlap: give an --out-root outside the source")
    plan_json = json.loads(json.dumps(asdict(plan)))
    where = os.path.relpath(src, ROOT)  # the source as seen from the project, recorded in build.json
    manifest_path = base / "build.json"
    if not force and manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("plan") == plan_json and old.get("source") == where:
            return base, False
    # A rebuild starts clean: frames of an older plan or stage 0's features of them would be stale.
    manifest_path.unlink(missing_ok=True)
    for sub in ("training", "testing", "extracted_features"):
        if (base / sub).exists():
            shutil.rmtree(base / sub)
    train, test = make_videos(source, plan)
    write_split(base, "train", train)
    write_split(base, "test", test)
    labels = np.concatenate([v.labels for v in test])
    save_npy(base / f"frame_labels_{DATASET}.npy", labels[None, :])
    save_npy(base / "anomaly_kinds.npy", np.array([v.kind for v in test]))
    manifest = {
        "dataset": DATASET,
        "source": where,
        "plan": plan_json,
        "train": [video_record(v) for v in train],
        "test": [video_record(v) for v in test],
        "test_frames": int(len(labels)),
        "test_anomalous_frames": int(labels.sum()),
    }
    with atomic_path(base / "README.md") as tmp:
        tmp.write_text(readme_text(manifest))
    save_json(manifest_path, manifest)  # last: its presence marks a complete build
    return base, True


# ---- stage 0 -----------------------------------------------------------------------------------
def extract(out_root: Path | str, force: bool) -> dict:
    """Stage 0 on the built dataset with data/ped2's settings, one worker; checks that each
    split's extract_meta.json records those settings (hog, dis_fine, Ped2's bins, boxes
    given, poses copied)."""
    from memfuse.extract.pipeline import ExtractSettings, dataset_bins, extract_dataset, split_settings

    settings = ExtractSettings(workers=1)
    report = extract_dataset(DATASET, out_root, out_root, settings, force=force)
    # the settings Ped2's own features are made with, pose copied
    expected = split_settings(replace(settings, bins=dataset_bins("ped2"), pose_model=None), motion=False)
    for split in ("train", "test"):
        meta_path = Path(out_root) / DATASET / "extracted_features" / split / "extract_meta.json"
        meta = json.loads(meta_path.read_text())
        if meta.get("settings") != expected or meta.get("boxes") != f"{DATASET}_bboxes_{split}.npy":
            raise InputError(f"{meta_path}: made with {meta.get('settings')}, not Ped2's {expected}; use --force")
    return report


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "), formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--source", default="../shared/data/ped2", help="Ped2 laid out as this project's copy")
    p.add_argument("--out-root", default="data", help=f"write OUT_ROOT/{DATASET}/")
    p.add_argument("--force", action="store_true", help="rebuild the dataset and redo stage 0")
    p.add_argument("--build-only", action="store_true", help="build the dataset, skip stage 0")
    a = p.parse_args(argv)
    base, built = build(a.source, a.out_root, force=a.force)
    print(f"{base}: {'built' if built else 'kept (complete build of the same plan; --force to redo)'}")
    if a.build_only:
        return
    t0 = time.perf_counter()
    report = extract(a.out_root, force=a.force or built)
    for split in ("train", "test"):
        r = report[split]
        if r["skipped"]:
            print(f"stage 0 {split}: kept ({r['frames']} frames; --force to redo)")
        else:
            print(
                f"stage 0 {split}: {r['frames']} frames in {r['wall_s']:.1f}s, {r['frames'] / r['wall_s']:.1f} frames/s"
            )
    print(f"stage 0: {time.perf_counter() - t0:.1f}s; features in {base / 'extracted_features'}")


if __name__ == "__main__":
    try:
        main()
    except InputError as exc:
        sys.exit(f"error: {exc}")
