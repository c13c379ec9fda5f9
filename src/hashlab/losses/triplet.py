"""Triplet ranking loss of DNNH (Lai, Pan, Liu & Yan, "Simultaneous Feature Learning and
Hash Coding with Deep Neural Networks", CVPR 2015, Eq. 2-3).

For a query q, a similar item q+ and a dissimilar item q- with relaxed codes in [0, 1]^K:

    l(q, q+, q-) = max(0, margin - (||F(q) - F(q-)||^2 - ||F(q) - F(q+)||^2)),  margin = 1.

:func:`triplet_ranking_loss` takes explicit triplets; :func:`batch_triplet_ranking_loss`
forms every valid triplet (a, p, n) of a batch (a != p, s_ap = 1, s_an = 0) and averages
over them, which is how the triplets are mined here (the paper samples them offline).
"""

from __future__ import annotations

import torch

from hashlab.losses.contrastive import squared_distances

__all__ = ["triplet_ranking_loss", "batch_triplet_ranking_loss"]


def triplet_ranking_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """DNNH Eq. 3 averaged over the rows of three (T, K) tensors."""
    d_positive = ((anchor - positive) ** 2).sum(dim=1)
    d_negative = ((anchor - negative) ** 2).sum(dim=1)
    return torch.clamp(margin - (d_negative - d_positive), min=0.0).mean()


def batch_triplet_ranking_loss(
    u: torch.Tensor, s: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """Mean DNNH loss over all triplets of one batch; ``s`` is the (N, N) 0/1 similarity.

    Returns 0 (with a gradient path) when the batch holds no valid triplet.
    """
    d = squared_distances(u, u)  # (N, N)
    s = s.float()
    positive = s * (1.0 - torch.eye(len(u), device=u.device, dtype=s.dtype))
    negative = 1.0 - s
    # loss[a, p, n] = max(0, margin - d[a, n] + d[a, p])
    loss = torch.clamp(margin - d[:, None, :] + d[:, :, None], min=0.0)
    valid = positive[:, :, None] * negative[:, None, :]
    n_valid = valid.sum()
    if n_valid == 0:
        return u.sum() * 0.0
    return (loss * valid).sum() / n_valid
