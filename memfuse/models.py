"""Every model of the method, defined once: the appearance autoencoder, the memory with its
read and three losses, and the cross-modal attention fusion classifier. The plain maths only:
the CPU speed tricks of the fusion training (the same maths, faster) live in :mod:`memfuse.fast`.

Shapes use B for a batch of queries, M for memory items, D = 34 for the shared feature
width (the pose width), F for frames and N for the padded number of objects per frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

FEATURE_DIM = 34  # pose width; appearance is compressed to it so modalities can be fused
APPEARANCE_DIM = 512
AE_HIDDEN = (256, 128)  # encoder 512 -> 256 -> 128 -> 34, decoder mirrored
FUSION_HIDDEN = 256
DROPOUT = 0.5
CLASSIFIER_BIAS_INIT = 0.01
MASK_FILL = -1e9  # added to padded keys' scores: exp() underflows to exactly 0 weight
# k: the memory's compactness loss mixes its k nearest items; pseudo-features read ranks 1..k and k+1..2k
TOP_K = 5
HEADS = ("flatten", "pool")  # classifier heads of AttentionFusion: the paper's, and a permutation-invariant one


# --------------------------------------------------------------------------------------
# Stage 1: appearance autoencoder
# --------------------------------------------------------------------------------------
class AutoEncoder(nn.Module):
    """512 -> 256 -> 128 -> 34 encoder (ReLU after the first two layers, linear code) and
    the mirrored 34 -> 128 -> 256 -> 512 decoder."""

    def __init__(self, in_dim: int = APPEARANCE_DIM, code_dim: int = FEATURE_DIM, hidden: tuple[int, int] = AE_HIDDEN):
        super().__init__()
        h1, h2 = hidden
        self.encoder = nn.Sequential(
            nn.Linear(in_dim, h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU(), nn.Linear(h2, code_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(code_dim, h2), nn.ReLU(), nn.Linear(h2, h1), nn.ReLU(), nn.Linear(h1, in_dim)
        )

    def encode(self, x: Tensor) -> Tensor:
        """(B, 512) -> (B, 34)."""
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 512) -> reconstruction (B, 512)."""
        return self.decoder(self.encoder(x))


# --------------------------------------------------------------------------------------
# Stages 3-4: memory
# --------------------------------------------------------------------------------------
class Memory(nn.Module):
    """M learnable prototype items (M, D) read by softmax attention, as in MNAD.

    ``weights(q) = softmax(q P^T)`` over the memory axis; ``read(q) = weights(q) P``.
    """

    def __init__(self, items: Tensor, top_k: int = TOP_K):
        super().__init__()
        self.items = nn.Parameter(items.detach().clone().float())
        self.top_k = top_k

    def weights(self, q: Tensor) -> Tensor:
        """(B, D) -> (B, M) addressing weights, each row sums to 1."""
        return torch.softmax(q @ self.items.T, dim=1)

    def read(self, q: Tensor) -> Tensor:
        """(B, D) -> (B, D) memory reconstruction ``softmax(q P^T) P``."""
        return self.weights(q) @ self.items

    def losses(self, q: Tensor, margin: float = 1.0) -> dict[str, Tensor]:
        """The three training losses on a batch of queries (B, D).

        - ``rec``: MSE(q, read(q)).
        - ``gather`` (compactness): the k largest weights are re-normalised by a softmax
          and weight their k items; MSE between that mixture and q.
        - ``spread`` (separateness): triplet margin loss, anchor q, positive the rank-1
          item, negative the rank-(k+1) item.
        """
        logits = q @ self.items.T
        w = torch.softmax(logits, dim=1)
        rec = F_.mse_loss(w @ self.items, q)
        # Rank by the logits, not by W: same order, but W underflows to exact ties at 0 when
        # features have large norms (raw pose), and ties would make the ranks arbitrary.
        top_i = torch.topk(logits, self.top_k + 1, dim=1).indices  # (B, k+1), ranks 1..k+1
        top_w = w.gather(1, top_i)
        a = torch.softmax(top_w[:, : self.top_k], dim=1)  # softmax of the k probabilities
        # index_select, not items[top_i]: the same rows, but the backward of advanced indexing
        # adds into shared item rows in an order that varies between runs on several CPU threads
        picked = self.items.index_select(0, top_i.flatten()).view(*top_i.shape, -1)  # (B, k+1, D)
        gathered = torch.einsum("bk,bkd->bd", a, picked[:, : self.top_k])
        gather = F_.mse_loss(gathered, q)
        spread = F_.triplet_margin_loss(q, picked[:, 0], picked[:, self.top_k], margin=margin, p=2)
        return {"gather": gather, "spread": spread, "rec": rec}


# --------------------------------------------------------------------------------------
# Stage 6: cross-modal attention fusion
# --------------------------------------------------------------------------------------
def masked_softmax(scores: Tensor, key_padded: Tensor | None) -> Tensor:
    """Softmax over the last (key) axis of (F, N, N) scores; ``key_padded`` (F, N) True
    where the key is padding. Padded keys get exactly zero weight. ``None`` = no mask."""
    if key_padded is not None:
        scores = scores.masked_fill(key_padded[:, None, :], MASK_FILL)
    return torch.softmax(scores, dim=-1)


class AttentionFusion(nn.Module):
    """Cross-modal attention over three modalities and an MLP classifier.

    Modalities 1 = appearance, 2 = pose, 3 = velocity, each (F, N, D) after padding.
    ``f_m' = Dropout(ReLU(Linear_m(f_m)))``; ``q_m, k_m, v_m`` are bias-free D x D maps:

    - ``u1 = softmax(q2 k1^T + q3 k1^T) v1``
    - ``u2 = softmax(q1 k2^T + q3 k2^T) v2`` (``u2_key="k3"``: the reference's ``q1 k3^T``)
    - ``u3 = softmax(q1 k3^T + q2 k3^T) v3``

    ``x = [u1, u2, u3, f1', f2', f3']`` (F, N, 6D) goes to the classifier head:

    - ``head="flatten"`` (the paper): x flattened to (F, 6 D N), then
      Linear(6 D N -> 256) -> ReLU -> Dropout -> Linear(256 -> 1). Each of the N slots has
      its own weights, so the (arbitrary) object order matters and rarely filled slots are
      judged by barely trained weights.
    - ``head="pool"``: the same MLP, Linear(6 D -> 256) -> ReLU -> Dropout -> Linear(256 -> 1),
      shared by every row, giving one logit per object row (F, N); the frame logit is the
      max over rows that are real in either modality. Permutation-invariant, and an
      object's logit is its own anomaly score.

    The forward returns frame logits (F,); ``sigmoid`` gives the anomaly score.
    """

    def __init__(
        self,
        n_max: int,
        dim: int = FEATURE_DIM,
        hidden: int = FUSION_HIDDEN,
        dropout: float = DROPOUT,
        u2_key: str = "k2",
        head: str = "flatten",
    ):
        super().__init__()
        if u2_key not in ("k2", "k3"):
            raise ValueError(f"u2_key must be 'k2' or 'k3', got {u2_key!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.n_max, self.dim, self.u2_key, self.head = n_max, dim, u2_key, head
        self.align = nn.ModuleList(nn.Linear(dim, dim) for _ in range(3))
        # Separate q, k, v maps: on CPU three (rows, 34) x (34, 34) matmuls run faster than
        # one x (34, 102), and their backward needs no concatenation of gradients.
        self.query, self.key, self.value = (
            nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(3)) for _ in range(3)
        )
        self.dropout = nn.Dropout(dropout)
        head_in = 6 * dim * (n_max if head == "flatten" else 1)
        self.classifier = nn.Sequential(
            nn.Linear(head_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        for layer in [*self.align, self.classifier[0], self.classifier[3]]:
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
        for layer in (self.classifier[0], self.classifier[3]):
            nn.init.constant_(layer.bias, CLASSIFIER_BIAS_INIT)

    def attend(self, feats: list[Tensor], padded: list[Tensor] | None) -> list[Tensor]:
        """Aligned features [f1', f2', f3'] (each (F, N, D)) -> [u1, u2, u3]; ``padded``
        holds the (F, N) padding mask of each modality (``None``: no masking)."""
        q = [lin(f) for lin, f in zip(self.query, feats)]
        kt = [lin(f).transpose(1, 2) for lin, f in zip(self.key, feats)]
        v = [lin(f) for lin, f in zip(self.value, feats)]
        m = padded if padded is not None else [None, None, None]
        # q_a k^T + q_b k^T computed as (q_a + q_b) k^T: the same scores, one matmul fewer
        u1 = masked_softmax((q[1] + q[2]) @ kt[0], m[0]) @ v[0]
        if self.u2_key == "k2":
            u2 = masked_softmax((q[0] + q[2]) @ kt[1], m[1]) @ v[1]
        else:  # reference: keys of two modalities in one score; a key is padded if either is
            u2_mask = None if padded is None else m[1] | m[2]
            u2 = masked_softmax(q[0] @ kt[2] + q[2] @ kt[1], u2_mask) @ v[1]
        u3 = masked_softmax((q[0] + q[1]) @ kt[2], m[2]) @ v[2]
        return [u1, u2, u3]

    def align_velocity(self, vel: Tensor) -> Tensor:
        """Linear_3 of per-object velocity (F, N), the scalar repeated over D columns:
        ``W (v 1) + b = v (W 1) + b``, an outer product instead of a matmul over a D-times
        expanded copy. Returns (F, N, D) before ReLU."""
        lin = self.align[2]
        return torch.addcmul(lin.bias, vel.unsqueeze(-1), lin.weight.sum(dim=1))

    def row_logits(self, app: Tensor, pose: Tensor, vel: Tensor, padded: list[Tensor] | None = None) -> Tensor:
        """``head="pool"`` only: one logit per object row, (F, N) (padded rows included)."""
        if self.head != "pool":
            raise ValueError("row logits exist only for head='pool'")
        return self.classifier(self.fused(app, pose, vel, padded)).squeeze(-1)

    def fused(self, app: Tensor, pose: Tensor, vel: Tensor, padded: list[Tensor] | None = None) -> Tensor:
        """The classifier's input x = [u1, u2, u3, f1', f2', f3'], (F, N, 6D)."""
        aligned = [
            self.align[0](app),
            self.align[1](pose),
            self.align_velocity(vel) if vel.dim() == 2 else self.align[2](vel),
        ]
        feats = [self.dropout(torch.relu(a)) for a in aligned]
        return torch.cat(self.attend(feats, padded) + feats, dim=-1)

    def forward(
        self, app: Tensor, pose: Tensor, vel: Tensor, padded: list[Tensor] | None = None, rows: Tensor | None = None
    ) -> Tensor:
        """app, pose, vel: (F, N, D) (``vel`` may be (F, N): one value per object, repeated
        over D columns as AI-VAD's 1-bin velocity is); ``padded``: [app_mask, pose_mask,
        vel_mask], each (F, N) bool, True = padding, for the attention (``None``: no
        masking). ``rows`` (F, N) bool, True = a real row, limits the pooled head's max
        (default: every row). Returns frame logits (F,)."""
        x = self.fused(app, pose, vel, padded)
        if self.head == "flatten":
            return self.classifier(x.flatten(1)).squeeze(-1)
        logits = self.classifier(x).squeeze(-1)  # (F, N)
        if rows is not None:
            logits = logits.masked_fill(~rows, float("-inf"))
        return logits.amax(dim=1)
