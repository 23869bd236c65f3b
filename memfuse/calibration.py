"""Held-out calibration of the memorised score terms by cross-fitting over train videos.

The autoencoder and the memories are fitted on the train objects, so the train objects'
reconstruction errors and memory distances are small, and any unseen normal video scores
higher on them. Standardising a term by its train frames then inflates it on all test
footage. Here each train video gets the value a model that never saw it gives: the train
videos are dealt into K folds; for each fold the autoencoder, the K-Means initialisation and
the memories are fitted again on the other folds, with the stages' own settings, and score
the fold's objects. The final models (stages 1-4) still train on every video; these
out-of-fold values only set each term's standardisation.

Folds are whole videos, never frames: consecutive frames show the same people, so a model
that saw one frame of a person has all but seen the next.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .baseline import knn_distance
from .kmeans import kmeans
from .stages import reconstruction_error, train_autoencoder, train_memory

# cross_fit's keys -> calibrate.py's output files in the checkpoint folder
HELDOUT_FILES = {
    "app_dist": "heldout_app_train_distance.npy",
    "app_rec": "heldout_app_train_recon.npy",
    "pose_dist": "heldout_pose_train_distance.npy",
}
HELDOUT_PADDED = tuple(f"{key}_heldout" for key in HELDOUT_FILES)  # padding_mask.py's padded/train_<name>.npy
# calibrate.py's nearest-train-object terms per object ({split}: train out-of-fold, test): the
# direction-aware velocity (with orientation bins) and the appearance's nearest train object
NEAREST_FILES = {"vel_dir": "vel_dir_{split}.npy", "app_knn": "app_knn_{split}.npy"}


@dataclass(frozen=True)
class FitSettings:
    """The settings stages 1-3 ran with, so the fold models are fitted as the final ones."""

    ae_epochs: int
    ae_lr: float
    ae_batch_size: int
    ae_select: str  # "train" (lowest mean train loss) or "last"
    memory_size: int
    kmeans_seed: int
    memory_epochs: int
    memory_lr: float
    memory_batch_size: int
    weights: tuple[float, float, float]
    top_k: int
    margin: float
    cosine_t_max: dict  # modality -> CosineAnnealingLR period (0: constant learning rate)
    stale_step: bool
    seed: int


def video_folds(ends: np.ndarray, k: int) -> np.ndarray:
    """The fold of each frame (F,) int: video v (0-based, in order) goes to fold v % k, so
    every fold holds videos from all through the recording. ``ends``: cumulative frame
    counts per video (V,). ValueError when there are fewer than 2 videos or k < 2."""
    ends = np.asarray(ends, dtype=np.int64)
    if k < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, got {k}")
    if len(ends) < 2:
        raise ValueError(f"cross-fitting holds out whole videos and needs at least 2 train videos, got {len(ends)}")
    counts = np.diff(np.concatenate([[0], ends]))
    return np.repeat(np.arange(len(ends)) % min(k, len(ends)), counts)


def object_folds(frame_fold: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Each object's fold (N,) from its frame's: ``offsets`` (F + 1,) of a Ragged layout."""
    return np.repeat(frame_fold, np.diff(offsets))


def nearest_train_distance(
    train: np.ndarray, train_fold: np.ndarray, test: np.ndarray, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """A nearest-train-object term of every object (``vel_dir``: B-bin velocities;
    ``app_knn``: L2-normalised appearance features): the distance of each train object
    (N, d) to the nearest train object of the other folds (``train_fold`` (N,)), and of
    each test object (M, d) to the nearest of all train objects. Returns ((N,), (M,))
    float32. The train objects' values are out-of-fold, as the memorised terms' are: a
    train object's nearest neighbour in its own video is all but itself."""
    train = np.ascontiguousarray(train, dtype=np.float32)
    heldout = np.full(len(train), np.nan, np.float32)
    for k in np.unique(train_fold):
        held = train_fold == k
        if (~held).any():
            heldout[held] = knn_distance(train[held], train[~held], device=device)
    return heldout, knn_distance(test, train, device=device)


def _fit_memory(queries: np.ndarray, modality: str, fs: FitSettings, device: torch.device) -> np.ndarray:
    """K-Means then memory training on queries (n, 34), as stages 2-3: the items (M, 34);
    min(M, n) items when a fold has fewer queries than the memory has items (tiny data)."""
    init, _ = kmeans(queries, min(fs.memory_size, len(queries)), seed=fs.kmeans_seed, device=device)
    memory, _ = train_memory(
        queries,
        init,
        epochs=fs.memory_epochs,
        lr=fs.memory_lr,
        batch_size=fs.memory_batch_size,
        weights=fs.weights,
        top_k=fs.top_k,
        margin=fs.margin,
        cosine_t_max=fs.cosine_t_max[modality],
        stale_step=fs.stale_step,
        device=device,
        seed=fs.seed,
        desc=f"calibration memory {modality}",
    )
    return memory.items.detach().cpu().numpy()


def cross_fit(
    app: np.ndarray,
    codes: np.ndarray,
    app_fold: np.ndarray,
    pose: np.ndarray,
    pose_fold: np.ndarray,
    fs: FitSettings,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Out-of-fold values of every train object.

    ``app`` (N, 512): the train appearance features as stage 1 trains on them (standardised
    when it standardises); ``codes`` (N, 34): their codes by the final autoencoder (stage
    1's); ``pose`` (P, 34): the pose queries as stage 2 clusters them; ``*_fold`` (N,) /
    (P,): each row's fold. Returns ``app_dist`` (N,) float32, the distance of an object's
    code to the nearest item of an appearance memory fitted without its fold, ``app_rec``
    (N,) its reconstruction error by an autoencoder fitted without its fold, and
    ``pose_dist`` (P,) as ``app_dist`` for pose.

    The appearance memories of the folds are fitted on the final autoencoder's codes, not
    on their fold autoencoder's: a distance in code space is only comparable between
    objects coded by one encoder, and the test objects are coded by the final one."""
    out = {
        "app_dist": np.full(len(app), np.nan, np.float32),
        "app_rec": np.full(len(app), np.nan, np.float32),
        "pose_dist": np.full(len(pose), np.nan, np.float32),
    }
    for k in np.unique(np.concatenate([app_fold, pose_fold])):
        fit, held = app_fold != k, app_fold == k
        if held.any() and fit.any():
            model, _, _ = train_autoencoder(
                app[fit],
                epochs=fs.ae_epochs,
                lr=fs.ae_lr,
                batch_size=fs.ae_batch_size,
                seed=fs.seed,
                device=device,
                select=fs.ae_select,
                desc=f"calibration autoencoder, fold {k + 1}",
            )
            out["app_rec"][held] = reconstruction_error(model, app[held], device)
            items = _fit_memory(codes[fit], "app", fs, device)
            out["app_dist"][held] = knn_distance(codes[held], items, device=device)
        fit, held = pose_fold != k, pose_fold == k
        if held.any() and fit.sum() >= 2:
            items = _fit_memory(pose[fit], "pose", fs, device)
            out["pose_dist"][held] = knn_distance(pose[held], items, device=device)
    return out
