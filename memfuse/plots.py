"""Pictures people would rather look at than numbers: loss curves, ROC curves, per-video
score traces with the anomalous frames shaded, and test AUC against epoch (diagnostic).
All written atomically as PNG; matplotlib runs headless."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import atomic_path  # noqa: E402
from .metrics import roc_curve, video_slices  # noqa: E402


def _save(fig: plt.Figure, path: Path | str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_history(
    history: list[dict], path: Path | str, title: str, keys: list[str] | None = None, log: bool = True
) -> None:
    """One line per numeric key of the history records, against epoch (log y if ``log``
    and every value is positive)."""
    keys = keys or [k for k in history[0] if k != "epoch" and isinstance(history[0][k], (int, float))]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.array([h.get("epoch", i + 1) for i, h in enumerate(history)])
    for k in keys:
        y = np.array([h.get(k, np.nan) for h in history], dtype=float)
        ax.plot(x[np.isfinite(y)], y[np.isfinite(y)], label=k)
    if log and all((np.array([h.get(k, 1) for h in history for k in keys], dtype=float) > 0)):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def plot_validation(history: list[dict], path: Path | str, title: str) -> None:
    """Two panels over the evaluated epochs: the held-out pseudo-label loss (top) and the
    AUCs (bottom: held-out pseudo-normal vs pseudo-anomalous, and the test AUC). Separate
    axes because the loss starts several times above 1 and would flatten the AUCs."""
    rows = [h for h in history if "val_loss" in h]
    x = np.array([h["epoch"] for h in rows])
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    top.plot(x, [h["val_loss"] for h in rows], color="tab:blue", label="held-out pseudo-label loss")
    top.set_ylabel("loss")
    top.legend()
    for key, label in (("val_auc", "held-out pseudo-label AUC"), ("test_micro_auc", "test micro AUC (diagnostic)")):
        y = np.array([h.get(key, np.nan) for h in rows], dtype=float)
        seen = np.isfinite(y)  # epochs where this figure was evaluated
        if seen.any():
            bottom.plot(x[seen], y[seen], label=label)
    bottom.set_ylabel("AUC")
    bottom.set_xlabel("epoch")
    bottom.legend()
    top.set_title(title)
    _save(fig, path)


def plot_roc(curves: dict[str, tuple[np.ndarray, float]], labels: np.ndarray, path: Path | str, title: str) -> None:
    """``curves``: name -> (frame scores, AUC)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, (scores, auc) in curves.items():
        fpr, tpr = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right")
    _save(fig, path)


def plot_videos(
    series: dict[str, np.ndarray],
    labels: np.ndarray | None,
    ends: np.ndarray,
    out_dir: Path | str,
    prefix: str = "video",
) -> list[Path]:
    """One PNG per test video: each series' score over frames, anomalous frames shaded
    (when there are labels). Scores are min-max scaled per video so series on different
    scales share an axis."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for v, s in enumerate(video_slices(ends)):
        fig, ax = plt.subplots(figsize=(7, 2.4))
        if labels is not None:
            lb = labels[s]
            ax.fill_between(
                np.arange(len(lb)), 0, 1, where=lb > 0, color="tab:red", alpha=0.15, step="mid", label="anomalous (GT)"
            )
        for name, sc in series.items():
            x = sc[s]
            rng = x.max() - x.min()
            ax.plot((x - x.min()) / rng if rng > 0 else x * 0, label=name)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("frame")
        ax.set_ylabel("score (scaled)")
        ax.set_title(f"test video {v + 1}")
        ax.legend(loc="upper left", fontsize=7)
        path = out_dir / f"{prefix}_{v + 1:02d}.png"
        _save(fig, path)
        paths.append(path)
    return paths
