"""Stage 5: pad every frame's object set to N_max rows and record the padding masks.

N_max is the largest object count of any frame in either split (appearance/velocity boxes
or pose persons), found from the data. A frame without any person gets one all-zero pose
row, unmasked ("nobody here"), as the reference's re-inserted zero rows. Velocity per
object is the mean over its orientation bins (the fusion repeats it to 34 columns).

Reads  CKPT/pseudo_{app,pose}_*.npy (stage 4), app_*_recon.npy
       (stage 1), heldout_* (stage 4c), velocity.npy and NAME_bboxes_{split}.npy
Writes CKPT/padded/{split}_{name}.npy, memory-mappable:
         train_app, train_app_anomaly, train_pose, train_pose_anomaly, test_app, test_pose
                                              (F, N_max, 34) float32
         {split}_vel                          (F, N_max) float32
         {split}_app_dist, {split}_pose_dist  (F, N_max) float32, each object's distance to
                                              its nearest memory item (stage 4)
         {split}_app_rec                      (F, N_max) float32, each object's autoencoder
                                              reconstruction error (stage 1)
         {split}_app_mask, {split}_pose_mask  (F, N_max) bool, True = padding
                                              (velocity shares the appearance mask)
         train_{app_dist,app_rec,pose_dist}_heldout (F, N_max) float32, the out-of-fold
                                              values (calibrate.py), when it cross-fitted
         {split}_vel_rel                      (F, N_max) float32, each object's speed relative
                                              to its box height (memfuse/scoring.py vel_rel;
                                              the plain speed without a detector's boxes)
         {split}_vel_dir                      (F, N_max) float32, the direction-aware
                                              velocity term (calibrate.py), with orientation bins
         {split}_app_knn                      (F, N_max) float32, the distance to the nearest
                                              train object's appearance (calibrate.py)
       CKPT/padded/meta.json   N_max, frame and object counts, vel_rel's reference box
                               height (written last)
where CKPT = checkpoints/DATASET/RECIPE/.

    python padding_mask.py --dataset ped2 --data-root ../shared/data
"""

import json

from memfuse import data as D
from memfuse.calibration import HELDOUT_FILES, HELDOUT_PADDED, NEAREST_FILES
from memfuse.io import InputError, require, save_json
from memfuse.padding import n_max_of, save_padded, velocity_per_object
from memfuse.pipeline import begin, run
from memfuse.registry import made_by
from memfuse.scoring import height_reference, relative_speed
from memfuse.stages import load_output

PAD_CHUNK = 16384  # frames padded per step, bounds memory on large datasets
HELP = {"PAD_CHUNK": "frames padded per step"}


def per_object(ckpt, name: str, layout: D.Ragged, rerun: str) -> D.Ragged:
    """A stage output with one row per object of ``layout`` ((N, d) or (N,)), as a Ragged of
    its frames; InputError naming the stage to rerun when the row counts differ."""
    values = load_output(ckpt, name)
    if len(values) != layout.offsets[-1]:
        raise InputError(f"{ckpt}/{name} has {len(values)} rows, the data {layout.offsets[-1]}: rerun {rerun}")
    return layout.with_values(values.reshape(len(values), -1))


def pad_heldout(ckpt, out, n_max: int, app_layout: D.Ragged, pose_layout: D.Ragged) -> bool:
    """Pad calibrate.py's out-of-fold train values, when it cross-fitted; False when it did not."""
    folds = json.loads(require(ckpt / "heldout_meta.json", made_by("heldout_meta.json")).read_text())["folds"]
    for name in HELDOUT_PADDED:
        (out / f"train_{name}.npy").unlink(missing_ok=True)
    if folds <= 0:
        return False
    layouts = {"app_dist": app_layout, "app_rec": app_layout, "pose_dist": pose_layout}
    for (key, file), name in zip(HELDOUT_FILES.items(), HELDOUT_PADDED):
        values = per_object(ckpt, file, layouts[key], "python calibrate.py")
        save_padded(values, n_max, out / f"train_{name}.npy", None, PAD_CHUNK, squeeze=True)
    return True


def pad_nearest(ckpt, out, n_max: int, split: str, app_layout: D.Ragged, term: str) -> bool:
    """Pad calibrate.py's nearest-train-object ``term`` (app_knn, vel_dir) of ``split`` when
    it made one (not without cross-fitting; vel_dir not without orientation bins)."""
    target = out / f"{split}_{term}.npy"
    target.unlink(missing_ok=True)
    if not (ckpt / NEAREST_FILES[term].format(split=split)).exists():
        return False
    values = per_object(ckpt, NEAREST_FILES[term].format(split=split), app_layout, "python calibrate.py")
    save_padded(values, n_max, target, None, PAD_CHUNK, squeeze=True)
    return True


def main(argv: list[str] | None = None) -> None:
    stage = begin(globals(), "padding_mask.py", argv)
    ckpt, dataset = stage.ckpt, stage.dataset
    out = ckpt / "padded"
    out.mkdir(exist_ok=True)
    layouts = {}
    for split in D.SPLITS:
        raw = D.load_split(stage.data_root, dataset, split, ("vel", "pose"))
        if split == "train" and raw.pose.counts.sum() == 0:
            raise InputError(f"{dataset}: the train pose file holds no person in any frame; this method needs pose")
        layouts[split] = raw
    n_max = n_max_of(*(r.vel for r in layouts.values()), *(r.pose for r in layouts.values()))
    print(f"[padding_mask] {dataset}: N_max = {n_max}")
    meta = {"n_max": n_max}
    heights = {split: D.box_heights(stage.data_root, dataset, split, raw.vel) for split, raw in layouts.items()}
    reference = height_reference(heights["train"][0]) if heights["test"][0] is not None else None
    meta["vel_rel"] = {"height_reference": reference, "boxes": {split: why for split, (_, why) in heights.items()}}
    if reference is None:
        print(f"[padding_mask] vel_rel is the plain speed: {heights['train'][1]}; {heights['test'][1]}")
    for split, raw in layouts.items():
        app_layout, pose_layout = raw.vel, raw.pose
        names = ["normal", "anomaly"] if split == "train" else ["normal"]
        for modality, layout in (("app", app_layout), ("pose", pose_layout)):
            for kind in names:
                values = per_object(ckpt, f"pseudo_{modality}_{split}_{kind}.npy", layout, "stage 4")
                suffix = "" if kind == "normal" else "_anomaly"
                mask_path = out / f"{split}_{modality}_mask.npy" if kind == "normal" else None
                save_padded(values, n_max, out / f"{split}_{modality}{suffix}.npy", mask_path, PAD_CHUNK)
        speed = velocity_per_object(app_layout)
        save_padded(speed, n_max, out / f"{split}_vel.npy", None, PAD_CHUNK, squeeze=True)
        rel = relative_speed(speed.values[:, 0], heights[split][0], reference)
        save_padded(
            app_layout.with_values(rel[:, None]), n_max, out / f"{split}_vel_rel.npy", None, PAD_CHUNK, squeeze=True
        )
        for modality, layout in (("app", app_layout), ("pose", pose_layout)):
            dist = per_object(ckpt, f"pseudo_{modality}_{split}_distance.npy", layout, "stage 4")
            save_padded(dist, n_max, out / f"{split}_{modality}_dist.npy", None, PAD_CHUNK, squeeze=True)
        recon = per_object(ckpt, f"app_{split}_recon.npy", app_layout, "python AE_encoder.py")
        save_padded(recon, n_max, out / f"{split}_app_rec.npy", None, PAD_CHUNK, squeeze=True)
        if split == "train":
            meta["heldout"] = pad_heldout(ckpt, out, n_max, app_layout, pose_layout)
        for term in NEAREST_FILES:
            meta[term] = pad_nearest(ckpt, out, n_max, split, app_layout, term)
        meta[split] = {
            "frames": raw.vel.n_frames,
            "objects": int(app_layout.offsets[-1]),
            "persons": int(pose_layout.offsets[-1]),
            "frames_without_person": int((pose_layout.counts == 0).sum()),
            "velocity_bins": int(raw.vel.values.shape[1]),
        }
    save_json(out / "meta.json", meta)
    stage.finish()
    print(f"[padding_mask] wrote {out}/ ({meta['train']['frames']} train, {meta['test']['frames']} test frames)")


if __name__ == "__main__":
    run(main)
