"""HashGAN's cosine losses (Cao, Lin, Long & Wang, CVPR 2018), PC-AEGAN's baseline (PC-WGAN).

* cosine cross-entropy: the weighted pairwise cross-entropy of HashNet with the inner product
  replaced by alpha * cos(h_i, h_j), i.e. mean of
  w_ij (log(1 + exp(alpha cos_ij)) - alpha s_ij cos_ij), w_ij the class-balance weights;
  :func:`cosine_cross_entropy` (cos lies in [-1, 1], so alpha sets how sharp the sigmoid is).
* cosine quantisation: mean over items of 1 - cos(|h_i|, 1); :func:`cosine_quantization`.

Both reuse the pieces of ``pairwise`` and ``cauchy``: cos(u, v) is the inner product of the
unit vectors, and 1 - cos(|h|, 1) is (2 / K) times the DCH distance of |h| to the ones vector.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

from hashlab.losses.cauchy import cauchy_distance
from hashlab.losses.pairwise import weighted_pairwise_cross_entropy

__all__ = ["cosine_cross_entropy", "cosine_quantization"]

_EPS = 1e-8


def cosine_cross_entropy(
    u: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    alpha: float = 10.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of w_ij (log(1 + exp(alpha cos(u_i, v_j))) - alpha s_ij cos(u_i, v_j))."""
    return weighted_pairwise_cross_entropy(
        functional.normalize(u, dim=1, eps=_EPS),
        functional.normalize(v, dim=1, eps=_EPS),
        s,
        alpha,
        weights,
    )


def cosine_quantization(u: torch.Tensor) -> torch.Tensor:
    """Mean over items of 1 - cos(|u_i|, 1)."""
    ones = torch.ones(1, u.shape[1], dtype=u.dtype, device=u.device)
    return (2.0 / u.shape[1] * cauchy_distance(u.abs(), ones)).mean()
