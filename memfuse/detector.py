"""The trained detector as one folder, and the scoring of new objects with it.

A run of the stage scripts leaves, beside its checkpoints, ``CKPT/detector/``: everything
that scores new footage and nothing of the training features (attention_fusion.py writes it
last, :func:`build`)::

    detector.json  the format version, stage 0's settings (flow, appearance, boxes, pose,
                   frame size), the recipe, the scoring settings, every term's calibration,
                   the alarm threshold and how it was set
    weights.pt     the autoencoder and its input standardisation, both memories, the pose
                   standardisation, the fusion classifier, the camera's motion background
                   (footage without boxes), the train objects' B-bin velocities (the
                   direction term, with orientation bins only: B floats per object) and the
                   normal frames' causal scores (to set other alarm rates)

:func:`load` refuses, in one line, a folder that is incomplete, of another format version,
or made with stage-0 settings this code would make differently. :meth:`Detector.score`
scores a batch of frames' objects exactly as stages 1-6 score the test split (the same
functions: tests/test_detector.py checks that it reproduces attention_fusion.py's scores).
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.special import expit

from . import data as D
from .alarms import Threshold, causal_smooth, threshold_for_rate
from .baseline import knn_distance, l2_normalise
from .fusion import PaddedSplit, frame_logits, memory_terms, object_values
from .io import InputError, atomic_path, save_json
from .models import AttentionFusion, AutoEncoder
from .padding import pad
from .pipeline import provenance_path
from .pseudo import generate
from .scoring import Calibration, combine_values, object_scores, relative_speed, source_values, term_values
from .stages import load_checkpoint, load_memory_items, reconstruction_error

DETECTOR_VERSION = 1
MANIFEST, WEIGHTS = "detector.json", "weights.pt"
FOLDER = "detector"  # CKPT/detector/
DEFAULT_FALSE_ALARMS_PER_HOUR = 1.0
MERGE_GAP_S = 1.0  # alarm runs less than this many seconds apart are one event


class DetectorError(InputError):
    """A detector folder that cannot be used: the message is one line naming why."""


@dataclass
class FrameScores:
    """Scores of a batch of F frames."""

    raw: np.ndarray  # (F,) the frame score before smoothing
    values: dict[str, np.ndarray]  # term -> (F,) calibrated value
    sources: dict[str, np.ndarray]  # source of evidence (classifier, app, pose, vel) -> (F,)
    objects: np.ndarray | None  # (F, N_max) each object's evidence, NaN on padding; None: classifier alone


class Detector:
    """A loaded detector: ``meta`` (detector.json) and its models, on the CPU."""

    def __init__(self, meta: dict, weights: dict[str, Any]):
        self.meta, self.w = meta, weights
        s = meta["scoring"]
        self.autoencoder = AutoEncoder(in_dim=s["app_dim"])
        self.autoencoder.load_state_dict(weights["autoencoder"])
        self.autoencoder.eval()
        self.fusion = AttentionFusion(
            s["n_max"], hidden=s["hidden"], dropout=s["dropout"], u2_key=s["u2_key"], head=s["head"]
        )
        self.fusion.load_state_dict(weights["fusion"])
        self.fusion.eval()
        self.calibration = {t: Calibration(**c) for t, c in s["calibration"].items()}
        self.device = torch.device("cpu")
        self._warned = False

    # -- what the detector was made with
    @property
    def stage0(self) -> dict | None:
        """Stage 0's settings and frame size, or None for features made elsewhere."""
        return self.meta.get("stage0")

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"]["value"])

    @property
    def fps(self) -> float:
        return float(self.meta["threshold"]["fps"])

    @property
    def smooth_sigma(self) -> float:
        return float(self.meta["scoring"]["smooth_sigma"])

    def threshold_for(self, per_hour: float) -> Threshold:
        """The alarm threshold for ``per_hour`` false alarms on the detector's normal frames."""
        return threshold_for_rate(
            self.w["reference_scores"],
            self.w["reference_ends"],
            fps=self.fps,
            per_hour=per_hour,
            merge_gap=int(round(MERGE_GAP_S * self.fps)),
        )

    # -- scoring
    @torch.no_grad()
    def score(self, app: D.Ragged, pose: D.Ragged, vel: D.Ragged, heights: np.ndarray | None = None) -> FrameScores:
        """Scores of F frames: ``app`` (N, 512) appearance and ``vel`` (N, B) velocity of their
        objects, ``pose`` (P, 34) of their persons, each a :class:`memfuse.data.Ragged` over
        the same F frames (app and vel share a layout); ``heights`` (N,) the objects' box
        heights (NaN: a whole-frame entry; None: no boxes, ``vel_rel`` is the plain speed).
        Stages 1-6's test-split path."""
        s = self.meta["scoring"]
        if app.n_frames != pose.n_frames or not np.array_equal(app.offsets, vel.offsets):
            raise ValueError("app, pose and vel must cover the same frames (app and vel the same objects)")
        x = app.values
        if self.w.get("app_mean") is not None:
            x = D.zscore(x, self.w["app_mean"], self.w["app_std"])
        x = np.ascontiguousarray(x, dtype=np.float32)
        codes = self.autoencoder.encode(torch.from_numpy(x)).numpy() if len(x) else np.zeros((0, 34), np.float32)
        app_rec = reconstruction_error(self.autoencoder, x, self.device) if len(x) else np.zeros(0, np.float32)
        p = pose.values
        if self.w.get("pose_mean") is not None:
            p = D.zscore(p, self.w["pose_mean"], self.w["pose_std"])
        memorised = {}
        for name, q, items in (("app", codes, self.w["app_items"]), ("pose", p, self.w["pose_items"])):
            if len(q):
                normal = generate(
                    q, items, top_k=s["top_k"], t_top=s["t_top"], t_bottom=s["t_bottom"], extrapolate=s["extrapolate"]
                ).normal
                dist = knn_distance(q, items)
            else:
                normal, dist = np.zeros((0, items.shape[1]), np.float32), np.zeros(0, np.float32)
            memorised[name] = (normal, dist)
        n = s["n_max"]
        layout_a, layout_p = app.offsets, pose.offsets

        def padded(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            v = np.asarray(values, np.float32)
            over = np.diff(offsets) > n
            if over.any() and not self._warned:  # the classifier's input size is the training data's
                self._warned = True
                print(
                    f"[detector] a frame holds {int(np.diff(offsets).max())} objects, more than the training "
                    f"footage's N_max {n}: the extra ones are not scored (said once)"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pad(D.Ragged(v[:, None] if v.ndim == 1 else v, offsets), n)

        app_x, app_mask = padded(memorised["app"][0], layout_a)
        pose_x, pose_mask = padded(memorised["pose"][0], layout_p)
        squeeze = lambda values, offsets: padded(values, offsets)[0][..., 0]  # noqa: E731
        vel_dir = app_knn = None
        if self.w.get("vel_reference") is not None:
            vel_dir = squeeze(knn_distance(vel.values, self.w["vel_reference"]), layout_a)
        if self.w.get("app_reference") is not None:
            app_knn = squeeze(knn_distance(l2_normalise(app.values), self.w["app_reference"]), layout_a)
        speed = vel.values.mean(axis=1)
        vel_rel = relative_speed(speed, heights, s.get("height_reference"))
        split = PaddedSplit(
            app=app_x,
            pose=pose_x,
            vel=squeeze(speed, layout_a),
            vel_rel=squeeze(vel_rel, layout_a),
            app_mask=app_mask,
            pose_mask=pose_mask,
            app_dist=squeeze(memorised["app"][1], layout_a),
            pose_dist=squeeze(memorised["pose"][1], layout_p),
            app_rec=squeeze(app_rec, layout_a),
            vel_dir=vel_dir,
            app_knn=app_knn,
        )
        logits = frame_logits(self.fusion, split, self.device, s["masking"], modalities=tuple(s["modalities"]))
        terms = tuple(s["terms"])
        test_terms = {"classifier": logits, **memory_terms(split)}
        values = term_values(self.calibration, test_terms, s["combine"])
        sources = source_values(values, terms, s["combine"])
        if terms == ("classifier",):
            raw = expit(logits)
        else:
            raw = combine_values(values, terms, s["combine"])
        per_object = object_scores(
            object_values(split),
            app_mask,
            s["calibration"],
            terms,
            s["combine"],
        )
        return FrameScores(np.asarray(raw, np.float64), values, sources, per_object)


# ---- making one ---------------------------------------------------------------------------------
def stage0_record(data_root: Path, dataset: str) -> tuple[dict | None, np.ndarray | None]:
    """Stage 0's record of the train split (extract_meta.json), and its camera background
    when the boxes came from motion; (None, None) for features made elsewhere."""
    meta_path = D.feature_path(data_root, dataset, "train", "vel").parent / "extract_meta.json"
    if not meta_path.exists():
        return None, None
    info = json.loads(meta_path.read_text())
    background = None
    bg_path = meta_path.parent / "background.npy"
    if info.get("boxes") == "motion" and bg_path.exists():
        background = np.load(bg_path)
    keep = ("settings", "frame_size", "clip_weights", "pose_model_path", "motion_person", "boxes", "pose")
    return {k: info.get(k) for k in keep}, background


def build(
    ckpt: Path,
    *,
    data_root: Path,
    dataset: str,
    stage_settings: dict,
    fusion: AttentionFusion,
    calibration: dict[str, dict],
    reference: dict[str, np.ndarray],
    terms: tuple[str, ...],
    train_ends: np.ndarray,
    vel_dir: bool,
    app_knn: bool,
    height_reference: float | None,
    fps: float,
    per_hour: float = DEFAULT_FALSE_ALARMS_PER_HOUR,
) -> Path:
    """Write ``ckpt/detector/`` from a finished run (stages 1-5's outputs, stage 6's model).

    ``stage_settings``: attention_fusion.py's settings; ``calibration``: each term's (as
    dicts); ``terms``: those the frame score combines; ``reference``: the raw reference
    terms of the train frames ({term: (F_train,)}, out-of-fold where calibrate.py
    cross-fitted), from which the normal frames' causal scores and the alarm threshold
    come; ``vel_dir``, ``app_knn``: those terms are scored (the detector keeps the train
    objects' velocities, L2-normalised appearance features, to score them); ``height_reference``: ``vel_rel``'s
    reference box height (None: it is the plain speed)."""
    g = stage_settings
    ae = load_checkpoint(ckpt, "autoencoder.pt")
    pseudo = json.loads((ckpt / "pseudo_app_meta.json").read_text())
    combine = g["SCORE_COMBINE"]
    # the pose queries were standardised as the pose pseudo stage recorded it did
    standardise_pose = json.loads(provenance_path(ckpt, "Pseudo_generators_pose.py").read_text())["STANDARDISE"]
    train_pose = D.load_split(data_root, dataset, "train", ("pose",)).pose.values
    pose_mean, pose_std = D.zscore_fit(train_pose) if standardise_pose else (None, None)
    available = tuple(calibration)
    values = term_values({t: Calibration(**calibration[t]) for t in available}, reference, combine)
    ref = expit(reference["classifier"]) if terms == ("classifier",) else combine_values(values, terms, combine)
    ref_causal = causal_smooth(ref, train_ends, g["SMOOTH_SIGMA"]).astype(np.float32)
    merge_gap = int(round(MERGE_GAP_S * fps))
    threshold = threshold_for_rate(ref_causal, train_ends, fps=fps, per_hour=per_hour, merge_gap=merge_gap)
    stage0, background = stage0_record(data_root, dataset)
    weights = {
        "autoencoder": ae["state_dict"],
        "app_mean": ae.get("input_mean"),
        "app_std": ae.get("input_std"),
        "app_items": load_memory_items(ckpt, "app"),
        "pose_items": load_memory_items(ckpt, "pose"),
        "pose_mean": pose_mean,
        "pose_std": pose_std,
        "fusion": {k: v.detach().cpu() for k, v in fusion.state_dict().items()},
        "vel_reference": D.load_split(data_root, dataset, "train", ("vel",)).vel.values if vel_dir else None,
        "app_reference": l2_normalise(D.load_split(data_root, dataset, "train", ("app",)).app.values)
        if app_knn
        else None,
        "background": background,
        "reference_scores": ref_causal,
        "reference_ends": np.asarray(train_ends, np.int64),
    }
    meta = {
        "version": DETECTOR_VERSION,
        "made": time.strftime("%Y-%m-%d %H:%M:%S"),
        "dataset": dataset,
        "recipe": g["RECIPE"],
        "seed": g["SEED"],
        "stage0": stage0,
        "scoring": {
            "app_dim": int(ae["in_dim"]),
            "standardise": {"app": ae.get("input_mean") is not None, "pose": bool(standardise_pose)},
            "top_k": pseudo["top_k"],
            "t_top": pseudo["t_top"],
            "t_bottom": pseudo["t_bottom"],
            "extrapolate": pseudo["extrapolate"],
            "n_max": fusion.n_max,
            "hidden": g["HIDDEN"],
            "dropout": g["DROPOUT"],
            "u2_key": g["U2_KEY"],
            "head": g["HEAD"],
            "masking": g["MASKING"],
            "modalities": [m.strip() for m in g["MODALITIES"].split(",") if m.strip()],
            "terms": list(terms),
            "combine": combine,
            "calibration": {t: calibration[t] for t in available},
            "smooth_sigma": g["SMOOTH_SIGMA"],
            "height_reference": height_reference,
        },
        "threshold": {**asdict(threshold), "fps": fps, "merge_gap_frames": merge_gap},
        "reference": {"frames": int(len(ref)), "videos": int(len(train_ends))},
    }
    return save(ckpt / FOLDER, meta, weights)


def save(folder: Path, meta: dict, weights: dict[str, Any]) -> Path:
    """Write a detector folder whole or not at all: into a sibling, then renamed over it."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(weights, tmp / WEIGHTS)
    save_json(tmp / MANIFEST, meta)
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def save_meta(folder: Path, meta: dict) -> None:
    """Rewrite detector.json alone (e.g. a new threshold), atomically."""
    with atomic_path(Path(folder) / MANIFEST) as tmp:
        tmp.write_text(json.dumps(meta, indent=2))


# ---- loading one --------------------------------------------------------------------------------
def check_stage0(stage0: dict | None) -> list[str]:
    """What this code's stage 0 would make differently from a detector's record: the
    settings that depend on code constants (motion boxes' defaults) compared with now."""
    if stage0 is None or stage0.get("boxes") != "motion":
        return []
    from .extract.motion import MotionConfig

    now = json.loads(json.dumps(asdict(MotionConfig())))
    kept = stage0["settings"].get("boxes") or {}
    return [f"motion boxes {k}: detector {kept.get(k)!r}, this code {v!r}" for k, v in now.items() if kept.get(k) != v]


def load(folder: Path | str) -> Detector:
    """The detector in ``folder`` (:func:`build`), or :class:`DetectorError` naming why not."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DetectorError(f"{folder}: no detector folder (run_all.py or attention_fusion.py makes CKPT/detector/)")
    missing = [f for f in (MANIFEST, WEIGHTS) if not (folder / f).is_file()]
    if missing:
        raise DetectorError(f"{folder}: incomplete detector, missing {', '.join(missing)}; rerun attention_fusion.py")
    try:
        meta = json.loads((folder / MANIFEST).read_text())
    except json.JSONDecodeError as exc:
        raise DetectorError(f"{folder / MANIFEST}: not a detector manifest ({exc})") from None
    if meta.get("version") != DETECTOR_VERSION:
        raise DetectorError(
            f"{folder}: detector format version {meta.get('version')}, this code reads version {DETECTOR_VERSION}; "
            "refit it with this code (run_all.py)"
        )
    differ = check_stage0(meta.get("stage0"))
    if differ:
        raise DetectorError(f"{folder}: made by other stage-0 code: {differ[0]}; refit it with this code")
    try:
        weights = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=False)
        return Detector(meta, weights)
    except (RuntimeError, KeyError, EOFError, OSError) as exc:
        raise DetectorError(f"{folder / WEIGHTS}: unreadable or not this detector's weights ({exc})") from None


def load_test_split(
    data_root: Path, dataset: str, split: str = "test"
) -> tuple[D.Ragged, D.Ragged, D.Ragged, np.ndarray | None]:
    """A dataset split's (app, pose, vel, box heights) as :meth:`Detector.score` takes them."""
    sp = D.load_split(data_root, dataset, split)
    return sp.app, sp.pose, sp.vel, D.box_heights(data_root, dataset, split, sp.vel)[0]
