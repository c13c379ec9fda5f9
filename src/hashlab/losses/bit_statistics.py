"""Label-free terms on the statistics of a batch of relaxed codes (B, K): quantisation,
balance (even distribution), independence and invariance, as the unsupervised deep methods
of issue 19 write them.

* :func:`threshold_quantization`: DeepBit (Lin et al., CVPR 2016) L1 for sigmoid outputs in
  [0, 1]: 1/2 mean_n ||b_n - f_n||^2 with b = 1[f > 0.5] (the paper sums over items; a batch
  mean keeps the weights independent of the batch size);
* :func:`even_distribution`: DeepBit L2: 1/2 sum_m (mu_m - 0.5)^2, mu_m the batch mean of bit
  m (on the relaxed outputs, so that it has a gradient; the paper writes it on the codes);
* :func:`view_invariance`: DeepBit L3 with the rotation of the image replaced by a view:
  sum_j C_j mean_n ||f(x_n) - f(v_j(x_n))||^2 over weighted views j;
* :func:`centred_variance`: DH (Liong et al., CVPR 2015): tr(H H^T) / N of zero-mean outputs,
  the total variance sum_k var_k (centred here: maximising it then balances each bit);
* :func:`orthogonality`: DH's independence term ||W W^T - I||_F^2 per layer, on the smaller
  side's Gram so that a layer wider than its input is not asked the impossible;
* :func:`code_independence` / :func:`code_balance`: UH-BDNN (Do et al., ECCV 2016):
  ||H^T H / m - I||_F^2 (bits uncorrelated and of unit power) and ||H^T 1 / m||^2 (each bit
  zero-mean), on a batch of m items.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

__all__ = ["centred_variance", "code_balance", "code_independence", "even_distribution",
           "orthogonality", "threshold_quantization", "view_invariance"]  # fmt: skip


def threshold_quantization(f: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """1/2 mean over items of ||1[f > threshold] - f||^2 (the codes held constant)."""
    b = (f > threshold).to(f.dtype).detach()
    return 0.5 * ((b - f) ** 2).sum(dim=1).mean()


def even_distribution(f: torch.Tensor, target: float = 0.5) -> torch.Tensor:
    """1/2 sum over bits of (batch mean of the bit - target)^2."""
    return 0.5 * ((f.mean(dim=0) - target) ** 2).sum()


def view_invariance(
    f: torch.Tensor, views: Sequence[torch.Tensor], weights: Sequence[float]
) -> torch.Tensor:
    """sum_j weights_j * mean over items of ||f - views_j||^2."""
    if len(views) != len(weights):
        raise ValueError(f"{len(views)} views but {len(weights)} weights")
    total = f.new_zeros(())
    for view, weight in zip(views, weights, strict=True):
        total = total + weight * ((f - view) ** 2).sum(dim=1).mean()
    return total


def centred_variance(h: torch.Tensor) -> torch.Tensor:
    """sum over bits of the batch variance (1/B normalisation) of each bit."""
    return ((h - h.mean(dim=0, keepdim=True)) ** 2).sum(dim=1).mean()


def orthogonality(weights: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum over layers of ||G - I||_F^2, G the Gram matrix of the weight's smaller side."""
    total = None
    for w in weights:
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        term = ((gram - torch.eye(len(gram), dtype=w.dtype, device=w.device)) ** 2).sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("orthogonality needs at least one weight matrix")
    return total


def code_independence(h: torch.Tensor) -> torch.Tensor:
    """||H^T H / m - I||_F^2 for a batch H of m items (K x K)."""
    m, k = h.shape
    gram = h.T @ h / m
    return ((gram - torch.eye(k, dtype=h.dtype, device=h.device)) ** 2).sum()


def code_balance(h: torch.Tensor) -> torch.Tensor:
    """||H^T 1 / m||^2: the squared norm of the bits' batch means."""
    return (h.mean(dim=0) ** 2).sum()
