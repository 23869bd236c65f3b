"""Annotated test videos: each frame with its object boxes coloured by their anomaly
evidence, the frame's score as a bar, and the ground truth marked when there are labels.

Colours: an object's score (:func:`memfuse.scoring.object_scores`, in train standard
deviations) from green (0 or below) through yellow to red (:data:`RED_AT` or above); a
method without per-object evidence draws every box white. The bar along the bottom is the
frame's final (smoothed) score, scaled so the test split's lowest score is empty and its
highest full. A red frame border marks a frame labelled anomalous.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .extract.frames import Video, check_boxes, iter_frames

RED_AT = 3.0  # object score (train standard deviations) drawn fully red
BAR_PX = 6  # height of the frame-score bar
FPS = 10.0


def colour(score: float) -> tuple[int, int, int]:
    """BGR colour of an object score: green at <= 0, yellow halfway, red at >= RED_AT;
    white when there is no score (NaN)."""
    if not np.isfinite(score):
        return (255, 255, 255)
    t = float(np.clip(score / RED_AT, 0.0, 1.0))
    return (0, int(255 * min(1.0, 2 * (1 - t))), int(255 * min(1.0, 2 * t)))


def draw(
    frame_rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray | None, level: float, anomalous: bool | None
) -> np.ndarray:
    """One annotated frame (H, W, 3) uint8 BGR. ``boxes`` (n, 4), ``scores`` (n,) or None,
    ``level`` in [0, 1] the frame score's bar, ``anomalous`` the label (None: no labels)."""
    img = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR)
    h, w = img.shape[:2]
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        c = colour(float(scores[i])) if scores is not None and i < len(scores) else (255, 255, 255)
        cv2.rectangle(img, (int(x1), int(y1)), (int(np.ceil(x2)) - 1, int(np.ceil(y2)) - 1), c, 1)
    cv2.rectangle(img, (0, h - BAR_PX), (w - 1, h - 1), (40, 40, 40), -1)
    cv2.rectangle(img, (0, h - BAR_PX), (int(round(level * (w - 1))), h - 1), colour(level * RED_AT), -1)
    if anomalous:
        cv2.rectangle(img, (0, 0), (w - 1, h - 1), (0, 0, 255), 2)
    return img


def boxes_to_draw(raw: np.ndarray, width: int, height: int) -> np.ndarray:
    """A frame's boxes as the features describe them (checked, in order), or none for a
    frame without detections, whose single whole-frame entry is not an object to draw."""
    checked, _ = check_boxes(raw, width, height)
    return checked if np.asarray(raw).size else checked[:0]


def _writer(path: Path, size: tuple[int, int]) -> tuple[cv2.VideoWriter, Path]:
    """An mp4 writer, or an MJPG .avi where this OpenCV build cannot write mp4."""
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    if out.isOpened():
        return out, path
    path = path.with_suffix(".avi")
    return cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, size), path


def write_annotated_videos(
    videos: list[Video],
    boxes: np.ndarray,
    frame_scores: np.ndarray,
    object_scores: np.ndarray | None,
    labels: np.ndarray | None,
    out_dir: Path | str,
) -> list[Path]:
    """One annotated video per test video, ``out_dir/NN.mp4`` (or ``.avi``). Each is written
    under a temporary name and renamed when complete, so no half-written video is left.
    ``boxes``: the test split's per-frame boxes (object array, AI-VAD's file);
    ``frame_scores`` (F,); ``object_scores`` (F, N) or None; ``labels`` (F,) or None."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lo, hi = float(np.nanmin(frame_scores)), float(np.nanmax(frame_scores))
    span = hi - lo if hi > lo else 1.0
    paths, f = [], 0
    for v, video in enumerate(videos):
        writer, partial = None, None
        try:
            for rgb in iter_frames(video):
                if f >= len(frame_scores):
                    raise ValueError(f"{video.where}: more test frames than scores ({len(frame_scores)})")
                h, w = rgb.shape[:2]
                if writer is None:
                    writer, partial = _writer(out_dir / f".{v + 1:02d}.partial.mp4", (w, h))
                shown = boxes_to_draw(boxes[f], w, h)
                row = None if object_scores is None else object_scores[f, : len(shown)]
                writer.write(
                    draw(rgb, shown, row, (frame_scores[f] - lo) / span, None if labels is None else bool(labels[f]))
                )
                f += 1
            writer.release()
            final = out_dir / f"{v + 1:02d}{partial.suffix}"
            partial.replace(final)
            paths.append(final)
        except BaseException:
            if writer is not None:
                writer.release()
                partial.unlink(missing_ok=True)
            raise
    return paths
