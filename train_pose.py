"""Stage 3b: train the pose memory (compactness, separateness, reconstruction losses).

Reads  DATA_ROOT/DATASET/extracted_features/train/pose.npy and
       CKPT/memory_init_pose.npy (M, 34)  from cluster_pose.py
Writes CKPT/memory_pose.pt (the layout of train.py's memory_app.pt), CKPT =
       checkpoints/DATASET/RECIPE/

The settings are train.py's (edit them there; POSE_COSINE_T_MAX is the pose memory's own);
this script runs its main for pose.

    python train_pose.py --dataset ped2 --data-root ../shared/data
"""

import train
from memfuse.pipeline import run

if __name__ == "__main__":
    run(train.main, modality="pose")
