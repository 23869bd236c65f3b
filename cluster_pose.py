"""Stage 2b: initialise the pose memory with K-Means centroids of the train poses.

Reads  DATA_ROOT/DATASET/extracted_features/train/pose.npy (p_i, 34) per frame;
       frames without a person contribute no rows
Writes checkpoints/DATASET/memory_init_pose.npy (MEMORY_SIZE, 34) float32

    python cluster_pose.py --dataset ped2 --data-root data
"""
import cluster
from memfuse.cli import run_stage

# Same settings as cluster.py (edit them there); only the modality differs.
cluster.MODALITY = "pose"
cluster.__doc__ = __doc__

if __name__ == "__main__":
    run_stage(cluster.main)
