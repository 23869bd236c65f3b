"""Motion boxes (memfuse/extract/motion.py) against a dataset's reference boxes.

    python bench/motion_boxes.py --dataset ped2 --data-root ../shared/data            # the defaults
    python bench/motion_boxes.py --dataset ped2 --data-root ../shared/data --grid     # a small grid of settings

Reads DIR/NAME/training/frames/ and DIR/NAME/NAME_bboxes_train.npy (AI-VAD's detections),
runs the motion detector over every train video and prints recall and precision at IoU 0.5
(and 0.3) and frames per second. Train split only: the test split is never looked at.
Writes results/<dataset>_motion_boxes.json.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memfuse.extract.frames import list_videos, load_boxes, read_frame, split_boxes_by_video  # noqa: E402
from memfuse.extract.motion import MotionBoxes, MotionConfig, background_indices, box_agreement  # noqa: E402
from memfuse.io import RESULTS_ROOT, save_json  # noqa: E402

GRID = {"threshold": (15, 20, 25), "close_h": (3, 9), "split_y_scale": (0.5, 1.0), "split": (True, False)}


def run(videos, cfg: MotionConfig) -> tuple[list[np.ndarray], float]:
    """Boxes of every frame of ``videos`` (frames given as arrays), and frames per second."""
    found = []
    start = time.perf_counter()
    n = 0
    for frames in videos:
        detect = MotionBoxes([frames[i] for i in background_indices(len(frames), cfg)], cfg)
        for f in frames:
            found.append(detect(f))
            n += 1
    return found, n / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="ped2")
    p.add_argument("--data-root", default="../shared/data")
    p.add_argument("--grid", action="store_true", help=f"every combination of {GRID}")
    a = p.parse_args()
    base = Path(a.data_root) / a.dataset
    videos = list_videos(base / "training" / "frames")
    reference = [
        b
        for per_video in split_boxes_by_video(load_boxes(base / f"{a.dataset}_bboxes_train.npy"), videos, base)
        for b in per_video
    ]
    frames = [[read_frame(f, v.name) for f in v.frames] for v in videos]
    configs = [MotionConfig()]
    if a.grid:
        configs += [replace(MotionConfig(), **dict(zip(GRID, values))) for values in itertools.product(*GRID.values())]
    rows = []
    for cfg in configs:
        found, fps = run(frames, cfg)
        row = {
            **asdict(cfg),
            **{f"iou{t}": box_agreement(found, reference, t) for t in (0.5, 0.3)},
            "frames_per_s": round(fps, 1),
        }
        rows.append(row)
        r5, r3 = row["iou0.5"], row["iou0.3"]
        print(
            f"{asdict(cfg)}: IoU 0.5 recall {r5['recall']:.3f} precision {r5['precision']:.3f} | "
            f"IoU 0.3 recall {r3['recall']:.3f} precision {r3['precision']:.3f} | "
            f"{r5['found']} boxes found, {r5['reference']} reference | {fps:.0f} frames/s",
            flush=True,
        )
    out = Path(RESULTS_ROOT) / f"{a.dataset}_motion_boxes.json"
    save_json(out, {"dataset": a.dataset, "split": "train", "rows": rows})
    print(f"-> {out}")


if __name__ == "__main__":
    main()
