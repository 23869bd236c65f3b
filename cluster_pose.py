"""Stage 2b: initialise the pose memory with K-Means centroids of the train poses.

Reads  DATA_ROOT/DATASET/extracted_features/train/pose.npy (p_i, 34) per frame;
       frames without a person contribute no rows
Writes CKPT/memory_init_pose.npy (MEMORY_SIZE, 34) float32, CKPT = checkpoints/DATASET/RECIPE/

The settings are cluster.py's (edit them there); this script runs its main for pose.

    python cluster_pose.py --dataset ped2 --data-root ../shared/data
"""

import cluster
from memfuse.pipeline import run

if __name__ == "__main__":
    run(cluster.main, modality="pose")
