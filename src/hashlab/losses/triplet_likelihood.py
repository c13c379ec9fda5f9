"""Triplet likelihood loss of DTSH (Wang, Shi & Kitani, "Deep Supervised Hashing with Triplet
Labels", ACCV 2016).

With Theta_ij = <u_i, u_j> / 2, the probability that a triplet (q, p, n) (q similar to p,
dissimilar to n) is right is sigma(Theta_qp - Theta_qn - alpha), alpha a margin; the loss is
its negative log-likelihood, softplus(-(Theta_qp - Theta_qn - alpha)), plus the quantisation
term lambda ||b_i - u_i||^2 (that one is
:func:`hashlab.losses.quantization.sign_quantization_loss`).

:func:`batch_triplet_likelihood_loss` forms every valid triplet of a batch (q != p,
s_qp = 1, s_qn = 0) and averages over them (the authors' code samples 50 x 50 triplets per
class pair and image from the whole training set; DeepHash-pytorch uses all in-batch ones,
as here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

__all__ = ["triplet_likelihood", "batch_triplet_likelihood_loss"]


def triplet_likelihood(theta_positive: torch.Tensor, theta_negative: torch.Tensor,
                       margin: float) -> torch.Tensor:  # fmt: skip
    """Elementwise DTSH negative log-likelihood -log sigma(Theta_qp - Theta_qn - alpha)."""
    return functional.softplus(-(theta_positive - theta_negative - margin))


def batch_triplet_likelihood_loss(
    u: torch.Tensor, s: torch.Tensor, margin: float, alpha: float = 0.5
) -> torch.Tensor:
    """Mean DTSH loss over all triplets of a batch; ``s`` the (N, N) 0/1 similarity.

    ``alpha`` scales Theta = alpha <u_i, u_j> (1/2 in the paper). Returns 0 (with a gradient
    path) when the batch holds no valid triplet.
    """
    theta = alpha * (u @ u.T)
    s = s.to(u.dtype)
    positive = s * (1.0 - torch.eye(len(u), device=u.device, dtype=u.dtype))
    valid = positive[:, :, None] * (1.0 - s)[:, None, :]  # [q, p, n]
    n_valid = valid.sum()
    if n_valid == 0:
        return u.sum() * 0.0
    loss = triplet_likelihood(theta[:, :, None], theta[:, None, :], margin)
    return (loss * valid).sum() / n_valid
