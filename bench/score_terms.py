"""Each score term and each way of combining them, from one finished run, with no training.

    python bench/score_terms.py results/ped2/memfuse
    python bench/score_terms.py results/ped2_onemod/memfuse --json docs/ped2_onemod_terms.json

Reads the run's score_terms.npz (every term's raw test and reference values, written by
attention_fusion.py) and, from its checkpoint folder, the train objects' own (in-sample)
memory distances and reconstruction errors. Prints, per term: its micro AUC and its mean
z-score on normal and on anomalous test frames, calibrated on the train frames themselves
("in-sample", this project's calibration before calibrate.py) and on the reference frames
the run used (out-of-fold for the memorised terms). Then the frame score's micro AUC for
every combination of memfuse/scoring.py, the old one (in-sample z-scores, summed), the
run's with the other speed term (``vel_rel`` for ``vel``, or back) or appearance distance
(``app`` for ``app_knn``, or back), the box terms' sources summed per object before the
largest object is taken (an ablation of the frame max), and
per anomaly kind where the dataset names one per test video (anomaly_kinds.npy).
Test labels are read to report, never to choose.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memfuse import data as D  # noqa: E402
from memfuse import scoring as S  # noqa: E402
from memfuse.fusion import memory_terms, object_values  # noqa: E402
from memfuse.io import checkpoint_dir, save_json  # noqa: E402
from memfuse.metrics import micro_auc, smooth_scores  # noqa: E402
from memfuse.report import per_kind  # noqa: E402

MEMORISED = ("app", "app_rec", "pose")


class FinishedRun(NamedTuple):
    """What a finished run left: its metrics.json, recorded settings, checkpoint folder,
    score_terms.npz (every term's raw test and reference values), data folder, test clip
    ends and test frame labels (F_test,)."""

    metrics: dict
    settings: dict
    ckpt: Path
    saved: dict[str, np.ndarray]
    root: Path
    ends: np.ndarray
    labels: np.ndarray

    def smoothed(self, scores: np.ndarray) -> np.ndarray:
        """Frame scores (F_test,) smoothed as the run smoothed its own."""
        return smooth_scores(scores, self.ends, self.settings["SMOOTH_SIGMA"], self.settings["SMOOTH_PER_VIDEO"])


def load_run(run: Path, checkpoint: Path | None = None) -> FinishedRun:
    """The :class:`FinishedRun` in results folder ``run`` (results/NAME/RECIPE); its
    checkpoint folder from its settings unless ``checkpoint`` is given. A missing file
    exits naming it and the stage that writes it."""
    try:
        metrics = json.loads((run / "metrics.json").read_text())
        saved = dict(np.load(run / "score_terms.npz"))
    except FileNotFoundError as exc:
        raise SystemExit(f"{exc.filename}: not found; run python attention_fusion.py (or run_all.py) first") from None
    st = metrics["settings"]
    ckpt = checkpoint or checkpoint_dir(st["DATASET"], st["CHECKPOINT_ROOT"], st["RECIPE"])
    root = D.resolve_data_root(st["DATASET"], st["DATA_ROOT"])
    ends = D.load_clip_lengths(root, st["DATASET"], "test", metrics["n_test_frames"])
    return FinishedRun(metrics, st, ckpt, saved, root, ends, D.load_labels(root, st["DATASET"], ends))


def in_sample_reference(ckpt: Path, reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``reference`` with the memorised terms replaced by the train objects' own values."""
    import attention_fusion  # a stage script: its loader of the padded arrays

    own = memory_terms(attention_fusion.load_padded(ckpt, "train"))
    return {t: (own[t] if t in MEMORISED else v) for t, v in reference.items()}


def per_object_frame_score(
    reference: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    objects: dict[str, np.ndarray],
    padded: np.ndarray,
    terms: tuple[str, ...],
    how: str = "z",
) -> np.ndarray:
    """The frame score (F,) with the box terms' sources summed *per object*, then the largest
    object taken (the detector's per-object share, memfuse.scoring.object_scores), instead
    of each source's largest object summed: evidence counts only where one object carries
    it in several sources. ``reference`` and ``test``: each term's frame values ({term:
    (F_ref,)}, {term: (F,)}); ``objects``: the box terms' per-object test values ({term:
    (F, N)}); ``padded``: (F, N) bool, True = padding. The terms not measured on boxes (the
    classifier, pose) are added as in the frame score. An ablation, not a setting."""
    _, values, calibration = S.combine(reference, test, terms, how)
    per_object = S.object_scores(objects, padded, calibration, terms, how)
    rest = tuple(t for t in terms if t not in S.OBJECT_TERMS)
    frame_rest = S.combine_values(values, rest, how) if rest else 0.0
    return frame_rest + S.masked_frame_max(per_object, padded)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a run's results folder: results/NAME/RECIPE")
    ap.add_argument("--checkpoint", type=Path, help="its checkpoint folder (default: from its settings)")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    finished = load_run(args.run, args.checkpoint)
    metrics, st, ckpt, saved, root, ends, labels = finished
    terms = tuple(t for t in S.TERMS if f"test_{t}" in saved)
    test = {t: saved[f"test_{t}"] for t in terms}
    after = {t: saved[f"reference_{t}"] for t in terms}
    before = in_sample_reference(ckpt, after)
    kinds_file = root / st["DATASET"] / "anomaly_kinds.npy"
    kinds = np.load(kinds_file, allow_pickle=True) if kinds_file.exists() else None
    smoothed = finished.smoothed

    out: dict = {"run": str(args.run), "dataset": st["DATASET"], "seed": st["SEED"], "terms": {}, "scores": {}}
    print(f"{st['DATASET']}, seed {st['SEED']}: {len(labels)} test frames, {int(labels.sum())} anomalous")
    print("| term | micro AUC | mean z normal, in-sample -> held-out | mean z anomalous, in-sample -> held-out |")
    print("|---|---|---|---|")
    for t in terms:
        zb, za = S.Calibration.fit(before[t]).z(test[t]), S.Calibration.fit(after[t]).z(test[t])
        row = {
            "micro_auc": micro_auc(smoothed(za), labels),
            "z_normal": [float(zb[labels == 0].mean()), float(za[labels == 0].mean())],
            "z_anomalous": [float(zb[labels == 1].mean()), float(za[labels == 1].mean())],
        }
        out["terms"][t] = row
        print(
            f"| {t} | {100 * row['micro_auc']:.1f} | {row['z_normal'][0]:.1f} -> {row['z_normal'][1]:.1f} "
            f"| {row['z_anomalous'][0]:.1f} -> {row['z_anomalous'][1]:.1f} |"
        )
    used = tuple(metrics["score_terms"])
    scores = {"before: in-sample z, summed": S.combine(before, test, used, "z")[0]}
    scores |= {f"held-out, {how}": S.combine(after, test, used, how)[0] for how in S.COMBINES}
    # the run's score with the other speed term, and with the other appearance-distance term
    swap = {"vel": "vel_rel", "vel_rel": "vel", "app_knn": "app", "app": "app_knn"}
    how = st.get("SCORE_COMBINE", "z")
    for a, b in swap.items():
        if a in used and b in terms and b not in used:
            other = tuple(t for t in S.TERMS if t in (set(used) - {a}) | {b})
            scores[f"held-out, {how}, {b} for {a}"] = S.combine(after, test, other, how)[0]
    if any(t in S.OBJECT_TERMS for t in used) and how != "tail_max":
        import attention_fusion  # a stage script: its loader of the padded arrays

        split = attention_fusion.load_padded(ckpt, "test")
        scores[f"held-out, {how}, box sources summed per object"] = per_object_frame_score(
            after, test, object_values(split), np.asarray(split.app_mask), used, how
        )
    scores |= {f"term {t}": S.Calibration.fit(after[t]).z(test[t]) for t in terms}
    smooth = {k: smoothed(v) for k, v in scores.items()}
    out["scores"] = {k: micro_auc(v, labels) for k, v in smooth.items()}
    if kinds is not None:
        out["per_kind"] = per_kind(smooth, kinds, ends, labels)
    kind_names = sorted(set(kinds)) if kinds is not None else []
    print(f"\nscore terms {'+'.join(used)}\n| score | micro AUC |" + "".join(f" {n} |" for n in kind_names))
    print("|---|---|" + "---|" * len(kind_names))
    for k, auc in out["scores"].items():
        per = [f" {100 * out['per_kind'][k][n]:.1f} |" for n in kind_names] if kinds is not None else []
        print(f"| {k} | {100 * auc:.1f} |" + "".join(per))
    if args.json:
        save_json(args.json, out)


if __name__ == "__main__":
    main()
