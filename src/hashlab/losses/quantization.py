"""Quantisation losses: how far relaxed codes are from the binary codes they round to.

* :func:`sign_quantization_loss`: DPSH (Li et al., IJCAI 2016, Eq. 5): eta * ||b_i - u_i||^2
  with b_i = sgn(u_i); averaged over items, summed over bits.
* :func:`log_cosh_quantization_loss`: DHN (Zhu et al., AAAI 2016, Eq. 6): the smooth
  surrogate sum_k log cosh(|u_ik| - 1) of the L1 distance to +-1; averaged over items.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as functional

__all__ = ["sign_quantization_loss", "log_cosh_quantization_loss"]


def sign_quantization_loss(u: torch.Tensor) -> torch.Tensor:
    """Mean over items of ||sgn(u_i) - u_i||^2 (sgn(0) taken as +1)."""
    b = torch.where(u >= 0, 1.0, -1.0).to(u.dtype).detach()
    return ((b - u) ** 2).sum(dim=1).mean()


def log_cosh_quantization_loss(u: torch.Tensor) -> torch.Tensor:
    """Mean over items of sum_k log cosh(|u_ik| - 1), computed stably."""
    x = u.abs() - 1.0
    # log cosh x = |x| + log(1 + exp(-2|x|)) - log 2, stable for large |x|
    log_cosh = x.abs() + functional.softplus(-2.0 * x.abs()) - math.log(2.0)
    return log_cosh.sum(dim=1).mean()
