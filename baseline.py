"""The AI-VAD baseline: density scoring of the same per-object features (no training).

Velocity by a Gaussian mixture, pose and appearance by the distance to the nearest train
object; each modality calibrated on its train frame scores, summed, smoothed per video and
evaluated (see memfuse/baseline.py for every choice).

Reads  DATA_ROOT/DATASET/extracted_features/{train,test}/*.npy, test clip lengths and labels
Writes results/DATASET/baseline_scores.npy    (F_test,) smoothed combined frame scores
       results/DATASET/baseline_metrics.json  micro/macro AUC, EER, each modality alone

    python baseline.py --dataset ped2 --data-root ../shared/data
"""

import time

from memfuse import baseline as B
from memfuse import data as D
from memfuse.baseline import evaluate_baseline, score_baseline
from memfuse.io import results_dir, save_json, save_npy
from memfuse.pipeline import begin, run
from memfuse.registry import MODALITY_NAMES

# -- settings: each is also a flag; the smoothing and results folders are shared with attention_fusion.py
GMM_COMPONENTS = B.GMM_COMPONENTS  # 2, AI-VAD's on Ped2 (config/datasets/*.toml: 5 on Avenue and ShanghaiTech)
Q_CHUNK = 2048
R_CHUNK = 16384
HELP = {
    "GMM_COMPONENTS": "Gaussian mixture components of the velocity density (AI-VAD: 2 Ped2, 5 Avenue/ShanghaiTech)",
    "Q_CHUNK": "kNN queries per block (memory: Q_CHUNK x R_CHUNK floats)",
    "R_CHUNK": "kNN train rows per block",
}


def main(argv: list[str] | None = None) -> None:
    stage = begin(globals(), "baseline.py", argv)
    root, dataset = stage.data_root, stage.dataset
    train = D.load_split(root, dataset, "train")
    test = D.load_split(root, dataset, "test")
    ends = D.load_clip_lengths(root, dataset, "test", test.n_frames)
    labels = D.load_labels(root, dataset, ends, required=False)
    print(
        f"[baseline] {dataset}: {train.n_frames} train / {test.n_frames} test frames, "
        f"{len(train.app.values)} / {len(test.app.values)} objects, "
        f"{len(train.pose.values)} / {len(test.pose.values)} persons"
    )
    start = time.perf_counter()
    scores = score_baseline(
        train,
        test,
        ends,
        GMM_COMPONENTS,
        stage["SMOOTH_SIGMA"],
        stage["SMOOTH_PER_VIDEO"],
        q_chunk=Q_CHUNK,
        r_chunk=R_CHUNK,
        device=stage.device,
        seed=stage.seed,
    )
    metrics = evaluate_baseline(scores, labels, ends)
    metrics["calibration"] = scores["calibration"]
    metrics["seconds"] = round(time.perf_counter() - start, 2)
    metrics["settings"] = stage.settings
    metrics["protocol"] = (
        "AI-VAD density scoring: velocity GMM -log-likelihood, pose (centred, / height) and appearance (L2-normalised) "
        "1-NN distance; per modality frame max, (s - train min) / (train max - train min) with leave-one-out "
        "train scores; modalities summed; Gaussian smoothing"
    )

    out = results_dir(stage["RESULTS_NAME"] or dataset, stage["RESULTS_ROOT"])
    save_npy(out / "baseline_scores.npy", scores["smoothed"]["combined"])
    path = out / "baseline_metrics.json"
    save_json(path, {"baseline": metrics})
    if metrics["micro_auc"] is None:
        print(f"[baseline] no AUC: {metrics['no_auc']}")
    else:
        per = "  ".join(f"{MODALITY_NAMES[m]} {v['micro_auc']:.4f}" for m, v in metrics["per_modality"].items())
        print(
            f"[baseline] micro AUC {metrics['micro_auc']:.4f}  macro AUC {metrics['macro_auc']:.4f}  "
            f"EER {metrics['eer']:.4f}  ({per})"
        )
    print(f"[baseline] wrote {out}/baseline_scores.npy and {path}")


if __name__ == "__main__":
    run(main)
