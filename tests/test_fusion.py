"""memfuse.fusion: training batches, training with and without the fast path, validation and
scoring of the fusion classifier."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F_
from toys import scored_split, toy_padded, toy_split

from memfuse.fast import BitMaskDropout, real_row_counts, trimmed_pieces, use_fast_dropout
from memfuse.fusion import (
    KeepBest,
    PaddedSplit,
    forward,
    holdout_videos,
    memory_terms,
    passes,
    pseudo_label_validation,
    score,
    take_frames,
    train_fusion,
    training_batch,
)
from memfuse.metrics import micro_auc
from memfuse.models import AttentionFusion


def test_micro_batches_give_the_same_update_as_one_piece():
    """Gradient accumulation over pieces of a batch must not change the optimiser step."""
    split, n = toy_split(f=23, n=4), 4
    params = []
    for micro in (0, 5):
        torch.manual_seed(0)
        model = AttentionFusion(n_max=n, dropout=0.0)  # no dropout: both runs see the same network
        hist = train_fusion(
            model, split, epochs=2, lr=1e-2, batch_size=16, device=torch.device("cpu"), seed=0, micro_batch=micro
        )
        params.append((_flat_params(model), hist[-1]["loss"]))
    torch.testing.assert_close(params[0][0], params[1][0], rtol=1e-3, atol=1e-4)
    assert params[0][1] == pytest.approx(params[1][1], rel=1e-5)


def _flat_params(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_trimmed_rows_give_the_same_training_as_the_full_padding():
    """The fast path (frames grouped by object count, padding rows cut) must train the
    pooled head as the full padded batch does (no dropout: the same network in both)."""
    split, n = toy_split(f=41, n=6, seed=3), 6
    assert (real_row_counts(split) < n).any(), "the toy data must have padding to trim"
    runs = []
    for fast_path in (False, True):
        torch.manual_seed(0)
        model = AttentionFusion(n_max=n, dropout=0.0, head="pool", hidden=16)
        hist = train_fusion(
            model,
            split,
            epochs=3,
            lr=1e-2,
            batch_size=16,
            device=torch.device("cpu"),
            seed=0,
            micro_batch=5,
            velocity_anomaly_scale=3.0,
            fast_path=fast_path,
        )
        runs.append((_flat_params(model), [h["loss"] for h in hist]))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-4, atol=1e-5)
    assert runs[0][1] == pytest.approx(runs[1][1], rel=1e-5)


def test_trimmed_pieces_give_the_same_gradient_as_the_full_padding():
    """One step's gradient, summed over the trimmed pieces of train_fusion's fast path,
    equals the gradient of the whole step on the full padding (pooled head, masking)."""
    split, n = toy_split(f=29, n=7, seed=5), 7
    idx = np.arange(3, 26)
    counts = real_row_counts(split)
    assert counts[idx].max() == n and counts[idx].min() < n
    torch.manual_seed(0)
    model = AttentionFusion(n_max=n, dropout=0.0, head="pool", hidden=16)
    cpu = torch.device("cpu")
    grads = []
    for pieces in ([(idx, None)], trimmed_pieces(idx, 6, counts)):
        model.zero_grad(set_to_none=True)
        for piece, n_rows in pieces:
            app, pose, vel, masks, y = training_batch(split, piece, cpu, 3.0, n_rows=n_rows)
            assert n_rows is None or app.shape[1] == n_rows
            logits = forward(model, app, pose, vel, masks)
            (F_.binary_cross_entropy_with_logits(logits, y, reduction="sum") / len(idx)).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert len(trimmed_pieces(idx, 6, counts)) > 1 and grads[0].abs().max() > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


def test_fast_path_and_plain_training_agree_without_dropout():
    """With p = 0 neither dropout draws anything, and the flatten head is never trimmed:
    fast_path True and False train the same network bit for bit."""
    split = toy_split(f=23, n=4, seed=2)
    runs = []
    for fast_path in (True, False):
        torch.manual_seed(0)
        model = AttentionFusion(n_max=4, dropout=0.0, hidden=16)
        hist = train_fusion(
            model,
            split,
            epochs=2,
            lr=1e-2,
            batch_size=8,
            device=torch.device("cpu"),
            seed=0,
            micro_batch=3,
            fast_path=fast_path,
        )
        runs.append((_flat_params(model), [h["loss"] for h in hist]))
    assert runs[0][1] == runs[1][1]
    assert torch.equal(runs[0][0], runs[1][0])


def test_fast_path_is_the_bit_mask_dropout_on_the_same_draws():
    """fast_path on CPU swaps the model's dropout for the bit-mask one (for good: the
    trained model keeps it) and trains exactly as a model swapped by hand and trained on
    the plain path; without it the model keeps torch's dropout."""
    split = toy_split(f=19, n=4, seed=4)
    kw = dict(epochs=2, lr=1e-2, batch_size=8, device=torch.device("cpu"), seed=0, micro_batch=3)
    runs = []
    for by_hand in (False, True):
        torch.manual_seed(0)
        model = AttentionFusion(n_max=4, hidden=16)  # p = 0.5: the bit-mask path
        if by_hand:
            use_fast_dropout(model)
        hist = train_fusion(model, split, fast_path=not by_hand, **kw)
        assert [type(m) for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [BitMaskDropout] * 2
        runs.append((_flat_params(model), [h["loss"] for h in hist]))
    assert runs[0][1] == runs[1][1] and torch.equal(runs[0][0], runs[1][0])
    plain = AttentionFusion(n_max=4, hidden=16)
    train_fusion(plain, split, fast_path=False, **kw)
    assert [type(m) for m in plain.modules() if isinstance(m, torch.nn.Dropout)] == [torch.nn.Dropout] * 2


def test_modality_ablation_keeps_only_passes_that_vary_a_kept_modality():
    assert len(passes()) == 4 and len(passes(3.0)) == 5
    assert [(p.app, p.pose) for p in passes(modalities=("pose",))] == [
        ("normal", "normal"),
        ("anomaly", "anomaly"),
        ("normal", "anomaly"),
    ]
    assert [(p.app, p.pose) for p in passes(modalities=("app",))] == [
        ("normal", "normal"),
        ("anomaly", "anomaly"),
        ("anomaly", "normal"),
    ]
    assert [p.vel_scaled for p in passes(3.0, ("vel",))] == [False, True]
    with pytest.raises(ValueError, match="velocity alone"):
        passes(0.0, ("vel",))
    with pytest.raises(ValueError):
        passes(0.0, ("colour",))


def test_dropped_modality_is_zero_in_training_and_ignored_in_scoring():
    split = toy_split()
    idx = np.arange(5)
    app, pose, vel, masks, y = training_batch(split, idx, torch.device("cpu"), modalities=("pose", "vel"))
    assert app.shape == (3 * 5, 4, 34) and torch.all(app == 0) and torch.any(pose != 0)
    assert y.tolist() == [0.0] * 5 + [1.0] * 10
    torch.manual_seed(0)
    model = AttentionFusion(n_max=4)
    a = score(model, split, torch.device("cpu"), modalities=("pose",))
    noisy = PaddedSplit(split.app * 5 + 1, split.pose, split.vel * 3, split.app_mask, split.pose_mask)
    np.testing.assert_array_equal(a, score(model, noisy, torch.device("cpu"), modalities=("pose",)))
    assert not np.allclose(a, score(model, noisy, torch.device("cpu")))


def test_fusion_scoring_batched_equals_one_shot():
    torch.manual_seed(0)
    split = toy_padded(n_frames=103)
    model = AttentionFusion(5)
    a = score(model, split, torch.device("cpu"), batch_size=7)
    b = score(model, split, torch.device("cpu"), batch_size=100_000)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_minibatch_fusion_training_learns_a_separable_toy():
    torch.manual_seed(0)
    train = toy_padded(n_frames=256, separable=True, seed=1)
    model = AttentionFusion(5)
    hist = train_fusion(model, train, epochs=8, lr=1e-3, batch_size=64, device=torch.device("cpu"), seed=0)
    assert hist[-1]["loss"] < hist[0]["loss"]
    # test set: normal frames (the pseudo-normal inputs) vs anomalous ones (both shifted)
    test = toy_padded(n_frames=200, separable=True, seed=2)
    mixed = PaddedSplit(
        app=np.concatenate([test.app[:100], test.app_anomaly[100:]]),
        pose=np.concatenate([test.pose[:100], test.pose_anomaly[100:]]),
        vel=test.vel,
        app_mask=test.app_mask,
        pose_mask=test.pose_mask,
    )
    labels = np.r_[np.zeros(100), np.ones(100)]
    assert micro_auc(score(model, mixed, torch.device("cpu")), labels) > 0.9


def test_holdout_takes_whole_videos_from_the_end():
    fit, val = holdout_videos(np.array([10, 25, 40]), 1)
    assert (fit, val) == (slice(0, 25), slice(25, 40))
    split = take_frames(toy_padded(n_frames=40), val)
    assert split.n_frames == 15 and split.app_anomaly.shape[0] == 15
    for bad in (0, 3):
        with pytest.raises(ValueError, match="hold out 1 to 2"):
            holdout_videos(np.array([10, 25, 40]), bad)


def test_pseudo_label_validation_is_the_training_objective_without_dropout():
    torch.manual_seed(0)
    split = toy_padded(n_frames=50, separable=True, seed=3)
    model = AttentionFusion(5)
    got = pseudo_label_validation(model, split, torch.device("cpu"), batch_size=7)
    model.eval()
    with torch.no_grad():
        app, pose, vel, masks, y = training_batch(split, np.arange(50), torch.device("cpu"))
        want = F_.binary_cross_entropy_with_logits(model(app, pose, vel, masks), y, reduction="sum").item() / 50
    assert got["val_loss"] == pytest.approx(want, rel=1e-5)
    # trained on other frames of the same separable toy, the held-out pseudo labels separate
    train_fusion(
        model,
        toy_padded(n_frames=256, separable=True, seed=1),
        epochs=8,
        lr=1e-3,
        batch_size=64,
        device=torch.device("cpu"),
        seed=0,
    )
    after = pseudo_label_validation(model, split, torch.device("cpu"))
    assert after["val_loss"] < got["val_loss"] and after["val_auc"] > 0.9


def test_keep_best_restores_the_lowest_loss_weights_and_stops_on_patience():
    model = torch.nn.Linear(2, 1)
    keeper = KeepBest(patience=2)
    stops = []
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.6], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        stops.append(keeper.update(epoch, loss, model))
    assert stops == [False, False, False, True]
    assert keeper.restore(model) == 2 and torch.all(model.weight == 2.0)
    assert not any(KeepBest(patience=0).update(e, 1.0, model) for e in range(5))


def test_training_stops_when_the_epoch_callback_says_so():
    model = AttentionFusion(5)
    hist = train_fusion(
        model,
        toy_padded(n_frames=20),
        epochs=10,
        lr=1e-3,
        batch_size=0,
        device=torch.device("cpu"),
        seed=0,
        on_epoch=lambda e, m: {"stop": e == 3},
    )
    assert [h["epoch"] for h in hist] == [1, 2, 3] and "stop" not in hist[-1]


def test_memory_terms_are_frame_maxima_over_real_rows():
    split = scored_split(4, 3, seed=1)
    t = memory_terms(split)
    assert set(t) == {"app", "app_rec", "pose", "vel"}
    for name, values, mask in (
        ("app", split.app_dist, split.app_mask),
        ("app_rec", split.app_rec, split.app_mask),
        ("pose", split.pose_dist, split.pose_mask),
        ("vel", split.vel, split.app_mask),
    ):
        np.testing.assert_allclose(t[name], [v[~m].max() for v, m in zip(values, mask)], rtol=1e-6)


def test_memory_terms_take_the_nearest_train_object_terms_where_the_split_has_them():
    split = scored_split(4, 3, seed=2)
    rng = np.random.default_rng(0)
    split.app_knn = rng.random(split.app_mask.shape).astype(np.float32)
    split.vel_dir = rng.random(split.app_mask.shape).astype(np.float32)
    t = memory_terms(split)
    assert {"app_knn", "vel_dir"} <= set(t)
    for name in ("app_knn", "vel_dir"):
        values = getattr(split, name)
        np.testing.assert_allclose(t[name], [v[~m].max() for v, m in zip(values, split.app_mask)], rtol=1e-6)
