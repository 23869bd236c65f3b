"""File I/O shared by every stage: atomic writes, checkpoint paths, clear input errors.

Every output is written to a temporary file in the destination folder and then renamed
over the final name (``os.replace`` is atomic on POSIX), so an interrupted run never
leaves a half-written file that a later stage would trust.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT_ROOT = PROJECT_ROOT / "checkpoints"
RESULTS_ROOT = PROJECT_ROOT / "results"


_UMASK = os.umask(0)
os.umask(_UMASK)


class InputError(ValueError):
    """Bad or missing input. The message names the file and what is wrong."""


def checkpoint_dir(dataset: str, root: Path | str | None = None, recipe: str | None = None) -> Path:
    """``checkpoints/<dataset>/<recipe>/`` (created if missing): each recipe keeps its own
    stage outputs, so running one never overwrites another's."""
    path = Path(root or CHECKPOINT_ROOT) / dataset
    if recipe:
        path = path / recipe
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir(dataset: str, root: Path | str | None = None) -> Path:
    """``results/<dataset>/`` (created if missing)."""
    path = Path(root or RESULTS_ROOT) / dataset
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get normal permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def folder_lock(folder: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (its ``.lock`` file) for a run's lifetime, so two
    runs never write into one checkpoint folder at once. A second run stops at once with
    an :class:`InputError` naming the holder; the lock goes when its process ends, however
    it ends."""
    import fcntl

    path = Path(folder) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise InputError(
                f"{folder} is in use by another run ({holder}); wait for it to finish, "
                "or give this run its own --checkpoint-root"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        yield
    finally:
        fh.close()


def save_npy(path: Path | str, array: np.ndarray) -> None:
    """Atomically write one array (object arrays allowed) as ``.npy``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=array.dtype == object)


def save_npz(path: Path | str, **arrays: np.ndarray) -> None:
    """Atomically write named arrays as one ``.npz``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def save_torch(path: Path | str, obj: Any) -> None:
    """Atomically write a ``torch.save`` checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_json(path: Path | str, obj: Any) -> None:
    """Atomically write pretty-printed JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_video_scores(
    out_dir: Path | str,
    scores: dict[str, np.ndarray],
    ends: np.ndarray,
    labels: np.ndarray | None = None,
    prefix: str = "video",
) -> list[Path]:
    """One CSV per test video, ``out_dir/{prefix}_NN.csv``: the frame (from 1), each
    method's score in ``scores`` (name -> (F,) over all test frames) and, when there are
    labels, the ground truth. Cumulative frame counts ``ends`` (V,) cut the videos."""
    names = list(scores)
    paths, start = [], 0
    for v, end in enumerate(np.asarray(ends, dtype=np.int64)):
        rows = [",".join(["frame", *names] + (["anomalous"] if labels is not None else []))]
        for f in range(start, int(end)):
            cells = (
                [str(f - start + 1)]
                + [f"{float(scores[n][f]):.6g}" for n in names]
                + ([str(int(labels[f]))] if labels is not None else [])
            )
            rows.append(",".join(cells))
        path = Path(out_dir) / f"{prefix}_{v + 1:02d}.csv"
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(rows) + "\n")
        paths.append(path)
        start = int(end)
    return paths


def require(path: Path | str, made_by: str) -> Path:
    """Return ``path`` if it exists, else raise naming the stage that makes it."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"missing input {path}: run `{made_by}` first")
    return path


def load_npy(path: Path | str, made_by: str, mmap: bool = False) -> np.ndarray:
    """Load an ``.npy`` written by an earlier stage (``made_by`` names that stage)."""
    require(path, made_by)
    try:
        return np.load(path, allow_pickle=not mmap, mmap_mode="r" if mmap else None)
    except Exception as exc:  # corrupt or truncated file: say which
        raise InputError(f"cannot read {path}: {exc}") from exc


def load_object_npy(path: Path | str, missing: str) -> np.ndarray:
    """Load an AI-VAD-style ``.npy`` (object arrays need pickle) from outside the pipeline;
    ``missing`` is the whole error message when the file does not exist."""
    path = Path(path)
    if not path.exists():
        raise InputError(missing)
    try:
        return np.load(path, allow_pickle=True)
    except Exception as exc:  # corrupt or truncated file: say which
        raise InputError(f"cannot read {path}: {exc}") from exc


def load_torch(path: Path | str, made_by: str, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint written by an earlier stage (``made_by`` names that stage)."""
    require(path, made_by)
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise InputError(f"cannot read checkpoint {path}: {exc}") from exc
