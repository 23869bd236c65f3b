"""Stage 2a: initialise the appearance memory with K-Means centroids.

Reads  checkpoints/DATASET/appearance_train.npy (N, 34)   (from AE_encoder.py)
Writes checkpoints/DATASET/memory_init_appearance.npy (MEMORY_SIZE, 34) float32

    python cluster.py --dataset ped2 --data-root data
"""
from memfuse.cli import (CHECKPOINT_ROOT, DATASET, DATA_ROOT, DEVICE, RECIPE, SEED, SHARED_SETTINGS, STANDARDISE, configure, resolve_device,
                         run_stage, seed_everything, settings_of)
from memfuse.io import checkpoint_dir
from memfuse.stages import SCRIPT_FOR_MODALITY, cluster_stage, finish_stage, start_stage

MODALITY = "appearance"
MEMORY_SIZE = 500  # M, memory items = K-Means clusters
KMEANS_SEED = 0  # the reference's random_state
BACKEND = "torch"  # torch (chunked, fast, GPU-capable) | sklearn (the reference's library)
HELP = {
    "MEMORY_SIZE": "memory items M (K-Means clusters)",
    "KMEANS_SEED": "K-Means random state",
    "BACKEND": "torch: this project's chunked K-Means; sklearn: scikit-learn's KMeans",
}


def main() -> None:
    configure(globals(), HELP, __doc__.split("\n")[0])
    seed_everything(SEED)
    ckpt = checkpoint_dir(DATASET, CHECKPOINT_ROOT, RECIPE)
    script, settings = SCRIPT_FOR_MODALITY["cluster"][MODALITY], settings_of(globals(), HELP)
    start_stage(ckpt, script, settings, SHARED_SETTINGS)
    centroids = cluster_stage(ckpt, DATA_ROOT, DATASET, MODALITY, memory_size=MEMORY_SIZE, seed=KMEANS_SEED, device=resolve_device(DEVICE),
                              backend=BACKEND, standardise=STANDARDISE)
    finish_stage(ckpt, script, settings)
    print(f"[{__file__.split('/')[-1]}] {DATASET}: {centroids.shape[0]} {MODALITY} centroids -> {ckpt}/memory_init_{MODALITY}.npy")


if __name__ == "__main__":
    run_stage(main)
