"""Asymmetric inner-product loss of ADSH (Jiang & Li, "Asymmetric Deep Supervised Hashing",
AAAI 2018, Eq. 2-3).

Queries go through the network, u_i = tanh(F(x_i)); database items have free binary codes
v_j in {-1, +1}^K learned directly. For sampled queries Omega and the whole database Gamma:

    L = sum_{i in Omega} sum_{j in Gamma} (u_i^T v_j - K s_ij)^2
        + gamma * sum_{i in Omega} ||v_i - u_i||^2        (v_i: the sampled item's own code)

Normalised as in the authors' code, both sums divided by (|Gamma| * batch size), so gamma
keeps the paper's value (200).
"""

from __future__ import annotations

import torch

__all__ = ["asymmetric_inner_product_loss"]


def asymmetric_inner_product_loss(
    u: torch.Tensor,
    database_codes: torch.Tensor,
    s: torch.Tensor,
    own_codes: torch.Tensor | None = None,
    gamma: float = 200.0,
) -> torch.Tensor:
    """ADSH Eq. 3 for a batch: u (B, K), database codes V (M, K) in +-1, s (B, M) 0/1.

    ``own_codes`` (B, K) are the database codes of the batch items themselves (the
    quantisation term); ``None`` drops that term.
    """
    n_bits = u.shape[1]
    square = ((u @ database_codes.T - n_bits * s.float()) ** 2).sum()
    total = square
    if own_codes is not None:
        total = total + gamma * ((own_codes - u) ** 2).sum()
    return total / (database_codes.shape[0] * u.shape[0])
