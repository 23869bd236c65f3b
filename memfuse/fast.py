"""The CPU fast path of the fusion training (stage 6): two tricks that change its speed, not
its maths. :func:`memfuse.fusion.train_fusion` uses both with ``fast_path=True`` (the
default); :mod:`memfuse.models` holds the plain maths they stand in for.

- **Bit-mask dropout** (:class:`BitMaskDropout`, :func:`use_fast_dropout`). torch's CPU
  dropout draws one random number per element; for p = 0.5 (the paper's) this one builds
  the keep mask from random bits instead, one random byte per 8 elements. The same
  distribution: the 8 bits of a uniform random byte are independent fair coins, so each
  element is kept independently with probability 1/2 and a kept one is scaled by
  1 / (1 - p) = 2, exactly as ``nn.Dropout(0.5)`` does. Only the draws differ: a seed gives
  other masks than torch's, not other statistics. Any other p, any other device and eval
  mode behave exactly as ``nn.Dropout``.
- **Row trimming** (:func:`real_row_counts`, :func:`trimmed_pieces`). The frames of one
  optimiser step are sorted by the number of rows they fill and cut into pieces, and each
  piece is cut to the rows its frames fill, so little work is spent on padding. The same
  update: the gradients of the pieces are summed before the step, so how a step is cut
  does not change it, and a row that is padding in every modality changes no real row's
  logit when padded keys are masked and the head pools over real rows only (it takes no
  attention weight and no part in the max). Valid for the pooled head with masked
  attention only: the flatten head has weights for every slot, and unmasked attention
  weighs padded keys. With dropout on, the pieces hold other frames than untrimmed ones,
  so the dropout masks fall in another order (the same distribution, other draws).

Shapes use F for frames and B for the frames of one step. Measurements live in docs/
(paper-recipe.md: the dropout's cost; results.md: the AUC with and without the fast path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F_
from torch import Tensor, nn

if TYPE_CHECKING:
    from .fusion import PaddedSplit

_BIT_SHIFTS = torch.arange(8, dtype=torch.uint8)


# --------------------------------------------------------------------------------------
# Bit-mask dropout
# --------------------------------------------------------------------------------------
def bit_mask_dropout(x: Tensor, p: float, training: bool, inplace: bool = False) -> Tensor:
    """``F.dropout(x, p, training, inplace)`` for a tensor x of any shape, returning its
    shape; on CPU with p = 0.5 the keep mask is made from random bits, one random byte (from
    torch's global generator) per 8 elements, and x is not modified. Not training or p = 0:
    x itself."""
    if not training or p == 0.0:
        return x
    if p != 0.5 or x.device.type != "cpu":
        return F_.dropout(x, p, True, inplace)
    n = x.numel()
    random_bytes = torch.randint(0, 256, ((n + 7) // 8, 1), dtype=torch.uint8)
    keep = ((random_bytes >> _BIT_SHIFTS) & 1).view(-1)[:n].view_as(x)
    return x * keep.to(x.dtype).mul_(2.0)


class BitMaskDropout(nn.Dropout):
    """``nn.Dropout`` through :func:`bit_mask_dropout`: random bits for p = 0.5 on CPU,
    torch's dropout otherwise. Same parameters (none) and state_dict as ``nn.Dropout``."""

    def forward(self, x: Tensor) -> Tensor:
        """x of any shape -> the same shape."""
        return bit_mask_dropout(x, self.p, self.training, self.inplace)


def use_fast_dropout(model: nn.Module) -> nn.Module:
    """Replace, in place, every submodule of ``model`` that is exactly an ``nn.Dropout`` by
    a :class:`BitMaskDropout` with the same p, ``inplace`` and training mode; returns
    ``model``. Idempotent; parameters, state_dict and module order are unchanged."""
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Dropout
    ]
    for parent, name, child in swaps:
        fast = BitMaskDropout(child.p, child.inplace)
        fast.train(child.training)
        setattr(parent, name, fast)
    return model


# --------------------------------------------------------------------------------------
# Row trimming
# --------------------------------------------------------------------------------------
def real_row_counts(split: PaddedSplit) -> np.ndarray:
    """(F,) the number of leading rows of each frame that hold an object or a person:
    padding.py puts a frame's objects first, so every row past this count is padding in
    every modality."""
    real = ~(np.asarray(split.app_mask) & np.asarray(split.pose_mask))
    last = real.shape[1] - np.argmax(real[:, ::-1], axis=1)  # one past the last real row
    return np.where(real.any(axis=1), last, 0)


def trimmed_pieces(idx: np.ndarray, micro: int, counts: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The row trimming of :func:`memfuse.fusion.train_fusion`: the frames ``idx`` (B,) of
    one optimiser step, sorted by their real-row ``counts`` ((F,), from
    :func:`real_row_counts`) and cut into pieces of ``micro`` frames, each with the number
    of rows it needs (its largest count, at least 1).

    Gradients of the pieces are summed before the step, so how the step is cut does not
    change the update. Dropping rows that are padding in every modality changes no real
    row's logit when padded keys are masked and the head pools over real rows only: they
    take no attention weight and no part in the max."""
    order = idx[np.argsort(counts[idx], kind="stable")]
    return [
        (order[s : s + micro], max(1, int(counts[order[s : s + micro]].max()))) for s in range(0, len(order), micro)
    ]
