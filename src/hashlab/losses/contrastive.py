"""Deep Supervised Hashing's contrastive loss (DSH: Liu, Wang, Shan & Chen, CVPR 2016).

For a pair of real-valued network outputs b_1, b_2 with s = 1 when similar (Eq. 4-5):

    L = 1/2 * s * ||b_1 - b_2||^2 + 1/2 * (1 - s) * max(m - ||b_1 - b_2||^2, 0)
        + alpha * (|| |b_1| - 1 ||_1 + || |b_2| - 1 ||_1)

with margin m = 2K (the paper's choice for K bits) and alpha = 0.01. The last term is the
regulariser that pulls every output towards +-1 so that sign() loses little. Over a batch we
take every ordered pair (u_i, v_j): the pair terms are averaged over pairs, the regulariser
(:func:`plus_minus_one_regularizer`) over items, applied once to each side.
"""

from __future__ import annotations

import torch

__all__ = ["contrastive_hashing_loss", "plus_minus_one_regularizer", "squared_distances"]


def squared_distances(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N, M) squared Euclidean distances ||u_i - v_j||^2.

    Expanded as ||u||^2 + ||v||^2 - 2 <u, v> (an (N, M, K) difference tensor is much slower),
    clamped at 0 against rounding.
    """
    squared = (u * u).sum(dim=1)[:, None] + (v * v).sum(dim=1)[None, :] - 2.0 * (u @ v.T)
    return squared.clamp_min(0.0)


def plus_minus_one_regularizer(u: torch.Tensor) -> torch.Tensor:
    """Mean over items of || |u_i| - 1 ||_1 (DSH Eq. 5's regulariser, without alpha)."""
    return (u.abs() - 1.0).abs().sum(dim=1).mean()


def contrastive_hashing_loss(
    u: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    margin: float,
    alpha: float = 0.01,
) -> torch.Tensor:
    """DSH Eq. 5 over all pairs (u_i, v_j): mean pair term + alpha * (reg(u) + reg(v))."""
    s = s.float()
    d = squared_distances(u, v)
    pair = 0.5 * s * d + 0.5 * (1.0 - s) * torch.clamp(margin - d, min=0.0)
    regularizer = plus_minus_one_regularizer(u) + plus_minus_one_regularizer(v)
    return pair.mean() + alpha * regularizer
