"""Losses of methods whose binary codes are learned directly by discrete optimisation and
that the network is then tied to or regresses (DSDH, DDSH, CNNH).

* :func:`code_regression_loss`: mean over entries of (b_ik - u_ik)^2, how far the network
  outputs u are from fixed target codes b. DSDH (Li et al., NeurIPS 2017): the
  eta ||b_i - u_i||^2 term tying the network to the discrete codes B; CNNH (Xia et al.,
  AAAI 2014, stage 2): the network regresses the approximate codes H of stage 1.
* :func:`similarity_reconstruction_loss`: mean of (K s_ij - <u_i, v_j>)^2, how well inner
  products of codes reproduce a similarity matrix scaled by the code length K. CNNH
  (stage 1, ||S - H H^T / q||_F^2 up to the factor q^2, S in {-1, +1}) and DDSH (Jiang, Cui &
  Li, TIP 2018: ||K S - B_Gamma B_Omega^T||_F^2, the network outputs in place of
  B_Gamma for its gradient).

Entries / pairs are averaged rather than summed (the papers sum) so that the weights of other
terms do not depend on the batch size; the methods say where that changes a default.
"""

from __future__ import annotations

import torch

__all__ = ["code_regression_loss", "similarity_reconstruction_loss"]


def code_regression_loss(u: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Mean over the (N, K) entries of (codes - u)^2; ``codes`` are targets (no gradient)."""
    return ((codes.detach().to(u.dtype) - u) ** 2).mean()


def similarity_reconstruction_loss(
    u: torch.Tensor, v: torch.Tensor, s: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the N x M pairs of w_ij (K s_ij - <u_i, v_j>)^2, K = ``u.shape[1]``.

    ``s`` is the target similarity (e.g. +1 / -1 for CNNH); ``weights=None`` weighs every
    pair 1.
    """
    n_bits = u.shape[1]
    residual = (n_bits * s.to(u.dtype) - u @ v.T) ** 2
    if weights is not None:
        residual = weights * residual
    return residual.mean()
