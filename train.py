"""Stage 3a: train the appearance memory (compactness, separateness, reconstruction losses).

Reads  checkpoints/DATASET/appearance_train.npy      (N, 34)  from AE_encoder.py
       checkpoints/DATASET/memory_init_appearance.npy (M, 34)  from cluster.py
Writes checkpoints/DATASET/memory_appearance.pt: {"items": (M, 34), "history": per-epoch
       losses, "complete": True}; while training, the same file every CHECKPOINT_EVERY
       epochs with "complete": False (later stages refuse it)

    python train.py --dataset ped2 --data-root data
"""
from memfuse.cli import (CHECKPOINT_ROOT, DATASET, DATA_ROOT, DEVICE, RECIPE, SEED, SHARED_SETTINGS, STANDARDISE, configure, resolve_device,
                         run_stage, seed_everything, settings_of)
from memfuse import models
from memfuse.io import checkpoint_dir, save_torch
from memfuse.plots import plot_history
from memfuse.stages import SCRIPT_FOR_MODALITY, finish_stage, load_output, start_stage, train_memory, train_queries

MODALITY = "appearance"
EPOCHS = 5000
LEARNING_RATE = 1e-2
BATCH_SIZE = 4096
TOP_K = models.TOP_K  # 5, items mixed by the compactness loss; the separateness negative is rank TOP_K + 1
MARGIN = 1.0  # triplet margin of the separateness loss
GATHER_WEIGHT = 5.0  # total = 5 L_gather + L_spread + L_rec
SPREAD_WEIGHT = 1.0
REC_WEIGHT = 1.0
COSINE_T_MAX = 50  # CosineAnnealingLR period in epochs (appearance only; 0 = constant lr)
STALE_STEP = False  # reference quirk: one extra optimizer step per epoch on stale gradients
CHECKPOINT_EVERY = 100
HELP = {
    "EPOCHS": "training epochs",
    "LEARNING_RATE": "Adam learning rate",
    "BATCH_SIZE": "queries per step (shuffled)",
    "TOP_K": "k of the compactness loss (negative of the separateness loss is rank k+1)",
    "MARGIN": "triplet margin",
    "GATHER_WEIGHT": "weight of the compactness loss",
    "SPREAD_WEIGHT": "weight of the separateness loss",
    "REC_WEIGHT": "weight of the reconstruction loss",
    "COSINE_T_MAX": "CosineAnnealingLR T_max in epochs, 0 for a constant learning rate",
    "STALE_STEP": "reproduce the reference's extra optimizer step after each epoch",
    "CHECKPOINT_EVERY": "write an intermediate checkpoint every this many epochs",
}


def main() -> None:
    configure(globals(), HELP, __doc__.split("\n")[0])
    seed_everything(SEED)
    device = resolve_device(DEVICE)
    ckpt = checkpoint_dir(DATASET, CHECKPOINT_ROOT, RECIPE)
    script, settings = SCRIPT_FOR_MODALITY["train"][MODALITY], settings_of(globals(), HELP)
    start_stage(ckpt, script, settings, SHARED_SETTINGS)
    init = load_output(ckpt, f"memory_init_{MODALITY}.npy")
    queries = train_queries(ckpt, DATA_ROOT, DATASET, MODALITY, standardise=STANDARDISE).values
    print(f"[train {MODALITY}] {DATASET}: {len(queries)} queries, {len(init)} items, {EPOCHS} epochs on {device}")
    path = ckpt / f"memory_{MODALITY}.pt"
    memory, history = train_memory(queries, init, epochs=EPOCHS, lr=LEARNING_RATE, batch_size=BATCH_SIZE,
                                   weights=(GATHER_WEIGHT, SPREAD_WEIGHT, REC_WEIGHT), top_k=TOP_K, margin=MARGIN, cosine_t_max=COSINE_T_MAX,
                                   stale_step=STALE_STEP, device=device, seed=SEED, checkpoint_path=path, checkpoint_every=CHECKPOINT_EVERY,
                                   desc=f"memory {MODALITY}")
    save_torch(path, {"items": memory.items.detach().cpu(), "epoch": EPOCHS, "history": history, "complete": True, "settings": settings})
    plot_history(history, ckpt / f"memory_{MODALITY}_loss.png", f"{DATASET} {MODALITY} memory losses")
    finish_stage(ckpt, script, settings)
    print(f"[train {MODALITY}] final loss {history[-1]['total']:.4g} -> {path}")


if __name__ == "__main__":
    run_stage(main)
