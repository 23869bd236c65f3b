"""Stage 0 one frame at a time: the step the batch extraction and the detector share.

:class:`FrameExtractor` holds what a video's frames pass on to the next (the last
``flow.span`` grey frames for the flow, the last poses made, a motion background) and
turns one RGB frame, with its boxes (given, or found by
:class:`memfuse.extract.motion.MotionBoxes`), into the frame's AI-VAD-format features.
``memfuse.extract.pipeline`` streams every video of a split through it; ``detect.py``
streams a camera through the same object, so a video gives the same features either way.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

from ..io import InputError
from .frames import BoxRepairs, check_boxes, to_grey
from .velocity import frame_velocity

if TYPE_CHECKING:
    from .motion import MotionBoxes
    from .pose import PoseModel
    from .velocity import FlowConfig


class FrameFeatures(NamedTuple):
    """One frame's objects. n >= 1: a frame without boxes has one whole-frame entry."""

    boxes: np.ndarray  # (n, 4) float32, checked (clipped, non-empty crops)
    whole: np.ndarray  # (n,) bool: the whole-frame entry of a frame without boxes
    found: np.ndarray  # (m, 4) the boxes as given or found by motion (m may be 0)
    vel: np.ndarray  # (n, B) float32
    app: np.ndarray  # (n, 512) float32
    pose: np.ndarray | None  # (p, 34) float32 poses of the frame's persons; None without a pose model


class FrameExtractor:
    """Features of a video's frames, fed in order.

    Args:
        backbone: appearance backbone, ``backbone(rgb, boxes, whole) -> (n, 512)``.
        flow: the optical flow's :class:`FlowConfig`; bins: velocity orientation bins B.
        pose_model: makes poses on every ``pose_every``-th frame (those between reuse the
            last poses made); ``None``: no poses.
        motion: finds the boxes of a frame given none (``None``: boxes must be given).
        where: names the video in error messages.
    """

    def __init__(
        self,
        *,
        backbone: Callable[..., np.ndarray],
        flow: FlowConfig,
        bins: int,
        pose_model: PoseModel | None = None,
        pose_every: int = 1,
        motion: MotionBoxes | None = None,
        where: str = "video",
    ):
        self.backbone, self.flow, self.bins = backbone, flow, int(bins)
        self.pose_model, self.pose_every, self.motion, self.where = pose_model, int(pose_every), motion, where
        self.repairs = BoxRepairs()
        self.seconds: dict[str, float] = defaultdict(float)  # time spent per step: boxes, flow, appearance, pose
        self.t = 0  # frames seen
        self.size: tuple[int, int] | None = None  # (W, H) of the first frame
        self._greys: deque[np.ndarray] = deque(maxlen=flow.span)  # the last span frames, oldest first
        self._poses: np.ndarray | None = None

    def __call__(self, rgb: np.ndarray, boxes: np.ndarray | None = None, where: str | None = None) -> FrameFeatures:
        """The features of the next frame: ``rgb`` (H, W, 3) uint8; ``boxes`` (m, 4) x1, y1,
        x2, y2 (``None``: found by motion). ``where`` names the frame in errors."""
        h, w = rgb.shape[:2]
        where = where or f"{self.where}, frame {self.t}"
        if self.size is None:
            self.size = (w, h)
        elif self.size != (w, h):
            raise InputError(f"{where} is {w}x{h} but the video's first frame is {self.size[0]}x{self.size[1]}")
        clock = time.perf_counter
        t0 = clock()
        if boxes is None:
            if self.motion is None:
                raise ValueError("no boxes given and no motion detector to find them")
            boxes = self.motion(rgb)
        checked, repairs = check_boxes(boxes, w, h, where=where)
        self.repairs.add(repairs)
        whole = np.full(len(checked), np.asarray(boxes).size == 0)
        grey = to_grey(rgb)
        t1 = clock()
        prev = self._greys[0] if self._greys else None  # span frames back, or the video's first
        vel = frame_velocity(prev, grey, checked, self.flow, self.bins, apart=max(len(self._greys), 1))
        t2 = clock()
        app = np.asarray(self.backbone(rgb, checked, whole), dtype=np.float32)
        t3 = clock()
        if self.pose_model is not None:  # persons only: a whole-frame entry is not a detection
            if self.t % self.pose_every == 0:
                self._poses = self.pose_model(rgb, checked[~whole])
        t4 = clock()
        for step, seconds in zip(("boxes", "flow", "appearance", "pose"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            self.seconds[step] += seconds
        if app.shape != (len(checked), 512) or vel.shape != (len(checked), self.bins):
            raise AssertionError(f"{where}: shapes {vel.shape} {app.shape} for {len(checked)} boxes")
        self._greys.append(grey)
        self.t += 1
        found = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        return FrameFeatures(checked, whole, found, vel.astype(np.float32), app, self._poses)
