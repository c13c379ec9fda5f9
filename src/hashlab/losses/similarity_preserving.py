"""Label-free similarity preservation: codes whose cosine similarities match the features'.

The unsupervised objective shared by BiHalf (Li & van Gemert, AAAI 2021) and unsupervised
GreedyHash (Su et al., NeurIPS 2018), both as in the authors' code, plus the two binary layers
they train through:

* :func:`paired_cosine_mse`: the batch is split in two halves, item i of the first half paired
  with item i of the second, and the loss is mean_i (cos(b_i, b_i') - cos(x_i, x_i'))^2 over
  those B/2 pairs (the authors' code: ``F.mse_loss(cos(b[:B/2], b[B/2:]), cos(x[:B/2],
  x[B/2:]))``; an odd last item is dropped, as there);
* :func:`straight_through_sign`: b = sgn(h) forward, the gradient passed through unchanged
  backward (GreedyHash's "greedy principle": dL/dh := dL/db);
* :func:`bi_half`: BiHalf's layer: per batch, each bit's values sorted, the top half set to +1
  and the rest to -1 (the optimal transport of the batch's values onto a half/half binary
  distribution, which maximises the bit's entropy); backward, the incoming gradient plus
  gamma * (u - b) / (B K), the gradient of gamma / (2 B K) * ||u - b||^2 (authors' code);
* :func:`cubic_sign_penalty`: GreedyHash's ||h| - 1|^3, averaged over entries (authors' code:
  ``(h.abs() - 1).pow(3).abs().mean()``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

__all__ = ["bi_half", "cubic_sign_penalty", "paired_cosine_mse", "straight_through_sign"]


def paired_cosine_mse(codes: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Mean over the B/2 (first half, second half) pairs of (cos codes - cos features)^2."""
    half = codes.shape[0] // 2
    if half == 0:
        raise ValueError("paired_cosine_mse needs a batch of at least two items")
    code_cos = functional.cosine_similarity(codes[:half], codes[half : 2 * half], dim=1)
    feature_cos = functional.cosine_similarity(features[:half], features[half : 2 * half], dim=1)
    return ((code_cos - feature_cos) ** 2).mean()


class _StraightThroughSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, h: torch.Tensor) -> torch.Tensor:
        return torch.where(h >= 0, 1.0, -1.0).to(h.dtype)

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad


def straight_through_sign(h: torch.Tensor) -> torch.Tensor:
    """sgn(h) (0 -> +1) forward; identity gradient backward."""
    return _StraightThroughSign.apply(h)


class _BiHalf(torch.autograd.Function):
    @staticmethod
    def forward(ctx: object, u: torch.Tensor, gamma: float) -> torch.Tensor:
        n = u.shape[0]
        # stable sort: ties go to the earlier item, so a CPU run repeats bit for bit
        order = torch.sort(u, dim=0, descending=True, stable=True).indices
        b = torch.full_like(u, -1.0)
        b.scatter_(0, order[: n // 2], 1.0)
        ctx.save_for_backward(u, b)
        ctx.gamma = gamma
        return b

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        u, b = ctx.saved_tensors
        return grad + ctx.gamma * (u - b) / b.numel(), None


def bi_half(u: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, K) +-1: per column, the floor(B/2) largest values +1, the others -1."""
    return _BiHalf.apply(u, gamma)


def cubic_sign_penalty(h: torch.Tensor) -> torch.Tensor:
    """Mean over entries of ||h| - 1|^3."""
    return ((h.abs() - 1.0).abs() ** 3).mean()
