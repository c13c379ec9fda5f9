"""GreedyHash (Su, Zhang, Han & Tian, NeurIPS 2018): sign in the forward pass, straight through.

* :func:`greedy_sign`: b = sgn(h) forward, dL/dh = dL/db backward (the paper's "hash layer":
  the gradient of the sign is taken as the identity, so the network is optimised as if it
  produced b directly, the greedy step of the paper's discrete optimisation).
* :func:`cubic_bit_penalty`: the paper's penalty ||h - sgn(h)||_3^3 that keeps h near +-1 so
  the straight-through gradient stays accurate; averaged over entries, | |h| - 1 |^3, as the
  authors' code (ssppp/GreedyHash, ``cifar1.py``) writes it.

sgn(0) is +1 here (``torch.sign`` gives 0, which is no bit).
"""

from __future__ import annotations

import torch

__all__ = ["SignStraightThrough", "cubic_bit_penalty", "greedy_sign"]


class SignStraightThrough(torch.autograd.Function):
    """Forward: sgn(h) in {-1, +1}; backward: the incoming gradient unchanged."""

    @staticmethod
    def forward(ctx: object, h: torch.Tensor) -> torch.Tensor:
        return torch.where(h >= 0, 1.0, -1.0).to(h.dtype)

    @staticmethod
    def backward(ctx: object, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output


def greedy_sign(h: torch.Tensor) -> torch.Tensor:
    """sgn(h) with the straight-through gradient."""
    return SignStraightThrough.apply(h)


def cubic_bit_penalty(h: torch.Tensor) -> torch.Tensor:
    """mean over entries of | |h| - 1 |^3."""
    return ((h.abs() - 1.0).abs() ** 3).mean()
