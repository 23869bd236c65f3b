"""Object boxes from motion, for videos that come without detections (stage 0).

A fixed surveillance camera sees a still background; what moves is what AI-VAD's object
detector would mostly have boxed. Each video gets its own background: the per-pixel median
of up to :data:`BACKGROUND_FRAMES` frames sampled evenly over the video (people who walk
through leave it; a first pass over the video reads only those frames, so memory does not
grow with the video's length). A frame's foreground is where its blurred grey level differs
from the background's by more than :data:`THRESHOLD`, cleaned by a morphological opening and
closing; each connected component of at least :data:`MIN_AREA_FRACTION` of the frame becomes
one box ``x1, y1, x2, y2`` in pixels. Needs no weights and no download.

People walking close together merge into one connected component. Each video learns
the size of one person from its own sample frames: the median width, height and pixel area
of the components shaped like one upright person (height over width in
:data:`SINGLE_ASPECT`; with fewer than :data:`MIN_SINGLES` of them nothing is split). A component
larger than one person by :data:`SPLIT_MARGIN` in width or height is split into
``round(area / person area)`` parts (at most :data:`MAX_PARTS`) by k-means on its pixels'
coordinates, heights squeezed by :data:`SPLIT_Y_SCALE` so that the parts fall side by side
like people rather than stacked like heads over feet; each part becomes a box.

A frame with nothing moving gets no box; stage 0 then gives it one whole-frame entry, as
AI-VAD does for a frame without detections. Someone standing still for the whole video is
part of its background and is not boxed.

OpenCV's adaptive MOG2 background subtraction was measured first and dropped: on Ped2 train
(crowded from the first frame, people walking slowly) it absorbed the walkers into its
background and found 7 % of AI-VAD's boxes at IoU 0.5, against 42 % for the median. The
defaults were chosen on Ped2 train by agreement with AI-VAD's boxes
(``python bench/motion_boxes.py --grid``); the test split was not looked at. Splitting
merged walkers (with the vertical closing kernel) raised recall at IoU 0.5 from 0.42 to
0.65 and precision from 0.61 to 0.74; dropping the blur and the opening, which grow and
round every region, raised them to 0.75 and 0.80 (train videos 01, 03, ... chose the
settings, videos 02, 04, ... confirmed them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np

BACKGROUND_FRAMES = 50  # frames sampled evenly over a video for its median background
BLUR_PX = 1  # Gaussian blur (px) of grey frames and background before the difference; 1 = none (blur
#              grows every region, and tight boxes agree better with a detector's)
THRESHOLD = 20  # grey-level difference from the background that is foreground
OPEN_PX = 1  # opening kernel (px) against speckle noise; 1 = none (regions under MIN_AREA_FRACTION are dropped anyway)
CLOSE_W, CLOSE_H = 1, 9  # closing kernel (px): a vertical line, joins a person's head, body and
#                         legs (which background-grey clothes break apart) without joining neighbours
MIN_AREA_FRACTION = 7e-4  # smallest component kept, as a fraction of the frame area (Ped2: 60 px)
SINGLE_ASPECT = (1.5, 3.5)  # height / width of a component taken as one upright person
MIN_SINGLES = 10  # fewer such components in the sample: person size unknown, nothing is split
SPLIT_MARGIN = 1.4  # a component wider or taller than this many persons' width / height is split
SPLIT_Y_SCALE = 0.5  # k-means distance counts heights at this weight: parts come out side by side
MAX_PARTS = 8  # most persons one component is split into
# Streaming (MotionBoxes.adapt): the background steps one grey level towards the frame every
# ADAPT_EVERY frames. At 25 frames/s a pixel whose scene changed by 40 grey levels (a parked
# object) is taken in within about 40 s, while a walker covering it for 2 s moves it by 1.
ADAPT_EVERY = 25


@dataclass(frozen=True)
class MotionConfig:
    background_frames: int = BACKGROUND_FRAMES
    blur_px: int = BLUR_PX
    threshold: float = THRESHOLD
    open_px: int = OPEN_PX
    close_w: int = CLOSE_W
    close_h: int = CLOSE_H
    min_area_fraction: float = MIN_AREA_FRACTION
    split: bool = True
    single_aspect: tuple[float, float] = SINGLE_ASPECT
    split_margin: float = SPLIT_MARGIN
    split_y_scale: float = SPLIT_Y_SCALE


def background_indices(n_frames: int, cfg: MotionConfig = MotionConfig()) -> np.ndarray:
    """The frames (indices, sorted, unique) a video of ``n_frames`` samples for its background."""
    return np.unique(
        np.linspace(0, max(n_frames - 1, 0), min(cfg.background_frames, max(n_frames, 1))).round().astype(np.int64)
    )


def _grey(frame: np.ndarray, blur_px: int) -> np.ndarray:
    g = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.GaussianBlur(g, (blur_px, blur_px), 0) if blur_px > 1 else g


class MotionBoxes:
    """Boxes of the moving regions of one video's frames, against its median background.

    ``MotionBoxes(sample)``: ``sample`` is the video's frames at :func:`background_indices`
    (RGB or grey, all one size). Calling it on any frame of the video gives that frame's boxes."""

    def __init__(self, sample: Iterable[np.ndarray], cfg: MotionConfig = MotionConfig()):
        frames = [_grey(f, cfg.blur_px) for f in sample]
        if not frames:
            raise ValueError("the background needs at least one frame")
        self._setup(np.median(np.stack(frames), axis=0).astype(np.int16), cfg)
        self.person = person_size([self._components(g)[1] for g in frames], cfg) if cfg.split else None

    def _setup(self, background: np.ndarray, cfg: MotionConfig) -> None:
        self.cfg = cfg
        self.background = background
        self.adapt_every = 0  # frames between background updates; 0: a fixed background (see adapt)
        self._seen = 0
        self.open = (
            cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (cfg.open_px, cfg.open_px)) if cfg.open_px > 1 else None
        )
        self.close = (
            cv2.getStructuringElement(cv2.MORPH_RECT, (cfg.close_w, cfg.close_h))
            if max(cfg.close_w, cfg.close_h) > 1
            else None
        )

    @classmethod
    def from_state(
        cls, background: np.ndarray, person: tuple[float, float, float] | None, cfg: MotionConfig = MotionConfig()
    ) -> "MotionBoxes":
        """A detector with a known background (H, W) grey and person size (:meth:`state`)."""
        self = cls.__new__(cls)
        self._setup(np.asarray(background, dtype=np.int16).copy(), cfg)
        self.person = None if person is None else tuple(float(v) for v in person)
        return self

    def state(self) -> tuple[np.ndarray, tuple[float, float, float] | None]:
        """(background (H, W) uint8, person size or None): what :meth:`from_state` takes."""
        return np.clip(self.background, 0, 255).astype(np.uint8), self.person

    def adapt(self, every: int = ADAPT_EVERY) -> "MotionBoxes":
        """Keep the background current while streaming: every ``every`` frames, each pixel
        of it moves one grey level towards the frame's (a running approximate median,
        McFarlane and Schofield 1995). It follows light that changes over minutes and
        takes in what stopped moving long ago, while a person walking through, who covers
        a pixel for a few seconds, moves it by a few grey levels at most. Returns self."""
        self.adapt_every = int(every)
        return self

    def _foreground(self, g: np.ndarray) -> np.ndarray:
        fg = (np.abs(g.astype(np.int16) - self.background) > self.cfg.threshold).astype(np.uint8) * 255
        if self.open is not None:
            fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, self.open)
        if self.close is not None:
            fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, self.close)
        return fg

    def _components(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels (H, W) of the grey frame's foreground, and (n, 6) rows ``x, y, width, height,
        area, label`` (OpenCV's stats and the label) of its components large enough to keep;
        n may be 0."""
        _, labels, stats, _ = cv2.connectedComponentsWithStats(self._foreground(g), connectivity=8)
        min_area = self.cfg.min_area_fraction * g.shape[0] * g.shape[1]
        keep = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= min_area)
        keep = keep[keep > 0]  # label 0 is the background
        return labels, np.concatenate([stats[keep], keep[:, None]], axis=1)

    def _grey_of(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` as the background is made (grey, blurred with ``cfg.blur_px``), after
        checking it is the video's size."""
        g = _grey(frame, self.cfg.blur_px)
        if g.shape != self.background.shape:
            raise ValueError(
                f"frame is {g.shape[1]}x{g.shape[0]} but the video's background is "
                f"{self.background.shape[1]}x{self.background.shape[0]}"
            )
        return g

    def mask(self, frame: np.ndarray) -> np.ndarray:
        """(H, W) uint8 0/255 cleaned foreground mask of ``frame``."""
        return self._foreground(self._grey_of(frame))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """(n, 4) float32 boxes ``x1, y1, x2, y2`` of the frame's moving regions (a region
        of several persons split, see the module's doc), ordered by their top edge, then
        left edge; n may be 0."""
        g = self._grey_of(frame)
        labels, comps = self._components(g)
        if self.adapt_every > 0:
            self._seen += 1
            if self._seen % self.adapt_every == 0:
                self.background += np.sign(g.astype(np.int16) - self.background).astype(np.int16)
        boxes = []
        for x, y, w, h, area, label in comps:
            parts = 1 if self.person is None else n_persons(w, h, area, self.person, self.cfg)
            if parts == 1:
                boxes.append([x, y, x + w, y + h])
                continue
            ys, xs = np.nonzero(labels[y : y + h, x : x + w] == label)
            boxes.extend(split_component(xs + x, ys + y, parts, self.cfg.split_y_scale))
        if not boxes:
            return np.zeros((0, 4), dtype=np.float32)
        boxes = np.asarray(boxes, dtype=np.float32)
        return boxes[np.lexsort((boxes[:, 0], boxes[:, 1]))]


def person_size(stats: list[np.ndarray], cfg: MotionConfig = MotionConfig()) -> tuple[float, float, float] | None:
    """Median (width, height, area) in pixels of the components shaped like one upright
    person (height / width within ``cfg.single_aspect``) over ``stats``, a list of (n, >=5)
    OpenCV component stats; None with fewer than :data:`MIN_SINGLES` such components."""
    s = np.concatenate([np.asarray(x)[:, :5] for x in stats]) if stats else np.zeros((0, 5))
    aspect = s[:, 3] / np.maximum(s[:, 2], 1)
    single = s[(aspect >= cfg.single_aspect[0]) & (aspect <= cfg.single_aspect[1])]
    if len(single) < MIN_SINGLES:
        return None
    return float(np.median(single[:, 2])), float(np.median(single[:, 3])), float(np.median(single[:, 4]))


def n_persons(
    width: float, height: float, area: float, person: tuple[float, float, float], cfg: MotionConfig = MotionConfig()
) -> int:
    """How many persons a component of this size holds: 1 unless it is wider or taller than
    ``cfg.split_margin`` persons, else its area in person areas, rounded, 1 to :data:`MAX_PARTS`."""
    pw, ph, pa = person
    if width <= cfg.split_margin * pw and height <= cfg.split_margin * ph:
        return 1
    return int(min(max(round(area / pa), 1), MAX_PARTS))


def split_component(
    xs: np.ndarray, ys: np.ndarray, k: int, y_scale: float = SPLIT_Y_SCALE, iters: int = 10
) -> list[list[int]]:
    """Boxes ``[x1, y1, x2, y2]`` of ``k`` parts of one component, whose pixels are at
    (``xs``, ``ys``) (each (p,)): k-means on (x, y * ``y_scale``), started from ``k``
    equal-count slices of the pixels sorted by x, so the result is deterministic. Parts
    left empty give no box."""
    xs, ys = np.asarray(xs), np.asarray(ys)
    k = int(min(k, len(xs)))
    start = np.empty(len(xs), np.int32)
    for part, chunk in enumerate(np.array_split(np.argsort(xs, kind="stable"), k)):
        start[chunk] = part
    pts = np.stack([xs, ys * y_scale], axis=1).astype(np.float32)
    # OpenCV's k-means from the given start (no random restarts): fast and deterministic
    _, assign, _ = cv2.kmeans(
        pts,
        k,
        start.reshape(-1, 1),
        (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, iters, 0.01),
        1,
        cv2.KMEANS_USE_INITIAL_LABELS,
    )
    assign = assign.ravel()
    boxes = []
    for c in range(k):
        m = assign == c
        if m.any():
            boxes.append([int(xs[m].min()), int(ys[m].min()), int(xs[m].max()) + 1, int(ys[m].max()) + 1])
    return boxes


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
    return {
        "recall": matched / max(n_ref, 1),
        "precision": matched / max(n_found, 1),
        "found": n_found,
        "reference": n_ref,
    }
