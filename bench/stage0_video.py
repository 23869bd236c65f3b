"""Stage 0 from video files: frames per second and peak memory.

    python bench/stage0_video.py --minutes 1                       # boxes, flow, appearance
    python bench/stage0_video.py --minutes 60 --flow dis_ultrafast  # an hour of 640x360 video: memory
    python bench/stage0_video.py --from-frames ../shared/data/ped2/testing/frames --videos 4 \
        --pose-model data/models/pose_landmark_full.tflite --workers 2 [--fast-extract]   # Ped2 resolution, poses

By default writes a 640x360 video (a still textured background, a few squares walking
across it) of ``--minutes`` at 25 frames/s with OpenCV. With ``--from-frames DIR`` it
instead writes the first ``--videos`` folders of frames under DIR (e.g. Ped2's test set)
as .avi files, one video each, so the boxes and poses are those of real scenes. Then it runs
``memfuse.extract.extract_dataset`` on them as a dataset's train split in a temporary
folder (boxes from motion; poses with ``--pose-model``, else the dataset brings one zero
pose per frame) and prints frames per second and the peak resident memory of the process
and of its workers. Memory should not grow with the video's length: frames are streamed;
only the per-frame feature arrays (a few KB per object) are kept.
Writes results/stage0_video.json (``--out`` to change).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memfuse.extract import ExtractSettings, extract_dataset  # noqa: E402
from memfuse.extract.frames import list_videos, read_frame  # noqa: E402
from memfuse.extract.pipeline import FAST_FLOW, FAST_POSE_EVERY  # noqa: E402
from memfuse.io import RESULTS_ROOT, save_json  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 360, 25


def write_video(path: Path, n_frames: int, seed: int = 0, width: int = WIDTH, height: int = HEIGHT) -> None:
    """A still textured background with four light rectangles walking across it."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (height // 8, width // 8)).astype(np.uint8)
    bg = cv2.GaussianBlur(cv2.resize(coarse, (width, height)), (0, 0), 2)
    walkers = [(rng.uniform(0, width), rng.uniform(40, height - 80), rng.uniform(-3, 3)) for _ in range(4)]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, height))
    for t in range(n_frames):
        f = bg.copy()
        for x0, y, vx in walkers:
            x = int((x0 + vx * t) % (width - 20))
            f[int(y) : int(y) + 48, x : x + 18] = 230
        out.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    out.release()


def frames_to_video(frames: list[Path], path: Path) -> tuple[int, int]:
    """One folder's frames -> an MJPG .avi (each frame read once); returns its (width, height)."""
    out = None
    for f in frames:
        rgb = read_frame(f)
        if out is None:
            h, w = rgb.shape[:2]
            out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (w, h))
        out.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    out.release()
    return w, h


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished worker, MiB."""
    mib = [resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return mib[0], mib[1]


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=1.0, help="length of the synthetic video")
    p.add_argument("--size", default=f"{WIDTH}x{HEIGHT}", help="WxH of the synthetic video")
    p.add_argument(
        "--from-frames",
        default=None,
        metavar="DIR",
        help="frame folders to make the videos of, instead of a synthetic one",
    )
    p.add_argument("--videos", type=int, default=4, help="with --from-frames: how many folders")
    p.add_argument("--pose-model", default=None)
    p.add_argument(
        "--fast-extract",
        "--fast",
        dest="fast",
        action="store_true",
        help=f"extract_features.py --fast-extract: --flow {FAST_FLOW} --pose-every {FAST_POSE_EVERY} --person-shaped",
    )
    p.add_argument("--flow", default=None, help="flow setting (default: extract_features.py's, or --fast-extract's)")
    p.add_argument(
        "--pose-every",
        type=int,
        default=None,
        help="pose one frame in K (default: extract_features.py's, or --fast-extract's)",
    )
    p.add_argument("--workers", type=int, default=1, help="processes, one video each")
    p.add_argument("--out", default=str(RESULTS_ROOT / "stage0_video.json"))
    a = p.parse_args()
    settings = ExtractSettings(pose_model=a.pose_model, workers=a.workers)
    settings = settings.fast() if a.fast else settings
    # a --flow or --pose-every given here wins over the profile, whatever its value
    settings = replace(settings, flow=a.flow or settings.flow, pose_every=a.pose_every or settings.pose_every)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "in" / "long"
        for folder in ("training", "testing"):
            (base / folder / "videos").mkdir(parents=True)
        start = time.perf_counter()
        if a.from_frames:
            folders = list_videos(a.from_frames)[: a.videos]
            n = sum(len(v.frames) for v in folders)
            sizes = [frames_to_video(v.frames, base / "training" / "videos" / f"{v.name}.avi") for v in folders]
            width, height = sizes[0]
            source = f"{len(folders)} videos of {a.from_frames}"
        else:
            width, height = (int(x) for x in a.size.lower().split("x"))
            n = int(a.minutes * 60 * FPS)
            write_video(base / "training" / "videos" / "01.avi", n, width=width, height=height)
            source = f"synthetic, {a.minutes:g} min"
        (base / "testing" / "videos" / "01.avi").symlink_to(next((base / "training" / "videos").iterdir()))
        print(f"wrote {source}: {n} frames of {width}x{height} in {time.perf_counter() - start:.0f} s")
        if a.pose_model is None:
            for split in ("train", "test"):
                (base / "extracted_features" / split).mkdir(parents=True)
                pose = np.empty(n, dtype=object)
                pose[:] = [np.zeros((1, 34), np.float32)] * n
                np.save(base / "extracted_features" / split / "pose.npy", pose, allow_pickle=True)
        rss_before, _ = peak_rss_mib()
        start = time.perf_counter()
        rep = extract_dataset("long", Path(tmp) / "in", Path(tmp) / "out", settings, splits=("train",), progress=True)
        seconds = time.perf_counter() - start
        peak, peak_worker = peak_rss_mib()
    posed = a.pose_model is not None
    report = {
        "source": source,
        "frames": n,
        "size": [width, height],
        "flow": settings.flow,
        "pose_model": posed,
        "pose_every": settings.pose_every if posed else None,
        "person_shaped": settings.person_shaped if posed else None,
        "workers": a.workers,
        "seconds": round(seconds, 1),
        "frames_per_s": round(n / seconds, 2),
        "objects": rep["train"]["objects"],
        "peak_rss_mib": round(peak, 1),
        "peak_worker_rss_mib": round(peak_worker, 1) if a.workers > 1 else None,
        "rss_before_extraction_mib": round(rss_before, 1),
    }
    for k, v in report.items():
        print(f"{k}: {v}")
    save_json(Path(a.out), report)


if __name__ == "__main__":
    main()
