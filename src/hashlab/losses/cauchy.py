"""Deep Cauchy Hashing losses (DCH: Cao, Long, Liu & Wang, CVPR 2018), as used by PC-AEGAN.

Formulas (numbers of the DCH paper; PC-AEGAN's in ``shared/specs/pc_aegan.md``):

* distance (Eq. 6 / PC-AEGAN Eq. 13): d(h_i, h_j) = (K / 2) * (1 - cos(h_i, h_j)), which
  equals the Hamming distance when h_i, h_j are +-1 codes; :func:`cauchy_distance`.
* Cauchy probability (Eq. 5 / PC-AEGAN Eq. 1): sigma(d) = gamma / (gamma + d).
* Cauchy cross-entropy (Eq. 7 / PC-AEGAN Eq. 15): the negative log-likelihood of s_ij,
  w_ij * (s_ij * log(d_ij / gamma) + log(1 + gamma / d_ij)), which simplifies to
  w_ij * (s_ij * log(1 + d_ij / gamma) + (1 - s_ij) * log(1 + gamma / d_ij)); the second
  form is what we compute (same value, no log of a tiny d for similar pairs).
  A small ``eps`` is added to d for identical codes of dissimilar pairs.
  Averaged over pairs; w_ij are the class-balance weights of Eq. 4
  (:func:`hashlab.losses.pairwise.class_balance_weights`).
* Cauchy quantisation (Eq. 8 / PC-AEGAN Eq. 16): log(1 + d(|h_i|, 1) / gamma), the same
  distance between |h_i| and the all-ones vector; averaged over items.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

from hashlab.losses.pairwise import class_balance_weights

__all__ = [
    "cauchy_distance",
    "cauchy_cross_entropy",
    "cauchy_quantization",
    "class_balance_weights",
]

_COSINE_EPS = 1e-8


def cauchy_distance(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N, M) normalised distance (K / 2)(1 - cos(u_i, v_j)) of DCH Eq. 6."""
    n_bits = u.shape[1]
    cosine = (
        functional.normalize(u, dim=1, eps=_COSINE_EPS)
        @ functional.normalize(v, dim=1, eps=_COSINE_EPS).T
    )
    return 0.5 * n_bits * (1.0 - cosine)


def cauchy_cross_entropy(
    u: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    gamma: float,
    weights: torch.Tensor | None = None,
    eps: float = 1e-5,
) -> torch.Tensor:
    """DCH Eq. 7: mean over pairs of w_ij (s log(1 + d/gamma) + (1 - s) log(1 + gamma/d)).

    ``weights=None`` uses the class-balance weights of Eq. 4.
    """
    if weights is None:
        weights = class_balance_weights(s)
    s = s.to(u.dtype)
    # clamp: rounding can make 1 - cos slightly negative for identical vectors
    d = cauchy_distance(u, v).clamp_min(0.0)
    nll = s * torch.log1p(d / gamma) + (1.0 - s) * torch.log1p(gamma / (d + eps))
    return (weights * nll).mean()


def cauchy_quantization(u: torch.Tensor, gamma: float) -> torch.Tensor:
    """DCH Eq. 8: mean over items of log(1 + d(|u_i|, 1) / gamma)."""
    ones = torch.ones(1, u.shape[1], dtype=u.dtype, device=u.device)
    d = cauchy_distance(u.abs(), ones).squeeze(1).clamp_min(0.0)
    return torch.log1p(d / gamma).mean()
