"""Pairwise likelihood losses over label similarity (DPSH, DHN, HashNet).

All functions are pure: relaxed codes ``u`` (N, K) and ``v`` (M, K), a similarity matrix
``s`` (N, M) of 0/1 (1 = the two items share a label) and optional pair weights in, a scalar
tensor out. Pair terms are averaged over the N x M pairs (the papers sum; a mean keeps the
weight of the other loss terms independent of the batch size, and we state it).

* Pairwise likelihood (DPSH: Li, Wang & Kang, IJCAI 2016, Eq. 2-4; DHN: Zhu, Long, Wang &
  Cao, AAAI 2016, Eq. 3-5): with Theta_ij = alpha * <u_i, v_j> (both papers: alpha = 1/2),
  p(s_ij | u, v) = sigma(Theta_ij)^s_ij (1 - sigma(Theta_ij))^(1 - s_ij), and the negative
  log-likelihood per pair is  log(1 + exp(Theta_ij)) - s_ij * Theta_ij.
  :func:`pairwise_likelihood_loss`.
* Weighted pairwise cross-entropy (HashNet: Cao, Long, Wang & Yu, ICCV 2017, Eq. 4-5): the
  same likelihood with alpha the "adaptive sigmoid" scale and each pair weighted by
  w_ij (Eq. 5, :func:`class_balance_weights`) so that the rare similar pairs count as much as
  the many dissimilar ones. :func:`weighted_pairwise_cross_entropy`.

``log(1 + exp(x))`` is computed as ``softplus`` so large inner products do not overflow
(HashNet's code replaces it by a linear function above a threshold for the same reason).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional

__all__ = [
    "label_similarity",
    "class_balance_weights",
    "pairwise_likelihood_loss",
    "weighted_pairwise_cross_entropy",
]


def label_similarity(labels_a: Any, labels_b: Any = None) -> Any:
    """Similarity of two label matrices (N, C), (M, C): items that share at least one label.

    The one definition of label relevance in hashlab. Single-label data enters as one-hot
    rows, multi-label as multi-hot rows; ``labels_b`` defaults to ``labels_a``. Tensors give a
    0/1 float tensor (what the losses multiply with), numpy arrays a bool array.
    """
    labels_b = labels_a if labels_b is None else labels_b
    if isinstance(labels_a, torch.Tensor):
        return (labels_a.float() @ labels_b.float().T > 0).float()
    return (np.asarray(labels_a, np.float32) @ np.asarray(labels_b, np.float32).T) > 0


def class_balance_weights(s: torch.Tensor) -> torch.Tensor:
    """HashNet Eq. 5 / DCH Eq. 4: w_ij = |S| / |S_1| for similar, |S| / |S_0| for dissimilar.

    |S| is the number of pairs, |S_1| (|S_0|) the number of similar (dissimilar) ones. When a
    batch has no pair of one kind, the other kind gets weight 1 (nothing to balance).
    """
    s = s if s.is_floating_point() else s.float()
    total = float(s.numel())
    n_similar = s.sum()
    n_dissimilar = total - n_similar
    w_similar = total / n_similar if n_similar > 0 else torch.ones((), device=s.device)
    w_dissimilar = total / n_dissimilar if n_dissimilar > 0 else torch.ones((), device=s.device)
    return s * w_similar + (1.0 - s) * w_dissimilar


def pairwise_likelihood_loss(
    u: torch.Tensor, v: torch.Tensor, s: torch.Tensor, alpha: float = 0.5
) -> torch.Tensor:
    """Mean negative log-likelihood of ``s`` under sigma(alpha * <u_i, v_j>) (DPSH/DHN Eq. 3)."""
    theta = alpha * (u @ v.T)
    return (functional.softplus(theta) - s.float() * theta).mean()


def weighted_pairwise_cross_entropy(
    u: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    alpha: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """HashNet Eq. 4: mean of w_ij (log(1 + exp(alpha <u_i,v_j>)) - alpha s_ij <u_i,v_j>).

    ``weights=None`` uses :func:`class_balance_weights` of ``s``.
    """
    if weights is None:
        weights = class_balance_weights(s)
    theta = alpha * (u @ v.T)
    return (weights * (functional.softplus(theta) - s.float() * theta)).mean()
