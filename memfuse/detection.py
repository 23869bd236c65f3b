"""Streaming detection: frames in, per-frame scores, alarms and an annotated video out.

:class:`SourceRun` streams one :class:`memfuse.sources.Source` through stage 0
(:class:`memfuse.extract.stream.FrameExtractor`, the code stage 0 runs on a split) and a
:class:`memfuse.detector.Detector` (the code stages 1-6 score a split with), and writes as
it goes:

- ``DIR/<source>.csv``: one row per frame scored: ``frame``, ``time_s``, ``score`` (causal:
  :func:`memfuse.alarms.causal_smooth` of the frame and those before it), ``alarm`` (0/1),
  ``raw_score`` (before smoothing; the offline evaluation smooths it symmetrically), each
  source of evidence (``classifier``, ``app``, ``pose``, ``vel``: the calibrated terms the
  score sums), ``objects`` and the box with the most evidence (``top_object``, ``top_box``);
- ``DIR/<source>.mp4``: each frame with its boxes coloured by their evidence, the score bar
  (the threshold at two thirds of it) and a red frame while the alarm is on;
- ``DIR/events.jsonl``: one line per alarm event, written when it ends.

Rows are flushed every batch, so an interrupted run leaves complete rows; the video is
closed on an interruption (Ctrl-C or SIGTERM), so it plays up to its last frame. Frames of a
file are scored in batches of ``batch`` (faster; a frame's score still uses no later
frame); frames of a live source one at a time, as they come, or, when it fell behind and
frames wait in its buffer, up to :data:`LIVE_BATCH` of them together.
"""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import data as D
from .alarms import CausalSmoother, Event, EventTracker
from .annotate import colour, draw
from .detector import MERGE_GAP_S, Detector
from .extract.stream import FrameExtractor, FrameFeatures
from .io import InputError
from .sources import Source

FILE_BATCH = 16  # frames of a file scored together
LIVE_BATCH = 8  # at most this many frames of a live source that fell behind scored together
BAR_THRESHOLD_AT = 2 / 3  # the threshold's place on the annotated score bar
SOURCES_OF_EVIDENCE = ("classifier", "app", "pose", "vel")


@dataclass
class Given:
    """Boxes and poses given in AI-VAD's files for the frames of every source, in order
    (the boxes file's frame f is the f-th frame read over all sources)."""

    boxes: np.ndarray | None = None  # object array (F,), each (n_i, 4)
    poses: np.ndarray | None = None  # object array (F,), each (p_i, 34)
    used: int = 0  # frames taken so far


@dataclass
class DetectOptions:
    """detect.py's settings for its sources (plain values: a Ray actor rebuilds its
    :class:`Scorer` from them on its node)."""

    model: str
    false_alarms_per_hour: float = 0.0  # 0: the detector's own threshold
    pose_model: str = ""  # empty: the detector's, when it made its poses
    clip_weights: str = ""  # empty: the recorded path
    video: bool = True
    batch: int = FILE_BATCH
    max_frames: int = 0  # 0: all
    boxes_given: bool = False
    poses_given: bool = False


def pose_model_of(detector: Detector, given: str, poses_given: bool) -> Any:
    """The pose model to run, or None (poses given, or the detector's came with its data)."""
    from .extract.pose import PoseModel

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


class Scorer:
    """A loaded detector with what its sources share (the appearance backbone, the pose
    model, the alarm threshold); :meth:`run` scores one source. Raises
    :class:`InputError` (one line) for a detector that cannot read video."""

    def __init__(self, options: DetectOptions):
        from .detector import load
        from .extract.appearance import make_backbone

        self.options = options
        self.detector = det = load(options.model)
        if det.stage0 is None:
            raise InputError(
                f"{options.model}: this detector was fitted on features made elsewhere (no stage-0 settings): "
                "it cannot read video; fit it on raw footage (run_all.py on frames or videos)"
            )
        if not options.boxes_given and det.w.get("background") is None:
            raise InputError(
                f"{options.model}: the detector's training footage came with boxes, so it has no motion "
                "background: give --boxes FILE, or fit it on footage without a boxes file"
            )
        st = det.stage0["settings"]
        clip_kwargs = st["clip"] if st["appearance"] == "clip" else {}
        self.backbone = make_backbone(
            st["appearance"], options.clip_weights or det.stage0.get("clip_weights") or None, **(clip_kwargs or {})
        )
        self.pose_model = pose_model_of(det, options.pose_model, options.poses_given)
        self.threshold = det.threshold
        self.false_alarms_per_hour = det.meta["threshold"]["false_alarms_per_hour"]
        if options.false_alarms_per_hour > 0:
            self.threshold = det.threshold_for(options.false_alarms_per_hour).value
            self.false_alarms_per_hour = options.false_alarms_per_hour

    def run(self, source: Source, out_dir: Path | str, *, given: Given | None, events_file: Any) -> SourceReport:
        """Score ``source`` into ``out_dir`` (module doc); ``given``: its boxes and poses."""
        o = self.options
        run = SourceRun(
            self.detector,
            source,
            Path(out_dir),
            threshold=self.threshold,
            extractor=make_extractor(
                self.detector, pose_model=self.pose_model, backbone=self.backbone, where=source.describe()
            ),
            given=given,
            video=o.video,
            batch=o.batch,
            events_file=events_file,
            max_frames=o.max_frames or None,
        )
        try:
            return run.run()
        except IndexError as exc:  # given boxes or poses shorter than the sources
            raise InputError(f"--boxes/--poses: {exc}") from None


def report_line(r: SourceReport) -> str:
    """One source's summary line: frames, frames/s, drops, events and ms per stage."""
    steps = ", ".join(f"{k} {v:.1f}" for k, v in r.ms_per_frame.items())
    return (
        f"[detect] {r.name}: {r.frames} frames in {r.seconds:.1f} s ({r.fps:.1f} frames/s), "
        f"{r.dropped} dropped, {r.events} alarm events; ms per frame: {steps}"
    )


@dataclass
class SourceReport:
    name: str
    frames: int = 0
    dropped: int = 0
    reconnects: int = 0
    events: int = 0
    alarm_frames: int = 0
    seconds: float = 0.0
    ms_per_frame: dict[str, float] = field(default_factory=dict)
    rescaled: str | None = None
    interrupted: bool = False
    csv: str = ""
    video: str | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def make_extractor(detector: Detector, *, pose_model: Any, backbone: Any, where: str) -> FrameExtractor:
    """A :class:`FrameExtractor` with the detector's stage-0 settings (its motion background
    kept current while streaming)."""
    from .extract.motion import MotionBoxes, MotionConfig
    from .extract.velocity import FlowConfig

    s0 = detector.stage0
    st = s0["settings"]
    motion = None
    if detector.w.get("background") is not None:
        cfg = MotionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in st["boxes"].items()})
        motion = MotionBoxes.from_state(detector.w["background"], s0.get("motion_person"), cfg).adapt()
    pose = st["pose"]
    return FrameExtractor(
        backbone=backbone,
        flow=FlowConfig.from_settings(st["flow"]),
        bins=int(st["bins"]),
        pose_model=pose_model,
        pose_every=int(pose["every"]) if isinstance(pose, dict) else 1,
        motion=motion,
        where=where,
    )


class SourceRun:
    """One source through stage 0 and the detector (module doc)."""

    def __init__(
        self,
        detector: Detector,
        source: Source,
        out_dir: Path,
        *,
        threshold: float,
        extractor: FrameExtractor,
        given: Given | None = None,
        video: bool = True,
        batch: int = FILE_BATCH,
        events_file: Any = None,
        max_frames: int | None = None,
    ):
        self.det, self.source, self.out = detector, source, Path(out_dir)
        self.threshold, self.extractor, self.given = threshold, extractor, given
        # a live frame is scored at once while the scorer keeps up; when frames wait, up to
        # LIVE_BATCH of them are scored together (the models' cost per call, 5 ms, is then
        # shared: docs/results.md), so the scorer catches up instead of dropping more
        self.batch = LIVE_BATCH if source.live else max(1, int(batch))
        self.want_video, self.events_file, self.max_frames = video, events_file, max_frames
        self.smoother = CausalSmoother(detector.smooth_sigma)
        self.fps = source.fps or detector.fps
        self.tracker = EventTracker(threshold, int(round(MERGE_GAP_S * self.fps)))
        self.report = SourceReport(source.name)
        self.size = tuple(detector.stage0["frame_size"]) if detector.stage0.get("frame_size") else None
        self.seconds: dict[str, float] = defaultdict(float)
        self._peak: dict | None = None
        self._writer: cv2.VideoWriter | None = None
        self._lo = float(np.quantile(detector.w["reference_scores"], 0.01))
        self._start = 0.0

    # -- frames
    def _prepare(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        if self.size is not None and (w, h) != self.size:
            if self.report.rescaled is None:
                self.report.rescaled = f"{w}x{h} -> {self.size[0]}x{self.size[1]}"
                print(
                    f"[detect] {self.source.name}: frames are {w}x{h}, the detector's training footage "
                    f"{self.size[0]}x{self.size[1]}: rescaled to it"
                )
            rgb = cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA)
        return rgb

    def _given(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        g = self.given
        if g is None:
            return None, None
        f = g.used
        g.used += 1
        boxes = poses = None
        if g.boxes is not None:
            if f >= len(g.boxes):
                raise IndexError(f"the boxes file has {len(g.boxes)} frames; the sources have more")
            boxes = np.asarray(g.boxes[f], dtype=np.float32).reshape(-1, 4)
        if g.poses is not None:
            if f >= len(g.poses):
                raise IndexError(f"the poses file has {len(g.poses)} frames; the sources have more")
            poses = np.asarray(g.poses[f], dtype=np.float32).reshape(-1, 34)
        return boxes, poses

    # -- the run
    def run(self) -> SourceReport:
        r = self.report
        csv_path = self.out / f"{self.source.name}.csv"
        r.csv = str(csv_path)
        pending: list[tuple[int, np.ndarray, FrameFeatures, np.ndarray]] = []
        self._start = time.perf_counter()
        with open(csv_path, "w", newline="") as fh:
            self._csv = csv.writer(fh)
            self._csv.writerow(self._header())
            self._fh = fh
            try:
                clock = time.perf_counter
                t_read = clock()
                for t, rgb in self.source.frames():
                    self.seconds["decode"] += clock() - t_read
                    rgb = self._prepare(rgb)
                    boxes, poses = self._given()
                    feats = self.extractor(rgb, boxes, where=f"{self.source.describe()}, frame {t}")
                    if poses is not None:
                        feats = feats._replace(pose=poses)
                    pending.append((t, rgb, feats, feats.pose if feats.pose is not None else np.zeros((0, 34))))
                    if len(pending) >= self.batch or (self.source.live and not self.source.waiting):
                        self._score(pending)
                        pending = []
                    if self.max_frames and r.frames + len(pending) >= self.max_frames:
                        break
                    t_read = clock()
                if pending:
                    self._score(pending)
                    pending = []
            except KeyboardInterrupt:
                r.interrupted = True
                self.source.stop()
            finally:
                r.interrupted = r.interrupted or self.source.interrupted
                self._finish_event(self.tracker.close())
                fh.flush()
                if self._writer is not None:
                    self._writer.release()
        r.seconds = time.perf_counter() - self._start
        r.dropped, r.reconnects = self.source.dropped, self.source.reconnects
        for step, s in self.extractor.seconds.items():
            self.seconds[step] += s
        r.ms_per_frame = {k: round(1000 * v / max(r.frames, 1), 2) for k, v in self.seconds.items()}
        return r

    def _header(self) -> list[str]:
        return [
            "frame",
            "time_s",
            "score",
            "alarm",
            "raw_score",
            *SOURCES_OF_EVIDENCE,
            "objects",
            "top_object",
            "top_box",
        ]

    def _score(self, pending: list) -> None:
        clock = time.perf_counter
        t0 = clock()
        frames = [p[2] for p in pending]
        app = D.Ragged.from_frames([f.app for f in frames], 512)
        vel = D.Ragged.from_frames([f.vel for f in frames], frames[0].vel.shape[1])
        pose = D.Ragged.from_frames([p[3] for p in pending], 34)
        # the boxes as given or found, as the boxes file the batch path reads (a frame of
        # none: its whole-frame entry, NaN)
        heights = np.concatenate(
            [f.found[:, 3] - f.found[:, 1] if len(f.found) else np.full(len(f.boxes), np.nan) for f in frames]
        )
        scores = self.det.score(app, pose, vel, heights=heights)
        self.seconds["models"] += clock() - t0
        for i, (t, rgb, feats, _) in enumerate(pending):
            score = self.smoother(scores.raw[i])
            alarm = score >= self.threshold
            objects = None if scores.objects is None else scores.objects[i, : len(feats.boxes)]
            shown = len(feats.found)  # a frame without boxes has only its whole-frame entry: nothing to point at
            top = int(np.nanargmax(objects[:shown])) if objects is not None and shown else -1
            ended = self.tracker(t, score)
            self._finish_event(ended)
            if self.tracker.open is not None and self.tracker.open.peak == t:
                self._peak = {
                    "score": score,
                    "object": top,
                    "box": None if top < 0 else [round(float(v), 1) for v in feats.boxes[top]],
                    "modality": max(SOURCES_OF_EVIDENCE, key=lambda s: _at(scores.sources, s, i)),
                }
            r = self.report
            r.frames += 1
            r.alarm_frames += int(alarm)
            box = "" if top < 0 else " ".join(f"{v:.1f}" for v in feats.boxes[top])
            self._csv.writerow(
                [
                    t,
                    f"{self._time(t):.3f}",
                    f"{score:.6g}",
                    int(alarm),
                    f"{scores.raw[i]:.6g}",
                    *(f"{_at(scores.sources, s, i):.4g}" if s in scores.sources else "" for s in SOURCES_OF_EVIDENCE),
                    shown,
                    top,
                    box,
                ]
            )
            if self.want_video:
                t1 = clock()
                self._frame(rgb, feats, objects, score, alarm)
                self.seconds["video"] += clock() - t1
        self._fh.flush()

    def _time(self, t: int) -> float:
        if self.source.kind in ("camera", "stream"):
            return time.perf_counter() - self._start
        return t / self.fps

    def _frame(self, rgb: np.ndarray, feats: FrameFeatures, objects, score: float, alarm: bool) -> None:
        if self._writer is None:
            path = self.out / f"{self.source.name}.mp4"
            h, w = rgb.shape[:2]
            self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                path = path.with_suffix(".avi")
                self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), self.fps, (w, h))
            self.report.video = str(path)
        shown = feats.boxes[: len(feats.found)]
        span = max(self.threshold - self._lo, 1e-9)
        level = float(np.clip(BAR_THRESHOLD_AT * (score - self._lo) / span, 0.0, 1.0))
        img = draw(rgb, shown, objects, level, bool(alarm))
        h, w = img.shape[:2]
        x = int(BAR_THRESHOLD_AT * (w - 1))
        cv2.line(img, (x, h - 8), (x, h - 1), colour(np.inf) if not alarm else (0, 0, 255), 1)
        self._writer.write(img)

    def _finish_event(self, event: Event | None) -> None:
        if event is None:
            return
        self.report.events += 1
        peak = self._peak or {}
        line = {
            "source": self.source.name,
            "start_frame": event.start,
            "end_frame": event.end,
            "start_s": round(self._event_time(event.start), 3),
            "end_s": round(self._event_time(event.end), 3),
            "peak_frame": event.peak,
            "peak_score": round(float(peak.get("score", np.nan)), 4),
            "object": peak.get("object"),
            "box": peak.get("box"),
            "modality": peak.get("modality"),
        }
        self._peak = None
        if self.events_file is not None:
            self.events_file.write(json.dumps(line) + "\n")
            self.events_file.flush()

    def _event_time(self, t: int) -> float:
        return t / self.fps


def _at(sources: dict[str, np.ndarray], name: str, i: int) -> float:
    return float(sources[name][i]) if name in sources else -np.inf
