"""Soft pairwise similarity loss of IDHN (Zhang, Zou, Lin, Chen & Wang, "Improved Deep Hashing
with Soft Pairwise Similarity for Multi-label Image Retrieval", IEEE TMM 2019), in the form of
the authors' TensorFlow code (pectinid16/IDHN, ``hashing_loss``).

* :func:`cosine_label_similarity`: s_ij = <y_i, y_j> / (||y_i|| ||y_j||), the fraction of
  shared labels in [0, 1]; 1 or 0 for single-label data.
* :func:`soft_pairwise_loss`: pairs are *hard* when s_ij is (nearly) 0 or 1 and *soft*
  otherwise. Hard pairs: the pairwise negative log-likelihood softplus(Theta) - s Theta with
  Theta = beta <u_i, u_j> / K; soft pairs: gamma K ((<u_i, u_j> + K) / (2K) - s_ij)^2, the
  normalised inner product asked to equal the label overlap; averaged over all pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

__all__ = ["cosine_label_similarity", "soft_pairwise_loss"]


def cosine_label_similarity(labels_a: torch.Tensor, labels_b: torch.Tensor) -> torch.Tensor:
    """(N, M) cosine of multi-hot label vectors; an item with no label has similarity 0."""
    a, b = labels_a.float(), labels_b.float()
    norms = a.norm(dim=1, keepdim=True) @ b.norm(dim=1, keepdim=True).T
    return (a @ b.T) / norms.clamp(min=1e-12)


def soft_pairwise_loss(
    u: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    beta: float = 5.0,
    soft_weight: float = 0.1,
    hard_tolerance: float = 0.01,
) -> torch.Tensor:
    """IDHN's pair loss over N x M pairs; a pair is hard when s < tol or s > 1 - tol."""
    n_bits = u.shape[1]
    s = s.to(u.dtype)
    inner = u @ v.T
    theta = beta * inner / n_bits
    hard = ((s < hard_tolerance) | (s > 1.0 - hard_tolerance)).to(u.dtype)
    likelihood = functional.softplus(theta) - s * theta
    squared = n_bits * ((inner + n_bits) / (2.0 * n_bits) - s) ** 2
    return (hard * likelihood + soft_weight * (1.0 - hard) * squared).mean()
