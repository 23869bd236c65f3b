"""memfuse.models: the memory's read and losses, the autoencoder, the attention fusion and its heads."""

import numpy as np
import pytest
import torch
from toys import scored_split

from memfuse.fusion import PaddedSplit, frame_logits, score
from memfuse.models import AttentionFusion, AutoEncoder, Memory, masked_softmax


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
        logits = model(
            torch.randn(3, 5, 34), torch.randn(3, 5, 34), torch.randn(3, 5), [torch.zeros(3, 5, dtype=torch.bool)] * 3
        )
        assert logits.shape == (3,)
    with pytest.raises(ValueError):
        AttentionFusion(n_max=5, u2_key="k1")


def test_per_object_velocity_equals_expanded_velocity():
    """The (F, N) velocity shortcut (outer product) is the Linear of the D-column copy."""
    torch.manual_seed(0)
    model = AttentionFusion(n_max=5).eval()
    app, pose, vel = torch.randn(3, 5, 34), torch.randn(3, 5, 34), torch.rand(3, 5) * 4
    masks = [torch.tensor([[False] * 3 + [True] * 2] * 3)] * 3
    torch.testing.assert_close(
        model(app, pose, vel, masks), model(app, pose, vel.unsqueeze(-1).expand(-1, -1, 34), masks)
    )


def test_fusion_model_uses_plain_torch_dropout():
    """The model file is the plain maths: torch's own dropout after alignment and in the
    classifier (the CPU fast path swaps it in :mod:`memfuse.fast`, not here)."""
    for head in ("flatten", "pool"):
        model = AttentionFusion(n_max=5, head=head, dropout=0.3)
        drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
        assert [type(m) for m in drops] == [torch.nn.Dropout] * 2 and all(m.p == 0.3 for m in drops)
        assert model.dropout is drops[0] and model.classifier[2] is drops[1]


def test_autoencoder_shapes():
    ae = AutoEncoder()
    x = torch.randn(5, 512)
    assert ae.encode(x).shape == (5, 34) and ae(x).shape == (5, 512)


def test_pooled_head_is_permutation_invariant_and_ignores_padded_rows():
    torch.manual_seed(0)
    model = AttentionFusion(n_max=5, head="pool").eval()
    split = scored_split(6, 5)
    a = frame_logits(model, split, torch.device("cpu"))
    perm = np.array([4, 2, 0, 3, 1])
    shuffled = PaddedSplit(**{k: None if v is None else v[:, perm] for k, v in vars(split).items()})
    np.testing.assert_allclose(a, frame_logits(model, shuffled, torch.device("cpu")), rtol=1e-5, atol=1e-5)
    noisy = PaddedSplit(**vars(split))
    for name in ("app", "pose"):
        arr = getattr(noisy, name).copy()
        arr[split.app_mask] = 50.0
        setattr(noisy, name, arr)
    np.testing.assert_allclose(a, frame_logits(model, noisy, torch.device("cpu")), rtol=1e-5, atol=1e-5)
    # the frame logit is the largest row logit over real rows
    x = [torch.from_numpy(getattr(split, n)) for n in ("app", "pose", "vel")]
    m = torch.from_numpy(split.app_mask)
    rows = model.row_logits(*x, [m, m, m]).detach().numpy()
    np.testing.assert_allclose(a, np.where(split.app_mask, -np.inf, rows).max(1), rtol=1e-5, atol=1e-5)
    assert np.all((score(model, split, torch.device("cpu")) > 0) & (score(model, split, torch.device("cpu")) < 1))


def test_flatten_head_depends_on_the_slot_order():
    torch.manual_seed(0)
    model = AttentionFusion(n_max=5, head="flatten").eval()
    split = scored_split(6, 5)
    full = PaddedSplit(
        **{**vars(split), "app_mask": np.zeros_like(split.app_mask), "pose_mask": np.zeros_like(split.app_mask)}
    )
    perm = np.array([4, 2, 0, 3, 1])
    shuffled = PaddedSplit(**{k: None if v is None else v[:, perm] for k, v in vars(full).items()})
    cpu = torch.device("cpu")
    assert not np.allclose(frame_logits(model, full, cpu), frame_logits(model, shuffled, cpu), atol=1e-4)
    with pytest.raises(ValueError):
        AttentionFusion(n_max=5, head="mean")


def test_memory_losses_give_the_same_gradient_every_run_on_several_threads():
    """The items are picked with index_select: the same losses as indexing, and a gradient
    that does not depend on how threads interleave (advanced indexing's did)."""
    torch.set_num_threads(2)  # the conftest fixture restores the count
    gen = torch.Generator().manual_seed(0)
    memory = Memory(torch.randn(64, 34, generator=gen), top_k=5)
    q = 2 * torch.randn(4096, 34, generator=gen)
    grads = []
    for _ in range(5):
        memory.items.grad = None
        sum(memory.losses(q).values()).backward()
        grads.append(memory.items.grad.clone())
    assert all(torch.equal(grads[0], g) for g in grads[1:])
    top_i = torch.topk(q @ memory.items.T, 6, dim=1).indices
    expected = torch.nn.functional.triplet_margin_loss(
        q, memory.items[top_i[:, 0]], memory.items[top_i[:, 5]], margin=1.0
    )
    assert torch.equal(memory.losses(q)["spread"], expected)
