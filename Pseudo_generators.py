"""Stage 4a: pseudo-normal / pseudo-anomalous appearance from the trained memory.

For each query q: W = softmax(q P^T); pseudo-normal = 0.5 q + 0.5 (softmax-weighted items of
ranks 1..TOP_K); pseudo-anomaly = q + EXTRAPOLATE (q - that mixture), pushed away from the
memory (with EXTRAPOLATE = 0, the paper's: 0.01 q + 0.99 (items of ranks TOP_K+1..2 TOP_K)).
All queries at once, in chunks (see memfuse/pseudo.py).

Reads  CKPT/memory_app.pt, app_{train,test}.npy
Writes CKPT/pseudo_app_train_normal.npy  (N_train, 34)
       CKPT/pseudo_app_train_anomaly.npy (N_train, 34)
       CKPT/pseudo_app_test_normal.npy   (N_test, 34), the memorised test features
       CKPT/pseudo_app_{train,test}_indices.npy (N, 2 TOP_K) int32, the memory items of
            ranks 1..2 TOP_K per query
       CKPT/pseudo_app_{train,test}_distance.npy (N,) float32, each query's distance to
            its nearest memory item (an anomaly score of its own)
where CKPT = checkpoints/DATASET/RECIPE/. Pseudo_generators_pose.py runs this script's main
and settings for pose.

    python Pseudo_generators.py --dataset ped2 --data-root ../shared/data
"""

from memfuse.pipeline import begin, run
from memfuse.registry import MODALITY_NAMES, for_modality
from memfuse.stages import pseudo_stage

# -- settings: each is also a flag (--extrapolate 0); STANDARDISE and TOP_K are shared (memfuse/config.py)
TEMPERATURE_TOP = 1.0  # T1
TEMPERATURE_BOTTOM = 1.0  # T2
EXTRAPOLATE = 1.0  # the paper: 0, a mixture of ranks k+1..2k, which lies among the memory items
HELP = {
    "TEMPERATURE_TOP": "softmax temperature T1 over the top weights",
    "TEMPERATURE_BOTTOM": "softmax temperature T2 over the bottom weights",
    "EXTRAPOLATE": "pseudo-anomaly = q + E (q - top-k mixture), pushed away from the memory "
    "(0 = the paper's mixture of ranks k+1..2k)",
}


def main(argv: list[str] | None = None, modality: str = "app") -> None:
    stage = begin(globals(), for_modality("Pseudo_generators.py", modality).script, argv)
    rows = pseudo_stage(
        stage.ckpt,
        stage.data_root,
        stage.dataset,
        modality,
        top_k=stage["TOP_K"],
        t_top=TEMPERATURE_TOP,
        t_bottom=TEMPERATURE_BOTTOM,
        device=stage.device,
        extrapolate=EXTRAPOLATE,
        standardise=stage["STANDARDISE"],
    )
    stage.finish()
    print(
        f"[pseudo {MODALITY_NAMES[modality]}] {stage.dataset}: {rows['train']} train / {rows['test']} test queries "
        f"-> {stage.ckpt}/pseudo_{modality}_*.npy"
    )


if __name__ == "__main__":
    run(main)
