"""Stage 0's poses (BlazePose on each box, memfuse/extract/pose.py) against AI-VAD's
AlphaPose poses, on a dataset's train split.

    python bench/pose_agreement.py --pose-model data/models/pose_landmark_full.tflite --every 10

AI-VAD's pose rows are not matched to boxes, so poses are compared by shape: each pose is
normalised as the baseline does (centred on its mean keypoint, divided by its height), and
within a frame each AlphaPose pose is matched to the nearest of ours (greedily, each used
once). Printed: persons per frame (ours and AlphaPose's), the share of AlphaPose poses with
a match, and the matched poses' mean keypoint distance in skeleton heights. Frames: every
``--every``-th train frame (the model costs about 30 ms per box on one core). Writes
results/<dataset>_pose_agreement.json. Train split only: the test split is not looked at.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memfuse.baseline import normalise_pose  # noqa: E402
from memfuse.extract.frames import check_boxes, list_videos, load_boxes, read_frame, split_boxes_by_video  # noqa: E402
from memfuse.extract.pose import PoseModel  # noqa: E402
from memfuse.io import RESULTS_ROOT, load_object_npy, save_json  # noqa: E402


def match(ours: np.ndarray, theirs: np.ndarray) -> list[float]:
    """Mean keypoint distances (in skeleton heights) of greedy nearest matches of each of
    ``theirs`` (P, 34) to ``ours`` (Q, 34), both normalised; each of ours used once."""
    if not len(ours) or not len(theirs):
        return []
    a = normalise_pose(ours).reshape(len(ours), -1, 2)
    b = normalise_pose(theirs).reshape(len(theirs), -1, 2)
    d = np.linalg.norm(a[:, None] - b[None], axis=-1).mean(axis=-1)  # (Q, P)
    out = []
    for _ in range(min(d.shape)):
        i, j = np.unravel_index(np.argmin(d), d.shape)
        out.append(float(d[i, j]))
        d[i, :], d[:, j] = np.inf, np.inf
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ped2")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument(
        "--pose-model", required=True, help="pose_landmark_full.tflite (memfuse/extract/pose.py says how to get it)"
    )
    p.add_argument("--every", type=int, default=10, help="use every N-th train frame")
    a = p.parse_args()
    base = Path(a.data_root) / a.dataset
    videos = list_videos(base / "training" / "frames")
    boxes = [
        b
        for per_video in split_boxes_by_video(load_boxes(base / f"{a.dataset}_bboxes_train.npy"), videos, base)
        for b in per_video
    ]
    alpha = load_object_npy(base / "extracted_features" / "train" / "pose.npy", "AI-VAD's pose.npy")
    frames = [f for v in videos for f in v.frames]
    model = PoseModel(a.pose_model)
    counts, distances, n_boxes = [], [], 0
    start = time.perf_counter()
    for t in range(0, len(frames), a.every):
        rgb = read_frame(frames[t])
        checked, _ = check_boxes(boxes[t], rgb.shape[1], rgb.shape[0])
        whole = np.asarray(boxes[t]).size == 0
        ours = model(rgb, checked[:0] if whole else checked)
        theirs = np.asarray(alpha[t], dtype=np.float32).reshape(-1, 34)
        n_boxes += 0 if whole else len(checked)
        counts.append((len(ours), len(theirs)))
        distances += match(ours, theirs)
    seconds = time.perf_counter() - start
    c = np.array(counts)
    report = {
        "dataset": a.dataset,
        "split": "train",
        "frames": len(c),
        "every": a.every,
        "boxes": n_boxes,
        "persons_per_frame_ours": float(c[:, 0].mean()),
        "persons_per_frame_alphapose": float(c[:, 1].mean()),
        "alphapose_poses_matched": len(distances) / max(int(c[:, 1].sum()), 1),
        "matched_distance_mean": float(np.mean(distances)) if distances else None,
        "matched_distance_median": float(np.median(distances)) if distances else None,
        "ms_per_box": 1000 * seconds / max(n_boxes, 1),
    }
    for k, v in report.items():
        print(f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}")
    save_json(Path(RESULTS_ROOT) / f"{a.dataset}_pose_agreement.json", report)


if __name__ == "__main__":
    main()
