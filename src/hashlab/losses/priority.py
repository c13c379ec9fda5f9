"""Priority losses of DPH (Cao, Sun, Long, Wang & Yu, "Deep Priority Hashing", ACM MM 2018).

Hard examples get priority, as in focal loss: a term whose probability of being right is q
is weighted by (1 - q)^gamma, so the pairs (and codes) the model already gets right count
little.

* :func:`priority_cross_entropy`: for a pair with Theta_ij = alpha <u_i, u_j>,
  q_ij = sigma(Theta_ij) if similar, 1 - sigma(Theta_ij) if not; the loss is
  w_ij (1 - q_ij)^gamma (-log q_ij), w_ij the class-balance weight (|S| / |S_1| for the
  similar pairs, |S| / |S_0| for the dissimilar, :func:`hashlab.losses.pairwise.
  class_balance_weights`), averaged over pairs.
* :func:`priority_quantization_loss`: the quantisation quality of a code is
  q_i = cos(|u_i|, 1) (1 when every |u_ik| is equal, e.g. all +-1); the loss is
  (1 - q_i)^gamma (-log q_i), averaged over items.

-log q is computed from log-sigmoids so that confident pairs do not underflow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

from hashlab.losses.pairwise import class_balance_weights

__all__ = ["priority_cross_entropy", "priority_quantization_loss"]


def priority_cross_entropy(
    u: torch.Tensor,
    v: torch.Tensor,
    s: torch.Tensor,
    alpha: float,
    gamma: float = 2.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """DPH's priority cross-entropy averaged over pairs.

    ``weights=None`` uses the class-balance weights of ``s``.
    """
    s = s.to(u.dtype)
    if weights is None:
        weights = class_balance_weights(s)
    theta = alpha * (u @ v.T)
    # log q = log sigma(Theta) for similar pairs, log sigma(-Theta) for dissimilar ones
    log_q = functional.logsigmoid(torch.where(s > 0, theta, -theta))
    priority = (1.0 - log_q.exp()) ** gamma
    return (weights * priority * (-log_q)).mean()


def priority_quantization_loss(u: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """DPH's priority quantisation loss averaged over items: q_i = cos(|u_i|, 1)."""
    n_bits = u.shape[1]
    q = u.abs().sum(dim=1) / (u.norm(dim=1) * n_bits**0.5).clamp(min=1e-12)
    q = q.clamp(min=1e-12, max=1.0)
    return ((1.0 - q) ** gamma * (-torch.log(q))).mean()
