"""CIBHash's losses (Qiu, Su, Li & Hao, IJCAI 2021, "Unsupervised Hashing with Contrastive
Information Bottleneck"), as the authors' code computes them.

* :func:`stochastic_binary`: b = sgn(p - u), u ~ U(0, 1): a sample of Bernoulli(p) in +-1,
  with the straight-through gradient (db/dp := 1), so that the codes of a view are random
  during training and the encoder learns through them;
* :func:`nt_xent`: the contrastive (NT-Xent, SimCLR) loss over 2B codes of two views: for
  each code, cross-entropy of picking its other view among the other 2B - 1 codes by cosine
  similarity / temperature, averaged over the 2B codes;
* :func:`bernoulli_kl`: mean over items of sum_k KL(Bernoulli(p_k) || Bernoulli(q_k)), q held
  constant (the authors' ``compute_kl`` with the other view's probabilities detached); the
  information bottleneck term is its symmetric mean over the two views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

from hashlab.losses.similarity_preserving import straight_through_sign

__all__ = ["bernoulli_kl", "nt_xent", "stochastic_binary"]

_EPS = 1e-8  # as the authors' code, inside the logarithms


def stochastic_binary(p: torch.Tensor) -> torch.Tensor:
    """+-1 samples of Bernoulli(p) (P[+1] = p), straight-through to p."""
    return straight_through_sign(p - torch.rand_like(p))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over the 2B codes [z1; z2]: the positive of z1_i is z2_i and vice versa."""
    n = z1.shape[0]
    z = functional.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return functional.cross_entropy(logits, targets)


def bernoulli_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """mean_n sum_k KL(Bern(p_nk) || Bern(q_nk)), gradients through p only."""
    q = q.detach()
    kl = p * (torch.log(p + _EPS) - torch.log(q + _EPS)) + (1 - p) * (
        torch.log(1 - p + _EPS) - torch.log(1 - q + _EPS)
    )
    return kl.sum(dim=1).mean()
