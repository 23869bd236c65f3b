"""memfuse.fast: the CPU fast path's bit-mask dropout, the swap into a model, and the row trimming.
(Training with and without it is tested in test_fusion.py.)"""

import numpy as np
import torch

from memfuse.fast import BitMaskDropout, bit_mask_dropout, real_row_counts, trimmed_pieces, use_fast_dropout
from memfuse.fusion import PaddedSplit
from memfuse.models import AttentionFusion


# ---------------------------------------------------------------- bit-mask dropout
def test_bit_mask_dropout_keeps_half_and_scales_by_two():
    torch.manual_seed(0)
    drop = BitMaskDropout(0.5)
    y = drop(torch.ones(333, 97))
    assert y.shape == (333, 97) and set(y.unique().tolist()) == {0.0, 2.0}
    assert abs((y == 0).float().mean().item() - 0.5) < 0.01
    # the 8 elements from one random byte are independent: neighbours both kept 1/4 of the time
    kept = (y != 0).flatten()[: 333 * 96].view(-1, 8).float()
    assert abs((kept[:, :-1] * kept[:, 1:]).mean().item() - 0.25) < 0.01
    torch.manual_seed(1)
    a = drop(torch.ones(50, 50))
    torch.manual_seed(1)
    assert torch.equal(a, drop(torch.ones(50, 50))), "the mask must follow torch's seed"


def test_bit_mask_dropout_is_the_identity_in_eval_and_at_p_zero():
    x = torch.randn(4, 5, 6)
    assert torch.equal(BitMaskDropout(0.5).eval()(x), x)
    assert torch.equal(BitMaskDropout(0.0)(x), x)
    assert bit_mask_dropout(x, 0.5, training=False) is x


def test_bit_mask_dropout_is_torch_dropout_for_other_p():
    x = torch.randn(40, 30)
    for p in (0.3, 0.9):
        torch.manual_seed(2)
        want = torch.nn.Dropout(p)(x)
        torch.manual_seed(2)
        assert torch.equal(BitMaskDropout(p)(x), want)


def test_use_fast_dropout_swaps_every_dropout_in_place():
    for head in ("flatten", "pool"):
        torch.manual_seed(0)
        model = AttentionFusion(n_max=5, head=head, dropout=0.5).eval()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        names = [n for n, _ in model.named_modules()]
        assert use_fast_dropout(model) is model
        drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
        assert [type(m) for m in drops] == [BitMaskDropout] * 2
        assert all(m.p == 0.5 and not m.training for m in drops)
        assert model.dropout is drops[0] and model.classifier[2] is drops[1]
        assert [n for n, _ in model.named_modules()] == names
        after = model.state_dict()
        assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
        assert use_fast_dropout(model).dropout is drops[0], "a second swap changes nothing"


def test_fast_model_in_eval_gives_the_plain_model_logits():
    torch.manual_seed(0)
    plain = AttentionFusion(n_max=5, head="pool").eval()
    fast = AttentionFusion(n_max=5, head="pool")
    fast.load_state_dict(plain.state_dict())
    use_fast_dropout(fast).eval()
    x = (torch.randn(3, 5, 34), torch.randn(3, 5, 34), torch.rand(3, 5))
    masks = [torch.tensor([[False] * 3 + [True] * 2] * 3)] * 3
    with torch.no_grad():
        assert torch.equal(plain(*x, masks), fast(*x, masks))


# ---------------------------------------------------------------- row trimming
def test_real_row_counts_count_rows_real_in_either_modality():
    app_mask = np.array([[False, True, True], [True, True, True], [False, False, False], [True, True, True]])
    pose_mask = np.array([[False, False, True], [True, True, True], [False, True, True], [False, True, True]])
    zeros = np.zeros((4, 3, 34), np.float32)
    split = PaddedSplit(zeros, zeros, np.zeros((4, 3), np.float32), app_mask, pose_mask)
    assert real_row_counts(split).tolist() == [2, 0, 3, 1]


def test_trimmed_pieces_cover_the_step_and_fit_their_frames():
    counts = np.array([3, 1, 4, 1, 5, 9, 2, 6, 0])
    idx = np.array([8, 0, 5, 2, 7, 1])
    pieces = trimmed_pieces(idx, 4, counts)
    assert sorted(np.concatenate([p for p, _ in pieces]).tolist()) == sorted(idx.tolist())
    assert [rows for _, rows in pieces] == [4, 9]  # counts sorted: 0 1 3 4 | 6 9
    assert all(counts[p].max(initial=1) <= rows for p, rows in pieces)
