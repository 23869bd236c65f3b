"""The work of stages 1-4 that the appearance and pose twins share: each modality's
queries, K-Means initialisation, memory training and pseudo features, and the check of the
autoencoder's codes. What each stage reads and writes is in :mod:`memfuse.registry`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F_
from tqdm import tqdm

from . import data as D
from .io import InputError, load_npy, load_torch, save_json, save_npy, save_torch
from .kmeans import kmeans
from .models import AutoEncoder, Memory
from .pseudo import generate
from .registry import MODALITY_NAMES, for_modality, made_by


def ckpt_file(ckpt: Path, name: str) -> Path:
    return Path(ckpt) / name


def load_output(ckpt: Path, name: str, mmap: bool = False) -> np.ndarray:
    """Load a stage output .npy, naming the stage to run if it is missing."""
    return load_npy(ckpt_file(ckpt, name), made_by(name), mmap=mmap)


def load_checkpoint(ckpt: Path, name: str) -> dict:
    return load_torch(ckpt_file(ckpt, name), made_by(name))


def train_queries(
    ckpt: Path, data_root: Path, dataset: str, modality: str, split: str = "train", standardise: bool = False
) -> D.Ragged:
    """The 34-d queries of a modality and split: encoded appearance (stage 1) or pose
    (raw, or with ``standardise`` z-scored per keypoint coordinate with the train split's
    mean and spread).

    Returned as a :class:`Ragged` so frames stay attached; appearance frame offsets come
    from the velocity file (same objects), which is far smaller than the 512-d features."""
    if modality == "app":
        values = load_output(ckpt, f"app_{split}.npy")
        offsets = D.load_split(data_root, dataset, split, ("vel",)).vel.offsets
        if offsets[-1] != len(values):
            raise InputError(
                f"{ckpt_file(ckpt, f'app_{split}.npy')}: {len(values)} rows but the {split} velocity file "
                f"has {offsets[-1]} objects; rerun python AE_encoder.py"
            )
        return D.Ragged(np.asarray(values, dtype=np.float32), offsets)
    if modality == "pose":
        pose = D.load_split(data_root, dataset, split, ("pose",)).pose
        if not standardise:
            return pose
        train = pose if split == "train" else D.load_split(data_root, dataset, "train", ("pose",)).pose
        return pose.with_values(D.zscore(pose.values, *D.zscore_fit(train.values)))
    raise ValueError(f"unknown modality {modality!r}")


# --------------------------------------------------------------------------------------
# Stage 1: the autoencoder and its codes
# --------------------------------------------------------------------------------------
# Below this range (max - min) in every code dimension the encoder maps all objects to one
# point: dead ReLUs give bit-identical codes; a working code spans 0.1-1 (Ped2, hog: 0.58).
COLLAPSED_CODE_RANGE = 1e-6


def check_codes(codes: np.ndarray, what: str) -> None:
    """Raise :class:`InputError` if the autoencoder codes (N, 34) hold NaN/inf or have
    collapsed to one point. With Adam at lr 1e-2 (the paper's) the autoencoder can stay on
    the plateau where it reconstructs every input by the mean (all ReLUs of a layer dead):
    every object then gets the same code, and K-Means and the memory have nothing to learn."""
    if not np.isfinite(codes).all():
        raise InputError(
            f"{what}: the autoencoder's codes hold NaN or inf; training diverged "
            "(rerun AE_encoder.py with a smaller --learning-rate)"
        )
    # The range, not the std: numpy's float32 std of 30k identical rows comes out ~2e-5.
    spread = float((codes.max(axis=0) - codes.min(axis=0)).max()) if len(codes) else 0.0
    if spread < COLLAPSED_CODE_RANGE:
        raise InputError(
            f"{what}: the autoencoder maps every object to the same code (largest per-dimension range "
            f"{spread:.2g}); training stayed on the mean-reconstruction plateau. Rerun AE_encoder.py with "
            "another --seed or a smaller --learning-rate (the paper's is 1e-2)"
        )


def train_autoencoder(
    x: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    select: str = "train",
    x_test: np.ndarray | None = None,
    eval_batch: int = 65536,
    desc: str = "autoencoder",
) -> tuple[AutoEncoder, list[dict], int]:
    """Train the autoencoder on x (N, 512) with Adam and the mean squared error.

    ``select`` keeps the epoch with the lowest mean train loss (``"train"``), the lowest
    MSE on ``x_test`` (``"test"``), or the last. Returns the model (on ``device``, in eval
    mode), the per-epoch history and the kept epoch (1-based)."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    x_eval = torch.from_numpy(np.ascontiguousarray(x_test, dtype=np.float32)).to(device) if select == "test" else None
    model = AutoEncoder(in_dim=x.shape[1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history, best, best_state, kept = [], float("inf"), None, 0
    bar = tqdm(range(epochs), desc=desc, unit="epoch", mininterval=1.0)
    for epoch in bar:
        model.train()
        total = 0.0
        for idx in index_batches(len(xt), batch_size, gen, device):
            loss = F_.mse_loss(model(xt[idx]), xt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        record = {"epoch": epoch + 1, "train_mse": total / len(xt)}
        if x_eval is not None:
            record["test_mse"] = _mse(model, x_eval, eval_batch)
        history.append(record)
        criterion = {"train": record["train_mse"], "test": record.get("test_mse"), "last": -epoch}[select]
        if criterion < best:
            best, best_state, kept = criterion, copy.deepcopy(model.state_dict()), epoch + 1
        bar.set_postfix(mse=f"{record['train_mse']:.4g}", refresh=False)
    model.load_state_dict(best_state)
    model.eval()
    return model, history, kept


@torch.no_grad()
def _mse(model: AutoEncoder, x: torch.Tensor, batch: int) -> float:
    model.eval()
    total = sum(
        F_.mse_loss(model(x[s : s + batch]), x[s : s + batch], reduction="sum").item() for s in range(0, len(x), batch)
    )
    return total / x.numel()


@torch.no_grad()
def encode_all(model: AutoEncoder, x: np.ndarray, device: torch.device, batch: int = 65536) -> np.ndarray:
    """(N, 512) -> (N, 34) float32, ``batch`` rows at a time."""
    model.eval()
    out = np.empty((len(x), model.encoder[-1].out_features), dtype=np.float32)
    for s in range(0, len(x), batch):
        out[s : s + batch] = model.encode(torch.from_numpy(x[s : s + batch]).to(device)).cpu().numpy()
    return out


@torch.no_grad()
def reconstruction_error(model: AutoEncoder, x: np.ndarray, device: torch.device, batch: int = 65536) -> np.ndarray:
    """(N, 512) -> (N,) float32, each object's mean squared reconstruction error: how badly
    an autoencoder trained on normal objects reproduces it (an anomaly score of its own)."""
    model.eval()
    out = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), batch):
        xb = torch.from_numpy(x[s : s + batch]).to(device)
        out[s : s + batch] = (model(xb) - xb).pow(2).mean(dim=1).cpu().numpy()
    return out


# --------------------------------------------------------------------------------------
# Stage 2: K-Means initialisation of a memory
# --------------------------------------------------------------------------------------
def cluster_stage(
    ckpt: Path,
    data_root: Path,
    dataset: str,
    modality: str,
    *,
    memory_size: int,
    seed: int,
    device: torch.device,
    backend: str = "torch",
    standardise: bool = False,
) -> np.ndarray:
    """K-Means on the train queries of ``modality``; writes ``memory_init_<modality>.npy``."""
    q = train_queries(
        ckpt, data_root, dataset, modality, standardise=standardise
    ).values  # frames without a person hold no rows
    if len(q) < memory_size:
        raise InputError(
            f"{dataset}: {len(q)} train {MODALITY_NAMES[modality]} rows, fewer than the {memory_size} memory items; "
            "lower --memory-size"
        )
    if backend == "sklearn":
        from sklearn.cluster import KMeans

        centroids = KMeans(memory_size, random_state=seed).fit(q).cluster_centers_.astype(np.float32)
    else:
        try:
            centroids, _ = kmeans(q, memory_size, seed=seed, device=device)
        except ValueError as e:
            source = "the autoencoder's codes (app_train.npy)" if modality == "app" else f"{dataset}'s train {modality}"
            raise InputError(f"{dataset}: K-Means on {source}: {e}") from None
    save_npy(ckpt_file(ckpt, f"memory_init_{modality}.npy"), centroids)
    return centroids


# --------------------------------------------------------------------------------------
# Stage 3: memory training
# --------------------------------------------------------------------------------------
def train_memory(
    queries: np.ndarray,
    init_items: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weights: tuple[float, float, float],
    top_k: int,
    margin: float,
    cosine_t_max: int,
    stale_step: bool,
    device: torch.device,
    seed: int,
    checkpoint_path: Path | None = None,
    checkpoint_every: int = 100,
    desc: str = "memory",
) -> tuple[Memory, list[dict]]:
    """Train the memory items (the only parameters) on queries (N, D).

    ``weights`` = (gather, spread, rec) loss weights; ``cosine_t_max > 0`` adds
    CosineAnnealingLR stepped per epoch; ``stale_step`` repeats the reference's extra
    optimizer step with the last batch's gradients after each epoch. Returns the memory
    and the per-epoch mean losses."""
    gen = torch.Generator().manual_seed(seed)
    q_all = torch.as_tensor(queries, dtype=torch.float32, device=device)
    memory = Memory(torch.as_tensor(init_items), top_k=top_k).to(device)
    opt = torch.optim.Adam(memory.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cosine_t_max) if cosine_t_max > 0 else None
    w_gather, w_spread, w_rec = weights
    history: list[dict] = []
    bar = tqdm(range(epochs), desc=desc, unit="epoch", mininterval=1.0)
    for epoch in bar:
        sums = torch.zeros(4, device=device)
        n_batches = 0
        for idx in index_batches(len(q_all), batch_size, gen, device):
            parts = memory.losses(q_all[idx], margin=margin)
            total = w_gather * parts["gather"] + w_spread * parts["spread"] + w_rec * parts["rec"]
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            sums += torch.stack(
                [total.detach(), parts["gather"].detach(), parts["spread"].detach(), parts["rec"].detach()]
            )
            n_batches += 1
        if stale_step:  # reference quirk: one more step on the last batch's gradients
            opt.step()
        if sched is not None:
            sched.step()
        means = (sums / n_batches).tolist()
        history.append(dict(zip(("total", "gather", "spread", "rec"), means)))
        bar.set_postfix(loss=f"{means[0]:.4g}", refresh=False)
        if checkpoint_path is not None and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < epochs:
            save_torch(
                checkpoint_path,
                {"items": memory.items.detach().cpu(), "epoch": epoch + 1, "history": history, "complete": False},
            )
    return memory, history


def index_batches(n: int, batch_size: int, gen: torch.Generator, device: torch.device | str = "cpu"):
    """Shuffled index batches (each a LongTensor on ``device``) covering range(n) once."""
    order = torch.randperm(n, generator=gen).to(device)
    for s in range(0, n, batch_size):
        yield order[s : s + batch_size]


def load_memory_items(ckpt: Path, modality: str) -> np.ndarray:
    state = load_checkpoint(ckpt, f"memory_{modality}.pt")
    if not state.get("complete", False):
        raise InputError(
            f"{ckpt_file(ckpt, f'memory_{modality}.pt')} is an intermediate checkpoint (epoch {state.get('epoch')}); "
            f"finish python {for_modality('train.py', modality).script}"
        )
    return state["items"].numpy()


# --------------------------------------------------------------------------------------
# Stage 4: pseudo features
# --------------------------------------------------------------------------------------
def pseudo_stage(
    ckpt: Path,
    data_root: Path,
    dataset: str,
    modality: str,
    *,
    top_k: int,
    t_top: float,
    t_bottom: float,
    device: torch.device,
    extrapolate: float = 0.0,
    standardise: bool = False,
) -> dict[str, int]:
    """Pseudo-normal and pseudo-anomalous train features and memorised test features of
    ``modality``; writes ``pseudo_<modality>_*.npy`` (rows aligned with the queries),
    including ``pseudo_<modality>_<split>_distance.npy`` (N,): each raw query's Euclidean
    distance to its nearest memory item, the memory's own anomaly score of the object."""
    from .baseline import knn_distance

    items = load_memory_items(ckpt, modality)
    counts = {}
    for split in D.SPLITS:
        q = train_queries(ckpt, data_root, dataset, modality, split, standardise)
        out = generate(
            q.values, items, top_k=top_k, t_top=t_top, t_bottom=t_bottom, device=device, extrapolate=extrapolate
        )
        save_npy(ckpt_file(ckpt, f"pseudo_{modality}_{split}_normal.npy"), out.normal)
        if split == "train":
            save_npy(ckpt_file(ckpt, f"pseudo_{modality}_train_anomaly.npy"), out.anomaly)
        save_npy(ckpt_file(ckpt, f"pseudo_{modality}_{split}_indices.npy"), out.indices)
        save_npy(
            ckpt_file(ckpt, f"pseudo_{modality}_{split}_distance.npy"), knn_distance(q.values, items, device=device)
        )
        counts[split] = len(q.values)
    save_json(
        ckpt_file(ckpt, f"pseudo_{modality}_meta.json"),
        {"rows": counts, "top_k": top_k, "t_top": t_top, "t_bottom": t_bottom, "extrapolate": extrapolate},
    )
    return counts
