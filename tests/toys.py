"""Small in-memory inputs the unit tests build their cases from (no files)."""

import numpy as np

from memfuse.data import Ragged
from memfuse.fusion import PaddedSplit


def ragged(frames, width):
    return Ragged.from_frames([np.asarray(f, dtype=np.float32).reshape(-1, width) for f in frames], width)


def toy_split(f: int = 9, n: int = 4, d: int = 34, seed: int = 0) -> PaddedSplit:
    rng = np.random.default_rng(seed)
    arr = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    mask = np.arange(n)[None] >= rng.integers(1, n + 1, f)[:, None]
    return PaddedSplit(arr(f, n, d), arr(f, n, d), np.abs(arr(f, n)), mask, mask, arr(f, n, d), arr(f, n, d))


def toy_padded(n_frames=160, n_max=5, seed=0, separable=False):
    """Padded toy split. With ``separable``, anomalous features are shifted far away."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, n_max + 1, n_frames)
    mask = np.arange(n_max)[None, :] >= counts[:, None]

    def feats(shift=0.0):
        x = rng.normal(0, 1, (n_frames, n_max, 34)).astype(np.float32) * 0.3 + shift
        x[mask] = 0
        return x

    vel = np.where(mask, 0, np.abs(rng.normal(1, 0.1, (n_frames, n_max)))).astype(np.float32)
    shift = 3.0 if separable else 0.0
    return PaddedSplit(
        app=feats(),
        pose=feats(),
        vel=vel,
        app_mask=mask,
        pose_mask=mask.copy(),
        app_anomaly=feats(shift),
        pose_anomaly=feats(-shift),
    )


def scored_split(f, n, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, n + 1, f)
    mask = np.arange(n)[None, :] >= counts[:, None]
    x = lambda: rng.normal(size=(f, n, 34)).astype(np.float32)  # noqa: E731
    return PaddedSplit(
        app=x(),
        pose=x(),
        vel=rng.random((f, n)).astype(np.float32),
        app_mask=mask,
        pose_mask=mask.copy(),
        app_dist=rng.random((f, n)).astype(np.float32),
        pose_dist=rng.random((f, n)).astype(np.float32),
        app_rec=rng.random((f, n)).astype(np.float32),
    )
