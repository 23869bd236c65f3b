"""Frame scores from several terms, each calibrated on normal frames, then combined.

The terms of a frame (each (F,), higher = more anomalous):

- ``classifier``: the fusion classifier's logit.
- ``app``, ``pose``: the largest distance, over the frame's objects (persons), of a raw
  query (autoencoder code; pose) to its nearest memory item: how far the frame's least
  familiar object lies from everything the memory learnt as normal.
- ``app_rec``: the largest autoencoder reconstruction error of the frame's objects.
- ``app_knn``: the largest distance, over the frame's objects, of an object's appearance
  feature (L2-normalised, as AI-VAD's kNN) to its nearest train object's: a density
  estimate at the resolution of the data, where ``app`` measures how far an object lies
  from the nearest of 500 cluster centres. Alone it scored above ``app`` on every dataset
  measured but Ped2 from motion boxes, where both are poor (docs/results.md); it stands
  in for ``app`` in the default.
- ``vel``: the frame's largest object speed (its velocity's mean over orientation bins).
- ``vel_rel``: the frame's largest object speed relative to its box's height (speed x
  ``h_ref / h``, ``h_ref`` the median train box height): a person far from the camera
  moves fewer pixels than one close up, and both look as tall as they are far, so the ratio
  means the same speed at every distance (AI-VAD divides by box height on ShanghaiTech).
  Without an object detector's boxes beside the features (AI-VAD-format data without its
  box files, or stage 0's motion boxes, whose heights are moving regions'), or for a
  frame's whole-frame entry, it is the plain speed. Not in the default: on Ped2 it lifted
  the micro AUC but lost macro AUC and on the one-modality set (docs/results.md).
- ``vel_dir``: with orientation bins (B > 1), the largest distance of an object's B-bin
  velocity to its nearest train object's: motion in a direction, or at a speed along a
  direction, that training never showed. Speed alone cannot see a person walking the
  wrong way at a normal pace.

Each term is calibrated on reference frames of normal video (:class:`Calibration`): the
classifier and the speed on the train frames; the memorised terms (``app``, ``app_rec``,
``pose``) and the nearest-train-object terms (``app_knn``, ``vel_dir``) on train videos
their models never saw (calibrate.py's cross-fitting), because on their own train objects they
come out small, and every unseen
normal video would then look anomalous on them.

How calibrated terms combine (``COMBINES``; attention_fusion.py's SCORE_COMBINE picks one):

- ``"tail"``: each term becomes its evidence ``-log p``, ``p`` the share of reference frames
  at least as high (the empirical distribution, with an exponential tail fitted above its
  90th percentile so that p keeps falling past the largest reference value). A source of
  evidence (:data:`GROUP`: the classifier, appearance, pose, velocity) counts once, by its
  strongest term, and the sources' evidence is summed. A term that carries no signal adds
  about 1 on average (``-log`` of a uniform ``p``), whatever its scale or skew; a term far
  in its tail adds much more. Tail probabilities rather than z-scores because the terms'
  tails differ: a heavy-tailed term's z-scores reach values a light-tailed term never does.
- ``"z"``: the terms' z-scores (reference mean and standard deviation), averaged within a
  source and summed: memfuse's default. Best where the terms' tails are alike (the
  synthetic sets); ``"tail"`` where they are skewed (Ped2); docs/results.md has both.
- ``"tail_max"``: the largest evidence of any term (an alarm when any term is rare).

A frame with no row of a modality (no person) gets the reference minimum: nothing unusual.
No test frame or label sets anything here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TERMS = ("classifier", "app", "app_rec", "app_knn", "pose", "vel", "vel_rel", "vel_dir")
GROUP = {  # term -> source of evidence
    "classifier": "classifier",
    "app": "app",
    "app_rec": "app",
    "app_knn": "app",
    "pose": "pose",
    "vel": "vel",
    "vel_rel": "vel",
    "vel_dir": "vel",
}
COMBINES = ("tail", "z", "tail_max")
TAIL_QUANTILE = 0.9  # above this reference quantile the tail is exponential (peaks over threshold)
# A box shorter than this share of h_ref counts as this tall in vel_rel: a box a few pixels
# high (a detector's partial or far detection) says little about how fast its object moves,
# and dividing by it would make every such box an alarm.
MIN_HEIGHT_SHARE = 0.25
QUANTILE_GRID = 1001  # reference quantiles kept (0, 0.001, ..., 1): the empirical distribution, small


def parse_terms(text: str) -> tuple[str, ...]:
    """``"classifier,app"`` -> ("classifier", "app") in canonical order; ValueError naming
    the unknown ones."""
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in names if t not in TERMS]
    if unknown or not names:
        raise ValueError(f"score terms must be a non-empty subset of {', '.join(TERMS)}, got {text!r}")
    return tuple(t for t in TERMS if t in names)


def height_reference(heights: np.ndarray | None) -> float | None:
    """``h_ref`` of ``vel_rel``: the median of the (N,) train box heights (NaN: whole-frame
    entries, left out); None without heights."""
    if heights is None or not np.isfinite(heights).any():
        return None
    return float(np.nanmedian(heights))


def relative_speed(speed: np.ndarray, heights: np.ndarray | None, reference: float | None) -> np.ndarray:
    """The ``vel_rel`` of each object, (N,) float32: ``speed`` (N,) x ``reference / h``, ``h``
    its box height (``heights`` (N,), NaN for a whole-frame entry, which keeps its speed)
    raised to at least :data:`MIN_HEIGHT_SHARE` x ``reference``. Without ``heights`` or
    ``reference``: ``speed`` itself."""
    speed = np.asarray(speed, dtype=np.float32)
    if heights is None or reference is None:
        return speed
    h = np.asarray(heights, dtype=np.float64)
    h = np.where(np.isfinite(h), np.maximum(h, MIN_HEIGHT_SHARE * reference), reference)
    return (speed * (reference / h)).astype(np.float32)


def masked_frame_max(values: np.ndarray, padded: np.ndarray) -> np.ndarray:
    """Max over the real rows of each frame: values (F, N), padded (F, N) bool (True =
    padding) -> (F,) float64; a frame whose rows are all padding gets NaN."""
    v = np.where(padded, -np.inf, np.asarray(values, dtype=np.float64))
    out = v.max(axis=1)
    out[~np.isfinite(out)] = np.nan
    return out


@dataclass
class Calibration:
    """A term's distribution on reference (normal) frames: its mean and standard deviation
    for z-scores, and its quantiles with an exponential tail for tail probabilities."""

    mean: float
    std: float
    floor: float  # reference minimum: the score of a frame without rows of this modality
    quantiles: list[float]  # QUANTILE_GRID reference quantiles, levels 0 .. 1
    threshold: float  # the TAIL_QUANTILE quantile, where the exponential tail starts
    scale: float  # the tail's mean excess over the threshold

    @classmethod
    def fit(cls, reference: np.ndarray) -> "Calibration":
        """From the reference frames' values (F_ref,); NaN (frames without rows) ignored."""
        r = np.asarray(reference, dtype=np.float64)
        r = r[np.isfinite(r)]
        if len(r) == 0:
            raise ValueError("no finite reference frame score to calibrate by")
        std = float(r.std())
        threshold = float(np.quantile(r, TAIL_QUANTILE))
        excess = r[r > threshold] - threshold
        scale = float(excess.mean()) if len(excess) else 0.0
        if scale <= 0:  # a flat top: any higher value is past everything seen
            scale = std if std > 0 else 1.0
        return cls(
            mean=float(r.mean()),
            std=std if std > 0 else 1.0,
            floor=float(r.min()),
            quantiles=np.quantile(r, np.linspace(0.0, 1.0, QUANTILE_GRID)).tolist(),
            threshold=threshold,
            scale=scale,
        )

    def _filled(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        return np.where(np.isnan(s), self.floor, s)

    def z(self, scores: np.ndarray) -> np.ndarray:
        """(scores - mean) / std, (F,) float64."""
        return (self._filled(scores) - self.mean) / self.std

    def evidence(self, scores: np.ndarray) -> np.ndarray:
        """``-log p`` (F,) float64 >= 0, ``p`` = the reference share at or above each score
        (at most 1 - TAIL_QUANTILE above the threshold, falling exponentially there)."""
        s = self._filled(scores)
        q = np.asarray(self.quantiles)
        below = 1.0 - np.interp(s, q, np.linspace(0.0, 1.0, len(q)), left=0.0, right=1.0)
        body = np.maximum(below, 1.0 - TAIL_QUANTILE)
        tail = (1.0 - TAIL_QUANTILE) * np.exp(-np.maximum(s - self.threshold, 0.0) / self.scale)
        return -np.log(np.where(s > self.threshold, tail, body))


def calibrate(reference: dict[str, np.ndarray], terms: tuple[str, ...]) -> dict[str, Calibration]:
    """Each term's :class:`Calibration` from its reference frames' values."""
    return {t: Calibration.fit(reference[t]) for t in terms}


def term_values(calibration: dict[str, Calibration], test: dict[str, np.ndarray], combine: str) -> dict:
    """Each term's calibrated test values (F,): evidence for the tail combinations, z-scores for ``"z"``."""
    if combine not in COMBINES:
        raise ValueError(f"score combination must be one of {', '.join(COMBINES)}, got {combine!r}")
    return {t: (c.z(test[t]) if combine == "z" else c.evidence(test[t])) for t, c in calibration.items()}


def source_values(values: dict[str, np.ndarray], terms: tuple[str, ...], combine: str) -> dict[str, np.ndarray]:
    """Each source of evidence's value (F,) from its calibrated terms among ``terms``
    (:data:`GROUP`): their mean for ``"z"``, their largest for the tail combinations."""
    groups: dict[str, list[np.ndarray]] = {}
    for t in terms:
        groups.setdefault(GROUP[t], []).append(values[t])
    within = np.mean if combine == "z" else np.max
    return {g: within(v, axis=0) for g, v in groups.items()}


def combine_values(values: dict[str, np.ndarray], terms: tuple[str, ...], combine: str) -> np.ndarray:
    """The frame score (F,) from calibrated term values (:func:`term_values`), see the module."""
    if combine == "tail_max":
        return np.max([values[t] for t in terms], axis=0)
    return np.sum(list(source_values(values, terms, combine).values()), axis=0)


def combine(
    reference: dict[str, np.ndarray], test: dict[str, np.ndarray], terms: tuple[str, ...], how: str = "z"
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, dict]]:
    """Calibrate ``terms`` on ``reference`` and combine them on ``test`` ({term: (F,)} each).
    Returns the test frame scores (F,), each term's calibrated values (F,), and each term's
    calibration as a plain dict."""
    calibration = calibrate(reference, terms)
    values = term_values(calibration, test, how)
    return combine_values(values, terms, how), values, {t: asdict(c) for t, c in calibration.items()}


OBJECT_TERMS = (
    "app",
    "app_rec",
    "app_knn",
    "vel",
    "vel_rel",
    "vel_dir",
)  # measured on each object (box); pose rows are not matched to boxes


def object_scores(
    values: dict[str, np.ndarray], padded: np.ndarray, calibration: dict[str, dict], terms: tuple[str, ...], how: str
) -> np.ndarray | None:
    """Each object's share of the frame score, (F, N) float32, NaN on padded rows: the
    per-object values (F, N) of the :data:`OBJECT_TERMS` among ``terms`` (and in
    ``values``), calibrated with the frames' ``calibration`` (:func:`combine`) and combined
    as the frame score. ``None`` when ``terms`` hold no per-object term (the classifier alone)."""
    kept = tuple(t for t in terms if t in OBJECT_TERMS and t in values)
    if not kept:
        return None
    cal = {t: Calibration(**calibration[t]) for t in kept}
    flat = {t: np.asarray(values[t], dtype=np.float64).ravel() for t in kept}
    combined = combine_values(term_values(cal, flat, how), kept, how).reshape(np.shape(padded))
    return np.where(padded, np.nan, combined).astype(np.float32)
