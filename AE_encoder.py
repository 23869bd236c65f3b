"""Stage 1: train the appearance autoencoder and compress appearance to 34-d.

Reads  DATA_ROOT/DATASET/extracted_features/{train,test}/deep_features.npy (n_i, 512) per frame
Writes CKPT/autoencoder.pt             encoder + decoder weights, input standardisation, loss history
       CKPT/app_{train,test}.npy       (N, 34) float32, every object's code, rows in frame order
                                        (AI-VAD object order)
       CKPT/app_{train,test}_recon.npy (N,) float32, every object's reconstruction error
                                        (mean squared)
where CKPT = checkpoints/DATASET/RECIPE/.

    python AE_encoder.py                                   # the synthetic data, made when missing
    python AE_encoder.py --dataset ped2 --data-root ../shared/data
"""

from memfuse import data as D
from memfuse.io import InputError, save_npy, save_torch
from memfuse.pipeline import begin, run
from memfuse.stages import check_codes, encode_all, reconstruction_error, train_autoencoder

# -- settings: each is also a flag (--ae-epochs 100); STANDARDISE is shared (memfuse/config.py)
AE_EPOCHS = 50  # the paper: 1000 (config/schedules/paper.toml)
AE_LEARNING_RATE = 1e-2
AE_BATCH_SIZE = 4096
SELECT = "train"  # which epoch's weights to keep: train | test | last
ENCODE_BATCH = 65536
HELP = {
    "AE_EPOCHS": "training epochs over all train objects",
    "AE_LEARNING_RATE": "Adam learning rate",
    "AE_BATCH_SIZE": "objects per step (shuffled)",
    "SELECT": "keep the epoch with the lowest mean train loss (train), the lowest test MSE "
    "(test: the reference scripts, which look at test features but not labels), or the last",
    "ENCODE_BATCH": "objects per forward pass when encoding",
}


def check_settings(g: dict) -> None:
    """Raise InputError naming the flag of a bad value (run_all.py calls this before any stage)."""
    if g["SELECT"] not in ("train", "test", "last"):
        raise InputError(f"--select must be train, test or last, got {g['SELECT']!r}")


def main(argv: list[str] | None = None) -> None:
    stage = begin(globals(), "AE_encoder.py", argv)
    check_settings(globals())
    device, ckpt, standardise = stage.device, stage.ckpt, stage["STANDARDISE"]
    train = D.load_split(stage.data_root, stage.dataset, "train", ("app",)).app.values
    test = D.load_split(stage.data_root, stage.dataset, "test", ("app",)).app.values
    mean, std = D.zscore_fit(train) if standardise else (None, None)
    if standardise:  # every feature weighs alike in the reconstruction, whatever its scale
        train, test = D.zscore(train, mean, std), D.zscore(test, mean, std)
    print(
        f"[AE_encoder] {stage.dataset}: {len(train)} train / {len(test)} test objects, {train.shape[1]}-d -> 34-d, "
        f"recipe {stage.recipe}" + (", inputs standardised" if standardise else "")
    )

    model, history, kept = train_autoencoder(
        train,
        epochs=AE_EPOCHS,
        lr=AE_LEARNING_RATE,
        batch_size=AE_BATCH_SIZE,
        seed=stage.seed,
        device=device,
        select=SELECT,
        x_test=test,  # its MSE per epoch only with SELECT = "test"
        eval_batch=ENCODE_BATCH,
    )
    print(f"[AE_encoder] kept epoch {kept} ({SELECT}); final train MSE {history[-1]['train_mse']:.4g}")

    codes = encode_all(model, train, device, ENCODE_BATCH)
    check_codes(
        codes, f"{stage.dataset} train appearance, epoch {kept}"
    )  # before any output: a collapsed run leaves nothing behind
    save_npy(ckpt / "app_train.npy", codes)
    save_npy(ckpt / "app_test.npy", encode_all(model, test, device, ENCODE_BATCH))
    for split, x_split in (("train", train), ("test", test)):
        save_npy(ckpt / f"app_{split}_recon.npy", reconstruction_error(model, x_split, device, ENCODE_BATCH))
    # The checkpoint goes last: run_all treats it as the stage's completion mark.
    save_torch(
        ckpt / "autoencoder.pt",
        {
            "state_dict": model.cpu().state_dict(),
            "in_dim": train.shape[1],
            "kept_epoch": kept,
            "select": SELECT,
            "history": history,
            "input_mean": mean,
            "input_std": std,
            "settings": stage.settings,
        },
    )
    stage.finish()
    print(f"[AE_encoder] wrote {ckpt}/autoencoder.pt, app_train.npy, app_test.npy")


if __name__ == "__main__":
    run(main)
