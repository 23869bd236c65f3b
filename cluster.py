"""Stage 2a: initialise the appearance memory with K-Means centroids.

Reads  CKPT/app_train.npy (N, 34)   (from AE_encoder.py)
Writes CKPT/memory_init_app.npy (MEMORY_SIZE, 34) float32
where CKPT = checkpoints/DATASET/RECIPE/. cluster_pose.py runs this script's main and
settings for pose.

    python cluster.py --dataset ped2 --data-root ../shared/data
"""

from memfuse.pipeline import begin, run
from memfuse.registry import MODALITY_NAMES, for_modality
from memfuse.stages import cluster_stage

# -- settings: each is also a flag (--memory-size 500); STANDARDISE is shared (memfuse/config.py)
MEMORY_SIZE = 500  # M, memory items = K-Means clusters
KMEANS_SEED = 0  # the reference's random_state
BACKEND = "torch"  # torch (chunked, fast, GPU-capable) | sklearn (the reference's library)
HELP = {
    "MEMORY_SIZE": "memory items M (K-Means clusters)",
    "KMEANS_SEED": "K-Means random state",
    "BACKEND": "torch: this project's chunked K-Means; sklearn: scikit-learn's KMeans",
}


def main(argv: list[str] | None = None, modality: str = "app") -> None:
    stage = begin(globals(), for_modality("cluster.py", modality).script, argv)
    centroids = cluster_stage(
        stage.ckpt,
        stage.data_root,
        stage.dataset,
        modality,
        memory_size=MEMORY_SIZE,
        seed=KMEANS_SEED,
        device=stage.device,
        backend=BACKEND,
        standardise=stage["STANDARDISE"],
    )
    stage.finish()
    print(
        f"[{stage.script}] {stage.dataset}: {centroids.shape[0]} {MODALITY_NAMES[modality]} centroids -> "
        f"{stage.ckpt}/memory_init_{modality}.npy"
    )


if __name__ == "__main__":
    run(main)
