"""Frames and boxes for stage 0: listing and reading frames, checking and repairing boxes,
crop geometry.

Conventions (AI-VAD's ``video_dataset.py``):

- videos are the sub-folders of ``DIR/NAME/{training,testing}/frames/`` in sorted order, the
  frames of a video its ``*.jpg`` files in sorted order; or, when there is no ``frames/``
  folder, the video files of ``DIR/NAME/{training,testing}/videos/`` (``.avi``, ``.mp4``,
  ...) in sorted name order, decoded as a stream (the layout of Avenue and ShanghaiTech);
  every per-frame array concatenates the videos in that order;
- a box is ``x1, y1, x2, y2`` in pixels (floats); the crop of a box is
  ``img[ceil(y1):ceil(y2), ceil(x1):ceil(x2)]`` (AI-VAD's ``get_foreground``);
- a frame without boxes gets one whole-frame entry ``[0, 0, W, H]``, so every frame has
  ``n_i >= 1`` objects;
- a colour-coded frame whose channels barely differ (a grey camera's footage stored as
  colour) is read as grey (:func:`rgb_from_bgr`).

Repairs, documented and counted (never a silent change of object order or count):

- a box that reaches outside the frame is clipped to ``[0, W] x [0, H]``;
- a box whose integer crop is empty after clipping (zero width or height, e.g. a degenerate
  detection or one lying fully outside the frame) is grown around its clipped centre to a
  1 px wide / high crop inside the frame, so that every object keeps a row; the caller warns
  once with the count;
- a box with NaN/inf coordinates, or with x2 < x1 / y2 < y1 by more than rounding, is an
  error (it is not a detection we can repair honestly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..io import InputError, load_object_npy

SPLIT_FOLDERS = {"train": "training", "test": "testing"}
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
VIDEO_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv")
# A colour frame is grey content when GREY_PIXEL_SHARE of its pixels have channels within GREY_SPREAD
# grey levels of each other. A grey video stored as colour (Ped2 written as MJPG .avi)
# comes back with a faint uniform tint (a spread of 2), and that tint alone made the pose
# model find a third fewer persons in the same boxes (81 against 122 on Ped2 test video
# 01, every 10th frame; 120 once read as grey).
GREY_SPREAD = 6
GREY_PIXEL_SHARE = 0.99


@dataclass
class Video:
    """One video: its name and either its sorted frame files or its video file."""

    name: str
    frames: list[Path] | None = None
    path: Path | None = None

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else f"video {self.name}"


def list_split_videos(split_dir: Path | str) -> list[Video]:
    """The videos of one split folder (``DIR/NAME/training``): its ``frames/`` sub-folders,
    or else the files of its ``videos/`` folder. Raises :class:`InputError` naming both
    places when neither holds a video."""
    split_dir = Path(split_dir)
    if (split_dir / "frames").is_dir():
        return list_videos(split_dir / "frames")
    files = (
        sorted(f for f in (split_dir / "videos").glob("*") if f.suffix.lower() in VIDEO_EXTENSIONS)
        if (split_dir / "videos").is_dir()
        else []
    )
    if not files:
        raise InputError(
            f"no videos in {split_dir}: expected frames/NN/*.jpg (one folder per video) or videos/*.avi|*.mp4"
        )
    return [Video(f.stem, path=f) for f in files]


def iter_frames(video: Video) -> Iterator[np.ndarray]:
    """The frames of ``video`` in order, (H, W, 3) uint8 RGB, one at a time: a video file is
    decoded as a stream, so memory does not grow with its length. Raises
    :class:`InputError` naming the file when it cannot be opened or holds no frame."""
    if video.frames is not None:
        for f in video.frames:
            yield read_frame(f, video.name)
        return
    cap = cv2.VideoCapture(str(video.path))
    if not cap.isOpened():
        raise InputError(f"{video.path}: OpenCV cannot open this video")
    n = 0
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            n += 1
            yield rgb_from_bgr(bgr)
    finally:
        cap.release()
    if n == 0:
        raise InputError(f"{video.path}: no frame could be decoded (an empty or unreadable video)")


def count_frames(video: Video) -> int:
    """Frames of ``video``: its frame files, or a video file's frames counted by decoding
    (container headers are not trusted)."""
    if video.frames is not None:
        return len(video.frames)
    cap = cv2.VideoCapture(str(video.path))
    if not cap.isOpened():
        raise InputError(f"{video.path}: OpenCV cannot open this video")
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    if n == 0:
        raise InputError(f"{video.path}: no frame could be decoded (an empty or unreadable video)")
    return n


def even_sample(frames: Iterator[np.ndarray], at_most: int) -> tuple[list[np.ndarray], int]:
    """Frames spread evenly over a stream of unknown length, in one pass and bounded memory:
    every ``stride``-th frame is kept, and the stride doubles (dropping every other kept
    frame) whenever more than ``at_most`` are held. Returns (the kept frames, between
    ``at_most / 2`` and ``at_most`` of them when the stream is longer; the frame count)."""
    kept: list[np.ndarray] = []
    stride, n = 1, 0
    for n, f in enumerate(frames, start=1):
        if (n - 1) % stride == 0:
            kept.append(f)
            if len(kept) > at_most:
                kept, stride = kept[::2], stride * 2
    return kept, n


def list_videos(frames_dir: Path | str) -> list[Video]:
    """Sorted videos of ``frames_dir`` (one sub-folder each) with their sorted frame files.

    Raises :class:`InputError` if the folder is missing, holds no video folder, or a video
    folder holds no frame. ``*.jpg`` is preferred (AI-VAD globs ``*.jpg``); other image
    extensions are used only for a folder without any ``.jpg``.
    """
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise InputError(f"missing frames folder {frames_dir} (expected one sub-folder of frames per video)")
    videos = []
    for sub in sorted(p for p in frames_dir.iterdir() if p.is_dir()):
        files = sorted(sub.glob("*.jpg"))
        if not files:
            files = sorted(f for f in sub.iterdir() if f.suffix.lower() in FRAME_EXTENSIONS)
        if not files:
            raise InputError(f"video {sub.name}: no frame images in {sub}")
        videos.append(Video(sub.name, files))
    if not videos:
        raise InputError(f"{frames_dir}: no video folders")
    return videos


def read_frame(path: Path | str, video: str = "?", color: bool = True) -> np.ndarray:
    """Read one frame: (H, W, 3) uint8 **RGB** if ``color`` else (H, W) uint8 grey.

    Raises :class:`InputError` naming the video and the file if it cannot be decoded.
    """
    img = cv2.imread(str(path), cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE)
    if img is None or img.size == 0:
        raise InputError(f"video {video}: cannot read frame image {path}")
    return rgb_from_bgr(img) if color else img


def rgb_from_bgr(bgr: np.ndarray) -> np.ndarray:
    """(H, W, 3) BGR or (H, W) grey uint8 -> (H, W, 3) uint8 RGB; grey content (see
    GREY_SPREAD) comes back as its luma in all three channels, without the codec's tint."""
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    b, g, r = (bgr[::4, ::4, c] for c in range(3))  # a 1/16 sample tells colour from a tint
    spread = np.maximum(np.maximum(b, g), r) - np.minimum(np.minimum(b, g), r)  # 20x faster than max(axis=2)
    if np.count_nonzero(spread > GREY_SPREAD) <= (1 - GREY_PIXEL_SHARE) * spread.size:
        return cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_grey(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB or (H, W) -> (H, W) uint8 grey."""
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def whole_frame_box(width: int, height: int) -> np.ndarray:
    """(1, 4) float32 ``[0, 0, W, H]``: the entry of a frame without boxes."""
    return np.array([[0.0, 0.0, float(width), float(height)]], dtype=np.float32)


@dataclass
class BoxRepairs:
    """Counts of repaired boxes, summed over frames (for one warning per split)."""

    clipped: int = 0
    grown: int = 0

    def add(self, other: "BoxRepairs") -> None:
        self.clipped += other.clipped
        self.grown += other.grown


def check_boxes(boxes: np.ndarray, width: int, height: int, where: str = "") -> tuple[np.ndarray, BoxRepairs]:
    """Validate and repair the boxes of one frame.

    Args:
        boxes: (n, 4) x1, y1, x2, y2 in pixels; n may be 0 (an empty or (0,) array is fine).
        width, height: frame size W, H.
        where: text naming the frame, for error messages.

    Returns:
        (max(n, 1), 4) float32 boxes: clipped to the frame, each with a non-empty integer
        crop; ``[[0, 0, W, H]]`` if n == 0. Row i is box i of the input: order and count
        are kept.
    """
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return whole_frame_box(width, height), BoxRepairs()
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"{where}: boxes must be (n, 4) x1, y1, x2, y2, got shape {b.shape}")
    if not np.isfinite(b).all():
        raise InputError(f"{where}: NaN or inf in box coordinates")
    if np.any(b[:, 2] < b[:, 0] - 1e-3) or np.any(b[:, 3] < b[:, 1] - 1e-3):
        i = int(np.argmax((b[:, 2] < b[:, 0] - 1e-3) | (b[:, 3] < b[:, 1] - 1e-3)))
        raise InputError(f"{where}: box {i} {b[i].tolist()} has x2 < x1 or y2 < y1")
    rep = BoxRepairs()
    lo = np.zeros(4)
    hi = np.array([width, height, width, height], dtype=np.float64)
    clipped = np.clip(b, lo, hi)
    rep.clipped = int(np.any(np.abs(clipped - b) > 1e-6, axis=1).sum())
    b = clipped
    # Integer crop extent (AI-VAD: ceil of both corners); grow empty crops to 1 px.
    for axis, size in ((0, width), (1, height)):
        a0 = np.ceil(b[:, axis])
        a1 = np.ceil(b[:, axis + 2])
        empty = a1 <= a0
        if empty.any():
            rep.grown += int(empty.sum())  # may count a box twice if both axes are empty
            c = np.clip(np.floor((b[empty, axis] + b[empty, axis + 2]) / 2), 0, size - 1)
            b[empty, axis] = c
            b[empty, axis + 2] = c + 1
    return b.astype(np.float32), rep


def crop_slices(box: np.ndarray) -> tuple[slice, slice]:
    """Integer crop of one (already checked) box, AI-VAD style:
    rows ``ceil(y1):ceil(y2)``, columns ``ceil(x1):ceil(x2)``."""
    x1, y1, x2, y2 = (int(math.ceil(float(v))) for v in box)
    return slice(y1, y2), slice(x1, x2)


def crop_bounds(boxes: np.ndarray) -> np.ndarray:
    """(n, 4) int64 ``x0, y0, x1, y1`` half-open integer crop bounds of checked boxes."""
    return np.ceil(np.asarray(boxes, dtype=np.float64)).astype(np.int64)


def crop(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Crop one checked box from ``img`` (H, W[, C]); the result is never empty."""
    ys, xs = crop_slices(box)
    out = img[ys, xs]
    if out.size == 0:
        raise InputError(f"box {np.asarray(box).tolist()} gives an empty crop of a {img.shape[1]}x{img.shape[0]} frame")
    return out


def load_boxes(path: Path | str) -> np.ndarray:
    """Load an AI-VAD boxes file: object array with one (n_i, 4) array per frame."""
    arr = load_object_npy(path, f"missing boxes file {path} (object array, one (n_i, 4) x1,y1,x2,y2 array per frame)")
    if arr.dtype != object:
        if arr.ndim == 3 and arr.shape[-1] == 4:
            arr = np.array(list(arr) + [None], dtype=object)[:-1]
        else:
            raise InputError(f"{path}: expected an object array of per-frame (n_i, 4) boxes, got shape {arr.shape}")
    return arr


def split_boxes_by_video(boxes: np.ndarray, videos: list[Video], path: Path | str) -> list[np.ndarray]:
    """Cut the per-frame box array into one slice per video, checking frame counts.

    Raises :class:`InputError` naming the first video whose frames run past the boxes,
    or the total mismatch.
    """
    counts = [count_frames(v) for v in videos]
    total = sum(counts)
    out = []
    start = 0
    for v, n in zip(videos, counts):
        if start + n > len(boxes):
            raise InputError(
                f"{path}: {len(boxes)} frames of boxes but the videos have {total} frames; "
                f"video {v.name} ({n} frames) starts at frame {start} and runs past the boxes"
            )
        out.append(boxes[start : start + n])
        start += n
    if start != len(boxes):
        raise InputError(
            f"{path}: {len(boxes)} frames of boxes but the videos have {total} frames "
            f"(last video {videos[-1].name} has {counts[-1]} frames)"
        )
    return out
