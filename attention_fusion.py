"""Stage 6: train the cross-modal attention fusion classifier on the pseudo labels, score
the test frames, smooth and evaluate.

Reads  CKPT/padded/*   (padding_mask.py), the test clip lengths and labels
Writes CKPT/fusion.pt  model weights, settings, per-epoch history, the score terms' standardisation
       CKPT/detector/  the trained detector in one folder, for detect.py (memfuse/detector.py)
       results/DATASET/RECIPE/scores.npy     (F_test,) final smoothed frame scores, test-frame order
       results/DATASET/RECIPE/scores_raw.npy (F_test,) the same before smoothing
       results/DATASET/RECIPE/score_terms.npz every term before calibration and smoothing: test_<term>
            (F_test,) and reference_<term> (F_train,), its calibration frames (to re-score combinations)
       results/DATASET/RECIPE/object_scores.npy (F_test, N_max) each box's evidence (summed scores)
       results/DATASET/RECIPE/metrics.json   micro/macro AUC, EER, protocol, diagnostics
       results/DATASET/RECIPE/history.json   per-epoch loss (and test / held-out figures where evaluated)
       results/DATASET/RECIPE/roc.png, fusion_loss.png, auc_vs_epoch.png, validation.png (with
       VAL_VIDEOS), videos/video_NN.png
where CKPT = checkpoints/DATASET/RECIPE/.

Model selection is honest: the model is the one after FUSION_EPOCHS epochs; test labels are
never used to choose it. With EVAL_EVERY > 0 the test AUC is also recorded every EVAL_EVERY
epochs as a diagnostic curve, and its maximum is reported separately as `oracle_micro_auc`
(the reference's protocol, which selects the epoch on test labels).

A label-free alternative to a fixed epoch count: VAL_VIDEOS > 0 holds out the last train
videos from the fusion; every EVAL_EVERY epochs their pseudo-label loss is recorded, and
STOP_ON_VALIDATION keeps the weights at its lowest (PATIENCE ends training early). The
autoencoder and memories still saw those videos; only the classifier did not.

    python attention_fusion.py --dataset ped2 --data-root ../shared/data
"""

import json
import time
from dataclasses import asdict

import numpy as np
from scipy.special import expit

from memfuse import data as D
from memfuse import report
from memfuse.calibration import HELDOUT_PADDED
from memfuse.detector import build as build_detector
from memfuse.fusion import (
    KeepBest,
    PaddedSplit,
    check_modalities,
    frame_logits,
    holdout_videos,
    memory_terms,
    object_values,
    passes,
    pseudo_label_validation,
    take_frames,
    train_fusion,
)
from memfuse.io import InputError, require, results_dir, save_torch
from memfuse.metrics import evaluate, micro_auc, smooth_scores, why_no_auc
from memfuse.models import HEADS, AttentionFusion
from memfuse.pipeline import begin, run, upstream_settings
from memfuse.registry import made_by
from memfuse.scoring import COMBINES, TERMS, calibrate, combine_values, object_scores, parse_terms, term_values
from memfuse.stages import load_output

# -- settings: each is also a flag (--fusion-epochs 2000); the smoothing and results folders are shared
# (memfuse/config.py)
FUSION_EPOCHS = 200  # the paper: 2000 (config/schedules/paper.toml)
FUSION_LEARNING_RATE = 1e-4
FUSION_BATCH_SIZE = 4096  # frames per step; >= the train frame count is full batch (Ped2: 2550)
HIDDEN = 64  # the paper: 256; the pooled head sees one 204-d object row at a time
DROPOUT = 0.5
HEAD = "pool"  # one MLP shared by every object row, max over real rows; the paper: "flatten" the N_max slots
# Frame score: terms calibrated on normal frames their models never saw, combined (memfuse/scoring.py);
# the paper: "classifier" alone. vel_dir needs orientation bins (B > 1), app_knn and vel_dir need calibrate.py's
# cross-fitting: without them they are left out. app_knn stands in for app (the nearest memory item): the better
# term alone wherever a box is one object; the sum gained on Ped2 and the Avenue-like set, lost 0.2-0.3 on the
# synthetic demo and on Ped2 from motion boxes (docs/results.md).
# vel_rel (speed relative to box height) is not a default: on Ped2 it lifted the micro AUC but
# lost macro AUC and on the one-modality set (docs/results.md)
SCORE_TERMS = "classifier,app_knn,app_rec,pose,vel,vel_dir"
SCORE_COMBINE = "z"  # z-scores, a source's mean, summed; "tail": summed -log tail probabilities (docs/results.md)
MASKING = True  # reference: False (its mask test never matches, nothing is masked)
U2_KEY = "k2"  # reference: "k3" (u2 = softmax(q1 k3^T + q3 k2^T) v2)
VELOCITY_ANOMALY_SCALE = 3.0  # a fifth pass (app, pose normal, vel x 3) -> 1; the paper: 0, velocity never varies
EVAL_EVERY = 10  # epochs between diagnostic test-AUC measurements (0: none, no oracle figure)
MODALITIES = "app,pose,vel"  # ablation: the others are fed as zeros (see memfuse.fusion)
VAL_VIDEOS = 0  # train videos held out of the fusion for a label-free validation (0: none, the paper)
STOP_ON_VALIDATION = False  # keep the weights at the lowest held-out pseudo-label loss (needs VAL_VIDEOS)
PATIENCE = 0  # with STOP_ON_VALIDATION: stop after this many evaluations without improvement (0: run all epochs)
FPS = 25.0  # frames per second of the footage (config/datasets/NAME.toml: Ped2 10): alarm rates per hour
FALSE_ALARMS_PER_HOUR = 1.0  # the detector's alarm threshold (CKPT/detector/), set on normal train footage
FAST_PATH = True  # memfuse/fast.py: the same training, faster on a CPU (other random draws than torch's dropout)
HELP = {
    "FUSION_EPOCHS": "training epochs; the model after the last one is the model (unless --stop-on-validation)",
    "FUSION_LEARNING_RATE": "Adam learning rate",
    "FUSION_BATCH_SIZE": "frames per step (each gives 4-5 labelled samples); 0 = full batch",
    "HIDDEN": "classifier hidden width",
    "DROPOUT": "dropout after alignment and in the classifier",
    "HEAD": f"classifier head: {' or '.join(HEADS)} (see memfuse.models.AttentionFusion)",
    "SCORE_TERMS": "frame score: classifier alone (its sigmoid, the paper) or the calibrated terms listed, "
    "combined (classifier, app, app_rec, app_knn, pose, vel, vel_rel, vel_dir; see memfuse/scoring.py)",
    "SCORE_COMBINE": "how calibrated terms combine: z (summed z-scores, each source's mean), tail (summed -log "
    "tail probabilities, each source's strongest term), tail_max (the largest evidence)",
    "MASKING": "padded keys take no attention weight (--no-masking: the reference)",
    "U2_KEY": "k2: u2 = softmax(q1 k2^T + q3 k2^T) v2; k3: the reference's q1 k3^T",
    "VELOCITY_ANOMALY_SCALE": "pseudo-anomalous velocity = scale x velocity, a fifth pass (0 = off, the paper)",
    "EVAL_EVERY": "record the test AUC every this many epochs, as a diagnostic only (0 = never)",
    "MODALITIES": "ablation: comma-separated modalities the model sees (app, pose, vel); the others are zeros",
    "VAL_VIDEOS": "hold out the last N train videos from the fusion; their pseudo-label loss is recorded every "
    "EVAL_EVERY epochs (0 = none)",
    "STOP_ON_VALIDATION": "model = the evaluated epoch with the lowest held-out pseudo-label loss "
    "(needs --val-videos), not the last",
    "PATIENCE": "with --stop-on-validation: end training after this many evaluations without improvement (0 = never)",
    "FPS": "frames per second of the footage, to turn the detector's alarm rate into events per hour",
    "FALSE_ALARMS_PER_HOUR": "the detector's alarm threshold: this many alarm events per hour on normal train footage "
    "(memfuse/alarms.py)",
    "FAST_PATH": "CPU fast path (memfuse/fast.py): bit-mask dropout, batches cut to the rows they fill; same maths",
}

PADDED_NAMES = ("app", "pose", "vel", "app_mask", "pose_mask", "app_dist", "pose_dist", "app_rec")


def padded_meta(ckpt) -> dict:
    """padding_mask.py's padded/meta.json."""
    return json.loads(require(ckpt / "padded" / "meta.json", made_by("padded/meta.json")).read_text())


def load_padded(ckpt, split: str) -> PaddedSplit:
    """Memory-map one split's padded arrays (only mini-batches are ever copied)."""
    meta = padded_meta(ckpt)
    arrays = {n: load_output(ckpt, f"padded/{split}_{n}.npy", mmap=True) for n in PADDED_NAMES}
    if split == "train":
        arrays["app_anomaly"] = load_output(ckpt, "padded/train_app_anomaly.npy", mmap=True)
        arrays["pose_anomaly"] = load_output(ckpt, "padded/train_pose_anomaly.npy", mmap=True)
        if meta.get("heldout"):  # calibrate.py cross-fitted
            for name in HELDOUT_PADDED:
                arrays[name] = load_output(ckpt, f"padded/train_{name}.npy", mmap=True)
    if "vel_rel" in meta:  # padding_mask.py made the speed relative to box height
        arrays["vel_rel"] = load_output(ckpt, f"padded/{split}_vel_rel.npy", mmap=True)
    for term in ("vel_dir", "app_knn"):  # calibrate.py's nearest-train-object terms, where it made them
        if meta.get(term):
            arrays[term] = load_output(ckpt, f"padded/{split}_{term}.npy", mmap=True)
    return PaddedSplit(**arrays)


def validation_diagnostics(history: list[dict], best_epoch: int) -> dict:
    """How well the label-free rule did, judged afterwards with the test labels (a report on
    the rule, never an input to it): the test AUC at the epoch of lowest held-out loss, and
    the Spearman correlation of held-out loss with test AUC over the evaluated epochs
    (negative: the loss falls where the test AUC rises)."""
    from scipy.stats import spearmanr

    evaluated = [h for h in history if "val_loss" in h and "test_micro_auc" in h]
    out = {
        "test_micro_auc_at_best_epoch": next((h["test_micro_auc"] for h in evaluated if h["epoch"] == best_epoch), None)
    }
    if len(evaluated) >= 3:
        rho = spearmanr([h["val_loss"] for h in evaluated], [h["test_micro_auc"] for h in evaluated]).statistic
        out["spearman_val_loss_vs_test_auc"] = None if np.isnan(rho) else float(rho)
    return out


def check_settings(g: dict) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The settings ``g`` checked before anything trains (run_all.py calls this before its
    first stage): raises InputError naming the flag. Returns the modalities and score terms."""
    if g["U2_KEY"] not in ("k2", "k3"):
        raise InputError(f"--u2-key must be k2 or k3, got {g['U2_KEY']!r}")
    try:
        modalities = check_modalities(tuple(m.strip() for m in g["MODALITIES"].split(",") if m.strip()))
        passes(g["VELOCITY_ANOMALY_SCALE"], modalities)
    except ValueError as exc:
        raise InputError(f"--modalities {g['MODALITIES']}: {exc}") from exc
    if g["HEAD"] not in HEADS:
        raise InputError(f"--head must be one of {', '.join(HEADS)}, got {g['HEAD']!r}")
    try:
        terms = parse_terms(g["SCORE_TERMS"])
    except ValueError as exc:
        raise InputError(f"--score-terms: {exc}") from None
    if g["SCORE_COMBINE"] not in COMBINES:
        raise InputError(f"--score-combine must be one of {', '.join(COMBINES)}, got {g['SCORE_COMBINE']!r}")
    if (g["VAL_VIDEOS"] > 0 or g["STOP_ON_VALIDATION"]) and g["EVAL_EVERY"] <= 0:
        raise InputError("validation is measured every EVAL_EVERY epochs: set --eval-every > 0")
    if g["STOP_ON_VALIDATION"] and g["VAL_VIDEOS"] <= 0:
        raise InputError("--stop-on-validation needs held-out videos: set --val-videos N (e.g. 2)")
    return modalities, terms


def frame_scores(
    model: AttentionFusion,
    train: PaddedSplit,
    test: PaddedSplit,
    *,
    device,
    modalities: tuple[str, ...],
    terms: tuple[str, ...],
    fixed: tuple[dict, dict],
) -> tuple[np.ndarray, dict[str, np.ndarray], dict, dict[str, np.ndarray]]:
    """Unsmoothed test frame scores (F_test,), every available term calibrated on its
    reference frames ({term: (F_test,)}, for the record), the calibrations, and the raw
    terms ({"reference_<term>": (F_train,), "test_<term>": (F_test,)}, to re-score any
    combination). ``fixed``:
    the training-free terms of the reference (train) frames and the test frames. The
    classifier alone is scored by its sigmoid, as the paper."""
    test_logits = frame_logits(model, test, device, MASKING, modalities=modalities)
    reference = {"classifier": frame_logits(model, train, device, MASKING, modalities=modalities), **fixed[0]}
    available = tuple(t for t in TERMS if t in reference)
    test_terms = {"classifier": test_logits, **fixed[1]}
    calibration = calibrate(reference, available)
    values = term_values(calibration, test_terms, SCORE_COMBINE)
    raw = {f"reference_{t}": reference[t] for t in available} | {f"test_{t}": test_terms[t] for t in available}
    as_dicts = {t: asdict(c) for t, c in calibration.items()}
    if terms == ("classifier",):
        return expit(test_logits), values, as_dicts, raw
    used = tuple(t for t in terms if t in available)
    return combine_values(values, used, SCORE_COMBINE), values, as_dicts, raw


def main(argv: list[str] | None = None) -> None:
    stage = begin(globals(), "attention_fusion.py", argv)
    modalities, terms = check_settings(globals())
    ckpt, device, dataset, root = stage.ckpt, stage.device, stage.dataset, stage.data_root
    out = results_dir(f"{stage['RESULTS_NAME'] or dataset}/{stage.recipe}", stage["RESULTS_ROOT"])
    meta = json.loads(require(ckpt / "padded" / "meta.json", made_by("padded/meta.json")).read_text())
    train, test = load_padded(ckpt, "train"), load_padded(ckpt, "test")
    ends = D.load_clip_lengths(root, dataset, "test", test.n_frames)
    labels = D.load_labels(root, dataset, ends, required=False)  # checked before training, used only after it
    no_auc = why_no_auc(labels)
    if no_auc:
        print(f"[attention_fusion] {no_auc}: scores are written, with no AUC")
    val = None
    fit_ends = D.load_clip_lengths(root, dataset, "train", train.n_frames)  # the videos the fusion fits on
    if VAL_VIDEOS > 0:
        try:
            fit_frames, val_frames = holdout_videos(fit_ends, VAL_VIDEOS)
        except ValueError as exc:
            raise InputError(f"--val-videos {VAL_VIDEOS}: {exc}") from exc
        train, val = take_frames(train, fit_frames), take_frames(train, val_frames)
        fit_ends = fit_ends[:-VAL_VIDEOS]
        print(
            f"[attention_fusion] validation: the last {VAL_VIDEOS} train videos ({val.n_frames} frames) "
            "held out of the fusion"
        )
    keeper = KeepBest(PATIENCE if STOP_ON_VALIDATION else 0)
    n_max = meta["n_max"]
    print(
        f"[attention_fusion] {dataset}: {train.n_frames} train / {test.n_frames} test frames, N_max {n_max}, "
        f"{FUSION_EPOCHS} epochs on {device}, masking={MASKING}, u2 key={U2_KEY}, "
        f"velocity anomaly x{VELOCITY_ANOMALY_SCALE}, "
        f"modalities {','.join(modalities)}, head {HEAD}, score {' + '.join(terms)}, recipe {stage.recipe}"
    )
    if "vel_rel" in terms and test.vel_rel is None:
        raise InputError(f"{ckpt}/padded/ has no vel_rel (made by older code): rerun python padding_mask.py")
    if "app_knn" in terms and "app_knn" not in padded_meta(ckpt):
        raise InputError(
            f"{ckpt}/padded/ has no app_knn (made by older code): rerun python calibrate.py, then padding_mask.py"
        )
    heldout = train.app_dist_heldout is not None
    fixed = (memory_terms(train, heldout=heldout), memory_terms(test))
    print(
        "[attention_fusion] memorised terms calibrated on "
        + ("out-of-fold train videos (calibrate.py)" if heldout else "the train objects themselves (no calibrate.py)")
        + ("" if "vel_dir" not in terms or test.vel_dir is not None else "; vel_dir left out: no orientation bins")
        + ("" if "app_knn" not in terms or test.app_knn is not None else "; app_knn left out: no cross-fitting")
    )
    missing = {"vel_dir": test.vel_dir is None, "app_knn": test.app_knn is None}
    terms = tuple(t for t in terms if not missing.get(t, False))

    def smoothed(raw: np.ndarray) -> np.ndarray:
        return smooth_scores(raw, ends, stage["SMOOTH_SIGMA"], stage["SMOOTH_PER_VIDEO"])

    def scores_of(model: AttentionFusion) -> tuple[np.ndarray, dict[str, np.ndarray], dict, dict]:
        return frame_scores(model, train, test, device=device, modalities=modalities, terms=terms, fixed=fixed)

    def diagnostic(epoch: int, model: AttentionFusion) -> dict | None:
        # Test AUC as a curve to look at, never to choose the model.
        if EVAL_EVERY <= 0 or (epoch % EVAL_EVERY and epoch != FUSION_EPOCHS):
            return None
        record = {} if no_auc else {"test_micro_auc": micro_auc(smoothed(scores_of(model)[0]), labels)}
        if val is not None:  # label-free: held-out train videos and their pseudo labels only
            record.update(pseudo_label_validation(model, val, device, MASKING, VELOCITY_ANOMALY_SCALE, modalities))
            record["stop"] = keeper.update(epoch, record["val_loss"], model)
        return record or None

    model = AttentionFusion(n_max, hidden=HIDDEN, dropout=DROPOUT, u2_key=U2_KEY, head=HEAD).to(device)
    start = time.perf_counter()
    history = train_fusion(
        model,
        train,
        epochs=FUSION_EPOCHS,
        lr=FUSION_LEARNING_RATE,
        batch_size=FUSION_BATCH_SIZE,
        device=device,
        seed=stage.seed,
        masking=MASKING,
        velocity_anomaly_scale=VELOCITY_ANOMALY_SCALE,
        on_epoch=diagnostic,
        modalities=modalities,
        fast_path=FAST_PATH,
    )
    train_seconds = time.perf_counter() - start
    epochs_run = history[-1]["epoch"] if history else 0
    selection = f"fixed: the model after {epochs_run} epochs (no test labels used)"
    if STOP_ON_VALIDATION:
        selected = keeper.restore(model)
        selection = (
            f"label-free: epoch {selected} of {epochs_run}, the lowest pseudo-label loss on {VAL_VIDEOS} held-out "
            f"train videos, evaluated every {EVAL_EVERY} epochs (no test labels used)"
        )
    raw, z, stats, raw_terms = scores_of(model)
    save_torch(
        ckpt / "fusion.pt",
        {
            "state_dict": model.cpu().state_dict(),
            "n_max": n_max,
            "settings": stage.settings,
            "history": history,
            "term_calibration": stats,
            "score_combine": SCORE_COMBINE,
        },
    )
    model.to(device)
    final = smoothed(raw)
    measures = evaluate(final, labels, ends)
    result = {
        "dataset": dataset,
        **measures,
        "unsmoothed_micro_auc": None if no_auc else micro_auc(raw, labels),
        "n_test_frames": int(test.n_frames),
        "n_train_frames": int(train.n_frames),
        "protocol": {
            "model_selection": selection,
            "smoothing": f"gaussian sigma {stage['SMOOTH_SIGMA']}, "
            + ("per video" if stage["SMOOTH_PER_VIDEO"] else "whole test sequence (reference)"),
            "auc": "frame-level ROC AUC; micro = all frames pooled, macro = mean per-video AUC (AI-VAD padding)",
        },
        "settings": stage.settings,
        "stage_settings": upstream_settings(ckpt, "attention_fusion.py"),  # every stage that made its inputs
        "score_terms": list(terms),
        "calibration": {  # where each term's reference frames came from, and how the terms combine
            "memorised_terms": "out-of-fold train videos (calibrate.py)" if heldout else "the train objects themselves",
            "classifier_and_speed": "the train frames",
            "combine": SCORE_COMBINE,
        },
        # each term alone, standardised and smoothed as the final score: which term carries what
        "term_micro_auc": {} if no_auc else {t: micro_auc(smoothed(v), labels) for t, v in z.items()},
        "fusion_train_seconds": round(train_seconds, 2),
        "fusion_seconds_per_epoch": round(train_seconds / max(epochs_run, 1), 4),
        **report.oracle(history, EVAL_EVERY),
    }
    if val is not None:
        result["validation"] = {
            "videos": VAL_VIDEOS,
            "frames": int(val.n_frames),
            "best_epoch": keeper.best_epoch,
            "best_val_loss": keeper.best_loss,
            "epochs_run": epochs_run,
            **validation_diagnostics(history, keeper.best_epoch),
        }
    per_object = object_scores(
        object_values(test),
        np.asarray(test.app_mask),
        stats,
        terms,
        SCORE_COMBINE,
    )
    used = tuple(t for t in terms if t in stats) or ("classifier",)
    reference = {t[len("reference_") :]: v for t, v in raw_terms.items() if t.startswith("reference_")}
    detector = build_detector(
        ckpt,
        data_root=root,
        dataset=dataset,
        stage_settings=stage.settings,
        fusion=model.cpu(),
        calibration=stats,
        reference=reference,
        terms=used,
        train_ends=fit_ends,
        vel_dir=test.vel_dir is not None,
        app_knn=test.app_knn is not None,
        height_reference=meta.get("vel_rel", {}).get("height_reference"),
        fps=FPS,
        per_hour=FALSE_ALARMS_PER_HOUR,
    )
    model.to(device)
    result["detector"] = str(detector)
    report.write_fusion_results(
        out,
        dataset=dataset,
        result=result,
        final=final,
        raw=raw,
        terms=raw_terms,
        per_object=per_object,
        history=history,
        labels=labels,
        ends=ends,
        eval_every=EVAL_EVERY,
        validation=val is not None,
    )
    stage.finish()
    print(f"[attention_fusion] detector: {result['detector']}")
    if no_auc:
        print(f"[attention_fusion] no AUC ({no_auc}); scores in {out / 'scores.npy'}")
        return
    print(
        "[attention_fusion] term micro AUCs: " + "  ".join(f"{t} {a:.4f}" for t, a in result["term_micro_auc"].items())
    )
    print(
        f"[attention_fusion] micro AUC {measures['micro_auc']:.4f}  macro AUC {measures['macro_auc']:.4f}  "
        f"EER {measures['eer']:.4f}"
        + (
            f"  (oracle, test-selected: {result['oracle_micro_auc']:.4f} at epoch {result['oracle_epoch']})"
            if "oracle_micro_auc" in result
            else ""
        )
    )


if __name__ == "__main__":
    run(main)
