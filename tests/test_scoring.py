"""Frame terms and their train-standardised sum (memfuse.scoring), and the fusion's pooled head."""
import numpy as np
import pytest
import torch

from memfuse.data import zscore, zscore_fit
from memfuse.fusion import PaddedSplit, frame_logits, memory_terms, score
from memfuse.models import AttentionFusion
from memfuse.scoring import Standardiser, combine, masked_frame_max, parse_terms, sum_by_group


def test_masked_frame_max_ignores_padding_and_marks_empty_frames():
    values = np.array([[1.0, 5.0, 9.0], [2.0, 0.5, 7.0], [3.0, 3.0, 3.0]])
    padded = np.array([[False, False, True], [False, True, True], [True, True, True]])
    out = masked_frame_max(values, padded)
    assert out[0] == 5.0 and out[1] == 2.0 and np.isnan(out[2])


def test_standardiser_uses_train_frames_only_and_fills_empty_frames_with_the_train_minimum():
    st = Standardiser.fit(np.array([1.0, 2.0, 3.0, np.nan]))
    assert st.mean == pytest.approx(2.0) and st.std == pytest.approx(np.std([1.0, 2.0, 3.0])) and st.floor == 1.0
    z = st(np.array([2.0, np.nan, 2.0 + st.std]))
    np.testing.assert_allclose(z, [0.0, (1.0 - 2.0) / st.std, 1.0])
    assert Standardiser.fit(np.array([4.0, 4.0])).std == 1.0  # constant term: centred, not divided by 0


def test_combine_sums_standardised_terms_so_scale_does_not_set_the_weight():
    rng = np.random.default_rng(0)
    train = {"pose": rng.normal(0, 1, 500), "vel": rng.normal(0, 1000, 500)}
    test = {"pose": np.array([0.0, 3.0]), "vel": np.array([3000.0, 0.0])}
    total, z, stats = combine(train, test, ("pose", "vel"))
    # each test frame is 3 train-sigmas out in one term: equal totals, whatever the raw scale
    assert total[0] == pytest.approx(total[1], rel=0.1)
    assert set(z) == {"pose", "vel"} and stats["vel"]["std"] > 500
    with pytest.raises(ValueError, match="classifier"):
        parse_terms("classifier,speed")
    assert parse_terms("vel, classifier") == ("classifier", "vel")


def test_terms_of_one_source_share_one_vote():
    z = {"app": np.array([2.0, 0.0]), "app_rec": np.array([0.0, 0.0]), "vel": np.array([0.0, 1.0])}
    np.testing.assert_allclose(sum_by_group(z, ("app", "app_rec", "vel")), [1.0, 1.0])  # appearance: mean of its two terms
    np.testing.assert_allclose(sum_by_group(z, ("app", "vel")), [2.0, 1.0])


def test_zscore_is_fitted_on_train_and_survives_constant_features():
    x = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    mean, std = zscore_fit(x)
    np.testing.assert_allclose(zscore(x, mean, std), [[-1.0, 0.0], [1.0, 0.0]])


def _split(f, n, seed=0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, n + 1, f)
    mask = np.arange(n)[None, :] >= counts[:, None]
    x = lambda: rng.normal(size=(f, n, 34)).astype(np.float32)  # noqa: E731
    return PaddedSplit(app=x(), pose=x(), vel=rng.random((f, n)).astype(np.float32), app_mask=mask, pose_mask=mask.copy(),
                       app_dist=rng.random((f, n)).astype(np.float32), pose_dist=rng.random((f, n)).astype(np.float32),
                       app_rec=rng.random((f, n)).astype(np.float32))


def test_pooled_head_is_permutation_invariant_and_ignores_padded_rows():
    torch.manual_seed(0)
    model = AttentionFusion(n_max=5, head="pool").eval()
    split = _split(6, 5)
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
    split = _split(6, 5)
    full = PaddedSplit(**{**vars(split), "app_mask": np.zeros_like(split.app_mask), "pose_mask": np.zeros_like(split.app_mask)})
    perm = np.array([4, 2, 0, 3, 1])
    shuffled = PaddedSplit(**{k: None if v is None else v[:, perm] for k, v in vars(full).items()})
    assert not np.allclose(frame_logits(model, full, torch.device("cpu")), frame_logits(model, shuffled, torch.device("cpu")), atol=1e-4)
    with pytest.raises(ValueError):
        AttentionFusion(n_max=5, head="mean")


def test_memory_terms_are_frame_maxima_over_real_rows():
    split = _split(4, 3, seed=1)
    t = memory_terms(split)
    assert set(t) == {"app", "app_rec", "pose", "vel"}
    for name, values, mask in (("app", split.app_dist, split.app_mask), ("app_rec", split.app_rec, split.app_mask),
                               ("pose", split.pose_dist, split.pose_mask), ("vel", split.vel, split.app_mask)):
        np.testing.assert_allclose(t[name], [v[~m].max() for v, m in zip(values, mask)], rtol=1e-6)
