"""Stage 4a: pseudo-normal / pseudo-anomalous appearance from the trained memory.

For each query q: W = softmax(q P^T); pseudo-normal = 0.5 q + 0.5 (softmax-weighted items of
ranks 1..TOP_K); pseudo-anomaly = 0.01 q + 0.99 (items of ranks TOP_K+1..2 TOP_K).
All queries at once, in chunks (see memfuse/pseudo.py).

Reads  checkpoints/DATASET/memory_appearance.pt, appearance_{train,test}.npy
Writes checkpoints/DATASET/pseudo_appearance_train_normal.npy  (N_train, 34)
       checkpoints/DATASET/pseudo_appearance_train_anomaly.npy (N_train, 34)
       checkpoints/DATASET/pseudo_appearance_test_normal.npy   (N_test, 34), the memorised test features
       checkpoints/DATASET/pseudo_appearance_{train,test}_indices.npy (N, 2 TOP_K) int32,
       the memory items of ranks 1..2 TOP_K per query
       checkpoints/DATASET/pseudo_appearance_{train,test}_distance.npy (N,) float32, each
       query's distance to its nearest memory item (an anomaly score of its own)

    python Pseudo_generators.py --dataset ped2 --data-root data
"""
from memfuse.cli import (CHECKPOINT_ROOT, DATASET, DATA_ROOT, DEVICE, RECIPE, SEED, SHARED_SETTINGS, STANDARDISE, configure, resolve_device,
                         run_stage, seed_everything, settings_of)
from memfuse import models
from memfuse.io import checkpoint_dir
from memfuse.stages import SCRIPT_FOR_MODALITY, finish_stage, pseudo_stage, start_stage

MODALITY = "appearance"
TOP_K = models.TOP_K  # 5
TEMPERATURE_TOP = 1.0  # T1
TEMPERATURE_BOTTOM = 1.0  # T2
EXTRAPOLATE = 0.0  # extension (0 = the paper): pseudo-anomaly = q + EXTRAPOLATE (q - top mixture)
HELP = {
    "TOP_K": "ranks 1..k make the pseudo-normal, k+1..2k the pseudo-anomaly",
    "TEMPERATURE_TOP": "softmax temperature T1 over the top weights",
    "TEMPERATURE_BOTTOM": "softmax temperature T2 over the bottom weights",
    "EXTRAPOLATE": "extension: pseudo-anomaly = q + E (q - top-k mixture), pushed away from memory (0 = paper's ranks k+1..2k mixture)",
}


def main() -> None:
    configure(globals(), HELP, __doc__.split("\n")[0])
    seed_everything(SEED)
    ckpt = checkpoint_dir(DATASET, CHECKPOINT_ROOT, RECIPE)
    script, settings = SCRIPT_FOR_MODALITY["pseudo"][MODALITY], settings_of(globals(), HELP)
    start_stage(ckpt, script, settings, SHARED_SETTINGS)
    rows = pseudo_stage(ckpt, DATA_ROOT, DATASET, MODALITY, top_k=TOP_K, t_top=TEMPERATURE_TOP, t_bottom=TEMPERATURE_BOTTOM,
                        device=resolve_device(DEVICE), extrapolate=EXTRAPOLATE, standardise=STANDARDISE)
    finish_stage(ckpt, script, settings)
    print(f"[pseudo {MODALITY}] {DATASET}: {rows['train']} train / {rows['test']} test queries -> {ckpt}/pseudo_{MODALITY}_*.npy")


if __name__ == "__main__":
    run_stage(main)
