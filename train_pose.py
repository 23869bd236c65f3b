"""Stage 3b: train the pose memory (compactness, separateness, reconstruction losses).

Reads  DATA_ROOT/DATASET/extracted_features/train/pose.npy and
       checkpoints/DATASET/memory_init_pose.npy (M, 34)  from cluster_pose.py
Writes checkpoints/DATASET/memory_pose.pt (same layout as train.py's memory_appearance.pt)

    python train_pose.py --dataset ped2 --data-root data
"""
import train
from memfuse.cli import run_stage

# The settings of train.py (edit them there), except what the reference does differently
# for pose: no learning-rate scheduler.
train.MODALITY = "pose"
train.COSINE_T_MAX = 0
train.__doc__ = __doc__

if __name__ == "__main__":
    run_stage(train.main)
