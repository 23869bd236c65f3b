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
read whole, none dropped (--live plays a file as a camera would).
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


def pose_model_of(detector, given: str, poses_given: bool):
    """The pose model to run, or None (poses given, or the detector's came with its data)."""
    from memfuse.extract.pose import PoseModel
    from memfuse.io import InputError

    pose = detector.stage0["settings"]["pose"]
    if poses_given:
        return None
    if not isinstance(pose, dict):  # the training poses came with the data
        if given:
            return PoseModel(given)
        print(
            "[detect] the detector's training poses came with its data and no --pose-model or --poses is given: "
            "no person is seen, the pose terms read 'nobody here'"
        )
        return None
    path = Path(given or detector.stage0.get("pose_model_path") or "")
    if path.name != pose["model"]:
        raise InputError(f"--pose-model {path}: the detector's poses were made by {pose['model']}")
    return PoseModel(path, person_shaped=bool(pose["person_shaped"]))


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse(argv)
    import cv2
    import torch

    from memfuse.detection import Given, SourceRun, make_extractor
    from memfuse.detector import load
    from memfuse.extract.appearance import make_backbone
    from memfuse.io import InputError, load_object_npy, save_json
    from memfuse.sources import expand

    if args.THREADS > 0:
        torch.set_num_threads(args.THREADS)
        cv2.setNumThreads(args.THREADS)
    detector = load(args.model)
    if detector.stage0 is None:
        raise InputError(
            f"{args.model}: this detector was fitted on features made elsewhere (no stage-0 settings): "
            "it cannot read video; fit it on raw footage (run_all.py on frames or videos)"
        )
    sources = expand(args.sources, live=True if args.LIVE else None)
    given = None
    if args.BOXES or args.POSES:
        given = Given(
            boxes=load_object_npy(args.BOXES, "an AI-VAD boxes file") if args.BOXES else None,
            poses=load_object_npy(args.POSES, "an AI-VAD pose file") if args.POSES else None,
        )
    if (given is None or given.boxes is None) and detector.w.get("background") is None:
        raise InputError(
            f"{args.model}: the detector's training footage came with boxes, so it has no motion background: "
            "give --boxes FILE, or fit it on footage without a boxes file"
        )
    st = detector.stage0["settings"]
    clip_kwargs = st["clip"] if st["appearance"] == "clip" else {}
    backbone = make_backbone(
        st["appearance"], args.CLIP_WEIGHTS or detector.stage0.get("clip_weights") or None, **(clip_kwargs or {})
    )
    pose_model = pose_model_of(detector, args.POSE_MODEL, given is not None and given.poses is not None)
    threshold = detector.threshold
    if args.FALSE_ALARMS_PER_HOUR > 0:
        threshold = detector.threshold_for(args.FALSE_ALARMS_PER_HOUR).value
    out = Path(args.OUT)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"[detect] {args.model}: {detector.meta['dataset']} / {detector.meta['recipe']}, threshold {threshold:.4g} "
        f"({args.FALSE_ALARMS_PER_HOUR or detector.meta['threshold']['false_alarms_per_hour']:g} false alarms an hour "
        f"on its normal footage); {len(sources)} source(s) -> {out}"
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    reports = []
    with open(out / "events.jsonl", "a") as events:
        for source in sources:
            extractor = make_extractor(detector, pose_model=pose_model, backbone=backbone, where=source.describe())
            run = SourceRun(
                detector,
                source,
                out,
                threshold=threshold,
                extractor=extractor,
                given=given,
                video=args.VIDEO,
                batch=args.BATCH,
                events_file=events,
                max_frames=args.MAX_FRAMES or None,
            )
            try:
                r = run.run()
            except IndexError as exc:
                raise InputError(f"{args.BOXES or args.POSES}: {exc}") from None
            reports.append({**r.__dict__, "fps": round(r.fps, 2), "threshold": threshold})
            steps = ", ".join(f"{k} {v:.1f}" for k, v in r.ms_per_frame.items())
            print(
                f"[detect] {r.name}: {r.frames} frames in {r.seconds:.1f} s ({r.fps:.1f} frames/s), "
                f"{r.dropped} dropped, {r.events} alarm events; ms per frame: {steps}"
            )
            if r.interrupted:
                print(f"[detect] interrupted: {r.csv} and {r.video} hold its first {r.frames} frames")
                break
    save_json(out / "summary.json", {"model": str(args.model), "threshold": threshold, "sources": reports})
    return reports


if __name__ == "__main__":
    from memfuse.io import InputError

    try:
        main()
    except InputError as exc:
        sys.exit(f"error: {exc}")
