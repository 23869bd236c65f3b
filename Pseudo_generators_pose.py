"""Stage 4b: pseudo-normal / pseudo-anomalous pose from the trained pose memory.

Reads  CKPT/memory_pose.pt and the dataset's pose.npy
Writes CKPT/pseudo_pose_*.npy (the layout of Pseudo_generators.py's), CKPT =
       checkpoints/DATASET/RECIPE/

The settings are Pseudo_generators.py's (edit them there); this script runs its main for pose.

    python Pseudo_generators_pose.py --dataset ped2 --data-root ../shared/data
"""

import Pseudo_generators
from memfuse.pipeline import run

if __name__ == "__main__":
    run(Pseudo_generators.main, modality="pose")
