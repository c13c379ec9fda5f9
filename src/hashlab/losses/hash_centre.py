"""Losses that pull each item's relaxed code to its class's fixed codeword (hash centre).

The centres come from :mod:`hashlab.losses.centres`; ``labels`` are (B, C) multi-hot and
``centres`` (C, K) of +-1. Each loss is a pure function; the method files hold the defaults.

* :func:`central_similarity_loss`: CSQ (Yuan et al., CVPR 2020, Sec. 3.3): binary
  cross-entropy between the code bits mapped to [0, 1], (u + 1) / 2 with u = tanh(.), and
  the centre bits (c + 1) / 2, averaged over bits and items; plus lambda times the
  quantisation loss mean((|u| - 1)^2). Both averages as in the authors' code.
* :func:`polarization_loss`: DPN (Fan et al., IJCAI 2020): the bit-wise hinge
  max(m - u_k t_k, 0) to the target code t, summed over bits and averaged over items; a
  multi-label item sums the hinge to each of its labels' targets, as the authors' code
  (kamwoh/DPN, ``calculate_loss``) does. A one-hot row gives the single-label loss.
* :func:`orthohash_loss`: OrthoHash (Hoe et al., NeurIPS 2021): cross-entropy over the scaled
  cosine similarities of the continuous code to every codeword, with an additive cosine
  margin (OrthoCos: s (cos - m) for the true class) or an additive angular margin (OrthoArc:
  s cos(theta + m)). Multi-label: the authors' default ``label_smoothing`` (softmax
  cross-entropy against the labels divided by their count) or ``bce`` (one sigmoid per
  codeword). A one-hot row gives the single-label loss either way for ``label_smoothing``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional

from hashlab.errors import ConfigError

__all__ = ["central_similarity_loss", "orthohash_loss", "polarization_loss"]


def central_similarity_loss(
    u: torch.Tensor, centres: torch.Tensor, quantization_weight: float = 1e-4
) -> torch.Tensor:
    """CSQ: BCE((u + 1) / 2, (c + 1) / 2) + lambda mean((|u| - 1)^2); ``centres`` (B, K) are the
    items' own +-1 centres (see ``combine_centres``), ``u`` in (-1, 1)."""
    probabilities = (0.5 * (u + 1.0)).clamp(1e-7, 1.0 - 1e-7)  # log(0) guard at saturation
    central = functional.binary_cross_entropy(probabilities, 0.5 * (centres.to(u.dtype) + 1.0))
    quantization = ((u.abs() - 1.0) ** 2).mean()
    return central + quantization_weight * quantization


def polarization_loss(
    u: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """DPN: mean over items of sum_c y_ic sum_k max(m - u_ik t_ck, 0)."""
    hinge = torch.relu(margin - u.unsqueeze(1) * centres.to(u.dtype).unsqueeze(0))  # (B, C, K)
    return (hinge.sum(dim=2) * labels.to(u.dtype)).sum(dim=1).mean()


def orthohash_loss(
    v: torch.Tensor,
    labels: torch.Tensor,
    centres: torch.Tensor,
    scale: float = 8.0,
    margin: float = 0.2,
    margin_type: str = "cos",
    multilabel_loss: str = "label_smoothing",
) -> torch.Tensor:
    """OrthoHash: CE over s * margin(cos(v, codeword_c)) with the labels as targets."""
    labels = labels.to(v.dtype)
    cosine = functional.normalize(v, dim=1) @ functional.normalize(centres.to(v.dtype), dim=1).T
    if margin_type == "cos":  # OrthoCos
        logits = scale * (cosine - margin * labels)
    elif margin_type == "arc":  # OrthoArc; the clamp keeps acos's gradient finite
        logits = scale * torch.cos(torch.acos(cosine.clamp(-0.99999, 0.99999)) + margin * labels)
    else:
        raise ConfigError(f"margin_type must be 'cos' or 'arc', got {margin_type!r}")
    if multilabel_loss == "label_smoothing":
        # an item without labels contributes 0 (its target row is all zeros)
        targets = labels / labels.sum(dim=1, keepdim=True).clamp_min(1.0)
        return -(targets * functional.log_softmax(logits, dim=1)).sum(dim=1).mean()
    if multilabel_loss == "bce":
        return functional.binary_cross_entropy_with_logits(logits, labels)
    raise ConfigError(
        f"multilabel_loss must be 'label_smoothing' or 'bce', got {multilabel_loss!r}"
    )
