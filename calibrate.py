"""Stage 4c: held-out calibration of the memorised score terms (cross-fitting over train videos).

The autoencoder and memories of stages 1-3 saw every train object, so on their train
objects the reconstruction error and the memory distances come out small, and on unseen
normal video high. This stage deals the train videos into CALIBRATION_FOLDS folds, fits
the autoencoder, K-Means and both memories again on all folds but one, with the settings
stages 1-3 recorded, and scores the left-out fold's objects (memfuse/calibration.py). The
frame score (attention_fusion.py) standardises those terms by these out-of-fold values; the
final models stay the ones trained on every video.

Reads  the train features (deep_features.npy, pose.npy, velocity.npy), the settings recorded by
       stages 1-3, CKPT/autoencoder.pt (its input standardisation) and CKPT/app_train.npy (the
       codes the appearance memories of the folds are fitted on)
Writes CKPT/heldout_app_train_distance.npy (N_train,) float32, each object's distance to
            the nearest item of a memory fitted without its video
       CKPT/heldout_app_train_recon.npy    (N_train,) float32, its reconstruction error by an
            autoencoder fitted without its video
       CKPT/heldout_pose_train_distance.npy (P_train,) float32, as the first, for pose
       CKPT/app_knn_{train,test}.npy       (N,) float32, each object's distance, in L2-normalised
            appearance features, to the nearest train object of another fold (train) or of
            the train split (test): the appearance term of the frame score
       CKPT/vel_dir_{train,test}.npy       (N,) float32, with orientation bins (B > 1): the same
            in velocity, the direction-aware velocity term
       CKPT/heldout_meta.json              folds, videos per fold, settings, seconds (written last)
where CKPT = checkpoints/DATASET/RECIPE/. With CALIBRATION_FOLDS = 0 it writes only the meta
file, and the terms are standardised by the train objects' own values (before this stage).

    python calibrate.py --dataset ped2 --data-root ../shared/data
"""

import time

import numpy as np

from memfuse import data as D
from memfuse.baseline import l2_normalise
from memfuse.calibration import (
    HELDOUT_FILES,
    NEAREST_FILES,
    FitSettings,
    cross_fit,
    nearest_train_distance,
    object_folds,
    video_folds,
)
from memfuse.io import InputError, save_json, save_npy
from memfuse.pipeline import begin, run, upstream_settings
from memfuse.stages import load_checkpoint, load_output, train_queries

# -- settings: each is also a flag (--calibration-folds 5)
# K: each fold's models see the other K-1 folds' videos (0 = none: in-sample, the paper). 2 refits the models
# once in all (each on half the videos): on Ped2 half the time of stages 1-6 would go to K = 4 (docs/results.md)
CALIBRATION_FOLDS = 2
HELP = {
    "CALIBRATION_FOLDS": "cross-fit the autoencoder and memories over this many folds of train videos to "
    "standardise their score terms on videos they never saw (0 = off: on the train objects themselves)",
}


def fit_settings(ckpt, seed: int) -> FitSettings:
    """The settings stages 1-3 recorded in ``ckpt``, for the fold models."""
    up = upstream_settings(ckpt, "calibrate.py")
    missing = [s for s in ("AE_encoder.py", "cluster.py", "train.py", "train_pose.py") if s not in up]
    if missing:
        raise InputError(f"{ckpt}: no record of {', '.join(missing)}; run python {missing[0]} first")
    ae, km, mem = up["AE_encoder.py"], up["cluster.py"], up["train.py"]
    return FitSettings(
        ae_epochs=ae["AE_EPOCHS"],
        ae_lr=ae["AE_LEARNING_RATE"],
        ae_batch_size=ae["AE_BATCH_SIZE"],
        ae_select="last" if ae["SELECT"] == "last" else "train",  # "test" would look at test features
        memory_size=km["MEMORY_SIZE"],
        kmeans_seed=km["KMEANS_SEED"],
        memory_epochs=mem["MEMORY_EPOCHS"],
        memory_lr=mem["MEMORY_LEARNING_RATE"],
        memory_batch_size=mem["MEMORY_BATCH_SIZE"],
        weights=(mem["GATHER_WEIGHT"], mem["SPREAD_WEIGHT"], mem["REC_WEIGHT"]),
        top_k=mem["TOP_K"],
        margin=mem["MARGIN"],
        cosine_t_max={"app": mem["APP_COSINE_T_MAX"], "pose": up["train_pose.py"]["POSE_COSINE_T_MAX"]},
        stale_step=mem["STALE_STEP"],
        seed=seed,
    )


def main(argv: list[str] | None = None) -> None:
    stage = begin(globals(), "calibrate.py", argv)
    ckpt, dataset = stage.ckpt, stage.dataset
    for name in (*HELDOUT_FILES.values(), *(f.format(split=s) for f in NEAREST_FILES.values() for s in D.SPLITS)):
        (ckpt / name).unlink(missing_ok=True)  # outputs of an earlier run would be read as this run's
    meta = {"folds": CALIBRATION_FOLDS}
    if CALIBRATION_FOLDS <= 0:
        save_json(ckpt / "heldout_meta.json", meta)
        stage.finish()
        print(f"[calibrate] {dataset}: no cross-fitting; the terms are standardised on the train objects")
        return
    fs = fit_settings(ckpt, stage.seed)
    split = D.load_split(stage.data_root, dataset, "train", ("app", "vel"))
    ends = D.load_clip_lengths(stage.data_root, dataset, "train", split.vel.n_frames)
    try:
        frame_fold = video_folds(ends, CALIBRATION_FOLDS)
    except ValueError as exc:
        raise InputError(f"{dataset} --calibration-folds {CALIBRATION_FOLDS}: {exc} (or set 0)") from None
    app = split.app.values
    ae = load_checkpoint(ckpt, "autoencoder.pt")
    if ae["input_mean"] is not None:  # the inputs stage 1 trained on
        app = D.zscore(app, ae["input_mean"], ae["input_std"])
    pose = train_queries(ckpt, stage.data_root, dataset, "pose", standardise=stage["STANDARDISE"])
    folds = int(frame_fold.max()) + 1
    print(
        f"[calibrate] {dataset}: {len(ends)} train videos in {folds} folds; refitting the autoencoder and memories "
        f"{folds} times ({fs.ae_epochs} + {fs.memory_epochs} epochs each)"
    )
    start = time.perf_counter()
    codes = load_output(ckpt, "app_train.npy")
    if len(codes) != len(app):
        raise InputError(
            f"{ckpt}/app_train.npy has {len(codes)} rows, the train features {len(app)}: rerun AE_encoder.py"
        )
    out = cross_fit(
        app,
        codes,
        object_folds(frame_fold, split.app.offsets),
        pose.values,
        object_folds(frame_fold, pose.offsets),
        fs,
        stage.device,
    )
    for key, name in HELDOUT_FILES.items():
        save_npy(ckpt / name, out[key])
    bins = split.vel.values.shape[1]
    test = D.load_split(stage.data_root, dataset, "test", ("app", "vel"))
    fold = object_folds(frame_fold, split.app.offsets)  # app and vel share objects
    nearest = {"app_knn": (l2_normalise(split.app.values), l2_normalise(test.app.values))}
    if bins > 1:  # direction is observable
        nearest["vel_dir"] = (split.vel.values, test.vel.values)
    for term, (train_x, test_x) in nearest.items():
        for name, values in zip(D.SPLITS, nearest_train_distance(train_x, fold, test_x, stage.device)):
            save_npy(ckpt / NEAREST_FILES[term].format(split=name), values)
    meta.update(
        {
            "folds": folds,
            "videos_per_fold": np.bincount(np.arange(len(ends)) % folds).tolist(),
            "velocity_bins": bins,
            "direction_term": bins > 1,
            "fit_settings": vars(fs),
            "seconds": round(time.perf_counter() - start, 2),
        }
    )
    save_json(ckpt / "heldout_meta.json", meta)
    stage.finish()
    print(
        f"[calibrate] {dataset}: out-of-fold terms of every train object in {meta['seconds']:.0f} s -> {ckpt}/heldout_*"
    )


if __name__ == "__main__":
    run(main)
