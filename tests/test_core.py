"""Unit tests of the method's building blocks on small, hand-checkable tensors."""
import numpy as np
import pytest
import torch

from memfuse.data import Ragged
from memfuse.kmeans import kmeans
from memfuse.fusion import PaddedSplit, passes, real_row_counts, score, train_fusion, training_batch, trimmed_pieces
from memfuse.models import AttentionFusion, AutoEncoder, Memory, dropout, masked_softmax
from memfuse.padding import n_max_of, pad, velocity_per_object
from memfuse.pseudo import generate, generate_loop, topk_row_width


def ragged(frames, width):
    return Ragged.from_frames([np.asarray(f, dtype=np.float32).reshape(-1, width) for f in frames], width)


# ---------------------------------------------------------------- memory read and losses
def test_memory_read_is_softmax_weighted_items():
    items = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    q = torch.tensor([[2.0, 0.0]])
    mem = Memory(items, top_k=1)
    s = torch.tensor([2.0, 0.0, 2.0])
    w = torch.exp(s) / torch.exp(s).sum()
    assert torch.allclose(mem.weights(q)[0], w)
    assert torch.allclose(mem.read(q)[0], w @ items)


def test_memory_losses_match_direct_computation():
    torch.manual_seed(0)
    items, q, k = torch.randn(12, 4), torch.randn(7, 4), 3
    mem = Memory(items, top_k=k)
    losses = mem.losses(q, margin=1.0)
    for b in range(len(q)):  # one query at a time, straight from the definitions
        w = torch.softmax(items @ q[b], 0)
        order = torch.argsort(w, descending=True)
        a = torch.softmax(w[order[:k]], 0)
        g = (a[:, None] * items[order[:k]]).sum(0)
        pos, neg = items[order[0]], items[order[k]]
        if b == 0:
            gathers, spreads, recs = [], [], []
        gathers.append(((g - q[b]) ** 2).mean())
        spreads.append(torch.clamp((q[b] - pos).norm() - (q[b] - neg).norm() + 1.0, min=0))
        recs.append(((w @ items - q[b]) ** 2).mean())
    # triplet_margin_loss adds eps=1e-6 inside the norm; tolerance covers it
    assert torch.allclose(losses["gather"], torch.stack(gathers).mean(), atol=1e-6)
    assert torch.allclose(losses["spread"], torch.stack(spreads).mean(), atol=1e-4)
    assert torch.allclose(losses["rec"], torch.stack(recs).mean(), atol=1e-6)


def test_memory_training_lowers_loss():
    from memfuse.stages import train_memory

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 6)).astype(np.float32)
    q = (centres[rng.integers(4, size=400)] + rng.normal(0, 0.05, (400, 6))).astype(np.float32)
    _, hist = train_memory(q, rng.normal(0, 1, (16, 6)).astype(np.float32), epochs=40, lr=1e-2, batch_size=128, weights=(5, 1, 1), top_k=5,
                           margin=1.0, cosine_t_max=0, stale_step=False, device=torch.device("cpu"), seed=0)
    assert hist[-1]["total"] < 0.5 * hist[0]["total"]


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


# ---------------------------------------------------------------- padding and masks
def test_pad_layout_and_mask():
    r = ragged([[[1, 1]], [[2, 2], [3, 3], [4, 4]], np.zeros((0, 2))], 2)
    vals, padded = pad(r, 3)
    assert vals.shape == (3, 3, 2)
    np.testing.assert_array_equal(vals[1], [[2, 2], [3, 3], [4, 4]])
    np.testing.assert_array_equal(padded, [[False, True, True], [False, False, False], [False, True, True]])
    np.testing.assert_array_equal(vals[2], 0)  # an empty frame: one zero row, unmasked
    assert n_max_of(r) == 3


def test_pad_subset_and_truncation_warns():
    r = ragged([[[1]], [[2], [3], [4]]], 1)
    with pytest.warns(UserWarning):
        vals, padded = pad(r, 2, np.array([1]))
    np.testing.assert_array_equal(vals[0, :, 0], [2, 3])
    assert not padded.any()


def test_velocity_is_the_mean_over_orientation_bins():
    v = ragged([[[1, 3]], [[2, 2], [0, 4]]], 2)
    per_obj = velocity_per_object(v)
    np.testing.assert_allclose(per_obj.values[:, 0], [2, 2, 2])


def test_padded_key_gets_zero_attention_weight():
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 3)
    mask = torch.tensor([[False, False, True], [False, True, True]])
    w = masked_softmax(scores, mask)
    assert torch.all(w[0, :, 2] == 0) and torch.all(w[1, :, 1:] == 0)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3))


def test_fusion_output_ignores_padded_rows_when_masked():
    """Changing values in padded key rows must not change the attention outputs."""
    torch.manual_seed(0)
    model = AttentionFusion(n_max=4).eval()
    x = [torch.randn(2, 4, 34) for _ in range(3)]
    mask = torch.tensor([[False, False, True, True], [False, True, True, True]])
    feats = [torch.relu(lin(t)) for lin, t in zip(model.align, x)]
    u = model.attend(feats, [mask, mask, mask])
    noisy = [f.clone() for f in feats]
    for f in noisy:
        f[mask] = 100.0
    u_noisy = model.attend(noisy, [mask, mask, mask])
    # rows attended from valid queries only depend on valid keys... queries too differ at
    # padded positions, so compare the valid query rows
    for a, b in zip(u, u_noisy):
        assert torch.allclose(a[~mask], b[~mask], atol=1e-5)
    u_unmasked = model.attend(noisy, None)
    assert not torch.allclose(u[0][~mask], u_unmasked[0][~mask], atol=1e-3)


def test_fusion_forward_shapes_and_u2_variants():
    for key in ("k2", "k3"):
        model = AttentionFusion(n_max=5, u2_key=key)
        logits = model(torch.randn(3, 5, 34), torch.randn(3, 5, 34), torch.randn(3, 5), [torch.zeros(3, 5, dtype=torch.bool)] * 3)
        assert logits.shape == (3,)
    with pytest.raises(ValueError):
        AttentionFusion(n_max=5, u2_key="k1")


def test_per_object_velocity_equals_expanded_velocity():
    """The (F, N) velocity shortcut (outer product) is the Linear of the D-column copy."""
    torch.manual_seed(0)
    model = AttentionFusion(n_max=5).eval()
    app, pose, vel = torch.randn(3, 5, 34), torch.randn(3, 5, 34), torch.rand(3, 5) * 4
    masks = [torch.tensor([[False] * 3 + [True] * 2] * 3)] * 3
    torch.testing.assert_close(model(app, pose, vel, masks), model(app, pose, vel.unsqueeze(-1).expand(-1, -1, 34), masks))


def test_bit_dropout_keeps_half_and_rescales():
    torch.manual_seed(0)
    y = dropout(torch.ones(333, 97), 0.5, training=True)
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert abs((y == 0).float().mean().item() - 0.5) < 0.01
    assert torch.equal(dropout(torch.ones(4, 4), 0.5, training=False), torch.ones(4, 4))
    torch.manual_seed(1)
    a = dropout(torch.ones(50, 50), 0.5, True)
    torch.manual_seed(1)
    assert torch.equal(a, dropout(torch.ones(50, 50), 0.5, True)), "dropout must follow torch's seed"


def test_micro_batches_give_the_same_update_as_one_piece():
    """Gradient accumulation over pieces of a batch must not change the optimiser step."""
    split, n = _toy_split(f=23, n=4), 4
    params = []
    for micro in (0, 5):
        torch.manual_seed(0)
        model = AttentionFusion(n_max=n, dropout=0.0)  # no dropout: both runs see the same network
        hist = train_fusion(model, split, epochs=2, lr=1e-2, batch_size=16, device=torch.device("cpu"), seed=0, micro_batch=micro)
        params.append((torch.cat([p.detach().flatten() for p in model.parameters()]), hist[-1]["loss"]))
    torch.testing.assert_close(params[0][0], params[1][0], rtol=1e-3, atol=1e-4)
    assert params[0][1] == pytest.approx(params[1][1], rel=1e-5)


def test_trimmed_rows_give_the_same_training_as_the_full_padding():
    """The fast path (frames grouped by object count, padding rows cut) must train the
    pooled head exactly as the full padded batch does."""
    split, n = _toy_split(f=41, n=6, seed=3), 6
    assert (real_row_counts(split) < n).any(), "the toy data must have padding to trim"
    runs = []
    for trim in (False, True):
        torch.manual_seed(0)
        model = AttentionFusion(n_max=n, dropout=0.0, head="pool", hidden=16)
        hist = train_fusion(model, split, epochs=3, lr=1e-2, batch_size=16, device=torch.device("cpu"), seed=0, micro_batch=5,
                            velocity_anomaly_scale=3.0, trim_rows=trim)
        runs.append((torch.cat([p.detach().flatten() for p in model.parameters()]), [h["loss"] for h in hist]))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-4, atol=1e-5)
    assert runs[0][1] == pytest.approx(runs[1][1], rel=1e-5)


def test_trimmed_pieces_cover_the_step_and_fit_their_frames():
    counts = np.array([3, 1, 4, 1, 5, 9, 2, 6, 0])
    idx = np.array([8, 0, 5, 2, 7, 1])
    pieces = trimmed_pieces(idx, 4, counts)
    assert sorted(np.concatenate([p for p, _ in pieces]).tolist()) == sorted(idx.tolist())
    assert [rows for _, rows in pieces] == [4, 9]  # counts sorted: 0 1 3 4 | 6 9
    assert all(counts[p].max(initial=1) <= rows for p, rows in pieces)


def _toy_split(f: int = 9, n: int = 4, d: int = 34, seed: int = 0) -> PaddedSplit:
    rng = np.random.default_rng(seed)
    arr = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    mask = np.arange(n)[None] >= rng.integers(1, n + 1, f)[:, None]
    return PaddedSplit(arr(f, n, d), arr(f, n, d), np.abs(arr(f, n)), mask, mask, arr(f, n, d), arr(f, n, d))


def test_modality_ablation_keeps_only_passes_that_vary_a_kept_modality():
    assert len(passes()) == 4 and len(passes(3.0)) == 5
    assert [(p.app, p.pose) for p in passes(modalities=("pose",))] == [("normal", "normal"), ("anomaly", "anomaly"), ("normal", "anomaly")]
    assert [(p.app, p.pose) for p in passes(modalities=("app",))] == [("normal", "normal"), ("anomaly", "anomaly"), ("anomaly", "normal")]
    assert [p.vel_scaled for p in passes(3.0, ("vel",))] == [False, True]
    with pytest.raises(ValueError, match="velocity alone"):
        passes(0.0, ("vel",))
    with pytest.raises(ValueError):
        passes(0.0, ("colour",))


def test_dropped_modality_is_zero_in_training_and_ignored_in_scoring():
    split = _toy_split()
    idx = np.arange(5)
    app, pose, vel, masks, y = training_batch(split, idx, torch.device("cpu"), modalities=("pose", "vel"))
    assert app.shape == (3 * 5, 4, 34) and torch.all(app == 0) and torch.any(pose != 0) and y.tolist() == [0.0] * 5 + [1.0] * 10
    torch.manual_seed(0)
    model = AttentionFusion(n_max=4)
    a = score(model, split, torch.device("cpu"), modalities=("pose",))
    noisy = PaddedSplit(split.app * 5 + 1, split.pose, split.vel * 3, split.app_mask, split.pose_mask)
    np.testing.assert_array_equal(a, score(model, noisy, torch.device("cpu"), modalities=("pose",)))
    assert not np.allclose(a, score(model, noisy, torch.device("cpu")))


def test_autoencoder_shapes():
    ae = AutoEncoder()
    x = torch.randn(5, 512)
    assert ae.encode(x).shape == (5, 34) and ae(x).shape == (5, 512)


# ---------------------------------------------------------------- K-Means
def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    x = np.concatenate([c + rng.normal(0, 0.1, (100, 2)) for c in centres]).astype(np.float32)
    found, inertia = kmeans(x, 3, seed=0, chunk=50)
    found = found[np.lexsort(found.T[::-1])]
    np.testing.assert_allclose(found, centres[np.lexsort(centres.T[::-1])], atol=0.1)
    again, _ = kmeans(x, 3, seed=0)
    assert inertia < 300 * 0.05 and np.allclose(np.sort(again, 0), np.sort(found, 0))


def test_kmeans_fits_a_sample_of_large_inputs_but_measures_all_rows():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    x = np.concatenate([c + rng.normal(0, 0.1, (400, 2)) for c in centres]).astype(np.float32)
    found, inertia = kmeans(x, 3, seed=0, max_points_per_cluster=20)  # fitted on 60 of 1200 rows
    np.testing.assert_allclose(np.sort(found, 0), np.sort(centres, 0), atol=0.1)
    all_rows = ((x[:, None, :] - found[None]) ** 2).sum(-1).min(1).sum()
    assert inertia == pytest.approx(all_rows, rel=1e-4)


def test_kmeans_says_so_when_there_are_fewer_distinct_rows_than_centres():
    """A collapsed autoencoder gives every object one code (seed 2 on Ped2 at lr 1e-2);
    k-means++ must name the problem instead of failing inside torch.multinomial."""
    x = np.tile(np.array([[0.5, -0.25]], dtype=np.float32), (50, 1))
    x[:3] += np.arange(3, dtype=np.float32)[:, None]  # 3 distinct rows (row 0 equals the rest)
    with pytest.raises(ValueError, match="only 3 distinct rows for k = 5"):
        kmeans(x, 5, seed=0)
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        kmeans(x, 5, seed=0)


def test_check_codes_rejects_collapsed_or_nan_codes_and_passes_spread_ones():
    from memfuse.io import InputError
    from memfuse.stages import check_codes

    rng = np.random.default_rng(0)
    check_codes(rng.normal(0, 0.1, (100, 34)).astype(np.float32), "ok")
    collapsed = np.tile(rng.normal(0, 0.1, (1, 34)).astype(np.float32), (100, 1))
    with pytest.raises(InputError, match="same code"):
        check_codes(collapsed, "ped2 train appearance")
    nan = rng.normal(0, 0.1, (100, 34)).astype(np.float32)
    nan[5, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        check_codes(nan, "ped2 train appearance")


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
