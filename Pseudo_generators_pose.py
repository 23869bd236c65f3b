"""Stage 4b: pseudo-normal / pseudo-anomalous pose from the trained pose memory.

Reads  checkpoints/DATASET/memory_pose.pt and the dataset's pose.npy
Writes checkpoints/DATASET/pseudo_pose_*.npy (same layout as Pseudo_generators.py)

    python Pseudo_generators_pose.py --dataset ped2 --data-root data
"""
import Pseudo_generators
from memfuse.cli import run_stage

# Same settings as Pseudo_generators.py (edit them there); only the modality differs.
Pseudo_generators.MODALITY = "pose"
Pseudo_generators.__doc__ = __doc__

if __name__ == "__main__":
    run_stage(Pseudo_generators.main)
