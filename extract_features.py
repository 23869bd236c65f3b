"""Stage 0: AI-VAD-format per-object features from raw frames and object boxes.

Input (AI-VAD's layout)::

    DIR/NAME/{training,testing}/frames/NN/*.jpg     one folder per video, sorted
      or DIR/NAME/{training,testing}/videos/*.avi   one video file each (.mp4, ...), sorted by name
    DIR/NAME/NAME_bboxes_{train,test}.npy            object array: one (n_i, 4) x1,y1,x2,y2 per frame
                                                     (optional: without it, boxes of what moves)

Output (inside the project, git-ignored), a complete AI-VAD-format dataset::

    OUT/NAME/extracted_features/{train,test}/velocity.npy       (n_i, B) float32 per frame
    OUT/NAME/extracted_features/{train,test}/deep_features.npy  (n_i, 512) float32 per frame
    OUT/NAME/extracted_features/{train,test}/pose.npy           copied from DIR when present
    OUT/NAME/extracted_features/{train,test}/extract_meta.json  settings, counts, wall time
    OUT/NAME/{train,test}_clip_lengths.npy, label files          copied (or computed)

Without a boxes file, each frame's boxes are its moving regions against the video's median
background (memfuse/extract/motion.py), written to OUT/NAME/NAME_bboxes_{train,test}.npy.
Object i of a frame is box i of the boxes file (order never changes); a frame without
boxes gets one whole-frame entry [0, 0, W, H], as AI-VAD does. Boxes reaching outside the
frame are clipped, boxes with an empty integer crop grown to 1 px (one warning per split
with the counts; see memfuse/extract/frames.py).

Velocity: AI-VAD's binned mean L1 flow magnitude per box (memfuse/extract/velocity.py), flow
from classic OpenCV (no weights); the default setting was chosen by agreement with AI-VAD's
FlowNet2 velocity on Ped2 train (bench/velocity_agreement.py, results/velocity_agreement.json):
on the every-4th-video subsample DIS "fine" at native resolution (Spearman per object 0.588,
per frame 0.368) ties DIS medium on 3x upsampled frames (0.596 / 0.358) and beats DIS medium
native (0.452 / 0.298), 2x (0.561 / 0.358) and Farneback (0.349 / 0.229) while being about
25% faster than medium x3, so it is the default. No test score was looked at for this.
Appearance: pluggable 512-d backbone (memfuse/extract/appearance.py); default ``hog``
(HOG + box geometry, offline); ``clip`` is AI-VAD's CLIP ViT-B/16 and needs --clip-weights.

    python extract_features.py --dataset ped2 --data-root ../shared/data
"""
from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# memfuse.io (and so torch) is imported inside the functions: importing this module or
# running --help stays cheap.
PROJECT_ROOT = Path(__file__).resolve().parent

# ---- hyperparameters (each overridable by the flag named in brackets) ----------------------
OUT_ROOT = PROJECT_ROOT / "data"  # where NAME/ is written [--out-root]
APPEARANCE = "hog"  # appearance backbone: hog | pixels | clip [--appearance]
FLOW = "dis_fine"  # flow: dis_ultrafast | dis_fast | dis_medium | dis_balanced | dis_fine | farneback [--flow]
FLOW_SCALE = 1.0  # upsample frames by this factor before the flow (x2/x3 help DIS medium) [--flow-scale]
FLOW_BLUR = 0.0  # Gaussian sigma (native px) on frames before the flow, 0 = none [--flow-blur]
DEFAULT_BINS = 8  # velocity orientation bins of a dataset whose config/datasets/NAME.toml sets no VELOCITY_BINS [--bins]
POSE_EVERY = 1  # run the pose model on every K-th frame of a video; the frames between reuse its poses [--pose-every]
POSE_PERSON_SHAPED = False  # run the pose model only on boxes tall enough to hold a person [--person-shaped]
# --fast: the stage-0 speed profile for your own videos. The flow keeps the default's agreement
# with FlowNet2 on Ped2 train in half its time (memfuse/extract/velocity.py: DIS_TUNED); poses,
# the costliest step (one model run per box), are made on one frame in six (the fewest
# that reach 15 frames/s on Ped2's test videos on two cores, bench/stage0_video.py) and only
# on person-shaped boxes (memfuse/extract/pose.py: person_shaped). Ped2's features are made
# with the defaults above.
FAST_FLOW = "dis_balanced"
FAST_POSE_EVERY = 6
WORKERS = 2  # processes, one video each (CLIP runs in the main process) [--workers]
CLIP_INTERPOLATION = "bilinear"  # crop -> 224x224 resize; AI-VAD uses cv2.resize's bilinear [--clip-interp]
CLIP_QUICK_GELU = True  # OpenAI weights: QuickGELU; open_clip LAION weights: exact GELU [--clip-gelu]
CLIP_BGR = False  # feed BGR like AI-VAD's cv2.imread frames (matters on colour data only) [--clip-bgr]
SPLITS = ("train", "test")
# the flow settings of memfuse/extract/velocity.py (FLOW_METHODS), listed here so that --help
# does not import OpenCV
FLOW_CHOICES = ("dis_ultrafast", "dis_fast", "dis_medium", "dis_balanced", "dis_fine", "farneback")
SPLIT_FOLDERS = {"train": "training", "test": "testing"}


def default_bins(dataset: str) -> int:
    """The dataset's VELOCITY_BINS (config/datasets/NAME.toml; AI-VAD: 1 on Ped2, 8 elsewhere)."""
    from memfuse.recipes import dataset_settings

    return int((dataset_settings(dataset) or {}).get("VELOCITY_BINS", DEFAULT_BINS))


# ---- per-video work (runs in worker processes) ---------------------------------------------
_WORKER: dict = {}


def _io():
    import memfuse.io as io

    return io


PROGRESS_EVERY = 10  # frames between a worker's progress reports


def _init_worker(appearance: str, clip_weights, clip_kwargs: dict, threads: int, pose_model: str | None = None,
                 person_shaped: bool = POSE_PERSON_SHAPED, frames_done=None) -> None:
    """Per-process state of stage 0. ``frames_done``: a shared counter the worker adds its
    frames to as it goes (the parent's progress bar reads it), or a callable taking the count."""
    import cv2

    from memfuse.extract.appearance import make_backbone

    cv2.setNumThreads(threads)
    _WORKER["backbone"] = make_backbone(appearance, clip_weights, **(clip_kwargs if appearance == "clip" else {}))
    if pose_model:
        from memfuse.extract.pose import PoseModel

        _WORKER["pose"] = PoseModel(pose_model, threads=max(threads, 1), person_shaped=person_shaped)
    if frames_done is None or callable(frames_done):
        _WORKER["tick"] = frames_done or (lambda n: None)
    else:
        def tick(n: int, counter=frames_done) -> None:
            with counter.get_lock():
                counter.value += n
        _WORKER["tick"] = tick


def _process_video(job: tuple) -> dict:
    """One video -> per-frame velocity and appearance arrays (+ repair counts). Frames are
    streamed; without given boxes, a first pass samples the video for its background and
    each frame's boxes are its moving regions (returned as ``boxes``)."""
    from memfuse.extract.frames import BoxRepairs, check_boxes, even_sample, iter_frames, to_grey
    from memfuse.extract.motion import MotionBoxes, MotionConfig
    from memfuse.extract.velocity import frame_velocity

    video, boxes, flow_cfg, bins, with_pose, pose_every = job
    start = time.perf_counter()
    name = video.name
    backbone = _WORKER["backbone"]
    pose_model = _WORKER.get("pose") if with_pose else None
    tick = _WORKER.get("tick", lambda n: None)
    detect = None
    if boxes is None:
        cfg = MotionConfig()
        sample, _ = even_sample(iter_frames(video), cfg.background_frames)
        detect = MotionBoxes(sample, cfg)
    rep = BoxRepairs()
    vel, app, found, poses = [], [], [], []
    frame_poses = None
    prev = None
    size = None
    for t, rgb in enumerate(iter_frames(video)):
        h, w = rgb.shape[:2]
        where = f"{video.where}, frame {t}" if video.frames is None else f"video {name}, frame {video.frames[t].name}"
        if size is None:
            size = (w, h)
        elif size != (w, h):
            raise _io().InputError(f"{where} is {w}x{h} but the video's first frame is {size[0]}x{size[1]}")
        if detect is not None:
            bx = detect(rgb)
            found.append(bx)
        else:
            if t >= len(boxes):
                raise _io().InputError(f"{video.where}: more frames than the boxes file has for it ({len(boxes)})")
            bx = boxes[t]
        checked, r = check_boxes(bx, w, h, where=where)
        rep.add(r)
        grey = to_grey(rgb)
        whole = np.full(len(checked), np.asarray(bx).size == 0)
        v = frame_velocity(prev, grey, checked, flow_cfg, bins)
        a = backbone(rgb, checked, whole)
        if pose_model is not None:  # persons only: a whole-frame entry is not a detection
            if t % pose_every == 0:  # between, a frame takes the poses of the last frame posed
                frame_poses = pose_model(rgb, checked[~whole])
            poses.append(frame_poses)
        if a.shape != (len(checked), 512) or v.shape != (len(checked), bins):
            raise AssertionError(f"video {name} frame {t}: shapes {v.shape} {a.shape} for {len(checked)} boxes")
        vel.append(v.astype(np.float32))
        app.append(np.asarray(a, dtype=np.float32))
        prev = grey
        if (t + 1) % PROGRESS_EVERY == 0:
            tick(PROGRESS_EVERY)
    tick(len(vel) % PROGRESS_EVERY)
    if boxes is not None and len(vel) != len(boxes):
        raise _io().InputError(f"{video.where}: {len(vel)} frames decoded but the boxes file has {len(boxes)} for it")
    return {"name": name, "velocity": vel, "appearance": app, "clipped": rep.clipped, "grown": rep.grown, "size": size,
            "frames": len(vel), "boxes": found if detect is not None else None, "pose": poses if pose_model is not None else None,
            "seconds": time.perf_counter() - start}


class VideoCache:
    """Finished videos of a split being extracted, one pickle each in ``folder``, kept
    only for the same ``settings``: an interrupted extraction resumes per video."""

    def __init__(self, folder: Path, settings: dict):
        self.folder, self.settings = Path(folder), settings

    def get(self, name: str) -> dict | None:
        path = self.folder / f"{name}.pkl"
        if not path.exists():
            return None
        try:
            with open(path, "rb") as fh:
                record = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError):
            return None  # unreadable: extract the video again
        return record["result"] if record.get("settings") == self.settings else None

    def put(self, result: dict) -> dict:
        with _io().atomic_path(self.folder / f"{result['name']}.pkl") as tmp:
            with open(tmp, "wb") as fh:
                pickle.dump({"settings": self.settings, "result": result}, fh)
        return result

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def expected_frames(video) -> int:
    """Frames of a video for the progress bar: its frame files, else the count its video
    file's header gives (not trusted for anything else; 0 when the header has none)."""
    if video.frames is not None:
        return len(video.frames)
    import cv2

    cap = cv2.VideoCapture(str(video.path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    return max(n, 0)


def _speed(result: dict) -> str:
    """Progress text for a finished video: its name and frames per second."""
    return f"{result['name']}: {result['frames']} frames, {result['frames'] / max(result['seconds'], 1e-9):.1f} frames/s"


def _object_array(frames: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(frames), dtype=object)
    for i, f in enumerate(frames):
        out[i] = f
    return out


# ---- one split -------------------------------------------------------------------------------
def split_outputs(out_root: Path, dataset: str, split: str) -> dict[str, Path]:
    d = Path(out_root) / dataset / "extracted_features" / split
    return {"velocity": d / "velocity.npy", "appearance": d / "deep_features.npy", "meta": d / "extract_meta.json"}


def prepare_split(dataset: str, data_root: Path, split: str):
    """Check a split's inputs before any heavy work: videos, boxes, frame counts.

    Returns (videos, per-video box slices, or ``None`` per video when the dataset has no
    boxes file: its boxes will come from motion)."""
    from memfuse.extract.frames import list_split_videos, load_boxes, split_boxes_by_video

    base = Path(data_root) / dataset
    videos = list_split_videos(base / SPLIT_FOLDERS[split])
    boxes_path = base / f"{dataset}_bboxes_{split}.npy"
    if not boxes_path.exists():
        return videos, [None] * len(videos)
    return videos, split_boxes_by_video(load_boxes(boxes_path), videos, boxes_path)


def split_settings(appearance: str, flow_cfg, bins: int, motion: bool, pose_model: str | None, pose_every: int,
                   person_shaped: bool, clip_kwargs: dict) -> dict:
    """Every setting a split's features depend on, as JSON values: the key of the per-video
    cache, extract_meta.json's "settings", and what a rerun compares with the kept files.
    ``motion``: the boxes come from motion (the split has no box file)."""
    from dataclasses import asdict

    from memfuse.extract.motion import MotionConfig

    settings = {"appearance": appearance, "flow": {"method": flow_cfg.method, "scale": float(flow_cfg.scale), "blur": float(flow_cfg.blur)},
                "bins": int(bins), "boxes": asdict(MotionConfig()) if motion else "given",
                "pose": {"model": Path(pose_model).name, "every": int(pose_every), "person_shaped": bool(person_shaped)} if pose_model else "copied",
                "clip": clip_kwargs if appearance == "clip" else None}
    return json.loads(json.dumps(settings))  # tuples as lists, as they read back from the file


def extract_split(dataset: str, data_root: Path, out_root: Path, split: str, appearance: str, flow_cfg, bins: int,
                  clip_weights=None, clip_kwargs: dict | None = None, workers: int = WORKERS, progress: bool = True,
                  pose_model: str | None = None, pose_every: int = POSE_EVERY, person_shaped: bool = POSE_PERSON_SHAPED) -> dict:
    """Extract one split; returns its info dict (also written as extract_meta.json).
    ``pose_model``: make pose.npy with it (the split has none), on every ``pose_every``-th
    frame (and only on person-shaped boxes with ``person_shaped``)."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    videos, boxes = prepare_split(dataset, data_root, split)
    clip_kwargs = clip_kwargs or {}
    jobs = [(v, None if b is None else list(b), flow_cfg, bins, pose_model is not None, pose_every) for v, b in zip(videos, boxes)]
    motion = boxes[0] is None
    if motion:
        print(f"{dataset}/{split}: no {dataset}_bboxes_{split}.npy: boxes of what moves against each video's median background")
    settings = split_settings(appearance, flow_cfg, bins, motion, pose_model, pose_every, person_shaped, clip_kwargs)
    # Each finished video is kept in a cache beside the split's outputs, so an interrupted
    # extraction resumes per video; the cache is dropped once the split's files are written.
    cache = VideoCache(split_outputs(out_root, dataset, split)["velocity"].parent / ".videos", settings)
    done = {i: cache.get(v.name) for i, v in enumerate(videos)}
    todo = [job for i, job in enumerate(jobs) if done[i] is None]
    if len(todo) < len(jobs):
        print(f"{dataset}/{split}: {len(jobs) - len(todo)} of {len(jobs)} videos kept from an interrupted run")
    # progress in frames (frames/s and time left), the total from frame files or video headers
    kept = sum(done[i]["frames"] for i in done if done[i] is not None)
    expected = [expected_frames(job[0]) for job in todo]
    bar = tqdm(total=kept + sum(expected), initial=kept, desc=f"{dataset}/{split}", unit="frame", disable=not progress, smoothing=0.1)
    fresh = []
    if todo and (appearance == "clip" or workers <= 1 or len(todo) == 1):
        _init_worker(appearance, clip_weights, clip_kwargs, threads=-1, pose_model=pose_model, person_shaped=person_shaped,  # -1: OpenCV default threading
                     frames_done=bar.update)
        for job in todo:
            fresh.append(cache.put(_process_video(job)))
            bar.set_postfix_str(_speed(fresh[-1]))
    elif todo:
        from multiprocessing import TimeoutError as PoolTimeout, get_context

        # spawn, not fork: forking a parent whose OpenCV / torch thread pools are already
        # running can deadlock the children (seen in the tests after the CLIP tests).
        ctx = get_context("spawn")
        frames_done = ctx.Value("q", 0)
        with ctx.Pool(workers, initializer=_init_worker,
                      initargs=(appearance, clip_weights, clip_kwargs, 1, pose_model, person_shaped, frames_done)) as pool:
            results_in_order = pool.imap(_process_video, todo)  # ordered: video order is kept
            while len(fresh) < len(todo):
                try:
                    res = results_in_order.next(timeout=1.0)
                except PoolTimeout:  # no video finished this second: only the bar moves
                    res = None
                bar.update(kept + frames_done.value - bar.n)
                if res is not None:
                    fresh.append(cache.put(res))
                    bar.set_postfix_str(_speed(res))
    bar.close()
    fresh_iter = iter(fresh)
    results = [done[i] if done[i] is not None else next(fresh_iter) for i in range(len(jobs))]
    vel = [f for r in results for f in r["velocity"]]
    app = [f for r in results for f in r["appearance"]]
    n_frames = sum(r["frames"] for r in results)
    assert len(vel) == len(app) == n_frames
    clipped = sum(r["clipped"] for r in results)
    grown = sum(r["grown"] for r in results)
    if clipped or grown:
        warnings.warn(f"{dataset}/{split}: {clipped} boxes reached outside the frame and were clipped to it; "
                      f"{grown} had an empty crop after clipping and were grown to 1 px", stacklevel=2)
    out = split_outputs(out_root, dataset, split)
    frame_boxes = [b for r in results for b in r["boxes"]] if motion else [b for bb in boxes for b in bb]
    if motion:  # the boxes the features describe, in AI-VAD's format (a frame may have none)
        _io().save_npy(Path(out_root) / dataset / f"{dataset}_bboxes_{split}.npy", _object_array(frame_boxes))
    if pose_model is not None:
        _io().save_npy(out["velocity"].parent / "pose.npy", _object_array([p for r in results for p in r["pose"]]))
    _io().save_npy(out["velocity"], _object_array(vel))
    _io().save_npy(out["appearance"], _object_array(app))
    info = {
        "dataset": dataset, "split": split, "frames": n_frames, "videos": len(videos),
        "frames_per_video": [r["frames"] for r in results], "boxes": "motion" if motion else f"{dataset}_bboxes_{split}.npy",
        "pose": "made" if pose_model else "copied",
        "objects": int(sum(len(v) for v in vel)),
        "whole_frame_entries": int(sum(np.asarray(b).size == 0 for b in frame_boxes)),
        "boxes_clipped": clipped, "boxes_grown": grown, "settings": settings,
        "clip_weights": str(clip_weights) if appearance == "clip" else None,
        "frame_size": results[0]["size"], "wall_s": time.perf_counter() - t0,
    }
    _io().save_json(out["meta"], info)
    cache.clear()
    return info


def frames_per_video(info: dict, meta_path: Path, videos: list) -> list[int]:
    """Frame count of each video of a split: from this run's extraction, else from the
    split's extract_meta.json, else counted."""
    from memfuse.extract.frames import count_frames

    if info.get("frames_per_video"):
        return info["frames_per_video"]
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return meta.get("frames_per_video") or [count_frames(v) for v in videos]


# ---- copies of the dataset's other files -------------------------------------------------------
def _copy(src: Path, dst: Path) -> bool:
    if not src.exists():
        return False
    if dst.exists() and dst.resolve() == src.resolve():
        return True
    with _io().atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return True


def copy_dataset_files(dataset: str, data_root: Path, out_root: Path, frame_counts: dict[str, list[int]]) -> list[str]:
    """Copy pose, clip lengths and label files into OUT/NAME so it is a complete dataset.

    Clip lengths missing from DIR are computed from the frame folders; present ones must
    agree with them (else InputError)."""
    src, dst = Path(data_root) / dataset, Path(out_root) / dataset
    copied = []
    for split in SPLITS:
        rel = Path("extracted_features") / split / "pose.npy"
        if _copy(src / rel, dst / rel):
            copied.append(str(rel))
    for split, counts in frame_counts.items():
        name = f"{split}_clip_lengths.npy"
        ends = np.cumsum(counts).astype(np.int64)
        if (src / name).exists():
            given = np.asarray(np.load(src / name, allow_pickle=True)).ravel().astype(np.int64)
            if not np.array_equal(given, ends):
                raise _io().InputError(f"{src / name}: cumulative lengths {given.tolist()[:6]}... disagree with the frame folders {ends.tolist()[:6]}...")
            _copy(src / name, dst / name)
        else:
            _io().save_npy(dst / name, ends)
        copied.append(name)
    for rel in (f"frame_labels_{dataset}.npy", "frame_labels.npy", f"{dataset}.mat", f"testing/UCSD{dataset}.m"):
        if _copy(src / rel, dst / rel):
            copied.append(rel)
    mask_dir = src / "testing" / "test_frame_mask"
    if mask_dir.is_dir():
        for f in sorted(mask_dir.glob("*.npy")):
            _copy(f, dst / "testing" / "test_frame_mask" / f.name)
        copied.append("testing/test_frame_mask/")
    return copied


# ---- whole dataset -------------------------------------------------------------------------------
def extract_dataset(dataset: str, data_root: Path | str, out_root: Path | str = OUT_ROOT, *, appearance: str = APPEARANCE,
                    flow: str = FLOW, flow_scale: float = FLOW_SCALE, flow_blur: float = FLOW_BLUR, bins: int | None = None,
                    clip_weights: Path | str | None = None, clip_interpolation: str = CLIP_INTERPOLATION,
                    clip_quick_gelu: bool = CLIP_QUICK_GELU, clip_bgr: bool = CLIP_BGR, force: bool = False,
                    workers: int = WORKERS, splits: tuple[str, ...] = SPLITS, progress: bool = True,
                    pose_model: Path | str | None = None, pose_every: int = POSE_EVERY, person_shaped: bool = POSE_PERSON_SHAPED) -> dict:
    """Run stage 0 for ``dataset``. Splits whose outputs exist are skipped unless ``force``.
    A split without ``pose.npy`` gets its poses from ``pose_model`` (memfuse/extract/pose.py),
    run on every box (with ``person_shaped``: every person-shaped box) of every
    ``pose_every``-th frame; without a model, that is an error before any work.

    Returns ``{"train": {"wall_s": ..., "skipped": bool, ...}, "test": {...}, "copied": [...],
    "out_dir": str, "total_wall_s": ...}``.
    """
    from memfuse.extract.appearance import APPEARANCE_OPTIONS, make_backbone
    from memfuse.extract.velocity import FLOW_METHODS, FlowConfig
    from memfuse.io import InputError

    t0 = time.perf_counter()
    data_root, out_root = Path(data_root), Path(out_root)
    if appearance not in APPEARANCE_OPTIONS:
        raise InputError(f"unknown appearance backbone {appearance!r}; choose from {APPEARANCE_OPTIONS}")
    if flow not in FLOW_METHODS:
        raise InputError(f"unknown flow {flow!r}; choose from {FLOW_METHODS}")
    if int(pose_every) < 1:
        raise InputError(f"pose_every must be >= 1, got {pose_every}")
    if not (data_root / dataset).is_dir():
        raise InputError(f"missing dataset folder {data_root / dataset}")
    bins = bins or default_bins(dataset)
    flow_cfg = FlowConfig(flow, float(flow_scale), float(flow_blur))
    clip_kwargs = {"interpolation": clip_interpolation, "quick_gelu": clip_quick_gelu, "bgr": clip_bgr}
    # Check every split's inputs (and the CLIP weights) before any heavy work.
    prepared = {s: prepare_split(dataset, data_root, s) for s in splits}
    if appearance == "clip":
        make_backbone("clip", clip_weights, **clip_kwargs)  # fail early on bad weights
    needs_pose = {s: not (data_root / dataset / "extracted_features" / s / "pose.npy").exists() for s in splits}
    if any(needs_pose.values()):
        if pose_model is None:
            missing = data_root / dataset / "extracted_features" / next(s for s in splits if needs_pose[s]) / "pose.npy"
            raise InputError(f"no {missing}: give --pose-model PATH to make poses (memfuse/extract/pose.py says how to get the model)")
        from memfuse.extract.pose import PoseModel

        PoseModel(pose_model)  # fail early on a missing model or runtime
    report: dict = {"out_dir": str(out_root / dataset)}
    for split in splits:
        out = split_outputs(out_root, dataset, split)
        if not force and out["velocity"].exists() and out["appearance"].exists():
            old = json.loads(out["meta"].read_text()) if out["meta"].exists() else {}
            kept = old.get("settings", {})
            settings = split_settings(appearance, flow_cfg, bins, prepared[split][1][0] is None,
                                      pose_model if needs_pose[split] else None, pose_every, person_shaped, clip_kwargs)
            diff = {k: (kept.get(k), v) for k, v in settings.items() if kept.get(k) != v}
            if diff:
                warnings.warn(f"{out['velocity'].parent}: kept existing features made with other settings {diff}; use --force to redo", stacklevel=2)
            report[split] = {"skipped": True, "wall_s": 0.0, **{k: old.get(k) for k in ("frames", "objects")}}
            continue
        info = extract_split(dataset, data_root, out_root, split, appearance, flow_cfg, bins, clip_weights, clip_kwargs, workers, progress,
                             str(pose_model) if needs_pose[split] else None, int(pose_every), bool(person_shaped))
        report[split] = {"skipped": False, **info}
    counts = {s: frames_per_video(report[s], split_outputs(out_root, dataset, s)["meta"], prepared[s][0]) for s in splits}
    report["copied"] = copy_dataset_files(dataset, data_root, out_root, counts)
    report["total_wall_s"] = time.perf_counter() - t0
    return report


def build_parser() -> argparse.ArgumentParser:
    from memfuse.extract.pose import PERSON_MIN_HEIGHT

    ap = argparse.ArgumentParser(
        description="Stage 0: AI-VAD-format velocity.npy and deep_features.npy from frames + object boxes.",
        epilog="Example: python extract_features.py --dataset ped2 --data-root ../shared/data",
    )
    ap.add_argument("--dataset", required=True, help="dataset name NAME (folder DIR/NAME)")
    ap.add_argument("--data-root", required=True, help="DIR holding NAME/{training,testing}/frames and NAME/NAME_bboxes_{train,test}.npy")
    ap.add_argument("--out-root", default=str(OUT_ROOT), help=f"write OUT/NAME/... (default {OUT_ROOT})")
    ap.add_argument("--appearance", default=APPEARANCE, choices=("hog", "pixels", "clip"),
                    help=f"appearance backbone (default {APPEARANCE}: HOG + box geometry, offline)")
    ap.add_argument("--clip-weights", default=None, help="CLIP ViT-B/16 weights (OpenAI .pt / state dict / open_clip); required by --appearance clip")
    ap.add_argument("--clip-interp", default=CLIP_INTERPOLATION, choices=("bilinear", "bicubic", "area"), help="crop resize to 224x224 (default %(default)s, as AI-VAD)")
    ap.add_argument("--clip-gelu", default="quick" if CLIP_QUICK_GELU else "exact", choices=("quick", "exact"),
                    help="MLP activation: quick (OpenAI weights) or exact (open_clip LAION weights)")
    ap.add_argument("--clip-bgr", action="store_true", default=CLIP_BGR, help="feed BGR channels as AI-VAD does (colour data only)")
    ap.add_argument("--flow", default=None, choices=FLOW_CHOICES, help=f"optical flow (default {FLOW}; --fast: {FAST_FLOW})")
    ap.add_argument("--flow-scale", type=float, default=FLOW_SCALE, help="upsample frames before the flow (default %(default)s)")
    ap.add_argument("--flow-blur", type=float, default=FLOW_BLUR, help="Gaussian sigma before the flow, 0 = none (default %(default)s)")
    ap.add_argument("--bins", type=int, default=None, help="velocity orientation bins (default: VELOCITY_BINS of config/datasets/NAME.toml, else 8)")
    ap.add_argument("--pose-model", default=None, help="BlazePose pose_landmark_full.tflite: makes pose.npy for a dataset without one "
                                                      "(see memfuse/extract/pose.py)")
    ap.add_argument("--pose-every", type=int, default=None, help=f"with --pose-model: pose every K-th frame, the frames between reuse "
                                                                 f"its poses (default {POSE_EVERY}; --fast: {FAST_POSE_EVERY})")
    ap.add_argument("--person-shaped", action="store_true", default=POSE_PERSON_SHAPED,
                    help=f"with --pose-model: pose only boxes at least {PERSON_MIN_HEIGHT:g} px tall and taller than wide")
    ap.add_argument("--fast", action="store_true", help=f"speed profile for your own videos: --flow {FAST_FLOW} --pose-every {FAST_POSE_EVERY} "
                                                        "--person-shaped (--flow or --pose-every given explicitly wins)")
    ap.add_argument("--workers", type=int, default=WORKERS, help="processes (default %(default)s)")
    ap.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS, help="splits to extract")
    ap.add_argument("--force", action="store_true", help="redo splits whose outputs exist")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from memfuse.io import InputError

    try:
        report = extract_dataset(
            args.dataset, args.data_root, args.out_root, appearance=args.appearance, flow=args.flow or (FAST_FLOW if args.fast else FLOW),
            flow_scale=args.flow_scale, flow_blur=args.flow_blur, bins=args.bins, clip_weights=args.clip_weights,
            clip_interpolation=args.clip_interp, clip_quick_gelu=args.clip_gelu == "quick", clip_bgr=args.clip_bgr,
            force=args.force, workers=args.workers, splits=tuple(args.splits), progress=not args.no_progress, pose_model=args.pose_model,
            pose_every=args.pose_every or (FAST_POSE_EVERY if args.fast else POSE_EVERY), person_shaped=args.person_shaped or args.fast)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for split in args.splits:
        r = report[split]
        state = "skipped (exists; --force to redo)" if r["skipped"] else f"{r['frames']} frames, {r['objects']} objects, {r['wall_s']:.1f}s"
        print(f"{args.dataset}/{split}: {state}")
    print(f"copied: {', '.join(report['copied'])}")
    print(f"wrote {report['out_dir']} in {report['total_wall_s']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
