"""Stage 3a: train the appearance memory (compactness, separateness, reconstruction losses).

Reads  CKPT/app_train.npy       (N, 34)  from AE_encoder.py
       CKPT/memory_init_app.npy (M, 34)  from cluster.py
Writes CKPT/memory_app.pt: {"items": (M, 34), "history": per-epoch losses, "complete":
       True}; while training, the same file every CHECKPOINT_EVERY epochs with "complete":
       False (later stages refuse it)
where CKPT = checkpoints/DATASET/RECIPE/. train_pose.py runs this script's main and settings
for pose.

    python train.py --dataset ped2 --data-root ../shared/data
"""

from memfuse.io import save_torch
from memfuse.pipeline import begin, run
from memfuse.plots import plot_history
from memfuse.registry import MODALITY_NAMES, for_modality
from memfuse.stages import load_output, train_memory, train_queries

# -- settings: each is also a flag (--memory-epochs 100); STANDARDISE and TOP_K are shared (memfuse/config.py)
MEMORY_EPOCHS = 100  # the paper: 5000 (config/schedules/paper.toml)
MEMORY_LEARNING_RATE = 1e-2
MEMORY_BATCH_SIZE = 4096
MARGIN = 1.0  # triplet margin of the separateness loss
GATHER_WEIGHT = 5.0  # total = 5 L_gather + L_spread + L_rec
SPREAD_WEIGHT = 1.0
REC_WEIGHT = 1.0
APP_COSINE_T_MAX = 50  # CosineAnnealingLR period of the appearance memory, in epochs (0 = constant lr)
POSE_COSINE_T_MAX = 0  # the reference trains the pose memory at a constant learning rate
STALE_STEP = False  # reference quirk: one extra optimizer step per epoch on stale gradients
CHECKPOINT_EVERY = 100
HELP = {
    "MEMORY_EPOCHS": "training epochs",
    "MEMORY_LEARNING_RATE": "Adam learning rate",
    "MEMORY_BATCH_SIZE": "queries per step (shuffled)",
    "MARGIN": "triplet margin",
    "GATHER_WEIGHT": "weight of the compactness loss",
    "SPREAD_WEIGHT": "weight of the separateness loss",
    "REC_WEIGHT": "weight of the reconstruction loss",
    "APP_COSINE_T_MAX": "appearance memory: CosineAnnealingLR T_max in epochs, 0 for a constant learning rate",
    "POSE_COSINE_T_MAX": "pose memory: CosineAnnealingLR T_max in epochs, 0 for a constant learning rate",
    "STALE_STEP": "reproduce the reference's extra optimizer step after each epoch",
    "CHECKPOINT_EVERY": "write an intermediate checkpoint every this many epochs",
}


def main(argv: list[str] | None = None, modality: str = "app") -> None:
    stage = begin(globals(), for_modality("train.py", modality).script, argv)
    ckpt, device = stage.ckpt, stage.device
    init = load_output(ckpt, f"memory_init_{modality}.npy")
    queries = train_queries(ckpt, stage.data_root, stage.dataset, modality, standardise=stage["STANDARDISE"]).values
    name = MODALITY_NAMES[modality]
    print(
        f"[train {name}] {stage.dataset}: {len(queries)} queries, {len(init)} items, {MEMORY_EPOCHS} epochs on {device}"
    )
    path = ckpt / f"memory_{modality}.pt"
    cosine_t_max = APP_COSINE_T_MAX if modality == "app" else POSE_COSINE_T_MAX
    memory, history = train_memory(
        queries,
        init,
        epochs=MEMORY_EPOCHS,
        lr=MEMORY_LEARNING_RATE,
        batch_size=MEMORY_BATCH_SIZE,
        weights=(GATHER_WEIGHT, SPREAD_WEIGHT, REC_WEIGHT),
        top_k=stage["TOP_K"],
        margin=MARGIN,
        cosine_t_max=cosine_t_max,
        stale_step=STALE_STEP,
        device=device,
        seed=stage.seed,
        checkpoint_path=path,
        checkpoint_every=CHECKPOINT_EVERY,
        desc=f"memory {name}",
    )
    save_torch(
        path,
        {
            "items": memory.items.detach().cpu(),
            "epoch": MEMORY_EPOCHS,
            "history": history,
            "complete": True,
            "settings": stage.settings,
        },
    )
    plot_history(history, ckpt / f"memory_{modality}_loss.png", f"{stage.dataset} {name} memory losses")
    stage.finish()
    print(f"[train {name}] final loss {history[-1]['total']:.4g} -> {path}")


if __name__ == "__main__":
    run(main)
