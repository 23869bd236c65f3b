"""Stage 6: train the cross-modal attention fusion classifier on the pseudo labels, score
the test frames, smooth and evaluate.

Reads  checkpoints/DATASET/padded/*   (padding_mask.py), the test clip lengths and labels
Writes checkpoints/DATASET/fusion.pt  model weights, settings, per-epoch history
       results/DATASET/scores.npy     (F_test,) final smoothed frame scores, test-frame order
       results/DATASET/scores_raw.npy (F_test,) the same before smoothing
       results/DATASET/metrics.json   micro/macro AUC, EER, protocol, diagnostics
       results/DATASET/history.json   per-epoch loss (and test / held-out figures where evaluated)
       results/DATASET/roc.png, fusion_loss.png, auc_vs_epoch.png, validation.png (with
       VAL_VIDEOS), videos/video_NN.png

Model selection is honest: by default the model is the one after EPOCHS epochs; test labels
are never used to choose it. With EVAL_EVERY > 0 the test AUC is also recorded every EVAL_EVERY
epochs as a diagnostic curve, and its maximum is reported separately as
`oracle_micro_auc` (the reference's protocol, which selects the epoch on test labels).

A label-free alternative to a fixed epoch count: VAL_VIDEOS > 0 holds out the last train
videos from the fusion; every EVAL_EVERY epochs their pseudo-label loss is recorded, and
STOP_ON_VALIDATION keeps the weights at its lowest (PATIENCE ends training early). The
autoencoder and memories still saw those videos; only the classifier did not.

    python attention_fusion.py --dataset ped2 --data-root data
"""
import json
import time

import numpy as np
from scipy.special import expit

from memfuse import data as D, metrics
from memfuse.cli import (CHECKPOINT_ROOT, DATASET, DATA_ROOT, DEVICE, RECIPE, SEED, SHARED_SETTINGS, configure, resolve_device, run_stage,
                         seed_everything, settings_of)
from memfuse.fusion import (KeepBest, PaddedSplit, check_modalities, frame_logits, holdout_videos, memory_terms, passes, pseudo_label_validation,
                            take_frames, train_fusion)
from memfuse.io import InputError, checkpoint_dir, require, results_dir, save_json, save_npy, save_npz, save_torch
from memfuse.metrics import evaluate, micro_auc, smooth_scores, why_no_auc
from memfuse.models import HEADS, AttentionFusion
from memfuse.plots import plot_history, plot_roc, plot_validation, plot_videos
from memfuse.scoring import combine, object_scores, parse_terms, sum_by_group
from memfuse.stages import finish_stage, load_output, made_by, start_stage, upstream_settings

EPOCHS = 2000
LEARNING_RATE = 1e-4
BATCH_SIZE = 4096  # frames per step; >= the train frame count is full batch (Ped2: 2550)
HIDDEN = 256
DROPOUT = 0.5
HEAD = "flatten"  # the paper: flatten the N_max slots; "pool": one MLP shared by all rows, max over real rows
SCORE_TERMS = "classifier"  # the paper; memfuse adds app, pose, vel (memfuse.scoring), each standardised on train frames
MASKING = True  # reference: False (its mask test never matches, nothing is masked)
U2_KEY = "k2"  # reference: "k3" (u2 = softmax(q1 k3^T + q3 k2^T) v2)
VELOCITY_ANOMALY_SCALE = 0.0  # extension: > 0 adds a pass (app, pose normal, vel x scale) -> 1
SMOOTH_SIGMA = metrics.SMOOTH_SIGMA  # Gaussian smoothing of frame scores, 3 (config/datasets/shanghaitech.toml: 7)
SMOOTH_PER_VIDEO = True  # reference: False (smooths the concatenated test sequence)
RESULTS_ROOT = "results"
RESULTS_NAME = ""  # results go to results/RESULTS_NAME (default: the dataset name)
EVAL_EVERY = 10  # epochs between diagnostic test-AUC measurements (0: none, no oracle figure)
MODALITIES = "app,pose,vel"  # ablation: the others are fed as zeros (see memfuse.fusion)
VAL_VIDEOS = 0  # train videos held out of the fusion for a label-free validation (0: none, the paper)
STOP_ON_VALIDATION = False  # keep the weights at the lowest held-out pseudo-label loss (needs VAL_VIDEOS)
PATIENCE = 0  # with STOP_ON_VALIDATION: stop after this many evaluations without improvement (0: run all EPOCHS)
HELP = {
    "EPOCHS": "training epochs; the model after the last one is the model (unless --stop-on-validation)",
    "LEARNING_RATE": "Adam learning rate",
    "BATCH_SIZE": "frames per step (each gives 4-5 labelled samples); 0 = full batch",
    "HIDDEN": "classifier hidden width",
    "DROPOUT": "dropout after alignment and in the classifier",
    "HEAD": f"classifier head: {' or '.join(HEADS)} (see memfuse.models.AttentionFusion)",
    "SCORE_TERMS": "frame score: classifier alone (its sigmoid, the paper) or the sum of the train-standardised terms listed "
                   "(classifier, app, app_rec, pose, vel; see memfuse/scoring.py)",
    "MASKING": "padded keys take no attention weight (--no-masking: the reference)",
    "U2_KEY": "k2: u2 = softmax(q1 k2^T + q3 k2^T) v2; k3: the reference's q1 k3^T",
    "VELOCITY_ANOMALY_SCALE": "extension: pseudo-anomalous velocity = scale x velocity (0 = off, the reference)",
    "SMOOTH_SIGMA": "Gaussian sigma of score smoothing, frames (0 = none)",
    "SMOOTH_PER_VIDEO": "smooth each test video alone (--no-smooth-per-video: the whole sequence, the reference)",
    "RESULTS_ROOT": "folder of the results/ tree",
    "RESULTS_NAME": "write results to results/RESULTS_NAME instead of results/DATASET (ablations)",
    "EVAL_EVERY": "record the test AUC every this many epochs, as a diagnostic only (0 = never)",
    "MODALITIES": "ablation: comma-separated modalities the model sees (app, pose, vel); the others are zeros",
    "VAL_VIDEOS": "hold out the last N train videos from the fusion; their pseudo-label loss is recorded every EVAL_EVERY epochs (0 = none)",
    "STOP_ON_VALIDATION": "model = the evaluated epoch with the lowest held-out pseudo-label loss (needs --val-videos), not the last",
    "PATIENCE": "with --stop-on-validation: end training after this many evaluations without improvement (0 = never)",
}

PADDED_NAMES = ("app", "pose", "vel", "app_mask", "pose_mask", "app_dist", "pose_dist", "app_rec")


def load_padded(ckpt, split: str) -> PaddedSplit:
    """Memory-map one split's padded arrays (only mini-batches are ever copied)."""
    arrays = {n: load_output(ckpt, f"padded/{split}_{n}.npy", mmap=True) for n in PADDED_NAMES}
    if split == "train":
        arrays["app_anomaly"] = load_output(ckpt, "padded/train_app_anomaly.npy", mmap=True)
        arrays["pose_anomaly"] = load_output(ckpt, "padded/train_pose_anomaly.npy", mmap=True)
    return PaddedSplit(**arrays)


def validation_diagnostics(history: list[dict], best_epoch: int) -> dict:
    """How well the label-free rule did, judged afterwards with the test labels (a report on
    the rule, never an input to it): the test AUC at the epoch of lowest held-out loss, and
    the Spearman correlation of held-out loss with test AUC over the evaluated epochs
    (negative: the loss falls where the test AUC rises)."""
    from scipy.stats import spearmanr

    evaluated = [h for h in history if "val_loss" in h and "test_micro_auc" in h]
    out = {"test_micro_auc_at_best_epoch": next((h["test_micro_auc"] for h in evaluated if h["epoch"] == best_epoch), None)}
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
    if (g["VAL_VIDEOS"] > 0 or g["STOP_ON_VALIDATION"]) and g["EVAL_EVERY"] <= 0:
        raise InputError("validation is measured every EVAL_EVERY epochs: set --eval-every > 0")
    if g["STOP_ON_VALIDATION"] and g["VAL_VIDEOS"] <= 0:
        raise InputError("--stop-on-validation needs held-out videos: set --val-videos N (e.g. 2)")
    return modalities, terms


def main() -> None:
    configure(globals(), HELP, __doc__.split("\n")[0])
    modalities, terms = check_settings(globals())
    seed_everything(SEED)
    device = resolve_device(DEVICE)
    ckpt = checkpoint_dir(DATASET, CHECKPOINT_ROOT, RECIPE)
    settings = settings_of(globals(), HELP)
    start_stage(ckpt, "attention_fusion.py", settings, SHARED_SETTINGS)
    out = results_dir(f"{RESULTS_NAME or DATASET}/{RECIPE}", RESULTS_ROOT)
    meta = json.loads(require(ckpt / "padded" / "meta.json", made_by("padded/meta.json")).read_text())
    train, test = load_padded(ckpt, "train"), load_padded(ckpt, "test")
    ends = D.load_clip_lengths(DATA_ROOT, DATASET, "test", test.n_frames)
    labels = D.load_labels(DATA_ROOT, DATASET, ends, required=False)  # checked before training, used only after it
    no_auc = why_no_auc(labels)
    if no_auc:
        print(f"[attention_fusion] {no_auc}: scores are written, with no AUC")
    val = None
    if VAL_VIDEOS > 0:
        train_ends = D.load_clip_lengths(DATA_ROOT, DATASET, "train", train.n_frames)
        try:
            fit_frames, val_frames = holdout_videos(train_ends, VAL_VIDEOS)
        except ValueError as exc:
            raise InputError(f"--val-videos {VAL_VIDEOS}: {exc}") from exc
        train, val = take_frames(train, fit_frames), take_frames(train, val_frames)
        print(f"[attention_fusion] validation: the last {VAL_VIDEOS} train videos ({val.n_frames} frames) held out of the fusion")
    keeper = KeepBest(PATIENCE if STOP_ON_VALIDATION else 0)
    n_max = meta["n_max"]
    print(f"[attention_fusion] {DATASET}: {train.n_frames} train / {test.n_frames} test frames, N_max {n_max}, "
          f"{EPOCHS} epochs on {device}, masking={MASKING}, u2 key={U2_KEY}, velocity anomaly x{VELOCITY_ANOMALY_SCALE}, "
          f"modalities {','.join(modalities)}, head {HEAD}, score {' + '.join(terms)}, recipe {RECIPE}")
    fixed_train_terms, fixed_test_terms = memory_terms(train), memory_terms(test)

    def smoothed(raw: np.ndarray) -> np.ndarray:
        return smooth_scores(raw, ends, SMOOTH_SIGMA, SMOOTH_PER_VIDEO)

    def frame_scores(model: AttentionFusion) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
        """Unsmoothed test frame scores, every term standardised (for the record), and the
        standardisation. The classifier alone is scored by its sigmoid, as the paper."""
        test_logits = frame_logits(model, test, device, MASKING, modalities=modalities)
        train_terms = {"classifier": frame_logits(model, train, device, MASKING, modalities=modalities), **fixed_train_terms}
        total, z, stats = combine(train_terms, {"classifier": test_logits, **fixed_test_terms}, tuple(train_terms))
        if terms == ("classifier",):
            return expit(test_logits), z, stats
        return sum_by_group(z, terms), z, stats

    def diagnostic(epoch: int, model: AttentionFusion) -> dict | None:
        # Test AUC as a curve to look at, never to choose the model.
        if EVAL_EVERY <= 0 or (epoch % EVAL_EVERY and epoch != EPOCHS):
            return None
        record = {} if no_auc else {"test_micro_auc": micro_auc(smoothed(frame_scores(model)[0]), labels)}
        if val is not None:  # label-free: held-out train videos and their pseudo labels only
            record.update(pseudo_label_validation(model, val, device, MASKING, VELOCITY_ANOMALY_SCALE, modalities))
            record["stop"] = keeper.update(epoch, record["val_loss"], model)
        return record or None

    model = AttentionFusion(n_max, hidden=HIDDEN, dropout=DROPOUT, u2_key=U2_KEY, head=HEAD).to(device)
    start = time.perf_counter()
    history = train_fusion(model, train, epochs=EPOCHS, lr=LEARNING_RATE, batch_size=BATCH_SIZE, device=device, seed=SEED, masking=MASKING,
                           velocity_anomaly_scale=VELOCITY_ANOMALY_SCALE, on_epoch=diagnostic, modalities=modalities)
    train_seconds = time.perf_counter() - start
    epochs_run = history[-1]["epoch"] if history else 0
    selection = f"fixed: the model after {epochs_run} epochs (no test labels used)"
    if STOP_ON_VALIDATION:
        selected = keeper.restore(model)
        selection = (f"label-free: epoch {selected} of {epochs_run}, the lowest pseudo-label loss on {VAL_VIDEOS} held-out train "
                     f"videos, evaluated every {EVAL_EVERY} epochs (no test labels used)")
    raw, z, stats = frame_scores(model)
    save_torch(ckpt / "fusion.pt", {"state_dict": model.cpu().state_dict(), "n_max": n_max, "settings": settings, "history": history,
                                    "term_standardisation": stats})
    model.to(device)
    final = smoothed(raw)
    metrics = evaluate(final, labels, ends)
    curve = [(h["epoch"], h["test_micro_auc"]) for h in history if "test_micro_auc" in h]
    result = {
        "dataset": DATASET,
        **metrics,
        "unsmoothed_micro_auc": None if no_auc else micro_auc(raw, labels),
        "n_test_frames": int(test.n_frames),
        "n_train_frames": int(train.n_frames),
        "protocol": {
            "model_selection": selection,
            "smoothing": f"gaussian sigma {SMOOTH_SIGMA}, " + ("per video" if SMOOTH_PER_VIDEO else "whole test sequence (reference)"),
            "auc": "frame-level ROC AUC; micro = all frames pooled, macro = mean per-video AUC (AI-VAD padding)",
        },
        "settings": settings,
        "stage_settings": upstream_settings(ckpt, "attention_fusion.py"),  # every stage that made its inputs
        "score_terms": list(terms),
        # each term alone, standardised and smoothed as the final score: which term carries what
        "term_micro_auc": {} if no_auc else {t: micro_auc(smoothed(v), labels) for t, v in z.items()},
        "fusion_train_seconds": round(train_seconds, 2),
        "fusion_seconds_per_epoch": round(train_seconds / max(epochs_run, 1), 4),
    }
    if val is not None:
        result["validation"] = {"videos": VAL_VIDEOS, "frames": int(val.n_frames), "best_epoch": keeper.best_epoch,
                                "best_val_loss": keeper.best_loss, "epochs_run": epochs_run, **validation_diagnostics(history, keeper.best_epoch)}
    if curve:
        best_epoch, best_auc = max(curve, key=lambda c: c[1])
        result["oracle_micro_auc"] = best_auc
        result["oracle_epoch"] = best_epoch
        result["oracle_note"] = (f"best smoothed test micro AUC over epochs evaluated every {EVAL_EVERY}: the reference's "
                                 "protocol, which selects the epoch on test labels; not a fair figure")
    save_npy(out / "scores.npy", final)
    save_npy(out / "scores_raw.npy", raw)
    save_npz(out / "score_terms.npz", **z)  # standardised, unsmoothed test terms: any combination can be re-scored
    per_object = object_scores({"app": test.app_dist, "app_rec": test.app_rec, "vel": test.vel}, np.asarray(test.app_mask), stats, terms)
    if per_object is not None:  # each box's own evidence (row i = box i of the frame), for the annotated videos
        save_npy(out / "object_scores.npy", per_object)
    save_json(out / "metrics.json", result)
    save_json(out / "history.json", history)  # per-epoch loss and diagnostics, to redraw the curves
    if not no_auc:
        plot_roc({"ours": (final, metrics["micro_auc"])}, labels, out / "roc.png", f"{DATASET}: frame-level ROC")
    plot_videos({"ours": final}, labels, ends, out / "videos")
    plot_history(history, out / "fusion_loss.png", f"{DATASET} fusion training loss", ["loss"])
    if curve:
        plot_history([{"epoch": e, "test_micro_auc": a} for e, a in curve], out / "auc_vs_epoch.png",
                     f"{DATASET}: test micro AUC every {EVAL_EVERY} epochs (diagnostic, not for selection)", log=False)
    if val is not None:
        plot_validation(history, out / "validation.png", f"{DATASET}: held-out pseudo labels (label-free) and the test AUC")
    finish_stage(ckpt, "attention_fusion.py", settings)
    if no_auc:
        print(f"[attention_fusion] no AUC ({no_auc}); scores in {out / 'scores.npy'}")
        return
    print("[attention_fusion] term micro AUCs: " + "  ".join(f"{t} {a:.4f}" for t, a in result["term_micro_auc"].items()))
    print(f"[attention_fusion] micro AUC {metrics['micro_auc']:.4f}  macro AUC {metrics['macro_auc']:.4f}  EER {metrics['eer']:.4f}"
          + (f"  (oracle, test-selected: {result['oracle_micro_auc']:.4f} at epoch {result['oracle_epoch']})" if curve else ""))


if __name__ == "__main__":
    run_stage(main)
