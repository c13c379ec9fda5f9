"""Losses of DFH (Li, Pei, Zha & van Gemert, "Push for Quantization: Deep Fisher
Hashing", BMVC 2019), as in DeepHash-pytorch's DFH.py (which follows the authors' code).

* :func:`margin_pairwise_likelihood`: the pairwise likelihood with a margin m that pushes
  similar inner products up and dissimilar ones down beyond it (Theta = <u_i, v_j> / 2):
  (1 - s) log(1 + e^{m + Theta}) + s log(1 + e^{m - Theta}), averaged over pairs.
* :func:`class_centre_objective`: the Fisher-like objective of the relaxed class centres V
  (K x C): within-class ||V y_i - b_i||^2 (codes near their classes' centres), between-class
  vul ||V^T V - K T||^2 with T = 2I - 1 (centres of different classes far apart) and
  nta ||V - sgn V||^2 (centres near binary); each term a mean over its entries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

__all__ = ["margin_pairwise_likelihood", "class_centre_objective"]


def margin_pairwise_likelihood(
    u: torch.Tensor, v: torch.Tensor, s: torch.Tensor, margin: float, alpha: float = 0.5
) -> torch.Tensor:
    """Mean of (1-s) softplus(m + Theta) + s softplus(m - Theta), Theta = alpha <u_i, v_j>."""
    theta = alpha * (u @ v.T)
    s = s.to(u.dtype)
    return ((1.0 - s) * functional.softplus(margin + theta)
            + s * functional.softplus(margin - theta)).mean()  # fmt: skip


def class_centre_objective(
    centres: torch.Tensor,
    labels: torch.Tensor,
    codes: torch.Tensor,
    inter_weight: float = 1.0,
    quantization_weight: float = 1.0,
) -> torch.Tensor:
    """DFH's centre objective for centres V (K, C), labels Y (N, C), codes B (N, K) in +-1."""
    n_bits, n_classes = centres.shape
    target = n_bits * (2.0 * torch.eye(n_classes, dtype=centres.dtype, device=centres.device) - 1.0)
    intra = ((labels.to(centres.dtype) @ centres.T - codes.to(centres.dtype)) ** 2).mean()
    inter = ((centres.T @ centres - target) ** 2).mean()
    quantization = ((centres - torch.sign(centres).detach()) ** 2).mean()
    return intra + inter_weight * inter + quantization_weight * quantization
