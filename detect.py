"""Score new footage or a live stream with a trained detector.

    python detect.py checkpoints/NAME/memfuse/detector  clip.mp4 --out results/detect
    python detect.py checkpoints/NAME/memfuse/detector  rtsp://camera/stream 0 --out results/live
    python detect.py checkpoints/ped2/memfuse/detector  ../shared/data/ped2/testing/frames --out results/detect_ped2 \\
        --boxes ../shared/data/ped2/ped2_bboxes_test.npy --poses ../shared/data/ped2/extracted_features/test/pose.npy

MODEL is the folder a run leaves in CKPT/detector/ (run_all.py prints it; memfuse/detector.py
says what it holds). A SOURCE is a video file, a folder of frames, a folder of videos or of
frame folders (one source each), a camera index or a stream URL (anything OpenCV opens).
Each source's frames go through stage 0 with the detector's own settings and through its
models, one batch at a time, and DIR/<source>.csv, DIR/<source>.mp4 and DIR/events.jsonl are
written as they go (memfuse/detection.py). A frame's score uses no later frame: the
Gaussian smoothing of the evaluation, cut to its past half. Cameras and streams are read
live: when scoring falls behind, frames are dropped (counted in the summary); files are
read whole, none dropped (--live plays a file as a camera would). With --ray ADDRESS the
sources run in parallel on a Ray cluster, one actor (one CPU) each; each writes
DIR/<source>.events.jsonl as it goes, gathered into DIR/events.jsonl as it ends.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

# -- settings: each is also a flag (--false-alarms-per-hour 0.5)
OUT = "results/detect"
FALSE_ALARMS_PER_HOUR = 0.0  # 0: the detector's own threshold (set when it was fitted, 1 an hour by default)
VIDEO = True  # the annotated video beside each CSV
BOXES = ""  # AI-VAD-format boxes file for the frames of all sources, in order; empty: the detector's own boxes
POSES = ""  # AI-VAD-format pose file, likewise; empty: the pose model's
POSE_MODEL = ""  # BlazePose .tflite; empty: the one the detector was fitted with, when it made its poses
CLIP_WEIGHTS = ""  # CLIP weights, for a detector with CLIP appearance; empty: the recorded path
LIVE = False  # read files as live sources too (dropping frames when behind, at the file's frame rate)
BATCH = 16  # frames of a file scored together (a live source: one at a time)
MAX_FRAMES = 0  # stop each source after this many frames (0: all)
THREADS = 0  # torch and OpenCV threads (0: their defaults)
RAY = ""  # a Ray cluster (local, auto or HOST:PORT): one actor per source, in parallel; empty: one after another here
HELP = {
    "OUT": "output folder: <source>.csv, <source>.mp4, events.jsonl, summary.json",
    "FALSE_ALARMS_PER_HOUR": "alarm threshold for this many false alarms an hour on the normal training footage "
    "(0: the detector's own)",
    "VIDEO": "write the annotated video (--no-video: the CSV and events only)",
    "BOXES": "boxes file (AI-VAD's (n_i, 4) per frame) for the frames of all sources in order",
    "POSES": "pose file (AI-VAD's (p_i, 34) per frame) for the frames of all sources in order",
    "POSE_MODEL": "BlazePose pose_landmark_full.tflite (default: the detector's, when it made poses)",
    "CLIP_WEIGHTS": "CLIP ViT-B/16 weights for a CLIP detector (default: the recorded path)",
    "LIVE": "play files as live sources: frames dropped when scoring falls behind, counted",
    "BATCH": "frames of a file scored together",
    "MAX_FRAMES": "at most this many frames per source (0: all)",
    "THREADS": "torch and OpenCV threads (0: their defaults)",
    "RAY": "score the sources in parallel on a Ray cluster (local, auto or HOST:PORT; pip install -r "
    "requirements-ray.txt), one actor per source with one CPU; sources and OUT on a path every node sees",
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    from memfuse.config import flag_name

    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("model", help="the detector folder (CKPT/detector/, printed by run_all.py)")
    p.add_argument("sources", nargs="+", help="video files, frame folders, camera indices or stream URLs")
    g = globals()
    for name in HELP:
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(g[name], bool) else {"type": type(g[name])}
        p.add_argument(flag_name(name), dest=name, default=g[name], help=HELP[name], **kind)
    return p.parse_args(argv)


def given_slices(sources: list, given) -> list:
    """Each source's own part of the boxes and poses files (for sources scored in parallel,
    which do not take the files' frames in turn). Needs sources whose length is known."""
    from memfuse.detection import Given
    from memfuse.io import InputError

    if given is None:
        return [None] * len(sources)
    out, at = [], 0
    for src in sources:
        n = src.frame_count()
        if n is None:
            raise InputError(
                f"--boxes/--poses with --ray: {src.describe()} is not a frame folder, so where its frames start "
                "in the files is unknown; give frame folders, or run without --ray"
            )
        out.append(
            Given(
                boxes=None if given.boxes is None else given.boxes[at : at + n],
                poses=None if given.poses is None else given.poses[at : at + n],
            )
        )
        at += n
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(argv)
    import cv2
    import torch

    from memfuse.detection import DetectOptions, Given, Scorer, report_line
    from memfuse.io import load_object_npy, save_json
    from memfuse.sources import expand

    if args.RAY:
        from memfuse import distributed

        distributed.check_address(args.RAY)  # before any work
    if args.THREADS > 0:
        torch.set_num_threads(args.THREADS)
        cv2.setNumThreads(args.THREADS)
    options = DetectOptions(
        model=str(args.model),
        false_alarms_per_hour=args.FALSE_ALARMS_PER_HOUR,
        pose_model=args.POSE_MODEL,
        clip_weights=args.CLIP_WEIGHTS,
        video=args.VIDEO,
        batch=args.BATCH,
        max_frames=args.MAX_FRAMES,
        boxes_given=bool(args.BOXES),
        poses_given=bool(args.POSES),
    )
    scorer = Scorer(options)  # the detector's checks, here, before any source is opened
    sources = expand(args.sources, live=True if args.LIVE else None)
    given = None
    if args.BOXES or args.POSES:
        given = Given(
            boxes=load_object_npy(args.BOXES, "an AI-VAD boxes file") if args.BOXES else None,
            poses=load_object_npy(args.POSES, "an AI-VAD pose file") if args.POSES else None,
        )
    out = Path(args.OUT)
    out.mkdir(parents=True, exist_ok=True)
    where = f" on the Ray cluster {args.RAY}, one actor per source" if args.RAY else ""
    print(
        f"[detect] {args.model}: {scorer.detector.meta['dataset']} / {scorer.detector.meta['recipe']}, threshold "
        f"{scorer.threshold:.4g} ({scorer.false_alarms_per_hour:g} false alarms an hour on its normal footage); "
        f"{len(sources)} source(s) -> {out}{where}"
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if args.RAY:
        reports = distributed.detect_sources(
            sources, options, out, given=given_slices(sources, given), address=args.RAY
        )
    else:
        reports = []
        with open(out / "events.jsonl", "a") as events:
            for source in sources:
                r = scorer.run(source, out, given=given, events_file=events)
                reports.append({**r.__dict__, "fps": round(r.fps, 2)})
                print(report_line(r))
                if r.interrupted:
                    print(f"[detect] interrupted: {r.csv} and {r.video} hold its first {r.frames} frames")
                    break
    reports = [{**r, "threshold": scorer.threshold} for r in reports]
    save_json(out / "summary.json", {"model": str(args.model), "threshold": scorer.threshold, "sources": reports})
    return reports


if __name__ == "__main__":
    from memfuse.io import InputError

    try:
        main()
    except InputError as exc:
        sys.exit(f"error: {exc}")
