"""K-Means in torch: chunked, deterministic, same algorithm as scikit-learn's default
(greedy k-means++ seeding, then Lloyd iterations until the centroid shift falls below
``tol`` times the mean per-feature variance), but on CPU threads or a GPU and in bounded
memory: distances are computed ``chunk`` rows at a time, never as a full (N, K) matrix.

On very large inputs the centroids are fitted on a uniform sample of
``MAX_POINTS_PER_CLUSTER * k`` rows, as faiss does by default (256 per centroid), and the
inertia is measured on all rows. Ped2 and Avenue (up to ~114k rows at k = 500) are fitted
on every row; ShanghaiTech's ~1M objects on 128k. A Lloyd iteration over 1M 34-d rows costs
0.9-1.3 s on 2 CPU cores, so a full-data fit could take up to 300 of them (5-6 min).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

KMEANS_MAX_ITER = 300  # scikit-learn's default
KMEANS_TOL = 1e-4  # scikit-learn's default, relative to the mean feature variance
SEEDING_SAMPLE = 100_000  # k-means++ seeds on at most this many points (see kmeans_pp)
MAX_POINTS_PER_CLUSTER = 256  # fit on at most this many rows per centroid (0: all rows)
# Rows per distance block: (CHUNK, k) blocks of a few MB stay in cache on CPU (1M rows:
# 1.3 s an assignment at 2048, 2.6 s at 65536); a GPU wants large blocks.
CHUNK_CPU, CHUNK_CUDA = 2048, 65_536


def assign(x: Tensor, centroids: Tensor, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """Nearest centroid of every row of x (n, d): labels (n,) int64, squared distance (n,).

    ``|x - c|^2 = |x|^2 + (|c|^2 - 2 x c^T)``: the bracket is one fused ``addmm`` per chunk
    and decides the argmin alone; ``|x|^2`` is added to the n minima only, not to the
    (chunk, k) matrix (fewer passes over the largest array of the iteration)."""
    chunk = chunk or (CHUNK_CUDA if x.device.type == "cuda" else CHUNK_CPU)
    c_sq = centroids.pow(2).sum(1)
    labels = torch.empty(len(x), dtype=torch.long, device=x.device)
    dist = torch.empty(len(x), dtype=x.dtype, device=x.device)
    for s in range(0, len(x), chunk):
        xc = x[s : s + chunk]
        d, i = torch.addmm(c_sq, xc, centroids.T, alpha=-2.0).min(1)
        labels[s : s + chunk], dist[s : s + chunk] = i, (d + xc.pow(2).sum(1)).clamp_min_(0)
    return labels, dist


def kmeans_pp(x: Tensor, k: int, generator: torch.Generator, n_trials: int | None = None) -> Tensor:
    """Greedy k-means++ seeding (scikit-learn's variant: 2 + log k candidates per step,
    keep the one that lowers the potential most). x: (n, d) -> (k, d) seeds.

    Seeding costs O(n k^2 d); on more than ``SEEDING_SAMPLE`` points it is run on a
    uniform sample, which changes the seeds but not the Lloyd iterations that follow."""
    n = len(x)
    n_trials = n_trials or 2 + int(np.log(k))
    centers = torch.empty((k, x.shape[1]), dtype=x.dtype, device=x.device)
    first = int(torch.randint(n, (1,), generator=generator, device="cpu"))
    centers[0] = x[first]
    closest = (x - centers[0]).pow(2).sum(1)
    for c in range(1, k):
        pot = closest.sum()
        if not pot > 0:  # every point already is a centre, or NaN: multinomial would fail obscurely
            if not torch.isfinite(pot):
                raise ValueError("k-means++: the data holds NaN or inf")
            raise ValueError(f"k-means++ found only {c} distinct rows for k = {k} centres")
        probs = (closest / pot).cpu().double()
        cand = torch.multinomial(probs, n_trials, replacement=True, generator=generator).to(x.device)
        d_cand = torch.cdist(x[cand], x).pow(2)  # (trials, n)
        new_closest = torch.minimum(closest[None, :], d_cand)
        best = int(new_closest.sum(1).argmin())
        closest = new_closest[best]
        centers[c] = x[cand[best]]
    return centers


def fit_size(n: int, k: int, max_points_per_cluster: int = MAX_POINTS_PER_CLUSTER) -> int:
    """Rows the centroids are fitted on: all n, or ``k * max_points_per_cluster`` if fewer."""
    return n if max_points_per_cluster <= 0 else min(n, k * max_points_per_cluster)


def kmeans(
    x: np.ndarray | Tensor,
    k: int,
    seed: int = 0,
    max_iter: int = KMEANS_MAX_ITER,
    tol: float = KMEANS_TOL,
    device: str | torch.device = "cpu",
    chunk: int | None = None,
    verbose: bool = False,
    max_points_per_cluster: int = MAX_POINTS_PER_CLUSTER,
) -> tuple[np.ndarray, float]:
    """Cluster x (n, d) into k groups. Returns centroids (k, d) float32 and the inertia
    (sum of squared distances of all n rows to their nearest centroid).

    Deterministic for a given seed and device."""
    x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, Tensor) else x, dtype=torch.float32).to(
        device
    )
    n = len(x)
    if n < k:
        raise ValueError(f"K-Means needs at least k={k} points, got {n}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n_fit = fit_size(n, k, max_points_per_cluster)
    fit = x if n_fit == n else x[torch.randperm(n, generator=gen)[:n_fit].to(device)]
    sample = (
        fit if len(fit) <= SEEDING_SAMPLE else fit[torch.randperm(len(fit), generator=gen)[:SEEDING_SAMPLE].to(device)]
    )
    centroids = kmeans_pp(sample, k, gen)
    threshold = tol * float(fit.var(0).mean())
    previous = None
    for it in range(max_iter):
        labels, dist = assign(fit, centroids, chunk)
        if previous is not None and torch.equal(labels, previous):
            break  # assignments stable: the centroids are final (scikit-learn's strict convergence)
        previous = labels
        sums = torch.zeros_like(centroids).index_add_(0, labels, fit)
        counts = torch.bincount(labels, minlength=k).to(x.dtype)
        empty = counts == 0
        new = sums / counts.clamp_min(1)[:, None]
        if empty.any():  # re-seed empty clusters on the points farthest from their centroid
            far = torch.topk(dist, int(empty.sum())).indices
            new[empty] = fit[far]
        shift = float((new - centroids).pow(2).sum())
        centroids = new
        if verbose:
            print(f"  k-means iter {it + 1}: centroid shift {shift:.3g}")
        if shift <= threshold:
            break
    _, dist = assign(x, centroids, chunk)
    return centroids.cpu().numpy(), float(dist.sum())
