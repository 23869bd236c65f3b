"""Object boxes from motion, for videos that come without detections (stage 0).

A fixed surveillance camera sees a still background; what moves is what AI-VAD's object
detector would mostly have boxed. Each video gets its own background: the per-pixel median
of up to :data:`BACKGROUND_FRAMES` frames sampled evenly over the video (people who walk
through leave it; a first pass over the video reads only those frames, so memory does not
grow with the video's length). A frame's foreground is where its blurred grey level differs
from the background's by more than :data:`THRESHOLD`, cleaned by a morphological opening and
closing; each connected component of at least :data:`MIN_AREA_FRACTION` of the frame becomes
one box ``x1, y1, x2, y2`` in pixels. Needs no weights and no download.

A frame with nothing moving gets no box; stage 0 then gives it one whole-frame entry, as
AI-VAD does for a frame without detections. Someone standing still for the whole video is
part of its background and is not boxed; people walking close together share one box.

OpenCV's adaptive MOG2 background subtraction was measured first and dropped: on Ped2 train
(crowded from the first frame, people walking slowly) it absorbed the walkers into its
background and found 7 % of AI-VAD's boxes at IoU 0.5, against 42 % for the median. The
defaults were chosen on Ped2 train by agreement with AI-VAD's boxes
(``python bench/motion_boxes.py --grid``); the test split was not looked at.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np

BACKGROUND_FRAMES = 50  # frames sampled evenly over a video for its median background
BLUR_PX = 5  # Gaussian blur (px) of grey frames and background before the difference
THRESHOLD = 20  # grey-level difference from the background that is foreground
OPEN_PX = 3  # opening kernel (px): removes speckle noise
CLOSE_PX = 3  # closing kernel (px): joins a person's parts without joining neighbours
MIN_AREA_FRACTION = 7e-4  # smallest component kept, as a fraction of the frame area (Ped2: 60 px)


@dataclass(frozen=True)
class MotionConfig:
    background_frames: int = BACKGROUND_FRAMES
    blur_px: int = BLUR_PX
    threshold: float = THRESHOLD
    open_px: int = OPEN_PX
    close_px: int = CLOSE_PX
    min_area_fraction: float = MIN_AREA_FRACTION


def background_indices(n_frames: int, cfg: MotionConfig = MotionConfig()) -> np.ndarray:
    """The frames (indices, sorted, unique) a video of ``n_frames`` samples for its background."""
    return np.unique(np.linspace(0, max(n_frames - 1, 0), min(cfg.background_frames, max(n_frames, 1))).round().astype(np.int64))


def _grey(frame: np.ndarray, blur_px: int) -> np.ndarray:
    g = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.GaussianBlur(g, (blur_px, blur_px), 0) if blur_px > 1 else g


class MotionBoxes:
    """Boxes of the moving regions of one video's frames, against its median background.

    ``MotionBoxes(sample)``: ``sample`` is the video's frames at :func:`background_indices`
    (RGB or grey, all one size). Calling it on any frame of the video gives that frame's boxes."""

    def __init__(self, sample: Iterable[np.ndarray], cfg: MotionConfig = MotionConfig()):
        self.cfg = cfg
        frames = [_grey(f, cfg.blur_px) for f in sample]
        if not frames:
            raise ValueError("the background needs at least one frame")
        self.background = np.median(np.stack(frames), axis=0).astype(np.int16)
        kernel = lambda px: cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (px, px)) if px > 1 else None  # noqa: E731
        self.open, self.close = kernel(cfg.open_px), kernel(cfg.close_px)

    def mask(self, frame: np.ndarray) -> np.ndarray:
        """(H, W) uint8 0/255 cleaned foreground mask of ``frame``."""
        g = _grey(frame, self.cfg.blur_px)
        if g.shape != self.background.shape:
            raise ValueError(f"frame is {g.shape[1]}x{g.shape[0]} but the video's background is {self.background.shape[1]}x{self.background.shape[0]}")
        fg = (np.abs(g.astype(np.int16) - self.background) > self.cfg.threshold).astype(np.uint8) * 255
        if self.open is not None:
            fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self.open)
        if self.close is not None:
            fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self.close)
        return fg

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(n, 4) float32 boxes ``x1, y1, x2, y2`` of the frame's moving regions, ordered by
        their top edge, then left edge; n may be 0."""
        fg = self.mask(frame)
        n, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        min_area = self.cfg.min_area_fraction * fg.shape[0] * fg.shape[1]
        keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area]
        if not keep:
            return np.zeros((0, 4), dtype=np.float32)
        s = stats[keep]
        boxes = np.stack([s[:, 0], s[:, 1], s[:, 0] + s[:, 2], s[:, 1] + s[:, 3]], axis=1).astype(np.float32)
        return boxes[np.lexsort((boxes[:, 0], boxes[:, 1]))]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) intersection over union of boxes a (n, 4) and b (m, 4), ``x1, y1, x2, y2``."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_agreement(found: list[np.ndarray], reference: list[np.ndarray], threshold: float = 0.5) -> dict[str, float]:
    """Recall (reference boxes matched) and precision (found boxes matched) over frames,
    each box matched at most once, greedily by IoU, at IoU >= ``threshold``."""
    matched = n_found = n_ref = 0
    for f, r in zip(found, reference):
        f, r = np.asarray(f).reshape(-1, 4), np.asarray(r).reshape(-1, 4)
        n_found, n_ref = n_found + len(f), n_ref + len(r)
        if not len(f) or not len(r):
            continue
        iou = iou_matrix(f, r)
        while True:
            i, j = np.unravel_index(np.argmax(iou), iou.shape)
            if iou[i, j] < threshold:
                break
            matched += 1
            iou[i, :], iou[:, j] = -1, -1
    return {"recall": matched / max(n_ref, 1), "precision": matched / max(n_found, 1), "found": n_found, "reference": n_ref}
