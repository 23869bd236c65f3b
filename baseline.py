"""The AI-VAD baseline: density scoring of the same per-object features (no training).

Velocity by a Gaussian mixture, pose and appearance by the distance to the nearest train
object; each modality calibrated on its train frame scores, summed, smoothed per video and
evaluated (see memfuse/baseline.py for every choice).

Reads  DATA_ROOT/DATASET/extracted_features/{train,test}/*.npy, test clip lengths and labels
Writes results/DATASET/baseline_scores.npy    (F_test,) smoothed combined frame scores
       results/DATASET/baseline_metrics.json  micro/macro AUC, EER, each modality alone

    python baseline.py --dataset ped2 --data-root data --gmm-components 2
"""
import time

from memfuse import data as D
from memfuse import baseline as B, metrics
from memfuse.baseline import evaluate_baseline, score_baseline
from memfuse.cli import DATASET, DATA_ROOT, DEVICE, SEED, configure, resolve_device, run_stage, seed_everything
from memfuse.io import results_dir, save_json, save_npy

GMM_COMPONENTS = B.GMM_COMPONENTS  # 2, AI-VAD's on Ped2 (config/datasets/*.toml: 5 on Avenue and ShanghaiTech)
SMOOTH_SIGMA = metrics.SMOOTH_SIGMA  # 3 (config/datasets/shanghaitech.toml: 7)
SMOOTH_PER_VIDEO = True
Q_CHUNK = 2048
R_CHUNK = 16384
RESULTS_ROOT = "results"
RESULTS_NAME = ""
HELP = {
    "GMM_COMPONENTS": "Gaussian mixture components of the velocity density (AI-VAD: 2 Ped2, 5 Avenue/ShanghaiTech)",
    "SMOOTH_SIGMA": "Gaussian sigma of score smoothing, frames (0 = none)",
    "SMOOTH_PER_VIDEO": "smooth each test video alone (--no-smooth-per-video: the whole sequence)",
    "Q_CHUNK": "kNN queries per block (memory: Q_CHUNK x R_CHUNK floats)",
    "R_CHUNK": "kNN train rows per block",
    "RESULTS_ROOT": "folder of the results/ tree",
    "RESULTS_NAME": "write results to results/RESULTS_NAME instead of results/DATASET",
}


def main() -> None:
    configure(globals(), HELP, __doc__.split("\n")[0])
    seed_everything(SEED)
    device = resolve_device(DEVICE)
    train = D.load_split(DATA_ROOT, DATASET, "train")
    test = D.load_split(DATA_ROOT, DATASET, "test")
    ends = D.load_clip_lengths(DATA_ROOT, DATASET, "test", test.n_frames)
    labels = D.load_labels(DATA_ROOT, DATASET, ends, required=False)
    print(f"[baseline] {DATASET}: {train.n_frames} train / {test.n_frames} test frames, "
          f"{len(train.appearance.values)} / {len(test.appearance.values)} objects, {len(train.pose.values)} / {len(test.pose.values)} persons")
    start = time.perf_counter()
    scores = score_baseline(train, test, ends, GMM_COMPONENTS, SMOOTH_SIGMA, SMOOTH_PER_VIDEO, q_chunk=Q_CHUNK, r_chunk=R_CHUNK,
                            device=device, seed=SEED)
    metrics = evaluate_baseline(scores, labels, ends)
    metrics["calibration"] = scores["calibration"]
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    metrics["settings"] = {k: globals()[k] for k in HELP}
    metrics["protocol"] = ("AI-VAD density scoring: velocity GMM -log-likelihood, pose (centred, / height) and appearance (L2-normalised) "
                           "1-NN distance; per modality frame max, (s - train min) / (train max - train min) with leave-one-out "
                           "train scores; modalities summed; Gaussian smoothing")

    out = results_dir(RESULTS_NAME or DATASET, RESULTS_ROOT)
    save_npy(out / "baseline_scores.npy", scores["smoothed"]["combined"])
    path = out / "baseline_metrics.json"
    save_json(path, {"baseline": metrics})
    if metrics["micro_auc"] is None:
        print(f"[baseline] no AUC: {metrics['no_auc']}")
    else:
        per = "  ".join(f"{m} {v['micro_auc']:.4f}" for m, v in metrics["per_modality"].items())
        print(f"[baseline] micro AUC {metrics['micro_auc']:.4f}  macro AUC {metrics['macro_auc']:.4f}  EER {metrics['eer']:.4f}  ({per})")
    print(f"[baseline] wrote {out}/baseline_scores.npy and {path}")


if __name__ == "__main__":
    run_stage(main)
