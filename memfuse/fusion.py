"""Training and scoring the attention fusion classifier (stage 6) on padded inputs.

Training takes, per frame, the padded pseudo-normal and pseudo-anomalous appearance and
pose (F, N, D), the per-object velocity (F, N) and the padding masks (F, N), and builds the
reference's four labelled passes in one batch:

    (app normal,    pose normal,    vel) -> 0
    (app anomalous, pose anomalous, vel) -> 1
    (app anomalous, pose normal,    vel) -> 1
    (app normal,    pose anomalous, vel) -> 1

plus, with ``velocity_anomaly_scale > 0`` (an extension: the reference never perturbs
velocity), a fifth pass (app normal, pose normal, scale x vel) -> 1. The BCE of the passes
is summed, as in the reference. Arrays may be memory-mapped: only a mini-batch of frames
is ever copied into a tensor.

``modalities`` (an ablation, default all three) keeps some modalities and feeds zeros for
the others, in training and scoring alike; a pass labelled 1 whose kept inputs are all the
normal ones would contradict the normal pass, so it is dropped (pose alone trains on
passes 1, 2 and 4; velocity alone needs the velocity extension's pass).

``train_fusion(fast_path=True)`` (the default) trains through :mod:`memfuse.fast`, the CPU
fast path: bit-mask dropout and row trimming, the same maths faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F_
from scipy.special import expit
from tqdm import tqdm

from .fast import real_row_counts, trimmed_pieces, use_fast_dropout
from .metrics import micro_auc
from .models import AttentionFusion
from .registry import MODALITIES
from .scoring import masked_frame_max
from .stages import index_batches

INFERENCE_BATCH = 8192  # frames per scoring batch


class Pass(NamedTuple):
    """One labelled training pass: which appearance and pose input ("normal" = pseudo-
    normal, "anomaly" = pseudo-anomalous), whether velocity is scaled, and the target."""

    app: str
    pose: str
    vel_scaled: bool
    target: float


PASSES = (
    Pass("normal", "normal", False, 0.0),
    Pass("anomaly", "anomaly", False, 1.0),
    Pass("anomaly", "normal", False, 1.0),
    Pass("normal", "anomaly", False, 1.0),
)
VELOCITY_PASS = Pass("normal", "normal", True, 1.0)  # the extension's fifth pass
# Frames per forward/backward inside one optimiser step. The gradients of the pieces are
# summed before the step, so this changes speed and memory, not the update: on 2 CPU cores
# a 256-frame piece keeps the intermediates small enough to be reused rather than freshly
# page-faulted each time (a Ped2 epoch in less than half the time: docs/results.md).
MICRO_BATCH = 256


@dataclass
class PaddedSplit:
    """One split's padded fusion inputs. ``*_anomaly`` exist for the train split only."""

    app: np.ndarray  # (F, N, D) pseudo-normal / memorised appearance
    pose: np.ndarray  # (F, N, D)
    vel: np.ndarray  # (F, N) per-object velocity
    app_mask: np.ndarray  # (F, N) bool, True = padding (velocity shares it)
    pose_mask: np.ndarray  # (F, N) bool
    app_anomaly: np.ndarray | None = None
    pose_anomaly: np.ndarray | None = None
    app_dist: np.ndarray | None = None  # (F, N) each object's distance to its nearest memory item
    pose_dist: np.ndarray | None = None  # (F, N)
    app_rec: np.ndarray | None = None  # (F, N) each object's autoencoder reconstruction error
    # (F, N) the same three from models fitted without the object's video (calibrate.py; train split)
    app_dist_heldout: np.ndarray | None = None
    app_rec_heldout: np.ndarray | None = None
    pose_dist_heldout: np.ndarray | None = None
    vel_rel: np.ndarray | None = None  # (F, N) speed relative to box height (memfuse.scoring.relative_speed)
    vel_dir: np.ndarray | None = None  # (F, N) direction-aware velocity term (calibrate.py, B > 1); train: out-of-fold
    app_knn: np.ndarray | None = None  # (F, N) nearest train appearance distance (calibrate.py); train: out-of-fold

    @property
    def n_frames(self) -> int:
        return len(self.app)


def forward(
    model: AttentionFusion,
    app: torch.Tensor,
    pose: torch.Tensor,
    vel: torch.Tensor,
    masks: list[torch.Tensor],
    masking: bool = True,
) -> torch.Tensor:
    """Frame logits (F,). ``masks`` = [app, pose, vel] padding masks (F, N); ``masking``
    False feeds the attention no mask (the reference), while a pooled head still pools
    over the real rows only (a row is real if it holds an object or a person)."""
    return model(app, pose, vel, masks if masking else None, rows=~(masks[0] & masks[1]))


def _t(a: np.ndarray, idx, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a[idx])).to(device)


def check_modalities(modalities: tuple[str, ...]) -> tuple[str, ...]:
    """Validate a modality subset; returns it in the canonical order."""
    unknown = set(modalities) - set(MODALITIES)
    if unknown or not modalities:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {modalities}")
    return tuple(m for m in MODALITIES if m in modalities)


def passes(velocity_anomaly_scale: float = 0.0, modalities: tuple[str, ...] = MODALITIES) -> list[Pass]:
    """The labelled passes trained on (see the module doc), for the kept ``modalities``."""
    modalities = check_modalities(modalities)
    chosen = list(PASSES) + ([VELOCITY_PASS] if velocity_anomaly_scale > 0 else [])

    def perturbs_a_kept_modality(p: Pass) -> bool:
        return (
            ("app" in modalities and p.app == "anomaly")
            or ("pose" in modalities and p.pose == "anomaly")
            or ("vel" in modalities and p.vel_scaled)
        )

    chosen = [p for p in chosen if p.target == 0.0 or perturbs_a_kept_modality(p)]
    if len(chosen) < 2:
        raise ValueError(
            f"modalities {modalities}: no pseudo-anomalous pass varies them "
            "(velocity alone needs velocity_anomaly_scale > 0)"
        )
    return chosen


def _inputs(
    split: PaddedSplit,
    idx: np.ndarray,
    device: torch.device,
    modalities: tuple[str, ...],
    train: bool,
    n_rows: int | None = None,
) -> dict[str, torch.Tensor]:
    """Mini-batch tensors; a dropped modality's features are zeros (its mask is kept).
    ``n_rows`` keeps only the first rows of each frame (see :func:`memfuse.fast.trimmed_pieces`)."""
    names = ["app", "pose", "vel", "app_mask", "pose_mask"] + (["app_anomaly", "pose_anomaly"] if train else [])
    rows = slice(None, n_rows)
    out = {n: _t(getattr(split, n), (idx, rows), device) for n in names}
    for n in names:
        if not n.endswith("mask") and n.split("_")[0] not in modalities:
            out[n] = torch.zeros_like(out[n])
    return out


def training_batch(
    split: PaddedSplit,
    idx: np.ndarray,
    device: torch.device,
    velocity_anomaly_scale: float = 0.0,
    modalities: tuple[str, ...] = MODALITIES,
    n_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """The labelled passes for frames ``idx`` stacked into one batch.

    Returns app, pose (P*B, N, D), vel (P*B, N), masks [app, pose, vel] (P*B, N) and
    targets (P*B,), where P = 4 passes (5 with the velocity extension; fewer when
    ``modalities`` drops some, see :func:`passes`). ``n_rows`` < N keeps the first rows only."""
    idx = np.sort(idx)  # sorted reads are faster on memory-mapped arrays
    x = _inputs(split, idx, device, modalities, train=True, n_rows=n_rows)
    app = {"normal": x["app"], "anomaly": x["app_anomaly"]}
    pose = {"normal": x["pose"], "anomaly": x["pose_anomaly"]}
    chosen = passes(velocity_anomaly_scale, modalities)
    p = len(chosen)
    y = torch.tensor([c.target for c in chosen], device=device).repeat_interleave(len(idx))
    vels = [x["vel"] * velocity_anomaly_scale if c.vel_scaled else x["vel"] for c in chosen]
    am, pm = x["app_mask"], x["pose_mask"]
    masks = [am.repeat(p, 1), pm.repeat(p, 1), am.repeat(p, 1)]
    return torch.cat([app[c.app] for c in chosen]), torch.cat([pose[c.pose] for c in chosen]), torch.cat(vels), masks, y


def take_frames(split: PaddedSplit, frames: slice) -> PaddedSplit:
    """``split`` restricted to a range of frames (views: memory-mapped arrays stay mapped)."""
    return PaddedSplit(**{name: None if a is None else a[frames] for name, a in vars(split).items()})


def holdout_videos(ends: np.ndarray, n_videos: int) -> tuple[slice, slice]:
    """Frames of the train split to fit on and to validate on: the last ``n_videos``
    videos (cumulative frame counts ``ends``) are held out. Whole videos, so that no
    validation frame has a training neighbour one frame away."""
    if not 0 < n_videos < len(ends):
        raise ValueError(f"can hold out 1 to {len(ends) - 1} of the {len(ends)} train videos, not {n_videos}")
    cut = int(ends[-n_videos - 1])
    return slice(0, cut), slice(cut, int(ends[-1]))


@torch.no_grad()
def pseudo_label_validation(
    model: AttentionFusion,
    split: PaddedSplit,
    device: torch.device,
    masking: bool = True,
    velocity_anomaly_scale: float = 0.0,
    modalities: tuple[str, ...] = MODALITIES,
    batch_size: int = INFERENCE_BATCH,
) -> dict[str, float]:
    """A label-free check on held-out train frames: the training objective (summed BCE of
    the labelled passes per frame, as in :func:`train_fusion`) without dropout, and the AUC
    of the pseudo-normal pass against the pseudo-anomalous ones. It uses no test data and
    no real labels; whether it tracks the test AUC is an empirical question (README)."""
    model.eval()
    total, scores, targets = 0.0, [], []
    for s in range(0, split.n_frames, batch_size):
        idx = np.arange(s, min(s + batch_size, split.n_frames))
        app, pose, vel, masks, y = training_batch(split, idx, device, velocity_anomaly_scale, modalities)
        logits = forward(model, app, pose, vel, masks, masking)
        total += F_.binary_cross_entropy_with_logits(logits, y, reduction="sum").item()
        scores.append(logits.double().cpu().numpy())
        targets.append(y.cpu().numpy())
    return {"val_loss": total / split.n_frames, "val_auc": micro_auc(np.concatenate(scores), np.concatenate(targets))}


class KeepBest:
    """Keeps a copy of the weights at the lowest validation loss seen, and says when
    ``patience`` evaluations in a row brought no improvement (0: never)."""

    def __init__(self, patience: int = 0):
        self.patience, self.best_loss, self.best_epoch, self.state, self.since_best = patience, float("inf"), 0, None, 0

    def update(self, epoch: int, loss: float, model: torch.nn.Module) -> bool:
        """Record one evaluation; returns True when training should stop."""
        if loss < self.best_loss:
            self.best_loss, self.best_epoch, self.since_best = loss, epoch, 0
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.since_best += 1
        return 0 < self.patience <= self.since_best

    def restore(self, model: torch.nn.Module) -> int:
        """Load the kept weights into ``model``; returns their epoch."""
        if self.state is None:
            raise RuntimeError("KeepBest.restore before any update")
        model.load_state_dict(self.state)
        return self.best_epoch


def train_fusion(
    model: AttentionFusion,
    split: PaddedSplit,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    device: torch.device,
    seed: int,
    masking: bool = True,
    velocity_anomaly_scale: float = 0.0,
    on_epoch: Callable[[int, AttentionFusion], dict | None] | None = None,
    desc: str = "fusion",
    micro_batch: int = MICRO_BATCH,
    modalities: tuple[str, ...] = MODALITIES,
    fast_path: bool = True,
) -> list[dict]:
    """Adam on the summed BCE of the labelled passes. ``batch_size`` frames per step (each
    frame gives 4-5 samples); ``batch_size <= 0`` or >= F is full batch, as the reference.
    Each step's gradient is accumulated over pieces of ``micro_batch`` frames (same update).
    ``fast_path`` trains through :mod:`memfuse.fast` (the same maths): on a CPU ``device``
    the model's ``nn.Dropout`` modules are swapped, in place and for good, for
    :class:`memfuse.fast.BitMaskDropout` (:func:`memfuse.fast.use_fast_dropout`), and with
    the pooled head and masking the frames are grouped by object count and each piece is
    cut to the rows it fills (:func:`memfuse.fast.trimmed_pieces`). ``fast_path=False``
    trains the plain model on the full padding (it does not undo an earlier swap).
    ``on_epoch(epoch, model)`` runs after each epoch (diagnostics) and may return a dict
    that is stored in the history; ``"stop": True`` in it ends training after that epoch.
    Returns the per-epoch history."""
    passes(velocity_anomaly_scale, modalities)  # fail before the first epoch on a subset with nothing to learn
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = split.n_frames
    bs = n if batch_size <= 0 else min(batch_size, n)
    micro = bs if micro_batch <= 0 else micro_batch
    # Only the pooled head with masked attention ignores padded rows; the flatten head has
    # weights for every slot, and unmasked attention weighs padded keys.
    if fast_path and torch.device(device).type == "cpu":
        use_fast_dropout(model)
    counts = real_row_counts(split) if fast_path and masking and model.head == "pool" else None
    history: list[dict] = []
    bar = tqdm(range(epochs), desc=desc, unit="epoch", mininterval=1.0)
    for epoch in bar:
        model.train()
        total = 0.0
        for idx in index_batches(n, bs, gen):
            idx = idx.numpy()
            opt.zero_grad(set_to_none=True)
            if counts is not None:
                pieces = trimmed_pieces(idx, micro, counts)
            else:
                pieces = [(idx[s : s + micro], None) for s in range(0, len(idx), micro)]
            for piece, n_rows in pieces:
                app, pose, vel, masks, y = training_batch(
                    split, piece, device, velocity_anomaly_scale, modalities, n_rows
                )
                logits = forward(model, app, pose, vel, masks, masking)
                # The reference sums each pass's mean BCE over the batch, i.e. the BCE summed
                # over samples divided by the number of frames in the batch.
                loss = F_.binary_cross_entropy_with_logits(logits, y, reduction="sum") / len(idx)
                loss.backward()
                total += loss.detach().item() * len(idx)
            opt.step()
        record = {"epoch": epoch + 1, "loss": total / n}
        if on_epoch is not None:
            record.update(on_epoch(epoch + 1, model) or {})
        stop = record.pop("stop", False)
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
        if stop:
            break
    return history


@torch.no_grad()
def frame_logits(
    model: AttentionFusion,
    split: PaddedSplit,
    device: torch.device,
    masking: bool = True,
    batch_size: int = INFERENCE_BATCH,
    modalities: tuple[str, ...] = MODALITIES,
) -> np.ndarray:
    """The classifier's logit per frame (F,), from the memorised (pseudo-normal) inputs."""
    model.eval()
    modalities = check_modalities(modalities)
    out = np.empty(split.n_frames, dtype=np.float64)
    for s in range(0, split.n_frames, batch_size):
        idx = np.arange(s, min(s + batch_size, split.n_frames))
        x = _inputs(split, idx, device, modalities, train=False)
        am, pm = x["app_mask"], x["pose_mask"]
        logits = forward(model, x["app"], x["pose"], x["vel"], [am, pm, am], masking)
        out[idx] = logits.double().cpu().numpy()
    return out


def score(
    model: AttentionFusion,
    split: PaddedSplit,
    device: torch.device,
    masking: bool = True,
    batch_size: int = INFERENCE_BATCH,
    modalities: tuple[str, ...] = MODALITIES,
) -> np.ndarray:
    """Anomaly score in [0, 1] per frame (F,): the sigmoid of :func:`frame_logits`."""
    # expit: no overflow for large negative logits
    return expit(frame_logits(model, split, device, masking, batch_size, modalities))


def object_values(split: PaddedSplit) -> dict[str, np.ndarray]:
    """The per-object values (F, N) of the box terms (memfuse.scoring.OBJECT_TERMS) the split
    has: ``app`` (its memory distances), ``app_rec``, ``vel``, and ``vel_rel``, ``vel_dir``,
    ``app_knn`` where present. Each object's share of the frame score is scored from these."""
    values = {"app": split.app_dist, "app_rec": split.app_rec, "vel": split.vel}
    optional = {"vel_rel": split.vel_rel, "vel_dir": split.vel_dir, "app_knn": split.app_knn}
    return values | {t: v for t, v in optional.items() if v is not None}


def memory_terms(split: PaddedSplit, heldout: bool = False) -> dict[str, np.ndarray]:
    """The training-free frame terms of :mod:`memfuse.scoring` (each (F,)): ``app`` and
    ``pose``, the largest nearest-memory-item distance of the frame's objects; ``app_rec``,
    the largest autoencoder reconstruction error; ``vel``, the largest object velocity;
    ``app_knn``, ``vel_rel`` and ``vel_dir`` where the split has them.
    Needs the split's ``*_dist`` and ``app_rec`` arrays; ``heldout`` takes the out-of-fold
    ones (``*_heldout``, the train split's after calibrate.py) instead."""
    suffix = "_heldout" if heldout else ""
    app_dist, app_rec, pose_dist = (getattr(split, n + suffix) for n in ("app_dist", "app_rec", "pose_dist"))
    if app_dist is None or pose_dist is None or app_rec is None:
        what = "out-of-fold (calibrate.py)" if heldout else "distance and reconstruction (padding_mask.py)"
        raise ValueError(f"memory terms need the padded {what} arrays")
    return {
        "app": masked_frame_max(app_dist, split.app_mask),
        "app_rec": masked_frame_max(app_rec, split.app_mask),
        "pose": masked_frame_max(pose_dist, split.pose_mask),
        "vel": masked_frame_max(split.vel, split.app_mask),
        **({} if split.vel_rel is None else {"vel_rel": masked_frame_max(split.vel_rel, split.app_mask)}),
        **({} if split.vel_dir is None else {"vel_dir": masked_frame_max(split.vel_dir, split.app_mask)}),
        **({} if split.app_knn is None else {"app_knn": masked_frame_max(split.app_knn, split.app_mask)}),
    }
