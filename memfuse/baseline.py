"""The AI-VAD baseline (Reiss and Hoshen, "An Attribute-based Method for Video Anomaly
Detection"): plain density scoring of the same per-object features the fusion uses.

Per modality, every test object gets an anomaly score from the train objects alone:

- velocity (N, B): a Gaussian mixture (scikit-learn ``GaussianMixture``, ``gmm_components``
  = 2 on Ped2, 5 on Avenue and ShanghaiTech in AI-VAD) fitted on the train velocities;
  score = -log-likelihood.
- appearance (N, 512): distance to the nearest train object (k = 1, Euclidean) after
  L2-normalising every feature, as AI-VAD does with its CLIP features.
- pose (P, 34): distance to the nearest train skeleton (k = 1, Euclidean) after
  normalising each skeleton (:func:`normalise_pose`): keypoints centred on their mean and
  divided by the skeleton's height (max y - min y of its keypoints). AI-VAD likewise
  removes position and scale (it normalises keypoints by their extent); centring on the
  mean and dividing by the height keeps the aspect ratio, so a lying person (wide, short)
  stays different from a standing one.

The kNN distances are computed in chunks with torch (``q_chunk`` queries against
``r_chunk`` train rows at a time, a running minimum), so memory is bounded by
``q_chunk x r_chunk`` floats whatever the train size (1M+ objects on ShanghaiTech).

Calibration (AI-VAD's per-modality normalisation), one documented choice:

1. score every *train* object the same way. For kNN this is leave-one-out: a train
   object's distance to itself is 0, so self-matches are excluded (the object's own row
   and its exact copies, see :func:`knn_object_scores`). The GMM needs no exclusion;
2. frame score = max over the frame's objects, for train and test;
3. each modality's test frame scores are standardised by the min and max of its *train*
   frame scores: ``(s - min) / (max - min)``; a frame with no row of that modality (a
   frame without any person, in pose) gets the train minimum, i.e. 0 after calibration.

The calibrated modality scores are summed into one frame score, smoothed per video with a
Gaussian (sigma 3) and evaluated with micro/macro AUC and EER (:mod:`memfuse.metrics`).

Note: leave-one-out on video still lets a train object match *itself in the next frame*,
so train kNN scores sit lower than test scores; the min/max calibration only rescales each
modality, so this affects how the three modalities are weighted in the sum, not the
ranking within one modality.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .data import Split
from .metrics import SMOOTH_SIGMA, evaluate, smooth_scores

MODALITIES = ("vel", "pose", "app")  # memfuse.registry.MODALITIES in the order the combined score sums them
GMM_COMPONENTS = 2  # AI-VAD: 2 on Ped2, 5 on Avenue and ShanghaiTech
Q_CHUNK = 2048  # kNN queries per block
R_CHUNK = 16384  # kNN train rows per block: one block is Q_CHUNK x R_CHUNK floats (128 MiB)
POSE_EPS = 1e-6


# --------------------------------------------------------------------------------------
# Feature normalisation
# --------------------------------------------------------------------------------------
def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (all-zero rows stay zero). (N, d) float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, eps)


def normalise_pose(pose: np.ndarray) -> np.ndarray:
    """(P, 34) 17 (x, y) keypoints -> (P, 34), each skeleton centred on its mean keypoint
    and divided by its height (max y - min y); a skeleton of zero height (all-zero rows)
    is only centred."""
    kp = np.asarray(pose, dtype=np.float32).reshape(len(pose), -1, 2)
    kp = kp - kp.mean(axis=1, keepdims=True)
    height = kp[:, :, 1].max(axis=1) - kp[:, :, 1].min(axis=1) if kp.shape[1] else np.zeros(len(kp), np.float32)
    height = np.where(height > POSE_EPS, height, 1.0).astype(np.float32)
    return (kp / height[:, None, None]).reshape(len(pose), -1)


# --------------------------------------------------------------------------------------
# Chunked nearest-neighbour distance
# --------------------------------------------------------------------------------------
@torch.no_grad()
def knn_distance(
    queries: np.ndarray | Tensor,
    reference: np.ndarray | Tensor,
    exclude_self: bool = False,
    q_chunk: int = Q_CHUNK,
    r_chunk: int = R_CHUNK,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Euclidean distance of each query (N, d) to its nearest reference row (R, d): (N,).

    Squared distances come from ``|q|^2 - 2 q r^T + |r|^2`` block by block, with a running
    minimum, so at most ``q_chunk x r_chunk`` distances exist at a time. With
    ``exclude_self`` the queries *are* the reference rows (leave-one-out: row i never
    matches row i). Needs at least 2 reference rows then; an empty reference gives inf."""
    ref = torch.as_tensor(
        np.asarray(reference, dtype=np.float32) if not isinstance(reference, Tensor) else reference
    ).float()
    qry = torch.as_tensor(np.asarray(queries, dtype=np.float32) if not isinstance(queries, Tensor) else queries).float()
    if exclude_self and len(qry) != len(ref):
        raise ValueError("exclude_self needs queries == reference (same rows, same order)")
    out = torch.full((len(qry),), float("inf"), dtype=torch.float32)
    if len(qry) == 0 or len(ref) == 0:
        return out.numpy()
    ref_dev = ref.to(device)
    ref_sq = ref_dev.pow(2).sum(1)
    for qs in range(0, len(qry), q_chunk):
        q = qry[qs : qs + q_chunk].to(device)
        q_sq = q.pow(2).sum(1, keepdim=True)
        best = torch.full((len(q),), float("inf"), device=q.device)
        arg = torch.zeros(len(q), dtype=torch.long, device=q.device)
        for rs in range(0, len(ref_dev), r_chunk):
            r = ref_dev[rs : rs + r_chunk]
            d = torch.addmm(ref_sq[None, rs : rs + len(r)], q, r.T, alpha=-2.0).add_(q_sq)
            if exclude_self:  # global row index of query == global row index of reference
                lo, hi = max(qs, rs), min(qs + len(q), rs + len(r))
                if lo < hi:
                    i = torch.arange(lo, hi, device=d.device)
                    d[i - qs, i - rs] = float("inf")
            val, idx = d.min(1)
            better = val < best
            best = torch.where(better, val, best)
            arg = torch.where(better, idx + rs, arg)
        # The expansion loses precision for near neighbours (float32 cancellation, ~1e-3 at
        # distance 0); recompute the winner's distance directly from the difference.
        exact = (q - ref_dev[arg]).pow(2).sum(1).sqrt()
        out[qs : qs + len(q)] = torch.where(torch.isfinite(best), exact, best).cpu()
    return out.numpy()


# --------------------------------------------------------------------------------------
# Object scores -> frame scores -> calibrated frame scores
# --------------------------------------------------------------------------------------
def frame_max(object_scores: np.ndarray, offsets: np.ndarray, empty: float = np.nan) -> np.ndarray:
    """Max of each frame's object scores (F,); frames without rows get ``empty``."""
    object_scores = np.asarray(object_scores, dtype=np.float64)
    counts = np.diff(offsets)
    out = np.full(len(counts), empty, dtype=np.float64)
    nonempty = counts > 0
    if nonempty.any():
        out[nonempty] = np.maximum.reduceat(object_scores, offsets[:-1][nonempty])
    return out


def calibrate(test_frames: np.ndarray, train_frames: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(s - min) / (max - min)`` with the train frame scores' min and max (NaN = frame
    without rows -> train min). Returns the calibrated scores, min and max."""
    valid = train_frames[np.isfinite(train_frames)]
    if len(valid) == 0:
        raise ValueError("no train frame holds a row of this modality: cannot calibrate")
    lo, hi = float(valid.min()), float(valid.max())
    s = np.where(np.isnan(test_frames), lo, test_frames)
    return (s - lo) / (hi - lo if hi > lo else 1.0), lo, hi


def velocity_object_scores(
    train: np.ndarray, test: np.ndarray, components: int = GMM_COMPONENTS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """GMM negative log-likelihood of every train and test velocity row."""
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(n_components=components, random_state=seed).fit(np.asarray(train, dtype=np.float64))
    return -gmm.score_samples(np.asarray(train, dtype=np.float64)), -gmm.score_samples(
        np.asarray(test, dtype=np.float64)
    )


def knn_object_scores(train: np.ndarray, test: np.ndarray, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-train-neighbour distance of every train (leave-one-out) and test row.

    A train row's exact copies count as the row itself: stage 0 with ``--pose-every K``
    gives the frames between two posed frames copies of the last poses, and without this
    every train pose would sit at distance 0 from its copy, leaving nothing to calibrate."""
    train = np.asarray(train, dtype=np.float32)
    unique, inverse = np.unique(train, axis=0, return_inverse=True)
    return knn_distance(unique, unique, exclude_self=True, **kw)[inverse.ravel()], knn_distance(test, train, **kw)


def score_baseline(
    train: Split,
    test: Split,
    test_ends: np.ndarray,
    gmm_components: int = GMM_COMPONENTS,
    sigma: float = SMOOTH_SIGMA,
    per_video: bool = True,
    modalities: tuple[str, ...] = MODALITIES,
    q_chunk: int = Q_CHUNK,
    r_chunk: int = R_CHUNK,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict:
    """AI-VAD density scores of the test frames.

    Returns a dict: ``frame`` {modality: calibrated frame scores (F,)} and ``combined``
    (their sum), both unsmoothed; ``smoothed`` {modality and "combined": (F,)} after
    per-video Gaussian smoothing (``sigma``); ``calibration`` {modality: [train min, max]}."""
    kw = {"q_chunk": q_chunk, "r_chunk": r_chunk, "device": device}
    frame, calib = {}, {}
    for m in modalities:
        tr, te = getattr(train, m), getattr(test, m)
        if m == "vel":
            s_tr, s_te = velocity_object_scores(tr.values, te.values, gmm_components, seed)
        elif m == "pose":
            s_tr, s_te = knn_object_scores(normalise_pose(tr.values), normalise_pose(te.values), **kw)
        elif m == "app":
            s_tr, s_te = knn_object_scores(l2_normalise(tr.values), l2_normalise(te.values), **kw)
        else:
            raise ValueError(f"unknown modality {m!r}")
        frame[m], lo, hi = calibrate(frame_max(s_te, te.offsets), frame_max(s_tr, tr.offsets))
        calib[m] = [lo, hi]
    combined = np.sum([frame[m] for m in modalities], axis=0)
    smoothed = {m: smooth_scores(s, test_ends, sigma, per_video) for m, s in {**frame, "combined": combined}.items()}
    return {"frame": frame, "combined": combined, "smoothed": smoothed, "calibration": calib}


def evaluate_baseline(scores: dict, labels: np.ndarray | None, test_ends: np.ndarray) -> dict:
    """Micro/macro AUC and EER of the smoothed combined score, and of each modality alone
    (``per_modality``), from the output of :func:`score_baseline`."""
    sm = scores["smoothed"]
    result = evaluate(sm["combined"], labels, test_ends)
    result["per_modality"] = {m: evaluate(s, labels, test_ends) for m, s in sm.items() if m != "combined"}
    return result
