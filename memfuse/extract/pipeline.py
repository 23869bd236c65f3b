"""Stage 0's body: AI-VAD-format per-object features of a dataset of raw frames or videos.

:func:`extract_dataset` runs it with one :class:`ExtractSettings` (``extract_features.py`` is
its command line)::

    reads  DATA/NAME/{training,testing}/frames/NN/*.jpg        one folder per video, sorted
             or DATA/NAME/{training,testing}/videos/*.avi      one video file each (.mp4, ...), sorted by name
           DATA/NAME/NAME_bboxes_{train,test}.npy              optional: (n_i, 4) x1, y1, x2, y2 per frame
           DATA/NAME/extracted_features/{train,test}/pose.npy  optional: else made with a pose model
    writes OUT/NAME/extracted_features/{train,test}/velocity.npy       (n_i, bins) float32 per frame
           OUT/NAME/extracted_features/{train,test}/deep_features.npy  (n_i, 512) float32 per frame
           OUT/NAME/extracted_features/{train,test}/pose.npy           (p_i, 34) float32 per frame: copied or made
           OUT/NAME/extracted_features/{train,test}/extract_meta.json  settings, counts, wall time
           OUT/NAME/{train,test}_clip_lengths.npy, label files          copied (clip lengths computed when absent)
           OUT/NAME/NAME_bboxes_{train,test}.npy                        copied where given, else those of what moves

Object i of a frame is box i of the boxes file (order never changes); a frame without boxes
gets one whole-frame entry [0, 0, W, H], as AI-VAD does. Boxes reaching outside the frame
are clipped, boxes with an empty integer crop grown to 1 px (one warning per split with the
counts; see :mod:`.frames`). Without a boxes file, each frame's boxes are its moving
regions against the video's median background (:mod:`.motion`).

Velocity: AI-VAD's binned mean L1 flow magnitude per box (:mod:`.velocity`), flow from
classic OpenCV (no weights). The default flow method was chosen by agreement with AI-VAD's
FlowNet2 velocity on Ped2 train, never by a test score (bench/velocity_agreement.py,
results/velocity_agreement.json, docs/results.md); its span, two frames, on Ped2's test
figures (docs/results.md, "Velocity over two frames"). Appearance: a pluggable 512-d backbone
(:mod:`.appearance`); ``hog`` (HOG + box geometry, offline) by default, ``clip`` is AI-VAD's
CLIP ViT-B/16 from a local weights file. Poses: the dataset's, else BlazePose (:mod:`.pose`).

OpenCV is imported inside the functions: importing this module (``extract_features.py
--help`` does) stays cheap.
"""

from __future__ import annotations

import json
import pickle
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import numpy as np

from ..data import boxes_path, feature_path
from ..io import InputError, atomic_path, save_json, save_npy

if TYPE_CHECKING:  # these import OpenCV
    from .frames import Video
    from .velocity import FlowConfig

SPLITS = ("train", "test")
# Copies of memfuse.extract's option lists (tests/test_extract.py checks they agree), here so
# that settings are checked, and --help lists them, without importing OpenCV.
FLOW_CHOICES = ("dis_ultrafast", "dis_fast", "dis_medium", "dis_balanced", "dis_fine", "farneback")  # FLOW_METHODS
FLOW_FRAME_CHOICES = ("current", "previous")  # velocity.FLOW_FRAMES
APPEARANCE_CHOICES = ("hog", "pixels", "clip")  # appearance.APPEARANCE_OPTIONS
CLIP_INTERPOLATIONS = ("bilinear", "bicubic", "area")  # clip_vit.INTERPOLATIONS
MOTION_BACKGROUNDS = ("video", "camera")  # ExtractSettings.motion_background
# The speed profile (ExtractSettings.fast) for your own videos. The flow keeps the default's
# agreement with FlowNet2 on Ped2 train in half its time (velocity.DIS_TUNED); poses, the
# costliest step (one model run per box), are made on one frame in six, the fewest posed
# frames that reached the profile's target speed on Ped2's test videos on two cores
# (bench/stage0_video.py, docs/results.md), and only on person-shaped boxes (pose.person_shaped).
FAST_FLOW = "dis_balanced"
FAST_POSE_EVERY = 6
# The real-time profile (ExtractSettings.realtime), for detect.py on a live camera: the speed
# profile's flow on frames halved in each side (a quarter of the pixels), poses as the speed
# profile's. DIS's "fast" preset there (5 ms a 640x360 frame) lost Ped2's velocity term
# (97.5 -> 77.1 micro AUC): it starts at a coarse scale, and Ped2's persons are 17 px wide.
REALTIME_FLOW, REALTIME_FLOW_SCALE = "dis_balanced", 0.5
PROGRESS_EVERY = 10  # frames between a worker's progress reports


@dataclass(frozen=True)
class ExtractSettings:
    """Every setting stage 0's features depend on, and how many processes make them.

    appearance: backbone, one of :data:`APPEARANCE_CHOICES`.
    flow, flow_scale, flow_blur, flow_frame, flow_span: the optical flow
        (:class:`memfuse.extract.velocity.FlowConfig`): a :data:`FLOW_CHOICES` method, frames
        upsampled by ``flow_scale`` and blurred by a Gaussian of sigma ``flow_blur`` native px
        (0 = none) before it, defined on the pixels of the boxes' frame (``current``) or of
        the frame before (``previous``, AI-VAD's), :data:`FLOW_FRAME_CHOICES`, from the frame
        ``flow_span`` frames before and divided by it (AI-VAD's: 1).
    bins: velocity orientation bins B; ``None`` (or 0): the dataset's VELOCITY_BINS
        (config/datasets/NAME.toml, else extract_features.py's default).
    pose_model: BlazePose ``pose_landmark_full.tflite``, to make pose.npy for a split without
        one; poses on every ``pose_every``-th frame (those between reuse them), with
        ``person_shaped`` only on boxes :func:`memfuse.extract.pose.person_shaped` passes.
    clip_weights, clip_interpolation, clip_quick_gelu, clip_bgr: the CLIP backbone's weights
        file, crop resize (:data:`CLIP_INTERPOLATIONS`), QuickGELU (OpenAI weights) or exact
        GELU (open_clip LAION weights), and BGR input as AI-VAD's cv2.imread frames.
    motion_background: boxes of the test split's moving regions against each video's own
        median background ("video": it looks at the whole video) or against the camera's
        learnt on the train split and kept current frame by frame ("camera": detect.py's
        online boxes, no look-ahead). The train split always uses its videos' own.
    workers: processes, one video each (1 or fewer: this process; CLIP always runs here).
    ray, ray_gpus: run one Ray task per video on the cluster at this address instead
        (``local``, ``auto`` or ``HOST:PORT``; :mod:`memfuse.distributed`), each asking for
        one CPU and ``ray_gpus`` GPUs (CLIP runs on a GPU it is given). Neither changes a
        feature: they are not in :func:`split_settings`.
    """

    appearance: str = "hog"
    flow: str = "dis_fine"
    flow_scale: float = 1.0
    flow_blur: float = 0.0
    flow_frame: str = "current"
    flow_span: int = 2
    bins: int | None = None
    pose_model: Path | str | None = None
    pose_every: int = 1
    person_shaped: bool = False
    clip_weights: Path | str | None = None
    clip_interpolation: str = "bilinear"
    clip_quick_gelu: bool = True
    clip_bgr: bool = False
    motion_background: str = "video"
    workers: int = 2
    ray: str | None = None
    ray_gpus: float = 0.0

    def check(self) -> ExtractSettings:
        """``self``, or :class:`InputError` naming the first bad value (before any work)."""
        if self.appearance not in APPEARANCE_CHOICES:
            raise InputError(f"unknown appearance backbone {self.appearance!r}; choose from {APPEARANCE_CHOICES}")
        if self.flow not in FLOW_CHOICES:
            raise InputError(f"unknown flow {self.flow!r}; choose from {FLOW_CHOICES}")
        if self.flow_frame not in FLOW_FRAME_CHOICES:
            raise InputError(f"unknown flow frame {self.flow_frame!r}; choose from {FLOW_FRAME_CHOICES}")
        if int(self.pose_every) < 1:
            raise InputError(f"pose_every must be >= 1, got {self.pose_every}")
        if self.bins is not None and self.bins < 0:
            raise InputError(f"bins must be >= 1 (None or 0: the dataset's VELOCITY_BINS), got {self.bins}")
        if isinstance(self.flow_span, bool) or int(self.flow_span) != self.flow_span or self.flow_span < 1:
            raise InputError(f"flow_span must be a whole number of frames >= 1 (1 = AI-VAD's), got {self.flow_span!r}")
        if not self.flow_scale > 0:
            raise InputError(f"flow_scale must be > 0 (1 = native resolution), got {self.flow_scale}")
        if not self.flow_blur >= 0:
            raise InputError(f"flow_blur must be >= 0 (0 = none), got {self.flow_blur}")
        if self.ray_gpus < 0 or (self.ray_gpus and not self.ray):
            raise InputError(f"ray_gpus {self.ray_gpus}: GPUs per Ray task must be >= 0 and need --ray ADDRESS")
        if self.motion_background not in MOTION_BACKGROUNDS:
            raise InputError(f"unknown motion background {self.motion_background!r}; choose from {MOTION_BACKGROUNDS}")
        if self.clip_interpolation not in CLIP_INTERPOLATIONS:
            raise InputError(
                f"unknown CLIP interpolation {self.clip_interpolation!r}; choose from {CLIP_INTERPOLATIONS}"
            )
        return self

    def fast(self) -> ExtractSettings:
        """The speed profile over these settings: flow :data:`FAST_FLOW` and poses on every
        :data:`FAST_POSE_EVERY`-th frame, each unless it was set to other than its default
        (a value asked for wins), poses of person-shaped boxes only."""
        default = ExtractSettings()
        return replace(
            self,
            flow=FAST_FLOW if self.flow == default.flow else self.flow,
            pose_every=FAST_POSE_EVERY if self.pose_every == default.pose_every else self.pose_every,
            person_shaped=True,
        )

    def realtime(self) -> ExtractSettings:
        """The real-time profile over these settings: :meth:`fast`'s poses, flow
        :data:`REALTIME_FLOW` at scale :data:`REALTIME_FLOW_SCALE` (each unless set to other
        than its default)."""
        default = ExtractSettings()
        return replace(
            self.fast(),
            flow=REALTIME_FLOW if self.flow == default.flow else self.flow,
            flow_scale=REALTIME_FLOW_SCALE if self.flow_scale == default.flow_scale else self.flow_scale,
        )

    def for_dataset(self, dataset: str) -> ExtractSettings:
        """These settings with ``bins`` resolved: ``None`` or 0 -> :func:`dataset_bins`."""
        return self if self.bins else replace(self, bins=dataset_bins(dataset))

    def flow_config(self) -> FlowConfig:
        """The :class:`memfuse.extract.velocity.FlowConfig` of the flow settings."""
        from .velocity import FlowConfig

        return FlowConfig(
            self.flow, float(self.flow_scale), float(self.flow_blur), self.flow_frame, span=int(self.flow_span)
        )

    @property
    def clip_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the CLIP backbone (:func:`memfuse.extract.appearance.make_backbone`)."""
        return {"interpolation": self.clip_interpolation, "quick_gelu": self.clip_quick_gelu, "bgr": self.clip_bgr}


def dataset_bins(dataset: str) -> int:
    """The dataset's velocity bins: VELOCITY_BINS of config/datasets/NAME.toml (AI-VAD: 1 on
    Ped2, 8 elsewhere), else extract_features.py's default, read as the configurator reads it
    (the script owns the setting; no second copy of its value here)."""
    from .. import config

    constants = config.dataset_settings(dataset) or {}
    if "VELOCITY_BINS" in constants:
        return int(constants["VELOCITY_BINS"])
    return int(config.script_settings("extract_features.py")["VELOCITY_BINS"])


# ---- per-video work (runs in worker processes) ---------------------------------------------
_WORKER: dict = {}


class VideoJob(NamedTuple):
    """One video to process. ``boxes``: its (n_t, 4) boxes per frame, ``None``: boxes of what
    moves. ``with_pose``: make poses (every ``pose_every``-th frame) with the worker's model."""

    video: Video
    boxes: list[np.ndarray] | None
    flow: FlowConfig
    bins: int
    with_pose: bool
    pose_every: int
    camera: tuple | None = None  # (background (H, W) uint8, person size): boxes against the camera's, kept current


def init_worker(settings: ExtractSettings, threads: int, frames_done: Any = None) -> None:
    """Per-process state of stage 0: the backbone and (with ``settings.pose_model``) the pose
    model. ``threads``: OpenCV threads (-1: its default). ``frames_done``: a shared counter the
    worker adds its frames to as it goes (the parent's progress bar reads it), or a callable
    taking the count."""
    import cv2

    from .appearance import make_backbone

    cv2.setNumThreads(threads)
    clip_kwargs = settings.clip_kwargs if settings.appearance == "clip" else {}
    if settings.appearance == "clip" and settings.ray_gpus > 0:  # a Ray task given a GPU runs CLIP on it
        import torch

        clip_kwargs = clip_kwargs | {"device": "cuda" if torch.cuda.is_available() else "cpu"}
    _WORKER["settings"] = settings
    _WORKER["backbone"] = make_backbone(settings.appearance, settings.clip_weights, **clip_kwargs)
    if settings.pose_model:
        from .pose import PoseModel

        _WORKER["pose"] = PoseModel(
            settings.pose_model, threads=max(threads, 1), person_shaped=bool(settings.person_shaped)
        )
    if frames_done is None or callable(frames_done):
        _WORKER["tick"] = frames_done or (lambda n: None)
    else:

        def tick(n: int, counter=frames_done) -> None:
            with counter.get_lock():
                counter.value += n

        _WORKER["tick"] = tick


def worker_settings() -> ExtractSettings | None:
    """The settings this process's stage-0 state was made with (None: none yet)."""
    return _WORKER.get("settings")


def set_worker_tick(tick: Callable[[int], None]) -> None:
    """Report this process's frames done to ``tick`` (frames since the last call)."""
    _WORKER["tick"] = tick


def process_video(job: VideoJob) -> dict:
    """One video -> per-frame velocity (n_t, bins) and appearance (n_t, 512) float32 arrays
    (+ repair counts, and poses (p_t, 34) with ``job.with_pose``), one frame at a time
    through :class:`.stream.FrameExtractor`. Without given boxes, a first pass samples the
    video for its background and each frame's boxes are its moving regions (returned as
    ``boxes``)."""
    from .frames import even_sample, iter_frames
    from .motion import MotionBoxes, MotionConfig
    from .stream import FrameExtractor

    video, boxes, flow_cfg, bins, with_pose, pose_every, _ = job
    start = time.perf_counter()
    name = video.name
    tick = _WORKER.get("tick", lambda n: None)
    detect = None
    if boxes is None and job.camera is not None:  # as detect.py on a stream: no look-ahead
        detect = MotionBoxes.from_state(*job.camera, MotionConfig()).adapt()
    elif boxes is None:
        cfg = MotionConfig()
        sample, _ = even_sample(iter_frames(video), cfg.background_frames)
        detect = MotionBoxes(sample, cfg)
    step = FrameExtractor(
        backbone=_WORKER["backbone"],
        flow=flow_cfg,
        bins=bins,
        pose_model=_WORKER.get("pose") if with_pose else None,
        pose_every=pose_every,
        motion=detect,
        where=video.where,
    )
    vel, app, found, poses = [], [], [], []
    for t, rgb in enumerate(iter_frames(video)):
        where = f"{video.where}, frame {t}" if video.frames is None else f"video {name}, frame {video.frames[t].name}"
        if detect is None and t >= len(boxes):
            raise InputError(f"{video.where}: more frames than the boxes file has for it ({len(boxes)})")
        f = step(rgb, None if detect is not None else boxes[t], where=where)
        found.append(f.found)
        vel.append(f.vel)
        app.append(f.app)
        poses.append(f.pose)
        if (t + 1) % PROGRESS_EVERY == 0:
            tick(PROGRESS_EVERY)
    tick(len(vel) % PROGRESS_EVERY)
    if boxes is not None and len(vel) != len(boxes):
        raise InputError(f"{video.where}: {len(vel)} frames decoded but the boxes file has {len(boxes)} for it")
    return {
        "name": name,
        "vel": vel,
        "app": app,
        "clipped": step.repairs.clipped,
        "grown": step.repairs.grown,
        "size": step.size,
        "frames": len(vel),
        "boxes": found if detect is not None else None,
        "motion": detect.state() if detect is not None else None,
        "pose": poses if with_pose else None,
        "seconds": time.perf_counter() - start,
    }


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
        # a record written before the modalities were named app / vel is extracted again
        return record["result"] if record.get("settings") == self.settings and "app" in record["result"] else None

    def put(self, result: dict) -> dict:
        with atomic_path(self.folder / f"{result['name']}.pkl") as tmp:
            with open(tmp, "wb") as fh:
                pickle.dump({"settings": self.settings, "result": result}, fh)
        return result

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def expected_frames(video: Video) -> int:
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
    fps = result["frames"] / max(result["seconds"], 1e-9)
    return f"{result['name']}: {result['frames']} frames, {fps:.1f} frames/s"


def _object_array(frames: list[np.ndarray]) -> np.ndarray:
    out = np.empty(len(frames), dtype=object)
    for i, f in enumerate(frames):
        out[i] = f
    return out


def _run_videos(
    todo: list[VideoJob], settings: ExtractSettings, *, cache: VideoCache, bar: Any, kept: int
) -> list[dict]:
    """The results of ``todo``, in order, each put in ``cache`` as it comes: in this process
    (CLIP, one worker or one video) or in a pool of ``settings.workers`` processes. ``bar``:
    the split's progress bar, ``kept`` frames of it done by an earlier run."""
    fresh: list[dict] = []
    if not todo:
        return fresh
    if settings.ray:  # one Ray task per video over a cluster (memfuse/distributed.py)
        from ..distributed import run_videos

        return run_videos(
            todo, settings, cache=cache, bar=bar, kept=kept, address=settings.ray, gpus_per_task=settings.ray_gpus
        )
    if settings.appearance == "clip" or settings.workers <= 1 or len(todo) == 1:
        init_worker(settings, threads=-1, frames_done=bar.update)  # -1: OpenCV's default threading
        for job in todo:
            fresh.append(cache.put(process_video(job)))
            bar.set_postfix_str(_speed(fresh[-1]))
        return fresh
    from multiprocessing import TimeoutError as PoolTimeout
    from multiprocessing import get_context

    # spawn, not fork: forking a parent whose OpenCV / torch thread pools are already
    # running can deadlock the children (seen in the tests after the CLIP tests).
    ctx = get_context("spawn")
    frames_done = ctx.Value("q", 0)
    with ctx.Pool(settings.workers, initializer=init_worker, initargs=(settings, 1, frames_done)) as pool:
        results_in_order = pool.imap(process_video, todo)  # ordered: video order is kept
        while len(fresh) < len(todo):
            try:
                res = results_in_order.next(timeout=1.0)
            except PoolTimeout:  # no video finished this second: only the bar moves
                res = None
            bar.update(kept + frames_done.value - bar.n)
            if res is not None:
                fresh.append(cache.put(res))
                bar.set_postfix_str(_speed(res))
    return fresh


def camera_background(states: list[tuple[np.ndarray, Any]]) -> tuple[np.ndarray, list[float] | None]:
    """The camera's background (H, W) uint8 and person size from its videos' motion states
    (:meth:`memfuse.extract.motion.MotionBoxes.state`): the per-pixel median of the videos'
    median backgrounds, the median person size of those that found one (None: none did)."""
    if not states:
        raise ValueError("no video's motion background to make the camera's from")
    sizes = {s[0].shape for s in states}
    if len(sizes) > 1:
        raise InputError(f"the train videos have different frame sizes {sorted(sizes)}: one camera's footage has one")
    background = np.median(np.stack([s[0] for s in states]), axis=0).round().astype(np.uint8)
    persons = [s[1] for s in states if s[1] is not None]
    return background, (np.median(np.asarray(persons), axis=0).tolist() if persons else None)


def camera_state(out_root: Path | str, dataset: str) -> tuple[np.ndarray, list[float] | None]:
    """The camera's background and person size the train split's extraction recorded."""
    folder = split_outputs(out_root, dataset, "train")["vel"].parent
    if not (folder / "background.npy").exists():
        raise InputError(
            f"--motion-background camera: no {folder / 'background.npy'}; extract the train split first "
            "(its boxes from motion, with this code)"
        )
    return np.load(folder / "background.npy"), json.loads((folder / "extract_meta.json").read_text())["motion_person"]


# ---- one split -------------------------------------------------------------------------------
def split_outputs(out_root: Path | str, dataset: str, split: str) -> dict[str, Path]:
    """The files a split's extraction writes: velocity (``vel``), appearance (``app``) and meta."""
    vel, app = (feature_path(out_root, dataset, split, m) for m in ("vel", "app"))
    return {"vel": vel, "app": app, "meta": vel.parent / "extract_meta.json"}


def prepare_split(dataset: str, data_root: Path | str, split: str) -> tuple[list[Video], list]:
    """Check a split's inputs before any heavy work: videos, boxes, frame counts.

    Returns (videos, per-video box slices, or ``None`` per video when the dataset has no
    boxes file: its boxes will come from motion)."""
    from .frames import SPLIT_FOLDERS, list_split_videos, load_boxes, split_boxes_by_video

    base = Path(data_root) / dataset
    videos = list_split_videos(base / SPLIT_FOLDERS[split])
    given = boxes_path(data_root, dataset, split)
    if not given.exists():
        return videos, [None] * len(videos)
    return videos, split_boxes_by_video(load_boxes(given), videos, given)


def split_settings(settings: ExtractSettings, *, motion: bool, split: str = "train") -> dict:
    """Every setting a split's features depend on, as JSON values: the key of the per-video
    cache, extract_meta.json's "settings", and what a rerun compares with the kept files.
    ``settings``: the split's, ``bins`` resolved and ``pose_model`` None when the split's
    poses are copied. ``motion``: the boxes come from motion (the split has no box file)."""
    from .motion import MotionConfig

    s = settings
    # the test split's boxes against the camera's background: a key of its own (the train split's never are)
    camera = {"background": "camera"} if split == "test" and s.motion_background == "camera" else {}
    flow = {
        "method": s.flow,
        "scale": float(s.flow_scale),
        "blur": float(s.flow_blur),
        "frame": s.flow_frame,
        "span": int(s.flow_span),
    }
    pose = (
        {"model": Path(s.pose_model).name, "every": int(s.pose_every), "person_shaped": bool(s.person_shaped)}
        if s.pose_model
        else "copied"
    )
    out = {
        "appearance": s.appearance,
        "flow": flow,
        "bins": int(s.bins),
        "boxes": (asdict(MotionConfig()) | camera) if motion else "given",
        "pose": pose,
        "clip": s.clip_kwargs if s.appearance == "clip" else None,
    }
    return json.loads(json.dumps(out))  # tuples as lists, as they read back from the file


def extract_split(
    dataset: str,
    data_root: Path | str,
    out_root: Path | str,
    split: str,
    *,
    settings: ExtractSettings,
    progress: bool = True,
) -> dict:
    """Extract one split; returns its info dict (also written as extract_meta.json).
    ``settings.pose_model``: make the split's pose.npy with it (``None``: the split's own is
    copied by :func:`copy_dataset_files`)."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    settings = settings.for_dataset(dataset)
    videos, boxes = prepare_split(dataset, data_root, split)
    flow_cfg, with_pose = settings.flow_config(), settings.pose_model is not None
    jobs = [
        VideoJob(v, None if b is None else list(b), flow_cfg, settings.bins, with_pose, int(settings.pose_every))
        for v, b in zip(videos, boxes)
    ]
    motion = boxes[0] is None
    if motion and split == "test" and settings.motion_background == "camera":
        camera = camera_state(out_root, dataset)
        jobs = [job._replace(camera=camera) for job in jobs]
        print(
            f"{dataset}/{split}: no {dataset}_bboxes_{split}.npy: boxes of what moves against the camera's "
            "background learnt on the train split, kept current (as detect.py)"
        )
    elif motion:
        print(
            f"{dataset}/{split}: no {dataset}_bboxes_{split}.npy: boxes of what moves against each video's "
            "median background"
        )
    key = split_settings(settings, motion=motion, split=split)
    # Each finished video is kept in a cache beside the split's outputs, so an interrupted
    # extraction resumes per video; the cache is dropped once the split's files are written.
    cache = VideoCache(split_outputs(out_root, dataset, split)["vel"].parent / ".videos", key)
    done = {i: cache.get(v.name) for i, v in enumerate(videos)}
    todo = [job for i, job in enumerate(jobs) if done[i] is None]
    if len(todo) < len(jobs):
        print(f"{dataset}/{split}: {len(jobs) - len(todo)} of {len(jobs)} videos kept from an interrupted run")
    # progress in frames (frames/s and time left), the total from frame files or video headers
    kept = sum(done[i]["frames"] for i in done if done[i] is not None)
    expected = [expected_frames(job.video) for job in todo]
    bar = tqdm(
        total=kept + sum(expected),
        initial=kept,
        desc=f"{dataset}/{split}",
        unit="frame",
        disable=not progress,
        smoothing=0.1,
    )
    fresh = _run_videos(todo, settings, cache=cache, bar=bar, kept=kept)
    bar.close()
    fresh_iter = iter(fresh)
    results = [done[i] if done[i] is not None else next(fresh_iter) for i in range(len(jobs))]
    vel = [f for r in results for f in r["vel"]]
    app = [f for r in results for f in r["app"]]
    n_frames = sum(r["frames"] for r in results)
    assert len(vel) == len(app) == n_frames
    clipped = sum(r["clipped"] for r in results)
    grown = sum(r["grown"] for r in results)
    if clipped or grown:
        warnings.warn(
            f"{dataset}/{split}: {clipped} boxes reached outside the frame and were clipped to it; "
            f"{grown} had an empty crop after clipping and were grown to 1 px",
            stacklevel=2,
        )
    out = split_outputs(out_root, dataset, split)
    frame_boxes = [b for r in results for b in r["boxes"]] if motion else [b for bb in boxes for b in bb]
    if motion:  # the boxes the features describe, in AI-VAD's format (a frame may have none)
        save_npy(boxes_path(out_root, dataset, split), _object_array(frame_boxes))
    person = None
    if motion and split == "train":  # the camera's background, for the detector's boxes on a stream
        background, person = camera_background([r["motion"] for r in results if r.get("motion") is not None])
        save_npy(out["vel"].parent / "background.npy", background)
    if with_pose:
        save_npy(feature_path(out_root, dataset, split, "pose"), _object_array([p for r in results for p in r["pose"]]))
    save_npy(out["vel"], _object_array(vel))
    save_npy(out["app"], _object_array(app))
    info = {
        "dataset": dataset,
        "split": split,
        "frames": n_frames,
        "videos": len(videos),
        "frames_per_video": [r["frames"] for r in results],
        "boxes": "motion" if motion else f"{dataset}_bboxes_{split}.npy",
        "pose": "made" if settings.pose_model else "copied",
        "objects": int(sum(len(v) for v in vel)),
        "whole_frame_entries": int(sum(np.asarray(b).size == 0 for b in frame_boxes)),
        "boxes_clipped": clipped,
        "boxes_grown": grown,
        "settings": key,
        "clip_weights": str(settings.clip_weights) if settings.appearance == "clip" else None,
        "pose_model_path": str(settings.pose_model) if settings.pose_model else None,
        "motion_person": person,
        "frame_size": results[0]["size"],
        "ran_on": f"ray {settings.ray}" if settings.ray else f"{settings.workers} local processes",
        "wall_s": time.perf_counter() - t0,
    }
    save_json(out["meta"], info)
    cache.clear()
    return info


def frames_per_video(info: dict, meta_path: Path, videos: list) -> list[int]:
    """Frame count of each video of a split: from this run's extraction, else from the
    split's extract_meta.json, else counted."""
    from .frames import count_frames

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
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return True


def copy_dataset_files(
    dataset: str, data_root: Path | str, out_root: Path | str, frame_counts: dict[str, list[int]]
) -> list[str]:
    """Copy pose, boxes, clip lengths and label files into OUT/NAME so it is a complete dataset;
    returns the copied paths, relative to it.

    Clip lengths missing from DATA are computed from ``frame_counts`` (split -> frames per
    video); present ones must agree with them (else InputError)."""
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
                raise InputError(
                    f"{src / name}: cumulative lengths {given.tolist()[:6]}... disagree with the frame "
                    f"folders {ends.tolist()[:6]}..."
                )
            _copy(src / name, dst / name)
        else:
            save_npy(dst / name, ends)
        copied.append(name)
    boxes = [boxes_path(data_root, dataset, split).name for split in SPLITS]  # given boxes, for vel_rel's heights
    for rel in (
        *boxes,
        f"frame_labels_{dataset}.npy",
        "frame_labels.npy",
        f"{dataset}.mat",
        f"testing/UCSD{dataset}.m",
    ):
        if _copy(src / rel, dst / rel):
            copied.append(rel)
    mask_dir = src / "testing" / "test_frame_mask"
    if mask_dir.is_dir():
        for f in sorted(mask_dir.glob("*.npy")):
            _copy(f, dst / "testing" / "test_frame_mask" / f.name)
        copied.append("testing/test_frame_mask/")
    return copied


# ---- whole dataset -------------------------------------------------------------------------------
def extract_dataset(
    dataset: str,
    data_root: Path | str,
    out_root: Path | str,
    settings: ExtractSettings,
    *,
    splits: tuple[str, ...] = SPLITS,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Run stage 0 on ``data_root/dataset``, writing ``out_root/dataset`` (module docstring).

    Splits whose outputs exist are skipped unless ``force`` (with a warning when they were
    made with other settings). A split without ``pose.npy`` gets its poses from
    ``settings.pose_model``; without a model, that is an error before any work, as is every
    bad setting or input. Returns ``{"train": {"wall_s": ..., "skipped": bool, ...},
    "test": {...}, "copied": [...], "out_dir": str, "total_wall_s": ...}``: a split done here
    has its extract_meta.json's fields, a skipped one its frames and objects."""
    from .appearance import make_backbone

    t0 = time.perf_counter()
    data_root, out_root = Path(data_root), Path(out_root)
    settings.check()
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise InputError(f"splits must be some of {', '.join(SPLITS)}, got {', '.join(splits) or 'none'}")
    if not (data_root / dataset).is_dir():
        raise InputError(f"missing dataset folder {data_root / dataset}")
    settings = settings.for_dataset(dataset)
    # Check every split's inputs (and the CLIP weights) before any heavy work.
    prepared = {s: prepare_split(dataset, data_root, s) for s in splits}
    if settings.appearance == "clip":
        make_backbone("clip", settings.clip_weights, **settings.clip_kwargs)  # fail early on bad weights
    needs_pose = {s: not (data_root / dataset / "extracted_features" / s / "pose.npy").exists() for s in splits}
    if any(needs_pose.values()):
        if settings.pose_model is None:
            missing = data_root / dataset / "extracted_features" / next(s for s in splits if needs_pose[s]) / "pose.npy"
            raise InputError(
                f"no {missing}: give --pose-model PATH to make poses "
                "(memfuse/extract/pose.py says how to get the model)"
            )
        from .pose import PoseModel

        PoseModel(settings.pose_model)  # fail early on a missing model or runtime
    report: dict = {"out_dir": str(out_root / dataset)}
    for split in splits:
        # a split that has its poses copies them: its features do not depend on the pose model
        split_cfg = settings if needs_pose[split] else replace(settings, pose_model=None)
        out = split_outputs(out_root, dataset, split)
        if not force and out["vel"].exists() and out["app"].exists():
            old = json.loads(out["meta"].read_text()) if out["meta"].exists() else {}
            kept = old.get("settings", {})
            now = split_settings(split_cfg, motion=prepared[split][1][0] is None, split=split)
            diff = {k: (kept.get(k), v) for k, v in now.items() if kept.get(k) != v}
            if diff:
                warnings.warn(
                    f"{out['vel'].parent}: kept existing features made with other settings {diff}; use --force to redo",
                    stacklevel=2,
                )
            report[split] = {"skipped": True, "wall_s": 0.0, **{k: old.get(k) for k in ("frames", "objects")}}
            continue
        info = extract_split(dataset, data_root, out_root, split, settings=split_cfg, progress=progress)
        report[split] = {"skipped": False, **info}
    counts = {
        s: frames_per_video(report[s], split_outputs(out_root, dataset, s)["meta"], prepared[s][0]) for s in splits
    }
    report["copied"] = copy_dataset_files(dataset, data_root, out_root, counts)
    report["total_wall_s"] = time.perf_counter() - t0
    return report
