"""Reporting, in one place: the files, plots and tables a run leaves for people to read.

- :func:`write_fusion_results`: stage 6's ``results/DATASET/RECIPE/`` (scores, score terms,
  each box's evidence, metrics.json, history.json, ROC, loss and diagnostic curves, one plot
  per test video).
- :func:`write_comparison`, :func:`per_kind`, :func:`annotate`, :func:`print_table`:
  ``run_all.py``'s ``results/DATASET/`` (every method together).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .data import boxes_path
from .io import save_json, save_npy, save_npz, save_video_scores
from .metrics import micro_auc, video_slices, why_no_auc
from .plots import plot_history, plot_roc, plot_validation, plot_videos


def write_fusion_results(
    out: Path,
    *,
    dataset: str,
    result: dict[str, Any],
    final: np.ndarray,
    raw: np.ndarray,
    terms: dict[str, np.ndarray],
    per_object: np.ndarray | None,
    history: list[dict],
    labels: np.ndarray | None,
    ends: np.ndarray,
    eval_every: int,
    validation: bool,
) -> None:
    """Write stage 6's results into ``out``.

    ``final`` and ``raw``: (F,) smoothed and unsmoothed frame scores; ``terms``: the raw
    terms of the test and reference frames (``test_<term>``, ``reference_<term>``);
    ``per_object``: (F, N) each box's evidence or ``None``; ``result``: the metrics.json
    content; ``history``: per-epoch records."""
    save_npy(out / "scores.npy", final)
    save_npy(out / "scores_raw.npy", raw)
    save_npz(out / "score_terms.npz", **terms)  # raw test and reference terms: any combination can be re-scored
    if per_object is not None:  # each box's own evidence (row i = box i of the frame), for the annotated videos
        save_npy(out / "object_scores.npy", per_object)
    save_json(out / "metrics.json", result)
    save_json(out / "history.json", history)  # per-epoch loss and diagnostics, to redraw the curves
    if why_no_auc(labels) is None:
        plot_roc({"ours": (final, result["micro_auc"])}, labels, out / "roc.png", f"{dataset}: frame-level ROC")
    plot_videos({"ours": final}, labels, ends, out / "videos")
    plot_history(history, out / "fusion_loss.png", f"{dataset} fusion training loss", ["loss"])
    curve = [{"epoch": h["epoch"], "test_micro_auc": h["test_micro_auc"]} for h in history if "test_micro_auc" in h]
    if curve:
        plot_history(
            curve,
            out / "auc_vs_epoch.png",
            f"{dataset}: test micro AUC every {eval_every} epochs (diagnostic, not for selection)",
            log=False,
        )
    if validation:
        plot_validation(
            history, out / "validation.png", f"{dataset}: held-out pseudo labels (label-free) and the test AUC"
        )


def oracle(history: list[dict], eval_every: int) -> dict[str, Any]:
    """The best smoothed test AUC over the evaluated epochs, labelled as the test-selected
    figure it is (the reference's protocol), or ``{}`` when none was evaluated."""
    curve = [(h["epoch"], h["test_micro_auc"]) for h in history if "test_micro_auc" in h]
    if not curve:
        return {}
    best_epoch, best_auc = max(curve, key=lambda c: c[1])
    return {
        "oracle_micro_auc": best_auc,
        "oracle_epoch": best_epoch,
        "oracle_note": f"best smoothed test micro AUC over epochs evaluated every {eval_every}: the reference's "
        "protocol, which selects the epoch on test labels; not a fair figure",
    }


def per_kind(
    scores: dict[str, np.ndarray], kinds: np.ndarray, ends: np.ndarray, labels: np.ndarray
) -> dict[str, dict[str, float]]:
    """Micro AUC of each method (scores (F,) each) over the test videos of each anomaly kind
    (``kinds``: one per test video; the synthetic data have them)."""
    slices = video_slices(ends)
    return {
        name: {
            str(k): micro_auc(
                np.concatenate([s[v] for v, kk in zip(slices, kinds) if kk == k]),
                np.concatenate([labels[v] for v, kk in zip(slices, kinds) if kk == k]),
            )
            for k in sorted(set(kinds))
        }
        for name, s in scores.items()
    }


def write_comparison(
    out: Path, dataset: str, scores: dict[str, np.ndarray], ends: np.ndarray, labels: np.ndarray | None
) -> None:
    """ROC curves, and per test video a plot and a CSV of the scores (F,) of every method together."""
    if why_no_auc(labels) is None:
        plot_roc(
            {n: (s, micro_auc(s, labels)) for n, s in scores.items()},
            labels,
            out / "roc.png",
            f"{dataset}: frame-level ROC",
        )
    plot_videos(scores, labels, ends, out / "videos")
    save_video_scores(out / "videos", scores, ends, labels)


def annotate(out: Path, dataset: str, recipe: str, raw_root: Path, data_root: Path, labels: np.ndarray | None) -> str:
    """Annotated test videos of ``recipe`` in ``out/videos/`` when the dataset's raw test
    frames (or videos) and boxes are at hand; returns what was done, for the summary."""
    from .annotate import write_annotated_videos
    from .extract.frames import list_split_videos, load_boxes

    found = (boxes_path(r, dataset, "test") for r in (data_root, raw_root))
    boxes_file = next((p for p in found if p.exists()), None)
    if boxes_file is None or not any((raw_root / dataset / "testing" / sub).is_dir() for sub in ("frames", "videos")):
        return "none: no raw test frames or boxes"
    object_file = out / recipe / "object_scores.npy"
    start = time.perf_counter()
    paths = write_annotated_videos(
        list_split_videos(raw_root / dataset / "testing"),
        load_boxes(boxes_file),
        np.load(out / recipe / "scores.npy"),
        np.load(object_file) if object_file.exists() else None,
        labels,
        out / "videos",
    )
    print(f"  annotated {len(paths)} test videos ({recipe}) in {out / 'videos'} ({time.perf_counter() - start:.0f} s)")
    return f"{len(paths)} videos of {recipe} in videos/"


def print_table(report: dict, out: Path) -> None:
    """One row per method: micro / macro AUC, EER (and the test-selected figure, labelled)."""
    rows = {**report["recipes"], "AI-VAD baseline": report["baseline"]}
    print(
        f"\n{report['dataset']} ({report['data']['test']['frames']} test frames, seed {report['seed']}"
        + "".join(f", {c}" for c in report.get("configs", []))
        + ")"
    )
    print(f"  {'method':<20} {'micro AUC':>9} {'macro AUC':>9} {'EER':>7}   test-selected epoch (not a fair figure)")
    if "no_auc" in report:
        print(f"  no AUC: {report['no_auc']}; the scores of every method are in {out}")
    for name, m in rows.items():
        if m["micro_auc"] is None:
            continue
        test_selected = f"{m['oracle_micro_auc']:.4f} (epoch {m['oracle_epoch']})" if "oracle_micro_auc" in m else ""
        print(f"  {name:<20} {m['micro_auc']:>9.4f} {m['macro_auc']:>9.4f} {m['eer']:>7.4f}   {test_selected}")
    for name, kinds in report.get("per_kind_micro_auc", {}).items():
        print(f"  {name:<20} micro AUC by anomaly kind: " + ", ".join(f"{k} {v:.4f}" for k, v in kinds.items()))
    skipped = set(report["stages_skipped"])
    print(
        "  stage wall times (s; * = up to date, time of the run that made it): "
        + ", ".join(f"{k} {v}" + ("*" if k in skipped else "") for k, v in report["stage_seconds"].items())
    )
    print(f"  -> {out / 'summary.json'}; each recipe's scores and plots in {out}/<recipe>/")
