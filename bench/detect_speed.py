"""detect.py's speed on a camera-sized synthetic video: frames/s, ms per step, dropped frames, memory.

    python bench/detect_speed.py                          # 640x360, 5 walkers, the real-time profile
    python bench/detect_speed.py --size 768x576            # a larger camera
    python bench/detect_speed.py --profile default         # stage 0's defaults, for comparison

Writes a camera's footage with OpenCV (a still textured background, ``--objects``
person-sized drawn figures walking across it at 25 frames/s): two train videos and one
test video of ``--seconds``. Fits a detector on the train videos with run_all.py (boxes from
motion, poses with the BlazePose model when ``--pose-model`` exists, at the tiny schedule:
speed does not depend on how long the models trained), then runs detect.py on the test
video twice: as a file (every frame scored) and as a live camera (``--live``: the file
played at 25 frames/s, frames dropped when scoring falls behind). Prints and writes
``results/detect_speed_<size>_<profile>.json``: frames/s, milliseconds per frame per step
(decode, boxes, flow, appearance, pose, models, video), frames dropped live and the peak
resident memory of the detect.py process.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

SPEED_MEMORY_SIZE = 100  # memory items of the bench's detector (see main)

ROOT = Path(__file__).resolve().parents[1]
FPS = 25


def figure(ph: int, pw: int, rng: np.random.Generator) -> np.ndarray:
    """A (ph, pw, 3) uint8 BGR person drawn in blocks of colour: head, shirt, arms, legs.
    BlazePose finds a person in it at every size tried (a patch of noise stops passing its
    presence score at 768x576), so the pose step runs as on footage of people."""
    f = np.empty((ph, pw, 3), np.uint8)
    f[:] = rng.integers(60, 200, 3)

    def colour() -> tuple[int, ...]:
        return tuple(int(c) for c in rng.integers(0, 256, 3))

    skin, shirt, trousers = (120, 150, 190), colour(), colour()
    cx, r = pw // 2, max(2, ph // 16)
    cv2.circle(f, (cx, r + 1), r, skin, -1)
    cv2.rectangle(f, (cx - pw // 4, 2 * r + 2), (cx + pw // 4, ph // 2), shirt, -1)
    for side in (-1, 1):
        cv2.line(f, (cx + side * pw // 4, 2 * r + 4), (cx + side * (pw // 2 - 1), ph // 2), skin, max(1, pw // 10))
        cv2.line(f, (cx + side * pw // 8, ph // 2), (cx + side * pw // 5, ph - 1), trousers, max(1, pw // 6))
    return f


def write_camera(path: Path, size: tuple[int, int], seconds: float, objects: int, seed: int) -> None:
    """``seconds`` of a fixed camera at 25 frames/s: one background, ``objects`` figures
    (a tenth of the frame's height wide, a quarter tall) walking left or right."""
    w, h = size
    rng = np.random.default_rng(0)  # one background for every video: one camera
    bg = cv2.GaussianBlur(cv2.resize(rng.integers(0, 256, (h // 8, w // 8)).astype(np.uint8), size), (0, 0), 2)
    bg = cv2.cvtColor(bg, cv2.COLOR_GRAY2BGR)
    walk = np.random.default_rng(seed)
    ph, pw = h // 4, h // 10
    figs = [figure(ph, pw, walk) for _ in range(objects)]
    x0 = walk.uniform(0, w - pw, objects)
    y0 = np.linspace(h * 0.1, h * 0.7, objects)
    v = walk.uniform(1.0, 3.0, objects) * walk.choice([-1, 1], objects)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, size)
    for t in range(int(seconds * FPS)):
        f = bg.copy()
        for k in range(objects):
            x = int((x0[k] + v[k] * t) % (w - pw))
            y = int(y0[k])
            f[y : y + ph, x : x + pw] = figs[k]
        out.write(f)
    out.release()


def peak_rss_mb(pid_rusage: str) -> float:
    return float(pid_rusage) / 1024.0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="640x360")
    p.add_argument("--seconds", type=float, default=20.0, help="of each video")
    p.add_argument("--objects", type=int, default=5)
    p.add_argument("--profile", choices=("realtime", "fast", "default"), default="realtime")
    p.add_argument("--pose-model", default=str(ROOT / "data" / "models" / "pose_landmark_full.tflite"))
    p.add_argument("--keep", action="store_true", help="keep the temporary dataset and detector")
    a = p.parse_args(argv)
    size = tuple(int(v) for v in a.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="detect_speed_"))
    name = f"speedcam_{a.size}"
    base = tmp / name
    # stage 0 writes the features under the project's data/NAME: a failed run's must not be
    # taken for this footage's
    shutil.rmtree(ROOT / "data" / name, ignore_errors=True)
    for split, folder, n in (("train", "training", 2), ("test", "testing", 1)):
        (base / folder / "videos").mkdir(parents=True)
        for v in range(n):
            write_camera(base / folder / "videos" / f"{v + 1:02d}.avi", size, a.seconds, a.objects, seed=10 * v + n)
    pose = Path(a.pose_model)
    pose_flags = ["--pose-model", str(pose)] if pose.is_file() else []
    if not pose_flags:  # no pose model: one zero pose a frame, so stage 0 has poses to copy
        for split in ("train", "test"):
            (base / "extracted_features" / split).mkdir(parents=True)
            frames = (2 if split == "train" else 1) * int(a.seconds * FPS)
            arr = np.empty(frames, dtype=object)
            arr[:] = [np.zeros((1, 34), np.float32)] * frames
            np.save(base / "extracted_features" / split / "pose.npy", arr, allow_pickle=True)
    profile = {"realtime": ["--realtime-extract"], "fast": ["--fast-extract"], "default": []}[a.profile]
    fit = [sys.executable, "run_all.py", "--dataset", name, "--data-root", str(tmp), "--compare", "none"]
    fit += ["--checkpoint-root", str(tmp / "ckpt"), "--results-root", str(tmp / "res"), "--jobs", "1"]
    fit += ["--config", str(ROOT / "config" / "schedules" / "tiny.toml"), "--no-annotate", *pose_flags, *profile]
    # a short synthetic fit has fewer pose rows than 500 items; a memory read of a frame's few
    # objects costs microseconds at either size, so the speed does not depend on it
    fit += ["--memory-size", str(SPEED_MEMORY_SIZE)]
    done = subprocess.run(fit, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
    detector = tmp / "ckpt" / name / "memfuse" / "detector"
    video = base / "testing" / "videos" / "01.avi"
    result: dict = {"size": a.size, "profile": a.profile, "objects": a.objects, "pose_model": bool(pose_flags)}
    for mode, extra in (("file", []), ("live", ["--live"])):
        out = tmp / f"out_{mode}"
        cmd = [sys.executable, "detect.py", str(detector), str(video), "--out", str(out), *pose_flags, *extra]
        # /usr/bin/time is not everywhere: the child's peak memory from Python's resource module
        wrapper = (
            "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
        )
        run = subprocess.run([sys.executable, "-c", wrapper, *cmd], cwd=ROOT, capture_output=True, text=True)
        if run.returncode:
            sys.exit(run.stdout[-2000:] + run.stderr[-2000:])
        (source,) = json.loads((out / "summary.json").read_text())["sources"]
        rss = next(line.split()[1] for line in run.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
        result[mode] = {
            "frames_scored": source["frames"],
            "frames_dropped": source["dropped"],
            "frames_per_s": source["fps"],
            "ms_per_frame": source["ms_per_frame"],
            "peak_rss_mb": round(peak_rss_mb(rss), 1),
        }
    path = ROOT / "results" / f"detect_speed_{a.size}_{a.profile}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if a.keep:
        print(f"kept {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(ROOT / "data" / name, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
