"""memfuse.pseudo: pseudo-normal and pseudo-anomalous features read from a memory."""

import numpy as np
import pytest
import torch

from memfuse.pseudo import generate, generate_loop, topk_row_width


# ---------------------------------------------------------------- pseudo generation
@pytest.mark.parametrize("n_items", [50, 700])  # rows padded with -inf for topk (< 640), and not
def test_pseudo_vectorised_equals_per_query_loop(n_items):
    rng = np.random.default_rng(1)
    items, q = rng.normal(0, 1, (n_items, 34)).astype(np.float32), rng.normal(0, 1, (300, 34)).astype(np.float32)
    fast = generate(q, items, chunk=64)  # several chunks
    slow = generate_loop(q, items)
    np.testing.assert_allclose(fast.normal, slow.normal, atol=1e-5)
    np.testing.assert_allclose(fast.anomaly, slow.anomaly, atol=1e-5)
    np.testing.assert_array_equal(fast.indices, slow.indices)


def test_topk_row_width_pads_short_cpu_rows_only():
    cpu, meta = torch.device("cpu"), torch.device("meta")
    assert topk_row_width(500, 10, cpu) == 640
    assert topk_row_width(700, 10, cpu) == 700
    assert topk_row_width(500, 10, meta) == 500  # other devices: no padding


def test_pseudo_formula_by_hand():
    items = np.diag(np.arange(1.0, 11.0)).astype(np.float32)  # 10 items, 10-d
    q = np.full((1, 10), 0.1, dtype=np.float32)  # scores 0.1 * (i + 1): rank order 9, 8, ..., 0
    out = generate(q, items, top_k=5)
    np.testing.assert_array_equal(out.indices[0], np.arange(9, -1, -1))
    w = np.exp(0.1 * np.arange(1, 11)) / np.exp(0.1 * np.arange(1, 11)).sum()
    top, bottom = np.arange(9, 4, -1), np.arange(4, -1, -1)
    a_top = np.exp(w[top]) / np.exp(w[top]).sum()
    a_bot = np.exp(w[bottom]) / np.exp(w[bottom]).sum()
    np.testing.assert_allclose(out.normal[0], 0.5 * q[0] + 0.5 * a_top @ items[top], atol=1e-6)
    np.testing.assert_allclose(out.anomaly[0], 0.01 * q[0] + 0.99 * a_bot @ items[bottom], atol=1e-6)


def test_pseudo_ranks_survive_softmax_underflow():
    """With large-norm features W underflows to exact zeros beyond rank 1; the ranks must
    still follow the similarity (logits), in the vectorised and the loop version alike."""
    rng = np.random.default_rng(2)
    items = rng.normal(0, 20, (40, 34)).astype(np.float32)
    q = rng.normal(0, 20, (50, 34)).astype(np.float32)
    w = torch.softmax(torch.from_numpy(q @ items.T), 1)
    assert (w.sort(1, descending=True).values[:, 5:10] == 0).float().mean() > 0.5  # the case we guard against
    want = np.argsort(-(q @ items.T), axis=1, kind="stable")[:, :10]
    fast, slow = generate(q, items), generate_loop(q, items)
    np.testing.assert_array_equal(fast.indices, want)
    np.testing.assert_array_equal(slow.indices, want)
    np.testing.assert_allclose(fast.anomaly, slow.anomaly, atol=1e-4)


def test_pseudo_extrapolation_pushes_away_from_memory():
    rng = np.random.default_rng(3)
    items, q = rng.normal(0, 1, (30, 34)).astype(np.float32), rng.normal(0, 1, (20, 34)).astype(np.float32)
    plain, far = generate(q, items), generate(q, items, extrapolate=1.0)
    np.testing.assert_allclose(far.normal, plain.normal)
    top_mix = 2 * plain.normal - q  # pseudo-normal = 0.5 q + 0.5 top mixture
    np.testing.assert_allclose(far.anomaly, 2 * q - top_mix, atol=1e-5)


# ---------------------------------------------------------------- chunked == one-shot
def test_pseudo_generation_chunked_equals_one_shot():
    rng = np.random.default_rng(0)
    q, items = rng.normal(size=(1000, 34)).astype(np.float32), rng.normal(size=(50, 34)).astype(np.float32)
    small, big = generate(q, items, chunk=37), generate(q, items, chunk=1_000_000)
    np.testing.assert_allclose(small.normal, big.normal, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(small.anomaly, big.anomaly, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(small.indices, big.indices)
