"""Velocity attribute (AI-VAD): binned mean optical-flow magnitude inside each object box.

AI-VAD (``feature_extraction.py``) computes, per object box, on the flow from frame t-1
to frame t (the first frame of a video uses itself as t-1, i.e. zero flow):

- ``mag = |dx| + |dy|`` (L1 magnitude) and ``ang`` = flow orientation in degrees [0, 360)
  (``cv2.cartToPolar``);
- for bin i of B equal sectors ``[360 i / B, 360 (i + 1) / B)``: the sum of ``mag`` over the
  pixels whose orientation falls in that sector, divided by the number of pixels in the box
  (their ``uniform_filter`` with the crop's full size, read at the crop centre, is exactly
  that mean). So the B values sum to the mean L1 magnitude; with B = 1 it *is* the mean.

AI-VAD first resizes the flow crop to 224x224 (bilinear) and averages there; here the mean
is taken over the box's own pixels with one integral image per bin (O(1) per box), which
differs from the resized mean only by interpolation rounding. The crop is AI-VAD's
``[ceil(y1):ceil(y2), ceil(x1):ceil(x2)]``.

Flow: AI-VAD uses FlowNet2 (weights, GPU). Here classic OpenCV flow that needs no weights:
DIS (presets or tuned parameters) or Farneback, optionally on frames upsampled by
``scale`` (Ped2 is 360x240 and people are ~10x30 px, so upsampling helps the coarse-to-fine
estimators resolve them) and optionally Gaussian-blurred first (JPEG noise). The flow is
returned in native-resolution pixels per frame (values divided by ``scale``). The choice of
default is made by agreement with AI-VAD's FlowNet2 velocity on Ped2 train
(``bench/velocity_agreement.py``), never by a test score.

Which frame's pixels the flow lives on (:data:`FLOW_FRAMES`): the flow from t-1 to t is
defined on frame t-1's pixels (OpenCV's and FlowNet2's convention), where each object
*was*, while the boxes are frame t's, where it *is*: a box drawn tight around an object
that moved d px since t-1 averages the flow over a strip of background d px wide and
misses the object's trailing strip. The default, ``current``, takes the flow from t back
to t-1, defined on frame t's pixels, and negates it so that it points along the motion (the
orientation bins keep AI-VAD's meaning); ``previous`` is AI-VAD's literal t-1 -> t. Both
cost one flow a frame. On Ped2 train (AI-VAD's boxes) ``current`` agrees a little better
with AI-VAD's own FlowNet2 velocity (docs/results.md, "Velocity on the boxes' frame").

Over how many frames (``FlowConfig.span``): the flow of frame t reaches back to frame
t - span and is divided by span, a velocity in pixels per frame averaged over the last span
frames (a video's first frames reach back to its first frame). A flow's error is about the
same whatever the displacement it measures, so a longer span divides it by more: a slow
object far from the camera moves a pixel or two a frame, close to that error. Still one flow
a frame (AI-VAD's is span 1; measured in docs/results.md, "Velocity over two frames").
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .frames import crop_bounds

# Named flow settings; FlowConfig(method=..., ...) can be built directly as well.
DIS_PRESETS = {
    "dis_ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "dis_fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "dis_medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
# Tuned DIS settings, all from the medium preset at full resolution (finest scale 0):
# (patch size, patch stride, gradient-descent iterations, variational iterations), chosen by
# agreement with AI-VAD's FlowNet2 velocity on Ped2 train (docs/results.md, "Measurements
# behind constants in the code"): fine agrees best, balanced as well in half its time.
DIS_TUNED = {
    "dis_fine": (6, 3, 50, 10),
    "dis_balanced": (6, 4, 16, 5),
}
FLOW_METHODS = ("dis_ultrafast", "dis_fast", "dis_medium", "dis_balanced", "dis_fine", "farneback")
# the frame whose pixels a frame's flow is defined on (the module's doc): this one, where its
# boxes are drawn (flow t -> t-1, negated), or the previous one (AI-VAD's flow t-1 -> t)
FLOW_FRAMES = ("current", "previous")


@dataclass(frozen=True)
class FlowConfig:
    """Optical-flow setting.

    method: one of :data:`FLOW_METHODS`. ``dis_fine`` and ``dis_balanced`` are the DIS
        medium preset at full resolution with a 6 px patch (:data:`DIS_TUNED`).
    scale: upsampling factor applied to both frames before the flow (1 = native).
    blur: Gaussian sigma (native pixels) applied to both frames first; 0 = none.
    frame: the frame whose pixels the flow of frame t is defined on (:data:`FLOW_FRAMES`):
        ``current`` (t, where the boxes are) or ``previous`` (t-span, AI-VAD's).
    span: frames the flow reaches back over (>= 1): frame t's from t - span, divided by
        span (the module's doc); AI-VAD's is 1.
    """

    method: str = "dis_medium"
    scale: float = 1.0
    blur: float = 0.0
    frame: str = "current"
    span: int = 1

    def __post_init__(self) -> None:
        if self.frame not in FLOW_FRAMES:
            raise ValueError(f"unknown flow frame {self.frame!r}; choose from {FLOW_FRAMES}")
        if int(self.span) != self.span or self.span < 1:
            raise ValueError(f"flow span must be a whole number of frames >= 1, got {self.span!r}")
        object.__setattr__(self, "span", int(self.span))  # 2.0 from a config file: a frame count

    def label(self) -> str:
        s = f"{self.method} x{self.scale:g}"
        s += f" blur{self.blur:g}" if self.blur else ""
        s += f" span{self.span}" if self.span != 1 else ""
        return s + (" on previous" if self.frame == "previous" else "")

    @classmethod
    def from_settings(cls, flow: dict) -> "FlowConfig":
        """The flow of stage 0's recorded settings (extract_meta.json's ``settings["flow"]``:
        method, scale, blur, frame, span). Features recorded before ``frame`` and ``span``
        were settings were made on the previous frame's pixels, over one frame."""
        return cls(
            flow["method"],
            float(flow["scale"]),
            float(flow["blur"]),
            flow.get("frame", "previous"),
            int(flow.get("span", 1)),
        )


@lru_cache(maxsize=8)
def _dis(method: str):
    if method in DIS_PRESETS:
        return cv2.DISOpticalFlow_create(DIS_PRESETS[method])
    if method in DIS_TUNED:
        patch, stride, descent, variational = DIS_TUNED[method]
        d = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        d.setPatchSize(patch)
        d.setPatchStride(stride)
        d.setGradientDescentIterations(descent)
        d.setVariationalRefinementIterations(variational)
        d.setFinestScale(0)
        return d
    raise ValueError(f"unknown DIS setting {method!r}; choose from {FLOW_METHODS}")


def _prepare(img: np.ndarray, cfg: FlowConfig) -> np.ndarray:
    g = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    g = np.ascontiguousarray(g, dtype=np.uint8)
    if cfg.blur > 0:
        g = cv2.GaussianBlur(g, (0, 0), cfg.blur)
    if cfg.scale != 1:
        g = cv2.resize(g, None, fx=cfg.scale, fy=cfg.scale, interpolation=cv2.INTER_CUBIC)
    return g


def compute_flow(prev: np.ndarray, cur: np.ndarray, cfg: FlowConfig = FlowConfig()) -> np.ndarray:
    """Dense flow from ``prev`` to ``cur``.

    Args:
        prev, cur: (H, W) uint8 grey or (H, W, 3) uint8 RGB frames of the same size.
        cfg: flow setting.

    Returns:
        (H, W, 2) float32 flow (dx, dy) in native pixels per frame, OpenCV's convention:
        ``prev[y, x] ~ cur[y + dy, x + dx]``.
    """
    if prev.shape[:2] != cur.shape[:2]:
        raise ValueError(f"frame sizes differ: {prev.shape[:2]} vs {cur.shape[:2]}")
    h, w = prev.shape[:2]
    a, b = _prepare(prev, cfg), _prepare(cur, cfg)
    if cfg.method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 4, 15, 5, 5, 1.1, 0)
    else:
        flow = _dis(cfg.method).calc(a, b, None)
    if cfg.scale != 1:
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_AREA) / cfg.scale
    return np.ascontiguousarray(flow, dtype=np.float32)


def frame_flow(prev: np.ndarray, cur: np.ndarray, cfg: FlowConfig = FlowConfig(), apart: int = 1) -> np.ndarray:
    """The motion from ``prev`` to ``cur`` on the pixels of ``cfg.frame`` (:data:`FLOW_FRAMES`),
    per frame.

    Args:
        prev, cur: frames ``apart`` frames apart (``prev`` the earlier), as
            :func:`compute_flow` takes them.
        cfg: flow setting; ``cfg.frame`` ``current``: the flow from ``cur`` back to
            ``prev``, negated (where each pixel of ``cur`` came from, as a displacement
            forwards); ``previous``: :func:`compute_flow` ``(prev, cur)``.
        apart: frames between ``prev`` and ``cur`` (>= 1); the flow is divided by it.

    Returns:
        (H, W, 2) float32 (dx, dy) in native pixels per frame, pointing along the motion.
    """
    if apart < 1:
        raise ValueError(f"frames must be at least 1 apart, got {apart}")
    flow = compute_flow(prev, cur, cfg) if cfg.frame == "previous" else np.negative(compute_flow(cur, prev, cfg))
    return flow if apart == 1 else flow / np.float32(apart)


def orientation_bins(flow: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel L1 magnitude and orientation bin.

    Args:
        flow: (H, W, 2) float flow.
        bins: B >= 1 equal sectors of 360/B degrees, bin i = [360 i/B, 360 (i+1)/B).

    Returns:
        mag (H, W) float64 = |dx| + |dy|; bin (H, W) int64 in [0, B).
    """
    dx = np.ascontiguousarray(flow[..., 0], dtype=np.float32)
    dy = np.ascontiguousarray(flow[..., 1], dtype=np.float32)
    mag = np.abs(dx).astype(np.float64) + np.abs(dy)
    if bins == 1:
        return mag, np.zeros(mag.shape, dtype=np.int64)
    _, ang = cv2.cartToPolar(dx, dy, angleInDegrees=True)  # [0, 360)
    idx = np.floor(ang.astype(np.float64) / (360.0 / bins)).astype(np.int64)
    return mag, np.clip(idx, 0, bins - 1)


def box_velocity(flow: np.ndarray, boxes: np.ndarray, bins: int = 1) -> np.ndarray:
    """AI-VAD velocity of each box.

    Args:
        flow: (H, W, 2) flow of the frame (native pixels).
        boxes: (n, 4) checked boxes (see :func:`memfuse.extract.frames.check_boxes`), n >= 1.
        bins: B orientation bins.

    Returns:
        (n, B) float32: column i = sum of L1 magnitudes of the box pixels whose orientation
        is in bin i, divided by the box's pixel count (rows sum to the mean L1 magnitude).
    """
    # over each crop, not integral images of the whole frame: a frame's boxes cover a small
    # share of it, and B integral images of a 640x360 frame cost more than the flow's own
    # resize (docs/results.md, "Where the detector's time goes")
    b = crop_bounds(boxes)
    out = np.empty((len(b), bins), dtype=np.float64)
    for k, (x0, y0, x1, y1) in enumerate(b):
        mag, idx = orientation_bins(flow[y0:y1, x0:x1], bins)
        out[k] = np.bincount(idx.ravel(), weights=mag.ravel(), minlength=bins)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1).astype(np.float64)
    return (out / area[:, None]).astype(np.float32)


def box_velocity_resized(flow: np.ndarray, boxes: np.ndarray, bins: int = 1, size: int = 224) -> np.ndarray:
    """AI-VAD's literal computation (slow; for checking): crop the flow, resize to
    ``size`` x ``size`` (bilinear), bin and average there. Same shapes as :func:`box_velocity`."""
    rows = []
    for x0, y0, x1, y1 in crop_bounds(boxes):
        c = cv2.resize(np.ascontiguousarray(flow[y0:y1, x0:x1]), (size, size))
        mag, idx = orientation_bins(c, bins)
        rows.append([mag[idx == i].sum() / mag.size for i in range(bins)])
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), bins)


def frame_velocity(
    prev: np.ndarray | None,
    frame: np.ndarray,
    boxes: np.ndarray,
    cfg: FlowConfig = FlowConfig(),
    bins: int = 1,
    apart: int = 1,
) -> np.ndarray:
    """Velocity of the objects of one frame, the step stage 0 streams a video through.

    Args:
        prev: the frame ``apart`` frames before (``cfg.span``, or fewer at a video's start),
            (H, W) uint8 grey (or RGB); ``None`` for a video's first frame, which uses itself
            as its previous frame: zero flow, velocities exactly 0.
        frame: this frame, same size and kind as ``prev``.
        boxes: (n, 4) checked boxes of this frame (n >= 1).
        cfg: flow setting; bins: B.

    Returns:
        (n, B) float32, pixels per frame.
    """
    if prev is None:
        return np.zeros((len(boxes), bins), dtype=np.float32)
    return box_velocity(frame_flow(prev, frame, cfg, apart), boxes, bins).astype(np.float32)


def video_velocity(
    frames: list[np.ndarray], boxes: list[np.ndarray], cfg: FlowConfig = FlowConfig(), bins: int = 1
) -> list[np.ndarray]:
    """Velocity of every object of one video held in memory: :func:`frame_velocity` over
    its T frames, each from the frame ``cfg.span`` before it (or the video's first), as
    :class:`memfuse.extract.stream.FrameExtractor` streams them (T arrays (n_t, B) float32;
    frame 0 is all zeros)."""
    if len(frames) != len(boxes):
        raise ValueError(f"{len(frames)} frames but {len(boxes)} box arrays")
    out = []
    for t, (img, bx) in enumerate(zip(frames, boxes)):
        apart = min(t, cfg.span)
        out.append(frame_velocity(frames[t - apart] if t else None, img, bx, cfg, bins, max(apart, 1)))
    return out
