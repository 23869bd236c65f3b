"""Appearance attribute: one 512-d vector per object box, pluggable backbone.

AI-VAD's appearance is the CLIP ViT-B/16 image embedding of each box crop (``clip``,
:mod:`.clip_vit`; needs the weights file). Without network access the weights cannot be
fetched, so the stage needs an offline default.

**Default: ``hog`` (decided before measuring anything).** Reasons: it needs no download, is
deterministic and fast (OpenCV, batched per frame), and it carries the two kinds of signal
that make appearance useful on the UCSD/Avenue-style data: shape/texture of the object (HOG,
the classic pedestrian descriptor: a bicycle, a cart or a skateboarder has a different
gradient layout than a walking person) and *geometry* (a bike or a cart is wider and
larger than a pedestrian at the same image height; its position in the frame conditions
the size through perspective). The vector is, without any projection:

- 504 HOG values (Dalal-Triggs layout, computed in numpy, batched over a frame's boxes;
  OpenCV 5 no longer ships cv2.HOGDescriptor): grey crop resized to 32x64 (w x h), central
  differences, 8x8 px cells, 6 unsigned orientation bins (30 degrees, linear vote between
  the two nearest bins), 2x2-cell blocks at 1-cell stride: 3 x 7 blocks x 4 cells x 6 bins;
  each block L2-Hys normalised (L2, clip 0.2, L2), so the HOG part has norm ~sqrt(21);
- 8 geometry/intensity values: log(1 + w), log(1 + h), log((1 + h) / (1 + w)) (box
  size in pixels), centre x / W, centre y / H, crop mean / 255, crop std / 255, and 1 for
  the whole-frame entry of a box-less frame (else 0). The log sizes make a 2x larger box
  differ by 0.69, about a typical HOG distance between two pedestrians, so neither part
  drowns the other (weight ``GEOMETRY_WEIGHT`` = 1, fixed a priori, not tuned).

Other options (ablations): ``pixels``: the crude baseline, grey crop resized to 16x32 and
scaled to [0, 1] (512 values); ``clip``: AI-VAD's feature.

Every backbone is a callable ``(frame, boxes) -> (n, 512) float32`` where ``frame`` is the
(H, W, 3) uint8 RGB frame and ``boxes`` the (n, 4) checked boxes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from ..io import InputError
from .frames import crop, crop_bounds, to_grey

APPEARANCE_DIM = 512
APPEARANCE_OPTIONS = ("hog", "pixels", "clip")
DEFAULT_APPEARANCE = "hog"

HOG_WIN = (32, 64)  # (w, h) crop size for HOG
HOG_BINS = 6  # unsigned orientation bins: 3 x 7 blocks x 4 cells x 6 = 504 values
GEOMETRY_WEIGHT = 1.0  # weight of the 8 geometry/intensity values (a priori, not tuned)
PIXELS_SIZE = (16, 32)  # (w, h) for the `pixels` baseline: 512 values


class Backbone(Protocol):
    name: str

    def __call__(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray: ...


HOG_CELL = 8  # cell side in px; blocks are 2x2 cells at a stride of one cell


def hog(patches: np.ndarray, bins: int = HOG_BINS, cell: int = HOG_CELL) -> np.ndarray:
    """Dalal-Triggs HOG of same-size grey patches.

    Args:
        patches: (n, h, w) uint8 or float grey patches, h and w multiples of ``cell``.
        bins: unsigned orientation bins over [0, 180) degrees; cell: cell side in px.

    Returns:
        (n, (h/cell - 1) * (w/cell - 1) * 4 * bins) float32; for 64x32 and 6 bins: (n, 504).
    """
    x = np.asarray(patches, dtype=np.float32)
    n, h, w = x.shape
    gx = np.zeros_like(x)
    gy = np.zeros_like(x)
    gx[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    gy[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    mag = np.sqrt(gx * gx + gy * gy)
    ang = np.rad2deg(np.arctan2(gy, gx)) % 180.0  # unsigned
    pos = ang / (180.0 / bins) - 0.5  # bin centres at (i + 0.5) * 180 / bins
    lo = np.floor(pos).astype(np.int64)
    frac = (pos - lo).astype(np.float32)
    lo_bin, hi_bin = lo % bins, (lo + 1) % bins
    ch, cw = h // cell, w // cell
    cell_idx = (np.arange(h)[:, None] // cell) * cw + (np.arange(w)[None, :] // cell)  # (h, w)
    flat = (np.arange(n)[:, None, None] * (ch * cw) + cell_idx[None]) * bins  # (n, h, w)
    size = n * ch * cw * bins
    hist = np.bincount((flat + lo_bin).ravel(), (mag * (1 - frac)).ravel(), minlength=size)
    hist += np.bincount((flat + hi_bin).ravel(), (mag * frac).ravel(), minlength=size)
    hist = hist.reshape(n, ch, cw, bins)
    blocks = np.concatenate([hist[:, :-1, :-1], hist[:, :-1, 1:], hist[:, 1:, :-1], hist[:, 1:, 1:]], axis=-1)
    blocks = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + 1e-6)
    blocks = np.minimum(blocks, 0.2)
    blocks = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + 1e-6)
    return blocks.reshape(n, -1).astype(np.float32)


def geometry_features(frame: np.ndarray, boxes: np.ndarray, whole_frame: np.ndarray | None = None) -> np.ndarray:
    """(n, 8) float32 box geometry and crop intensity, see module docstring.

    Args:
        frame: (H, W[, 3]) uint8; boxes: (n, 4) checked boxes;
        whole_frame: (n,) bool, True for a box-less frame's whole-frame entry.
    """
    h_img, w_img = frame.shape[:2]
    grey = to_grey(frame)
    b = crop_bounds(boxes).astype(np.float64)
    w = b[:, 2] - b[:, 0]
    h = b[:, 3] - b[:, 1]
    stats = np.array([cv2.meanStdDev(crop(grey, bx)) for bx in boxes], dtype=np.float64).reshape(len(boxes), 2)
    wf = np.zeros(len(boxes)) if whole_frame is None else np.asarray(whole_frame, np.float64)
    g = np.stack(
        [
            np.log1p(w),
            np.log1p(h),
            np.log1p(h) - np.log1p(w),
            (b[:, 0] + b[:, 2]) / 2 / w_img,
            (b[:, 1] + b[:, 3]) / 2 / h_img,
            stats[:, 0] / 255.0,
            stats[:, 1] / 255.0,
            wf,
        ],
        axis=1,
    )
    return g.astype(np.float32)


class HogGeometry:
    """Default offline backbone: 504 HOG + 8 geometry values = 512 (deterministic)."""

    name = "hog"

    def __call__(self, frame: np.ndarray, boxes: np.ndarray, whole_frame: np.ndarray | None = None) -> np.ndarray:
        grey = to_grey(frame)
        patches = np.stack(
            [cv2.resize(np.ascontiguousarray(crop(grey, b)), HOG_WIN, interpolation=cv2.INTER_AREA) for b in boxes]
        )
        h = hog(patches)
        geo = GEOMETRY_WEIGHT * geometry_features(frame, boxes, whole_frame)
        return np.concatenate([h, geo], axis=1).astype(np.float32)


class Pixels:
    """Crude baseline: grey crop resized to 16x32, values in [0, 1] (512 values)."""

    name = "pixels"

    def __call__(self, frame: np.ndarray, boxes: np.ndarray, whole_frame: np.ndarray | None = None) -> np.ndarray:
        grey = to_grey(frame)
        out = np.stack(
            [
                cv2.resize(np.ascontiguousarray(crop(grey, b)), PIXELS_SIZE, interpolation=cv2.INTER_AREA).ravel()
                for b in boxes
            ]
        )
        return (out.astype(np.float32) / 255.0).reshape(len(boxes), APPEARANCE_DIM)


class Clip:
    """AI-VAD's appearance: raw CLIP image embedding of each crop (see :mod:`.clip_vit`)."""

    name = "clip"

    def __init__(
        self,
        weights: Path | str | dict,
        quick_gelu: bool = True,
        interpolation: str = "bilinear",
        bgr: bool = False,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        import torch  # noqa: F401  (heavy import only when CLIP is used)

        from .clip_vit import load_clip_vision

        self.model = load_clip_vision(weights, quick_gelu=quick_gelu).to(device)
        if self.model.output_dim != APPEARANCE_DIM:
            raise InputError(
                f"CLIP weights give {self.model.output_dim}-d embeddings, expected {APPEARANCE_DIM} (ViT-B/16)"
            )
        self.interpolation, self.bgr, self.batch_size = interpolation, bgr, batch_size

    def __call__(self, frame: np.ndarray, boxes: np.ndarray, whole_frame: np.ndarray | None = None) -> np.ndarray:
        from .clip_vit import encode, preprocess_crops

        x = preprocess_crops(frame, boxes, self.model.input_resolution, self.interpolation, self.bgr)
        return encode(self.model, x, self.batch_size)


def make_backbone(name: str, clip_weights: Path | str | None = None, **clip_kwargs) -> Callable[..., np.ndarray]:
    """Backbone by name (:data:`APPEARANCE_OPTIONS`). ``clip`` requires ``clip_weights``."""
    if name == "hog":
        return HogGeometry()
    if name == "pixels":
        return Pixels()
    if name == "clip":
        if clip_weights is None:
            raise InputError(
                "--appearance clip needs --clip-weights PATH: an OpenAI CLIP ViT-B/16 file (ViT-B-16.pt, "
                "TorchScript or state dict) or an open_clip ViT-B-16 state dict; nothing is downloaded"
            )
        return Clip(clip_weights, **clip_kwargs)
    raise InputError(f"unknown appearance backbone {name!r}; choose from {APPEARANCE_OPTIONS}")
