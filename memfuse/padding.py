"""Padding each frame's object set to a fixed N_max rows, with masks (stage 5).

A frame with no rows (a frame without any detected person, in pose) gets one all-zero row
that is *not* masked: it stands for "nobody here", as the reference's re-inserted zero pose
rows do, and it keeps every frame with at least one attendable key.
"""

from __future__ import annotations

import warnings
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from .data import Ragged
from .io import atomic_path


def velocity_per_object(velocity: Ragged) -> Ragged:
    """(N, B) orientation-binned velocity -> (N, 1), the mean over bins. The fusion model
    repeats it to D = 34 columns on the fly instead of storing 34 copies."""
    return velocity.with_values(velocity.values.mean(axis=1, keepdims=True))


def n_max_of(*ragged: Ragged) -> int:
    """Largest object count over all frames of all given sets (at least 1)."""
    return max([1] + [int(r.counts.max()) for r in ragged if r.n_frames])


def pad(ragged: Ragged, n_max: int, frames: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pad frames to (F, n_max, d) and return the mask (F, n_max) bool, True = padding.

    ``frames`` selects a subset of frames (a mini-batch); default all. Frames with more
    than ``n_max`` objects are truncated (with a warning): the classifier's input size is
    fixed by the training data."""
    frames = np.arange(ragged.n_frames) if frames is None else np.asarray(frames)
    counts = ragged.counts[frames]
    if (counts > n_max).any():
        warnings.warn(
            f"{int((counts > n_max).sum())} frames hold more than N_max={n_max} objects; extra objects are dropped"
        )
    keep = np.minimum(counts, n_max)
    d = ragged.values.shape[1]
    out = np.zeros((len(frames), n_max, d), dtype=np.float32)
    # Vectorised scatter: row r of the output frame f takes values[offsets[f] + r].
    f_idx = np.repeat(np.arange(len(frames)), keep)
    r_idx = np.arange(int(keep.sum())) - np.repeat(np.cumsum(keep) - keep, keep)
    src = np.repeat(ragged.offsets[frames], keep) + r_idx
    out[f_idx, r_idx] = ragged.values[src]
    padded = np.arange(n_max)[None, :] >= np.maximum(keep, 1)[:, None]  # empty frame: row 0 valid
    return out, padded


PAD_CHUNK = 16_384  # frames padded per step when writing to disk


def save_padded(
    ragged: Ragged, n_max: int, values_path: Path, mask_path: Path | None, chunk: int = PAD_CHUNK, squeeze: bool = False
) -> None:
    """Pad ``ragged`` to (F, n_max, d) straight into a memory-mapped .npy, ``chunk`` frames
    at a time, so a split larger than memory never exists as one array. ``squeeze`` drops a
    width-1 last axis (velocity: (F, n_max)). Both files are written atomically."""
    d = ragged.values.shape[1]
    shape = (ragged.n_frames, n_max) if squeeze else (ragged.n_frames, n_max, d)
    with ExitStack() as stack:
        tmp_v = stack.enter_context(atomic_path(values_path))
        out = np.lib.format.open_memmap(tmp_v, mode="w+", dtype=np.float32, shape=shape)
        mask = None
        if mask_path is not None:
            tmp_m = stack.enter_context(atomic_path(mask_path))
            mask = np.lib.format.open_memmap(tmp_m, mode="w+", dtype=bool, shape=(ragged.n_frames, n_max))
        for s in range(0, ragged.n_frames, chunk):
            frames = np.arange(s, min(s + chunk, ragged.n_frames))
            vals, padded = pad(ragged, n_max, frames)
            out[s : s + len(frames)] = vals[..., 0] if squeeze else vals
            if mask is not None:
                mask[s : s + len(frames)] = padded
        # flush and close the maps before atomic_path renames the files
        out.flush()
        del out
        if mask is not None:
            mask.flush()
            del mask
