"""Speed and scale: time every stage of the method on synthetic data the size of a dataset.

    python bench/run.py --scale tiny                      # smoke test, seconds
    python bench/run.py --scale ped2 [--device cuda]
    python bench/run.py --scale avenue --stages kmeans,pseudo,fusion
    python bench/run.py --scale shanghaitech --device cuda

Synthetic AI-VAD-format data with the chosen dataset's frame, object and person counts
(:data:`SCALES`, table in bench/README.md) is made directly in memory (one vectorised
random draw per modality; per-frame object counts drawn to hit the totals exactly, with
the dataset's N_max). Each stage is then timed through the library functions, not the
stage scripts, with a few epochs each, and extrapolated to the paper's epoch counts:

- ``ae``:      autoencoder epochs/s (batch 4096) and encoding throughput
- ``kmeans``:  memfuse.kmeans.kmeans (M = 500) wall time, vs scikit-learn's KMeans default
               (only up to ``--sklearn-max-n`` rows; skipped above, and said so)
- ``memory``:  memfuse.stages.train_memory epochs/s, appearance and pose
- ``pseudo``:  memfuse.pseudo.generate queries/s (median of 3 calls) vs the reference's per-query loop
               (generate_loop on a subsample, extrapolated, labelled as such)
- ``padding``: memfuse.padding.pad frames/s (in memory)
- ``fusion``:  memfuse.fusion.train_fusion s/epoch (batch 4096 frames) and score frames/s,
               the FLOPs of the first classifier layer per epoch and the GFLOP/s achieved
- ``matmul``:  this machine's measured peak float32 matmul GFLOP/s (a big square matmul,
               and one of the classifier layer's shape)

A stage whose inputs come from a stage not run gets cheap stand-ins (random projection
for the encoder, random rows for memory items, the queries for pseudo features), so any
subset of stages runs alone. Peak resident memory is reported for the whole run
(``ru_maxrss``) and per stage (Linux: VmHWM after resetting it through
/proc/self/clear_refs; on CUDA also torch.cuda.max_memory_allocated).

Prints a table and writes ``results/bench.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import AE_encoder  # noqa: E402  (stage scripts: their settings are the paper's)
import attention_fusion  # noqa: E402
import cluster  # noqa: E402
import train as train_script  # noqa: E402
from memfuse.config import read_settings  # noqa: E402
from memfuse.data import APPEARANCE_DIM, POSE_DIM, Ragged, Split  # noqa: E402
from memfuse.fusion import PaddedSplit, score, train_fusion  # noqa: E402
from memfuse.io import RESULTS_ROOT, save_json  # noqa: E402
from memfuse.kmeans import fit_size, kmeans  # noqa: E402
from memfuse.models import FEATURE_DIM, FUSION_HIDDEN, AttentionFusion, AutoEncoder  # noqa: E402
from memfuse.padding import n_max_of, pad, velocity_per_object  # noqa: E402
from memfuse.pseudo import generate, generate_loop  # noqa: E402
from memfuse.registry import MEMORY_MODALITIES, MODALITY_NAMES  # noqa: E402
from memfuse.stages import index_batches, train_memory  # noqa: E402

STAGES = ("ae", "kmeans", "memory", "pseudo", "padding", "fusion", "matmul")
# The paper's settings, read from the stage scripts that define them; the epochs (for the
# extrapolated column) from the paper's schedule, config/schedules/paper.toml
_PAPER_SCHEDULE = read_settings(ROOT / "config" / "schedules" / "paper.toml")
PAPER_EPOCHS = {
    "ae": _PAPER_SCHEDULE["AE_EPOCHS"],
    "memory": _PAPER_SCHEDULE["MEMORY_EPOCHS"],
    "fusion": _PAPER_SCHEDULE["FUSION_EPOCHS"],
}
PAPER = {
    "ae_lr": AE_encoder.AE_LEARNING_RATE,
    "memory_lr": train_script.MEMORY_LEARNING_RATE,
    "fusion_lr": attention_fusion.FUSION_LEARNING_RATE,
    "batch": train_script.MEMORY_BATCH_SIZE,
    "memory_size": cluster.MEMORY_SIZE,
}
PASSES = 4  # labelled fusion passes per train frame
FWD_BWD = 3  # forward + backward ~ 3 x forward FLOPs
PSEUDO_REPEATS = 3  # timed calls of the vectorised pseudo generation (median reported)


@dataclass(frozen=True)
class Scale:
    """Sizes of one synthetic dataset. Persons are pose rows (frames may have none)."""

    train_frames: int
    test_frames: int
    train_objects: int
    test_objects: int
    train_persons: int
    test_persons: int
    n_max: int  # largest object count of any frame (and the padding width)
    velocity_bins: int
    videos: tuple[int, int]  # train, test videos (clip lengths for smoothing)


# Counts of the real feature files where known (frames exactly; objects and persons rounded,
# see bench/README.md for which are estimates).
SCALES = {
    "tiny": Scale(240, 180, 2_400, 1_900, 1_200, 950, 16, 1, (2, 3)),
    "ped2": Scale(2_550, 2_010, 30_000, 33_000, 15_000, 16_500, 30, 1, (16, 12)),
    "avenue": Scale(15_328, 15_324, 114_000, 96_000, 57_000, 48_000, 20, 8, (16, 21)),
    "shanghaitech": Scale(274_515, 40_791, 1_100_000, 170_000, 550_000, 85_000, 42, 8, (330, 107)),
}


# --------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------
def plan_counts(n_frames: int, total: int, n_max: int, min_count: int, rng: np.random.Generator) -> np.ndarray:
    """Objects per frame (F,) int64: each in [min_count, n_max], summing to ``total``
    exactly, with at least one frame at ``n_max``. Frames get a random "busyness" (gamma
    weights) so counts vary like real scenes. Allocates only (F,) arrays."""
    if not min_count * n_frames <= total <= n_max * n_frames:
        raise ValueError(f"{total} objects do not fit {n_frames} frames of {min_count}..{n_max}")
    counts = np.full(n_frames, min_count, dtype=np.int64)
    remaining = total - int(counts.sum())
    weights = rng.gamma(2.0, size=n_frames)
    while remaining > 0:
        room = n_max - counts
        p = np.where(room > 0, weights, 0.0)
        add = np.minimum(rng.multinomial(remaining, p / p.sum()), room)
        counts += add
        remaining -= int(add.sum())
    top = int(np.argmax(counts))
    deficit = n_max - int(counts[top])
    if deficit > 0:  # lift the busiest frame to n_max, taking one object from other frames
        counts[top] = n_max
        donors = np.flatnonzero(counts > min_count)
        donors = donors[donors != top]
        counts[rng.choice(donors, size=deficit, replace=False)] -= 1
    return counts


def offsets_of(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def make_split(
    n_frames: int,
    n_objects: int,
    n_persons: int,
    n_max: int,
    bins: int,
    rng: np.random.Generator,
    prototypes: np.ndarray,
) -> Split:
    """One split: appearance = a few prototypes + noise (CLIP-like clusters), velocity =
    |normal| per bin, pose = a random skeleton per person in pixel coordinates."""
    obj = plan_counts(n_frames, n_objects, n_max, 1, rng)
    per = plan_counts(n_frames, n_persons, n_max, 0, rng)
    app = rng.standard_normal((n_objects, APPEARANCE_DIM), dtype=np.float32)
    app *= 0.3
    app += prototypes[rng.integers(0, len(prototypes), n_objects)]
    vel = np.abs(rng.standard_normal((n_objects, bins), dtype=np.float32))
    pose = rng.standard_normal((n_persons, POSE_DIM), dtype=np.float32)
    pose *= 20.0
    pose += rng.uniform(0, 300, (n_persons, 1)).astype(np.float32)
    return Split(
        app=Ragged(app, offsets_of(obj)),
        pose=Ragged(pose, offsets_of(per)),
        vel=Ragged(vel, offsets_of(obj)),
    )


def clip_ends(n_frames: int, n_videos: int) -> np.ndarray:
    """Cumulative clip ends of ``n_videos`` near-equal videos."""
    return np.linspace(0, n_frames, n_videos + 1).round().astype(np.int64)[1:]


def make_data(scale: Scale, seed: int = 0) -> dict:
    """Train and test :class:`Split` of the given scale, clip ends and random labels."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(0, 1.0, (20, APPEARANCE_DIM)).astype(np.float32)
    train = make_split(
        scale.train_frames, scale.train_objects, scale.train_persons, scale.n_max, scale.velocity_bins, rng, prototypes
    )
    test = make_split(
        scale.test_frames, scale.test_objects, scale.test_persons, scale.n_max, scale.velocity_bins, rng, prototypes
    )
    labels = (rng.random(scale.test_frames) < 0.3).astype(np.int64)
    return {"train": train, "test": test, "test_ends": clip_ends(scale.test_frames, scale.videos[1]), "labels": labels}


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rss_mib() -> dict:
    """VmHWM (peak since the last reset) and VmRSS of this process in MiB (Linux)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class StagePeak:
    """``with StagePeak(device) as p: ...`` -> p.result: peak RSS during the block (MiB,
    None where it cannot be reset) and the CUDA peak allocation."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self) -> "StagePeak":
        self.resettable = reset_peak()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.result = {
            "stage_seconds": round(time.perf_counter() - self.t0, 3),
            "peak_rss_mib": round(rss_mib().get("VmHWM", float("nan")), 1) if self.resettable else None,
        }
        if self.device.type == "cuda":
            self.result["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)


def timed(fn, device: torch.device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def matmul_gflops(device: torch.device, m: int, k: int, n: int, reps: int = 3) -> float:
    """Best-of-``reps`` float32 GFLOP/s of an (m, k) @ (k, n) matmul."""
    a = torch.randn(m, k, device=device)
    b = torch.randn(k, n, device=device)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(reps):
        _, t = timed(lambda: a @ b, device)
        best = min(best, t)
    return 2.0 * m * k * n / best / 1e9


def fusion_flops_first_layer(n_frames: int, n_max: int, hidden: int = FUSION_HIDDEN, dim: int = FEATURE_DIM) -> float:
    """FLOPs of one training epoch in the classifier's first layer: (6 dim N_max -> hidden),
    2 in x out per sample forward, 4 passes per frame, forward + backward ~ 3 x forward."""
    return 2.0 * (6 * dim * n_max) * hidden * PASSES * FWD_BWD * n_frames


def fusion_flops_total(n_frames: int, n_max: int, hidden: int = FUSION_HIDDEN, dim: int = FEATURE_DIM) -> float:
    """Approximate FLOPs of a whole training epoch: align (3 D x D), q/k/v (3 D x 3D),
    attention scores and mixing (3 x (2 score matmuls + 1 mix) of N x N x D), classifier."""
    per_sample_fwd = (
        n_max * (3 * 2 * dim * dim + 3 * 2 * dim * 3 * dim)
        + 3 * 3 * 2 * n_max * n_max * dim
        + 2 * 6 * dim * n_max * hidden
        + 2 * hidden
    )
    return per_sample_fwd * PASSES * FWD_BWD * n_frames


# --------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------
def bench_ae(ctx: dict, a: argparse.Namespace) -> dict:
    """Autoencoder epochs/s at batch 4096 on all train objects, then encode both splits."""
    device = ctx["device"]
    gen = torch.Generator().manual_seed(a.seed)
    torch.manual_seed(a.seed)
    x = torch.from_numpy(ctx["train"].app.values).to(device)
    model = AutoEncoder().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=PAPER["ae_lr"])

    def epoch() -> None:
        model.train()
        for idx in index_batches(len(x), a.batch, gen, device):
            loss = torch.nn.functional.mse_loss(model(x[idx]), x[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    _, first = timed(epoch, device)  # includes warm-up; reported separately
    times = [timed(epoch, device)[1] for _ in range(max(a.ae_epochs - 1, 1))]
    model.eval()

    @torch.no_grad()
    def encode(v: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [model.encode(torch.from_numpy(v[s : s + 65536]).to(device)).cpu().numpy() for s in range(0, len(v), 65536)]
        )

    (enc_train, enc_test), t_enc = timed(
        lambda: (encode(ctx["train"].app.values), encode(ctx["test"].app.values)), device
    )
    ctx["enc_train"], ctx["enc_test"] = enc_train, enc_test
    s_epoch = float(np.median(times))
    n_rows = len(enc_train) + len(enc_test)
    return {
        "epochs_timed": 1 + len(times),
        "first_epoch_s": round(first, 4),
        "s_per_epoch": round(s_epoch, 4),
        "epochs_per_s": round(1 / s_epoch, 3),
        "encode_rows_per_s": round(n_rows / t_enc),
        "paper_epochs": PAPER_EPOCHS["ae"],
        "extrapolated_s": round(s_epoch * PAPER_EPOCHS["ae"], 1),
    }


def encoded(ctx: dict, split: str) -> np.ndarray:
    """Encoded appearance (N, 34); a fixed random projection if the ae stage did not run."""
    key = f"enc_{split}"
    if key not in ctx:
        proj = (
            np.random.default_rng(1).normal(0, APPEARANCE_DIM**-0.5, (APPEARANCE_DIM, FEATURE_DIM)).astype(np.float32)
        )
        ctx[key] = ctx[split].app.values @ proj
    return ctx[key]


def bench_kmeans(ctx: dict, a: argparse.Namespace) -> dict:
    """memfuse K-Means (M = 500) on encoded train appearance and train pose, vs sklearn."""
    out = {}
    for mod, x in (("app", encoded(ctx, "train")), ("pose", ctx["train"].pose.values)):
        (cent, inertia), t = timed(lambda: kmeans(x, a.memory_size, seed=a.seed, device=ctx["device"]), ctx["device"])
        ctx[f"init_{mod}"] = cent
        row = {
            "rows": len(x),
            "fit_rows": fit_size(len(x), a.memory_size),
            "memfuse_s": round(t, 3),
            "memfuse_inertia": inertia,
        }
        if len(x) <= a.sklearn_max_n:
            from sklearn.cluster import KMeans

            km, ts = timed(lambda: KMeans(a.memory_size, random_state=a.seed).fit(x), torch.device("cpu"))
            row.update({"sklearn_s": round(ts, 3), "sklearn_inertia": float(km.inertia_), "speedup": round(ts / t, 2)})
        else:
            row["sklearn_s"] = None
            row["sklearn_note"] = f"skipped: {len(x)} rows > --sklearn-max-n {a.sklearn_max_n} (would take too long)"
        out[mod] = row
    return out


def queries(ctx: dict, mod: str, split: str = "train") -> np.ndarray:
    return encoded(ctx, split) if mod == "app" else ctx[split].pose.values


def memory_items(ctx: dict, mod: str, a: argparse.Namespace, trained: bool) -> np.ndarray:
    """Trained (or else initial) memory items; random query rows if neither exists."""
    for key in ([f"memory_{mod}"] if trained else []) + [f"init_{mod}"]:
        if key in ctx:
            return ctx[key]
    q = queries(ctx, mod)
    return q[np.random.default_rng(a.seed).choice(len(q), a.memory_size, replace=False)].copy()


def bench_memory(ctx: dict, a: argparse.Namespace) -> dict:
    """train_memory epochs/s (appearance with the cosine schedule, pose without)."""
    out = {}
    for mod, t_max in (("app", 50), ("pose", 0)):
        q, init = queries(ctx, mod), memory_items(ctx, mod, a, trained=False)
        times = []
        mem = None
        for _ in range(a.memory_epochs):  # one epoch per call: a timing per epoch
            (mem, _), t = timed(
                lambda: train_memory(
                    q,
                    init if mem is None else mem.items.detach().cpu().numpy(),
                    epochs=1,
                    lr=PAPER["memory_lr"],
                    batch_size=a.batch,
                    weights=(5.0, 1.0, 1.0),
                    top_k=5,
                    margin=1.0,
                    cosine_t_max=t_max,
                    stale_step=False,
                    device=ctx["device"],
                    seed=a.seed,
                ),
                ctx["device"],
            )
            times.append(t)
        ctx[f"memory_{mod}"] = mem.items.detach().cpu().numpy()
        s_epoch = float(np.median(times[1:] if len(times) > 1 else times))
        out[mod] = {
            "rows": len(q),
            "first_epoch_s": round(times[0], 4),
            "s_per_epoch": round(s_epoch, 4),
            "epochs_per_s": round(1 / s_epoch, 3),
            "paper_epochs": PAPER_EPOCHS["memory"],
            "extrapolated_s": round(s_epoch * PAPER_EPOCHS["memory"], 1),
        }
    return out


def bench_pseudo(ctx: dict, a: argparse.Namespace) -> dict:
    """Vectorised pseudo generation (train and test) vs the per-query loop (subsample)."""
    out = {}
    for mod in MEMORY_MODALITIES:
        items = memory_items(ctx, mod, a, trained=True)
        row = {}
        for split in ("train", "test"):
            q = queries(ctx, mod, split)
            # median of PSEUDO_REPEATS calls: one call takes a fraction of a second, and a
            # single (cold) one varied 1.4x between runs on this machine
            runs = [
                timed(lambda: generate(q, items, device=ctx["device"]), ctx["device"]) for _ in range(PSEUDO_REPEATS)
            ]
            res, t = runs[0][0], float(np.median([t for _, t in runs]))
            ctx[f"pseudo_{mod}_{split}"] = res
            row[f"{split}_rows"] = len(q)
            row[f"{split}_s"] = round(t, 4)
        n = row["train_rows"] + row["test_rows"]
        row["vectorised_queries_per_s"] = round(n / (row["train_s"] + row["test_s"]))
        sub = queries(ctx, mod)[: a.loop_sample]
        _, t_loop = timed(lambda: generate_loop(sub, items), torch.device("cpu"))
        row["loop_sample"] = len(sub)
        row["loop_queries_per_s"] = round(len(sub) / t_loop, 1)
        row["loop_extrapolated_s"] = round(n / (len(sub) / t_loop), 1)
        row["loop_note"] = f"reference per-query loop, CPU, timed on {len(sub)} queries and extrapolated to {n}"
        row["speedup"] = round(row["vectorised_queries_per_s"] / row["loop_queries_per_s"], 1)
        out[mod] = row
    return out


def pseudo_values(ctx: dict, mod: str, split: str, kind: str) -> np.ndarray:
    """Pseudo features of a modality and split; the queries (plus noise) if not generated."""
    res = ctx.get(f"pseudo_{mod}_{split}")
    if res is not None:
        return getattr(res, kind)
    q = queries(ctx, mod, split)
    return q if kind == "normal" else q + np.random.default_rng(2).normal(0, 1, q.shape).astype(np.float32)


def bench_padding(ctx: dict, a: argparse.Namespace) -> dict:
    """memfuse.padding.pad of every fusion input, frames/s; builds the PaddedSplits."""
    n_max = n_max_of(ctx["train"].vel, ctx["test"].vel, ctx["train"].pose, ctx["test"].pose)
    ctx["n_max"] = n_max
    out = {"n_max": n_max}
    total_frames, total_t = 0, 0.0
    for split in ("train", "test"):
        s = ctx[split]
        kinds = ("normal", "anomaly") if split == "train" else ("normal",)
        arrays, t_split = {}, 0.0
        for mod, layout in (("app", s.app), ("pose", s.pose)):
            for kind in kinds:
                (vals, mask), t = timed(
                    lambda: pad(layout.with_values(pseudo_values(ctx, mod, split, kind)), n_max), torch.device("cpu")
                )
                t_split += t
                arrays[mod + ("" if kind == "normal" else "_anomaly")] = vals
                if kind == "normal":
                    arrays[f"{mod}_mask"] = mask
        (vel, _), t = timed(lambda: pad(velocity_per_object(s.vel), n_max), torch.device("cpu"))
        arrays["vel"] = vel[..., 0]
        t_split += t
        ctx[f"padded_{split}"] = PaddedSplit(**arrays)
        n_arrays = len(kinds) * 2 + 1
        out[f"{split}_frames_per_s"] = round(s.n_frames * n_arrays / t_split)
        out[f"{split}_gib"] = round(sum(v.nbytes for v in arrays.values()) / 2**30, 3)
        total_frames += s.n_frames * n_arrays
        total_t += t_split
    out["frames_per_s"] = round(total_frames / total_t)
    out["note"] = "frame-arrays padded per second (each split pads 3-5 arrays), in memory"
    return out


def padded(ctx: dict, a: argparse.Namespace, split: str) -> PaddedSplit:
    if f"padded_{split}" not in ctx:
        bench_padding(ctx, a)
    return ctx[f"padded_{split}"]


def bench_fusion(ctx: dict, a: argparse.Namespace) -> dict:
    """train_fusion s/epoch (first epoch separate), score frames/s, FLOPs and GFLOP/s."""
    device = ctx["device"]
    train, test = padded(ctx, a, "train"), padded(ctx, a, "test")
    n_max = ctx["n_max"]
    torch.manual_seed(a.seed)
    model = AttentionFusion(n_max).to(device)
    times, losses = [], []
    for e in range(a.fusion_epochs):
        hist, t = timed(
            lambda: train_fusion(
                model,
                train,
                epochs=1,
                lr=PAPER["fusion_lr"],
                batch_size=a.fusion_batch,
                device=device,
                seed=a.seed + e,
                desc="bench fusion",
            ),
            device,
        )
        times.append(t)
        losses.append(hist[-1]["loss"])
    scores, t_score = timed(lambda: score(model, test, device), device)
    s_epoch = float(np.median(times[1:] if len(times) > 1 else times))
    flops_first = fusion_flops_first_layer(train.n_frames, n_max)
    flops_total = fusion_flops_total(train.n_frames, n_max)
    out = {
        "train_frames": train.n_frames,
        "n_max": n_max,
        "batch_frames": a.fusion_batch,
        "first_epoch_s": round(times[0], 4),
        "s_per_epoch": round(s_epoch, 4),
        "paper_epochs": PAPER_EPOCHS["fusion"],
        "extrapolated_s": round(s_epoch * PAPER_EPOCHS["fusion"], 1),
        "loss": [round(x, 5) for x in losses],
        "score_frames_per_s": round(test.n_frames / t_score),
        "first_layer_gflop_per_epoch": round(flops_first / 1e9, 3),
        "total_gflop_per_epoch_est": round(flops_total / 1e9, 3),
        "first_layer_gflops_achieved": round(flops_first / s_epoch / 1e9, 2),
        "total_gflops_achieved_est": round(flops_total / s_epoch / 1e9, 2),
    }
    ctx["fusion_scores"] = scores
    return out


def bench_matmul(ctx: dict, a: argparse.Namespace) -> dict:
    """Measured float32 matmul peak: a big square one and the fusion first layer's shape."""
    device = ctx["device"]
    big = 8192 if device.type == "cuda" else a.matmul_size
    n_max = ctx.get("n_max", ctx["scale"].n_max)
    rows = min(a.fusion_batch * PASSES, 16384)
    return {
        "square_n": big,
        "square_gflops": round(matmul_gflops(device, big, big, big), 1),
        "layer_shape": [rows, 6 * FEATURE_DIM * n_max, FUSION_HIDDEN],
        "layer_gflops": round(matmul_gflops(device, rows, 6 * FEATURE_DIM * n_max, FUSION_HIDDEN), 1),
    }


BENCHES = {
    "ae": bench_ae,
    "kmeans": bench_kmeans,
    "memory": bench_memory,
    "pseudo": bench_pseudo,
    "padding": bench_padding,
    "fusion": bench_fusion,
    "matmul": bench_matmul,
}


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--scale", choices=sorted(SCALES), default="tiny", help="dataset whose sizes the synthetic data takes"
    )
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=PAPER["batch"], help="autoencoder and memory batch (rows)")
    p.add_argument("--fusion-batch", type=int, default=PAPER["batch"], help="fusion batch (frames); 0 = full batch")
    p.add_argument("--memory-size", type=int, default=PAPER["memory_size"], help="M, K-Means clusters / memory items")
    p.add_argument("--ae-epochs", type=int, default=3)
    p.add_argument("--memory-epochs", type=int, default=3)
    p.add_argument("--fusion-epochs", type=int, default=2)
    p.add_argument("--loop-sample", type=int, default=2000, help="queries timed with the reference's per-query loop")
    p.add_argument(
        "--sklearn-max-n", type=int, default=200_000, help="run scikit-learn's KMeans only up to this many rows"
    )
    p.add_argument("--matmul-size", type=int, default=2048, help="square matmul size for the CPU peak (8192 on CUDA)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default=str(RESULTS_ROOT / "bench.json"), help="where to write the JSON results")
    a = p.parse_args(argv)
    a.stage_list = [s.strip() for s in a.stages.split(",") if s.strip()]
    bad = [s for s in a.stage_list if s not in STAGES]
    if bad:
        p.error(f"unknown stage(s) {bad}; choose from {STAGES}")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda asked for, but torch sees no CUDA device")
    return a


def summary_rows(results: dict) -> list[tuple[str, str, str]]:
    """(stage, measure, value) rows of the printed table."""
    rows = []
    st = results["stages"]
    if "ae" in st:
        r = st["ae"]
        rows += [
            ("ae", "s/epoch (epochs/s)", f"{r['s_per_epoch']:.3f} ({r['epochs_per_s']:.2f})"),
            ("ae", f"x{r['paper_epochs']} epochs (extrapolated)", fmt_s(r["extrapolated_s"])),
        ]
    if "kmeans" in st:
        for m, r in st["kmeans"].items():
            if not isinstance(r, dict):
                continue
            sk = f"{r['sklearn_s']:.2f} s (x{r['speedup']})" if r.get("sklearn_s") is not None else "skipped"
            fit = "" if r["fit_rows"] == r["rows"] else f" (fit on {r['fit_rows']})"
            rows.append(
                (
                    f"kmeans {MODALITY_NAMES[m]}",
                    f"{r['rows']} rows{fit}: memfuse / sklearn",
                    f"{r['memfuse_s']:.2f} s / {sk}",
                )
            )
    if "memory" in st:
        for m, r in st["memory"].items():
            if isinstance(r, dict):
                rows.append(
                    (
                        f"memory {MODALITY_NAMES[m]}",
                        "s/epoch; x5000 (extrapolated)",
                        f"{r['s_per_epoch']:.3f}; {fmt_s(r['extrapolated_s'])}",
                    )
                )
    if "pseudo" in st:
        for m, r in st["pseudo"].items():
            if isinstance(r, dict):
                rows.append(
                    (
                        f"pseudo {MODALITY_NAMES[m]}",
                        "queries/s vectorised / loop (extrap.)",
                        f"{r['vectorised_queries_per_s']:,} / {r['loop_queries_per_s']:,} "
                        f"(x{r['speedup']}; loop {fmt_s(r['loop_extrapolated_s'])})",
                    )
                )
    if "padding" in st:
        r = st["padding"]
        rows.append(("padding", f"frame-arrays/s (N_max {r['n_max']})", f"{r['frames_per_s']:,}"))
    if "fusion" in st:
        r = st["fusion"]
        rows += [
            (
                "fusion",
                f"s/epoch (batch {r['batch_frames']})",
                f"{r['s_per_epoch']:.3f} (first {r['first_epoch_s']:.3f})",
            ),
            ("fusion", f"x{r['paper_epochs']} epochs (extrapolated)", fmt_s(r["extrapolated_s"])),
            ("fusion", "score frames/s", f"{r['score_frames_per_s']:,}"),
            (
                "fusion",
                "1st layer GFLOP/epoch; GFLOP/s",
                f"{r['first_layer_gflop_per_epoch']:.2f}; {r['first_layer_gflops_achieved']:.1f}",
            ),
            ("fusion", "all layers (est.) GFLOP/s", f"{r['total_gflops_achieved_est']:.1f}"),
        ]
    if "matmul" in st:
        r = st["matmul"]
        rows += [
            ("matmul", f"peak GFLOP/s square {r['square_n']}", f"{r['square_gflops']:.1f}"),
            ("matmul", f"GFLOP/s layer shape {'x'.join(map(str, r['layer_shape']))}", f"{r['layer_gflops']:.1f}"),
        ]
    if "extrapolated_pipeline_s" in results:
        rows.append(("total", "paper epochs, all stages (extrapolated)", fmt_s(results["extrapolated_pipeline_s"])))
    for name, r in st.items():
        if isinstance(r, dict) and r.get("peak_rss_mib") is not None:
            rows.append((name, "peak RSS MiB in stage", f"{r['peak_rss_mib']:,.0f}"))
    rows.append(("all", "peak RSS MiB (whole run)", f"{results['peak_rss_mib']:,.0f}"))
    return rows


def fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def extrapolated_pipeline(st: dict) -> float | None:
    """Paper-epoch estimate of the full pipeline, from the stages that ran (all needed)."""
    try:
        return (
            st["ae"]["extrapolated_s"]
            + sum(st["kmeans"][m]["memfuse_s"] for m in MEMORY_MODALITIES)
            + sum(st["memory"][m]["extrapolated_s"] for m in MEMORY_MODALITIES)
            + sum(st["pseudo"][m]["train_s"] + st["pseudo"][m]["test_s"] for m in MEMORY_MODALITIES)
            + st["padding"]["stage_seconds"]
            + st["fusion"]["extrapolated_s"]
        )
    except KeyError:
        return None


def run(a: argparse.Namespace, keep: dict | None = None) -> dict:
    """Make the data and run the chosen stages; returns the results. ``keep``, if given,
    receives the run's context (data, encoded features, memories, padded splits)."""
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    scale = SCALES[a.scale]
    ctx: dict = {} if keep is None else keep
    ctx.update({"device": device, "scale": scale})
    with StagePeak(device) as p:
        ctx.update(make_data(scale, a.seed))
    data_info = {"seconds": p.result["stage_seconds"], "peak_rss_mib": p.result["peak_rss_mib"]}
    for split in ("train", "test"):
        s = ctx[split]
        data_info[split] = {
            "frames": s.n_frames,
            "objects": int(s.app.offsets[-1]),
            "persons": int(s.pose.offsets[-1]),
            "max_objects": int(s.app.counts.max()),
            "max_persons": int(s.pose.counts.max()),
            "frames_without_person": int((s.pose.counts == 0).sum()),
        }
    print(
        f"[bench] {a.scale}: made {data_info['train']['frames']:,} / {data_info['test']['frames']:,} frames, "
        f"{data_info['train']['objects']:,} / {data_info['test']['objects']:,} objects, "
        f"{data_info['train']['persons']:,} / {data_info['test']['persons']:,} persons in {data_info['seconds']:.1f} s",
        flush=True,
    )
    stages: dict = {}
    for name in a.stage_list:
        print(f"[bench] {name} ...", flush=True)
        with StagePeak(device) as p:
            stages[name] = BENCHES[name](ctx, a)
        stages[name].update(p.result)
        print(f"[bench] {name} done in {p.result['stage_seconds']:.1f} s", flush=True)
    results = {
        "scale": a.scale,
        "sizes": asdict(scale),
        "data": data_info,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "settings": {k: v for k, v in vars(a).items() if k != "stage_list"},
        "stages": stages,
        # ru_maxrss can miss a peak that came before a VmHWM reset: take the max of both
        "peak_rss_mib": round(
            max(
                [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, data_info["peak_rss_mib"] or 0]
                + [r.get("peak_rss_mib") or 0 for r in stages.values()]
            ),
            1,
        ),
    }
    total = extrapolated_pipeline(stages)
    if total is not None:
        results["extrapolated_pipeline_s"] = round(total, 1)
    return results


def print_table(results: dict) -> None:
    rows = summary_rows(results)
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"\nbench --scale {results['scale']} on {results['device']} ({results['torch_threads']} torch threads)")
    print(f"{'stage':<{w0}}  {'measure':<{w1}}  value")
    for r in rows:
        print(f"{r[0]:<{w0}}  {r[1]:<{w1}}  {r[2]}")


def main(argv: list[str] | None = None) -> dict:
    a = parse_args(argv)
    results = run(a)
    print_table(results)
    save_json(a.out, results)
    print(f"\n[bench] wrote {a.out}")
    return results


if __name__ == "__main__":
    main()
