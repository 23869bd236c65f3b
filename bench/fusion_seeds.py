"""The fusion classifier's own spread over seeds, every stage before it held fixed.

    python bench/fusion_seeds.py results/ped2v/memfuse --seeds 100,101,102
    python bench/fusion_seeds.py results/ped2/memfuse --seeds 0 --json docs/x.json

A run's seed (``--seed`` of run_all.py) seeds every stage: the autoencoder, K-Means, the
memories, the pseudo-anomalies and the fusion classifier. This script retrains only the
classifier (stage 6, attention_fusion.py), with the run's settings, on the run's padded
arrays, once per ``--seeds`` value, and scores each head as the run scored its own: the
classifier alone, and the frame score with this head's classifier term in place of the
run's (every other term is the run's, read from its score_terms.npz). Then the heads and
the run's own classifier as one ensemble (their frame logits averaged). The run's own seed
among ``--seeds`` retrains the run's head: its figures are the run's, up to the order of
floating-point sums (torch threads); it is counted once, as the run, in the ensemble and the
spread.

Test labels are read to report, never to choose. Each head costs what stage 6 costs
without its diagnostics (results/NAME/RECIPE/metrics.json: fusion_train_seconds).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import attention_fusion as AF  # noqa: E402  (a stage script: its padded-array loader and settings check)
from bench.score_terms import load_run  # noqa: E402
from memfuse import scoring as S  # noqa: E402
from memfuse.fusion import PaddedSplit, frame_logits, train_fusion  # noqa: E402
from memfuse.io import InputError, save_json  # noqa: E402
from memfuse.metrics import micro_auc  # noqa: E402
from memfuse.models import AttentionFusion  # noqa: E402
from memfuse.pipeline import seed_everything  # noqa: E402


def train_head(
    train: PaddedSplit, test: PaddedSplit, *, n_max: int, settings: dict, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """One fusion classifier trained as attention_fusion.py trains it with ``settings`` (a
    run's recorded settings) and ``seed``, on the CPU. Returns its frame logits on the train
    frames (F_train,) (the classifier term's reference) and on the test frames (F_test,)."""
    modalities, _ = AF.check_settings(settings)
    seed_everything(seed)  # as begin() seeds a stage, before the model is built
    model = AttentionFusion(
        n_max, hidden=settings["HIDDEN"], dropout=settings["DROPOUT"], u2_key=settings["U2_KEY"], head=settings["HEAD"]
    )
    device = torch.device("cpu")
    train_fusion(
        model,
        train,
        epochs=settings["FUSION_EPOCHS"],
        lr=settings["FUSION_LEARNING_RATE"],
        batch_size=settings["FUSION_BATCH_SIZE"],
        device=device,
        seed=seed,
        masking=settings["MASKING"],
        velocity_anomaly_scale=settings["VELOCITY_ANOMALY_SCALE"],
        modalities=modalities,
        fast_path=settings["FAST_PATH"],
        desc=f"fusion, seed {seed}",
    )
    masking = settings["MASKING"]
    return (
        frame_logits(model, train, device, masking, modalities=modalities),
        frame_logits(model, test, device, masking, modalities=modalities),
    )


def with_classifier(terms: dict[str, np.ndarray], logits: np.ndarray) -> dict[str, np.ndarray]:
    """``terms`` ({term: (F,)}) with the classifier term replaced by ``logits`` (F,)."""
    if len(logits) != len(terms["classifier"]):
        raise ValueError(f"{len(logits)} classifier logits for {len(terms['classifier'])} frames")
    return {**terms, "classifier": np.asarray(logits, dtype=np.float64)}


def head_figures(
    reference: dict[str, np.ndarray],
    test: dict[str, np.ndarray],
    used: tuple[str, ...],
    how: str,
    auc: Callable[[np.ndarray], float],
) -> dict[str, float]:
    """A head's classifier alone (its z-score on its own train logits) and the frame score
    with it, as micro AUCs; ``auc`` maps unsmoothed frame scores (F_test,) to a micro AUC."""
    alone = S.Calibration.fit(reference["classifier"]).z(test["classifier"])
    return {"classifier": auc(alone), "frame_score": auc(S.combine(reference, test, used, how)[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a finished run's results folder: results/NAME/RECIPE")
    ap.add_argument("--seeds", default="100,101,102", help="comma-separated seeds of the heads to train")
    ap.add_argument("--checkpoint", type=Path, help="its checkpoint folder (default: from its settings)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--json", type=Path, help="also write every figure here")
    args = ap.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    if not seeds:
        raise SystemExit("--seeds: give at least one seed")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    finished = load_run(args.run, args.checkpoint)
    metrics, st, ckpt, saved = finished.metrics, finished.settings, finished.ckpt, finished.saved
    if "classifier" not in metrics["score_terms"]:
        raise SystemExit(f"{args.run}: its frame score has no classifier term; nothing to retrain")
    used = tuple(metrics["score_terms"])
    how = st.get("SCORE_COMBINE", "z")
    reference = {t: saved[f"reference_{t}"] for t in used}
    test = {t: saved[f"test_{t}"] for t in used}

    def auc(raw: np.ndarray) -> float:
        return micro_auc(finished.smoothed(raw), finished.labels)

    try:
        train, test_split = AF.load_padded(ckpt, "train"), AF.load_padded(ckpt, "test")
        n_max = AF.padded_meta(ckpt)["n_max"]
    except InputError as exc:
        raise SystemExit(str(exc)) from None
    if train.n_frames != len(reference["classifier"]) or test_split.n_frames != len(test["classifier"]):
        raise SystemExit(f"{ckpt}/padded/ does not hold the frames of {args.run}: rerun it, or pass --checkpoint")

    rows = {f"the run (seed {st['SEED']})": head_figures(reference, test, used, how, auc)}
    heads = [(reference["classifier"], test["classifier"])]
    for seed in seeds:
        start = time.perf_counter()
        ref_logits, test_logits = train_head(train, test_split, n_max=n_max, settings=st, seed=seed)
        if seed != st["SEED"]:  # the run's own seed reproduces the run's head: counted once
            heads.append((ref_logits, test_logits))
        rows[f"head seed {seed}"] = head_figures(
            with_classifier(reference, ref_logits), with_classifier(test, test_logits), used, how, auc
        ) | {"seconds": time.perf_counter() - start}
    ensemble = (np.mean([h[0] for h in heads], axis=0), np.mean([h[1] for h in heads], axis=0))
    rows[f"ensemble of the {len(heads)} (mean logit)"] = head_figures(
        with_classifier(reference, ensemble[0]), with_classifier(test, ensemble[1]), used, how, auc
    )
    own = f"head seed {st['SEED']}"
    single = [r for k, r in rows.items() if not k.startswith("ensemble") and k != own]
    print(f"\n{st['DATASET']}, upstream stages of seed {st['SEED']}, {st['FUSION_EPOCHS']} fusion epochs")
    print("| classifier | alone, micro AUC | frame score, micro AUC |\n|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {100 * r['classifier']:.1f} | {100 * r['frame_score']:.2f} |")
    spread = {k: [r[k] for r in single] for k in ("classifier", "frame_score")}
    print(
        f"| single heads: mean (min-max) | {100 * np.mean(spread['classifier']):.1f} "
        f"({100 * min(spread['classifier']):.1f}-{100 * max(spread['classifier']):.1f}) | "
        f"{100 * np.mean(spread['frame_score']):.2f} "
        f"({100 * min(spread['frame_score']):.2f}-{100 * max(spread['frame_score']):.2f}) |"
    )
    if args.json:
        save_json(args.json, {"run": str(args.run), "dataset": st["DATASET"], "seed": st["SEED"], "rows": rows})


if __name__ == "__main__":
    main()
