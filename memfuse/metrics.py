"""Frame-level measures used in video anomaly detection: smoothing, micro/macro AUC, EER."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

# Gaussian sigma of frame-score smoothing, in frames: AI-VAD's on Ped2 and Avenue
# (config/datasets/shanghaitech.toml sets 7)
SMOOTH_SIGMA = 3.0


def video_slices(ends: np.ndarray) -> list[slice]:
    """Cumulative clip ends (V,) -> one slice per video."""
    starts = np.concatenate([[0], ends[:-1]])
    return [slice(int(a), int(b)) for a, b in zip(starts, ends)]


def smooth_scores(scores: np.ndarray, ends: np.ndarray, sigma: float, per_video: bool = True) -> np.ndarray:
    """Gaussian-smooth frame scores (F,). ``per_video`` keeps one video's scores from
    bleeding into the next (AI-VAD); ``per_video=False`` smooths the concatenated test
    sequence as one signal (the reference scripts). ``sigma <= 0`` returns a copy."""
    scores = np.asarray(scores, dtype=np.float64)
    if sigma <= 0:
        return scores.copy()
    if not per_video:
        return gaussian_filter1d(scores, sigma)
    out = np.empty_like(scores)
    for s in video_slices(ends):
        out[s] = gaussian_filter1d(scores[s], sigma)
    return out


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates (each (T + 1,), from (0, 0) to (1, 1)) at every
    distinct score taken as the threshold, highest first; tied scores move both rates at
    once, so the curve's area is the AUC with ties counted as one half. ValueError when
    ``labels`` hold a single class (the ROC is undefined). Written here rather than taken
    from scikit-learn, whose import alone costs every stage about 2 s."""
    y = np.asarray(labels).ravel().astype(bool)
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        raise ValueError("labels hold a single class: the ROC curve is undefined")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    return np.r_[0.0, fp / (len(y) - n_pos)], np.r_[0.0, tp / n_pos]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids between its points)."""
    fpr, tpr = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def micro_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC over all test frames pooled."""
    return roc_auc(labels, scores)


def macro_auc(scores: np.ndarray, labels: np.ndarray, ends: np.ndarray) -> float:
    """Mean of per-video AUCs. As in AI-VAD, each video's scores are min-max scaled to
    [0, 1] and padded with one (label 0, score 0) and one (label 1, score 1) frame, so a
    video holding a single class still has a defined AUC."""
    aucs = []
    for s in video_slices(ends):
        sc, lb = scores[s], labels[s]
        lo, hi = sc.min(), sc.max()
        scaled = (sc - lo) / (hi - lo) if hi > lo else np.zeros_like(sc)
        aucs.append(roc_auc(np.concatenate([lb, [0, 1]]), np.concatenate([scaled, [0.0, 1.0]])))
    return float(np.mean(aucs))


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> float:
    """EER: the error rate where false-positive and false-negative rates are equal."""
    fpr, tpr = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    # Interpolate between the two ROC points that straddle the crossing.
    if i + 1 < len(fpr) and (fnr[i] - fpr[i]) * (fnr[i + 1] - fpr[i + 1]) < 0:
        d0, d1 = fnr[i] - fpr[i], fnr[i + 1] - fpr[i + 1]
        t = d0 / (d0 - d1)
        return float(fpr[i] + t * (fpr[i + 1] - fpr[i]))
    return float((fpr[i] + fnr[i]) / 2)


def why_no_auc(labels: np.ndarray | None) -> str | None:
    """Why the test labels give no AUC (``None`` when they do): there are none, or every
    frame holds the same label (the ROC needs both classes)."""
    if labels is None:
        return "no test labels"
    if labels.size == 0 or labels.min() == labels.max():
        return f"every test frame is labelled {int(labels.flat[0]) if labels.size else '-'}: an AUC needs both classes"
    return None


def evaluate(scores: np.ndarray, labels: np.ndarray | None, ends: np.ndarray) -> dict[str, float | None | str]:
    """All frame-level measures of already-smoothed scores; without two classes of labels
    each measure is ``None`` and ``no_auc`` says why."""
    reason = why_no_auc(labels)
    if reason is not None:
        return {"micro_auc": None, "macro_auc": None, "eer": None, "no_auc": reason}
    return {
        "micro_auc": micro_auc(scores, labels),
        "macro_auc": macro_auc(scores, labels, ends),
        "eer": equal_error_rate(scores, labels),
    }
