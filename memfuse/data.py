"""AI-VAD feature files: loading, validation and the ragged per-frame layout.

On disk (AI-VAD's format), per split ``DIR/NAME/extracted_features/{train,test}/``:

- ``velocity.npy``      object array, one (n_i, B) float array per frame, n_i >= 1
- ``deep_features.npy`` object array, one (n_i, 512) array per frame, same objects
- ``pose.npy``          object array, one (p_i, 34) array per frame, p_i may be 0

plus ``DIR/NAME/test_clip_lengths.npy`` (cumulative frame counts per test video) and the
test labels in one of the formats :func:`load_labels` reads.

In memory every modality is a :class:`Ragged`: the objects of all frames stacked into one
(N, d) float32 matrix plus ``offsets`` (F + 1,) so frame ``i`` owns rows
``offsets[i]:offsets[i+1]``. Every stage works on the stacked matrix, which is what makes
vectorised and chunked computation possible.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import PROJECT_ROOT, InputError, load_object_npy
from .registry import MODALITIES, MODALITY_NAMES

APPEARANCE_DIM = 512  # CLIP ViT-B/16 image embedding width
POSE_DIM = 34  # 17 COCO keypoints x (x, y)
SPLITS = ("train", "test")
MODALITY_FILES = {"app": "deep_features.npy", "pose": "pose.npy", "vel": "velocity.npy"}  # AI-VAD's file of each
# Where each input comes from, for error messages.
FEATURE_MAKER = "python extract_features.py --dataset NAME --data-root DIR (or AI-VAD's feature extraction)"


@dataclass
class Ragged:
    """Per-frame object sets stacked: ``values`` (N, d) float32, ``offsets`` (F + 1,) int64."""

    values: np.ndarray
    offsets: np.ndarray

    @property
    def n_frames(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        """(F,) number of objects in each frame."""
        return np.diff(self.offsets)

    def with_values(self, values: np.ndarray) -> "Ragged":
        """Same frame layout, new per-object values (e.g. encoded or pseudo features)."""
        if len(values) != len(self.values):
            raise ValueError(f"expected {len(self.values)} rows, got {len(values)}")
        return Ragged(np.ascontiguousarray(values, dtype=np.float32), self.offsets)

    @staticmethod
    def from_frames(frames: list[np.ndarray] | np.ndarray, width: int) -> "Ragged":
        """Stack a list (or object array) of (n_i, width) arrays."""
        counts = np.fromiter((len(f) for f in frames), dtype=np.int64, count=len(frames))
        offsets = np.zeros(len(frames) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        values = np.empty((int(offsets[-1]), width), dtype=np.float32)
        for i, f in enumerate(frames):
            if counts[i]:
                values[offsets[i] : offsets[i + 1]] = np.asarray(f, dtype=np.float32).reshape(counts[i], width)
        return Ragged(values, offsets)


STD_FLOOR = 1e-6  # a feature constant on train is centred, not scaled


def zscore_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of (N, d) train rows, each (d,) float32;
    a standard deviation below ``STD_FLOOR`` is taken as 1."""
    x = np.asarray(x, dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    return mean.astype(np.float32), np.where(std < STD_FLOOR, 1.0, std).astype(np.float32)


def zscore(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N, d) -> (N, d) float32, ``(x - mean) / std`` per feature."""
    return ((np.asarray(x, dtype=np.float32) - mean) / std).astype(np.float32)


def feature_path(root: Path | str, dataset: str, split: str, modality: str) -> Path:
    return Path(root) / dataset / "extracted_features" / split / MODALITY_FILES[modality]


def resolve_data_root(dataset: str, data_root: Path | str) -> Path:
    """The folder holding ``NAME/extracted_features``: ``data_root`` if it has them, else
    the project's own ``data/`` (where stage 0 writes features made from raw frames)."""
    data_root = Path(data_root)
    if feature_path(data_root, dataset, "train", "vel").exists():
        return data_root
    local = PROJECT_ROOT / "data"
    if feature_path(local, dataset, "train", "vel").exists():
        return local
    return data_root


def boxes_path(root: Path | str, dataset: str, split: str) -> Path:
    """``NAME_bboxes_SPLIT.npy`` beside the features (AI-VAD's name; stage 0 copies or writes it)."""
    return Path(root) / dataset / f"{dataset}_bboxes_{split}.npy"


def box_heights(root: Path | str, dataset: str, split: str, layout: Ragged) -> tuple[np.ndarray | None, str]:
    """Each object's box height, (N,) float32 aligned with ``layout`` (the split's velocity
    rows; NaN for a frame's whole-frame entry), and where it came from; ``(None, why)`` when
    there is no boxes file beside the features, its boxes are stage 0's motion boxes (whose
    heights are the moving regions', not the objects'), or they do not match the rows (a
    frame of n boxes has n rows, a frame of none one whole-frame row). Optional: only
    ``vel_rel`` uses it, and falls back to the plain speed."""
    path = boxes_path(root, dataset, split)
    if not path.exists():
        return None, f"no {path.name} beside the features"
    meta = feature_path(root, dataset, split, "vel").parent / "extract_meta.json"
    if meta.exists() and json.loads(meta.read_text()).get("boxes") == "motion":
        # a motion box is a moving region, cut or merged: its height is not its object's
        return None, f"{path.name} holds motion boxes"
    try:
        frames = load_object_npy(path, f"no {path}")
    except InputError as exc:
        return None, str(exc)
    if len(frames) != layout.n_frames:
        return None, f"{path}: {len(frames)} frames, the features {layout.n_frames}"
    boxes = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in frames]
    counts = np.fromiter((len(b) for b in boxes), dtype=np.int64, count=len(boxes))
    rows = np.where(counts == 0, 1, counts)
    if not np.array_equal(rows, layout.counts):
        bad = int(np.flatnonzero(rows != layout.counts)[0])
        return None, f"{path}: frame {bad} has {counts[bad]} boxes and {layout.counts[bad]} velocity rows"
    heights = np.full(int(layout.offsets[-1]), np.nan, dtype=np.float32)
    if counts.any():  # every row of a frame with boxes is a box, in order; the others are whole-frame
        heights[np.repeat(counts > 0, layout.counts)] = np.concatenate([b[:, 3] - b[:, 1] for b in boxes if len(b)])
    return heights, path.name


def load_object_array(path: Path, width: int | None, allow_empty_frames: bool, what: str) -> Ragged:
    """Read one AI-VAD object array and check it: 2-D per frame, width, finite values.

    ``width=None`` accepts any width that is the same in every frame (velocity bins).
    """
    arr = load_object_npy(path, f"missing {what} file {path}: run `{FEATURE_MAKER}` first")
    if arr.dtype != object:
        # A dense (F, n, d) array is a legal special case of the format.
        if arr.ndim != 3:
            raise InputError(
                f"{path}: expected an object array of per-frame (n_i, d) arrays, got dense shape {arr.shape}"
            )
        arr = list(arr)
    if len(arr) == 0:
        raise InputError(f"{path}: empty split (0 frames)")
    widths = set()
    for i, f in enumerate(arr):
        f = np.asarray(f)
        if f.size == 0 and allow_empty_frames:
            continue
        if f.ndim != 2:
            raise InputError(f"{path}: frame {i} has shape {f.shape}, expected (n_objects, d)")
        if f.shape[0] == 0 and not allow_empty_frames:
            raise InputError(f"{path}: frame {i} has no objects; {what} needs at least one row per frame")
        widths.add(f.shape[1])
    if not widths:
        raise InputError(f"{path}: no {what} rows in any frame")
    if len(widths) > 1:
        raise InputError(f"{path}: {what} width differs between frames: {sorted(widths)}")
    got = widths.pop()
    if width is not None and got != width:
        raise InputError(f"{path}: {what} features are {got}-d, expected {width}-d")
    frames = [np.asarray(f).reshape(-1, got) for f in arr]
    rag = Ragged.from_frames(frames, got)
    bad = ~np.isfinite(rag.values)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        frame = int(np.searchsorted(rag.offsets, row, side="right") - 1)
        raise InputError(f"{path}: NaN or inf in {what} (first at frame {frame}, {int(bad.sum())} values)")
    return rag


@dataclass
class Split:
    """One split's three modalities. ``vel`` and ``app`` share objects."""

    app: Ragged  # (N, 512) appearance
    pose: Ragged  # (P, 34), frames may hold 0 rows
    vel: Ragged  # (N, B) velocity

    @property
    def n_frames(self) -> int:
        return self.app.n_frames


def load_split(root: Path | str, dataset: str, split: str, modalities: tuple[str, ...] = MODALITIES) -> Split:
    """Load and cross-check one split. Modalities not asked for are left as ``None``."""
    root = resolve_data_root(dataset, root)
    rag: dict[str, Ragged | None] = {m: None for m in MODALITIES}
    if "app" in modalities:
        rag["app"] = load_object_array(
            feature_path(root, dataset, split, "app"), APPEARANCE_DIM, False, "appearance (deep_features)"
        )
    if "vel" in modalities:
        rag["vel"] = load_object_array(feature_path(root, dataset, split, "vel"), None, False, MODALITY_NAMES["vel"])
    if "pose" in modalities:
        rag["pose"] = load_object_array(feature_path(root, dataset, split, "pose"), POSE_DIM, True, "pose")
    loaded = {m: r for m, r in rag.items() if r is not None}
    counts = {m: r.n_frames for m, r in loaded.items()}
    if len(set(counts.values())) > 1:
        raise InputError(
            f"{root / dataset / 'extracted_features' / split}: frame counts differ between modalities: {counts}"
        )
    a, v = rag["app"], rag["vel"]
    if a is not None and v is not None and not np.array_equal(a.offsets, v.offsets):
        i = int(np.argmax(a.counts != v.counts))
        raise InputError(
            f"{root / dataset / 'extracted_features' / split}: frame {i} has {a.counts[i]} appearance rows "
            f"but {v.counts[i]} velocity rows"
        )
    return Split(**rag)  # type: ignore[arg-type]


def load_clip_lengths(root: Path | str, dataset: str, split: str, n_frames: int) -> np.ndarray:
    """Cumulative frame counts per video, (V,) int64, checked against ``n_frames``.

    A missing ``train_clip_lengths.npy`` means one video (it is only used for smoothing and
    validation splits); the test file is required.
    """
    root = resolve_data_root(dataset, root)
    path = Path(root) / dataset / f"{split}_clip_lengths.npy"
    if not path.exists():
        if split == "train":
            return np.array([n_frames], dtype=np.int64)
        raise InputError(f"missing {path}: cumulative frame count of each test video (AI-VAD's test_clip_lengths.npy)")
    ends = np.asarray(np.load(path, allow_pickle=True), dtype=np.int64).ravel()
    if len(ends) == 0 or np.any(np.diff(ends) <= 0) or ends[0] <= 0:
        raise InputError(
            f"{path}: clip lengths must be positive and strictly increasing (cumulative ends), got {ends[:5]}..."
        )
    if ends[-1] != n_frames:
        raise InputError(f"{path}: clip lengths end at {ends[-1]} frames but the {split} features have {n_frames}")
    return ends


def _labels_from_mat(path: Path, ends: np.ndarray) -> np.ndarray:
    """Ped2/Avenue ``.mat`` ground truth: ``gt`` cell of (2, k) 1-based inclusive ranges."""
    from scipy.io import loadmat

    mat = loadmat(path)
    key = next((k for k in ("gt", "volLabel", "frame_labels") if k in mat), None)
    if key is None:
        raise InputError(f"{path}: no 'gt' variable (found {sorted(k for k in mat if not k.startswith('__'))})")
    cells = mat[key].ravel()
    if len(cells) != len(ends):
        raise InputError(f"{path}: {len(cells)} videos in the labels but {len(ends)} in test_clip_lengths.npy")
    starts = np.concatenate([[0], ends[:-1]])
    labels = np.zeros(int(ends[-1]), dtype=np.int64)
    for v, ranges in enumerate(cells):
        ranges = np.asarray(ranges, dtype=np.int64).reshape(2, -1)
        for a, b in ranges.T:
            labels[starts[v] + a - 1 : starts[v] + b] = 1
    return labels


def _labels_from_m(path: Path, ends: np.ndarray) -> np.ndarray:
    """UCSD's ``UCSDpedN.m``: one ``gt_frame = [a:b, c:d]`` line per video, 1-based."""
    lines = [line for line in path.read_text().splitlines() if "gt_frame" in line]
    if len(lines) != len(ends):
        raise InputError(f"{path}: {len(lines)} videos in the labels but {len(ends)} in test_clip_lengths.npy")
    starts = np.concatenate([[0], ends[:-1]])
    labels = np.zeros(int(ends[-1]), dtype=np.int64)
    for v, line in enumerate(lines):
        for a, b in re.findall(r"(\d+)\s*:\s*(\d+)", line):
            labels[starts[v] + int(a) - 1 : starts[v] + int(b)] = 1
    return labels


def label_candidates(root: Path, dataset: str) -> list[Path]:
    """Label files :func:`load_labels` looks for, in order of preference."""
    base = root / dataset
    return [
        base / "frame_labels.npy",
        base / f"frame_labels_{dataset}.npy",
        base / f"{dataset}.mat",
        base / "testing" / "test_frame_mask",
        base / "testing" / f"UCSD{dataset}.m",
    ]


def load_labels(root: Path | str, dataset: str, ends: np.ndarray, required: bool = True) -> np.ndarray | None:
    """Frame-level 0/1 test labels (F,) int64 from the first format found; with
    ``required`` False, ``None`` when there is no label file (a file that is there but
    wrong is still an error).

    Formats: ``frame_labels.npy`` / ``frame_labels_NAME.npy`` (any shape flattening to one
    value per frame), ``NAME.mat`` (Ped2/Avenue ``gt`` ranges), ``testing/test_frame_mask/*.npy``
    (ShanghaiTech, one file per video in sorted order) or UCSD's ``testing/UCSDNAME.m``.
    """
    n = int(ends[-1])
    for root_ in dict.fromkeys([Path(root), resolve_data_root(dataset, root)]):
        for path in label_candidates(root_, dataset):
            if not path.exists():
                continue
            if path.suffix == ".npy":
                labels = np.asarray(np.load(path, allow_pickle=True)).ravel()
            elif path.suffix == ".mat":
                labels = _labels_from_mat(path, ends)
            elif path.suffix == ".m":
                labels = _labels_from_m(path, ends)
            else:
                files = sorted(path.glob("*.npy"))
                if not files:
                    continue
                labels = np.concatenate([np.asarray(np.load(f)).ravel() for f in files])
            if labels.size != n:
                raise InputError(f"{path}: {labels.size} frame labels but the test split has {n} frames")
            if not np.isin(labels, (0, 1)).all():
                raise InputError(f"{path}: labels must be 0 or 1")
            return labels.astype(np.int64)
    if not required:
        return None
    tried = ", ".join(str(p) for p in label_candidates(Path(root), dataset))
    raise InputError(f"no test labels for {dataset}: looked for {tried}")


def validate_dataset(root: Path | str, dataset: str) -> dict:
    """Load and cross-check everything the pipeline reads, before any training: both
    splits, velocity bins equal across splits, some pose, clip lengths and labels (which
    may be absent: ``summary["test"]["no_auc"]`` then says why there will be no AUC).
    Raises :class:`InputError` with a one-line reason; returns a summary."""
    summary: dict = {}
    bins = {}
    for split in SPLITS:
        s = load_split(root, dataset, split)
        if s.pose.counts.sum() == 0:
            raise InputError(
                f"{feature_path(resolve_data_root(dataset, root), dataset, split, 'pose')}: no person in any frame; "
                "this method needs pose"
            )
        bins[split] = s.vel.values.shape[1]
        ends = load_clip_lengths(root, dataset, split, s.n_frames)
        summary[split] = {
            "frames": s.n_frames,
            "videos": len(ends),
            "objects": int(s.app.offsets[-1]),
            "persons": int(s.pose.offsets[-1]),
            "frames_without_person": int((s.pose.counts == 0).sum()),
            "max_objects": int(s.app.counts.max()),
            "max_persons": int(s.pose.counts.max()),
        }
        if split == "test":
            labels = load_labels(root, dataset, ends, required=False)
            summary["test"]["anomalous_frames"] = None if labels is None else int(labels.sum())
            from .metrics import why_no_auc

            summary["test"]["no_auc"] = why_no_auc(labels)
    if bins["train"] != bins["test"]:
        raise InputError(f"{dataset}: velocity has {bins['train']} bins in train but {bins['test']} in test")
    summary["velocity_bins"] = bins["train"]
    return summary
