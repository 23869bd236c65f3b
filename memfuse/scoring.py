"""Frame scores from several terms, each standardised on the train frames, then summed.

The terms of a frame (each (F,), higher = more anomalous):

- ``classifier``: the fusion classifier's logit.
- ``app``, ``pose``: the largest distance, over the frame's objects (persons), of a raw
  query (autoencoder code; pose) to its nearest memory item: how far the frame's least
  familiar object lies from everything the memory learnt as normal.
- ``app_rec``: the largest autoencoder reconstruction error of the frame's objects.
- ``vel``: the frame's largest object velocity (the mean over orientation bins).

A term is standardised by the mean and standard deviation of its *train* frame scores, so
terms on different scales add up with equal say and no test frame or label sets a weight.
A frame with no row of a modality (no person) gets the train minimum: nothing unusual.
Each source of evidence (:data:`GROUP`: the classifier, appearance, pose, velocity) has one
vote: terms of the same group are averaged before the groups are summed, so measuring
appearance twice does not double its weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TERMS = ("classifier", "app", "app_rec", "pose", "vel")
GROUP = {"classifier": "classifier", "app": "app", "app_rec": "app", "pose": "pose", "vel": "vel"}  # term -> source


def parse_terms(text: str) -> tuple[str, ...]:
    """``"classifier,app"`` -> ("classifier", "app") in canonical order; ValueError naming
    the unknown ones."""
    names = tuple(t.strip() for t in text.split(",") if t.strip())
    unknown = [t for t in names if t not in TERMS]
    if unknown or not names:
        raise ValueError(f"score terms must be a non-empty subset of {', '.join(TERMS)}, got {text!r}")
    return tuple(t for t in TERMS if t in names)


def masked_frame_max(values: np.ndarray, padded: np.ndarray) -> np.ndarray:
    """Max over the real rows of each frame: values (F, N), padded (F, N) bool (True =
    padding) -> (F,) float64; a frame whose rows are all padding gets NaN."""
    v = np.where(padded, -np.inf, np.asarray(values, dtype=np.float64))
    out = v.max(axis=1)
    out[~np.isfinite(out)] = np.nan
    return out


@dataclass
class Standardiser:
    """z-score of a term with its train frames' mean and standard deviation."""

    mean: float
    std: float
    floor: float  # train minimum: the score of a frame without rows of this modality

    @classmethod
    def fit(cls, train: np.ndarray) -> "Standardiser":
        t = np.asarray(train, dtype=np.float64)
        t = t[np.isfinite(t)]
        if len(t) == 0:
            raise ValueError("no finite train frame score to standardise by")
        std = float(t.std())
        return cls(float(t.mean()), std if std > 0 else 1.0, float(t.min()))

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=np.float64)
        return (np.where(np.isnan(s), self.floor, s) - self.mean) / self.std


def combine(
    train: dict[str, np.ndarray], test: dict[str, np.ndarray], terms: tuple[str, ...]
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, dict]]:
    """The standardised ``terms``, averaged within their :data:`GROUP` and summed over
    groups. ``train`` and ``test`` map each term to its frame scores. Returns the test
    frame scores (F,), each term standardised (F,), and each term's standardisation
    ({"mean", "std", "floor"})."""
    z, stats = {}, {}
    for t in terms:
        st = Standardiser.fit(train[t])
        z[t], stats[t] = st(test[t]), vars(st).copy()
    return sum_by_group(z, terms), z, stats


def sum_by_group(z: dict[str, np.ndarray], terms: tuple[str, ...]) -> np.ndarray:
    """Sum over groups of the mean of each group's standardised terms (F,)."""
    groups: dict[str, list[np.ndarray]] = {}
    for t in terms:
        groups.setdefault(GROUP[t], []).append(z[t])
    return np.sum([np.mean(g, axis=0) for g in groups.values()], axis=0)


OBJECT_TERMS = ("app", "app_rec", "vel")  # terms measured on each object (box); pose rows are not matched to boxes


def object_scores(
    values: dict[str, np.ndarray], padded: np.ndarray, stats: dict[str, dict], terms: tuple[str, ...]
) -> np.ndarray | None:
    """Each object's share of the frame score, (F, N) float32, NaN on padded rows: the
    per-object values (F, N) of the :data:`OBJECT_TERMS` among ``terms``, standardised with
    the train-frame ``stats`` of :func:`combine`, averaged within and summed over groups.
    ``None`` when ``terms`` hold no per-object term (the classifier alone)."""
    kept = tuple(t for t in terms if t in OBJECT_TERMS)
    if not kept:
        return None
    z = {t: (np.asarray(values[t], dtype=np.float64) - stats[t]["mean"]) / stats[t]["std"] for t in kept}
    return np.where(padded, np.nan, sum_by_group(z, kept)).astype(np.float32)
