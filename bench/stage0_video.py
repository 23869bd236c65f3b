"""Stage 0 on a long synthetic video: frames per second and peak memory.

    python bench/stage0_video.py --minutes 1                       # boxes, flow, appearance
    python bench/stage0_video.py --minutes 60 --pose-model data/models/pose_landmark_full.tflite

Writes a 640x360 video (a still textured background, a few squares walking across it) of
``--minutes`` at 25 frames/s with OpenCV, as both the train and the test video of a dataset
in a temporary folder, runs ``extract_features.extract_dataset`` on it (boxes from motion;
poses with ``--pose-model``, else the dataset brings one zero pose per frame) and prints
frames per second and the peak resident memory of the process. Memory should not grow with
the video's length: frames are streamed, and only the per-frame feature arrays are kept.
Writes results/stage0_video.json.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from extract_features import extract_dataset  # noqa: E402
from memfuse.io import RESULTS_ROOT, save_json  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 25


def write_video(path: Path, n_frames: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(cv2.resize(rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8)).astype(np.uint8), (WIDTH, HEIGHT)), (0, 0), 2)
    walkers = [(rng.uniform(0, WIDTH), rng.uniform(40, HEIGHT - 80), rng.uniform(-3, 3)) for _ in range(4)]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    for t in range(n_frames):
        f = bg.copy()
        for x0, y, vx in walkers:
            x = int((x0 + vx * t) % (WIDTH - 20))
            f[int(y):int(y) + 48, x:x + 18] = 230
        out.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    out.release()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=1.0)
    p.add_argument("--pose-model", default=None)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args()
    n = int(a.minutes * 60 * FPS)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "in" / "long"
        for folder in ("training", "testing"):
            (base / folder / "videos").mkdir(parents=True)
        start = time.perf_counter()
        write_video(base / "training" / "videos" / "01.avi", n)
        (base / "testing" / "videos" / "01.avi").symlink_to(base / "training" / "videos" / "01.avi")
        print(f"wrote a {WIDTH}x{HEIGHT} video of {n} frames in {time.perf_counter() - start:.0f} s")
        if a.pose_model is None:
            for split in ("train", "test"):
                (base / "extracted_features" / split).mkdir(parents=True)
                pose = np.empty(n, dtype=object)
                pose[:] = [np.zeros((1, 34), np.float32)] * n
                np.save(base / "extracted_features" / split / "pose.npy", pose, allow_pickle=True)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        rep = extract_dataset("long", Path(tmp) / "in", Path(tmp) / "out", workers=a.workers, splits=("train",), progress=True,
                              pose_model=a.pose_model)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"frames": n, "size": [WIDTH, HEIGHT], "pose_model": a.pose_model is not None, "seconds": round(seconds, 1),
              "frames_per_s": round(n / seconds, 2), "objects": rep["train"]["objects"], "peak_rss_mib": round(peak, 1),
              "rss_before_extraction_mib": round(rss_before, 1)}
    for k, v in report.items():
        print(f"{k}: {v}")
    save_json(Path(RESULTS_ROOT) / "stage0_video.json", report)


if __name__ == "__main__":
    main()
