"""The four loss terms of IDEA (Liu et al., "Context-aware deep weakly supervised image hashing",
J. National Univ. Defense Technology 2022, Eq. 6-12), as pure functions of a batch.

Notation (one row per image of the batch, N rows):
- ``h1`` (N, l): relaxed hash codes in (0, 1), the sigmoid output of Eq. 4;
- ``t`` (N, d): tag embeddings, the mean word vector of each image's tags (Eq. 5);
- ``h2`` (N, d): the image's embedding in tag space, tanh output of Eq. 10;
- ``logits`` (N, V): W4 x + b4 of Eq. 12, before the softmax over the tag vocabulary;
- ``tag_targets`` (N, V): the 0/1 tag indicator vectors y_i.

``reduction="sum"`` is the paper's formula literally (sums over items and pairs);
``"mean"`` divides each term by its number of summands (N for L1, N^2 for L2, N(N-1) for L3,
N for L4, which the paper already averages), so the terms keep their scale whatever the
batch size and the paper's weights (1.0, 1.0, 0.01) balance numbers of similar size.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "binarize",
    "discrimination_loss",
    "idea_loss",
    "pairwise_tag_loss",
    "quantization_loss",
    "tag_hinge_loss",
]

Reduction = Literal["sum", "mean"]


def _reduce(terms: torch.Tensor, count: int, reduction: Reduction) -> torch.Tensor:
    if reduction == "sum":
        return terms.sum()
    if reduction == "mean":
        return terms.sum() / max(count, 1)
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def quantization_loss(h1: torch.Tensor, reduction: Reduction = "sum") -> torch.Tensor:
    """L1 (Eq. 7): -sum_i (1/l) (h1_i - 0.5)^T (h1_i - 0.5); smallest when bits are 0 or 1."""
    n_bits = h1.shape[1]
    per_item = -((h1 - 0.5) ** 2).sum(dim=1) / n_bits
    return _reduce(per_item, h1.shape[0], reduction)


def cosine_matrix(t: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """cos(t_i, t_j) for every pair; a zero vector (no known tag) has cosine 0 with all."""
    unit = t / t.norm(dim=1, keepdim=True).clamp_min(eps)
    return unit @ unit.T


def pairwise_tag_loss(
    h1: torch.Tensor, t: torch.Tensor, reduction: Reduction = "sum"
) -> torch.Tensor:
    """L2 (Eq. 8): sum_ij [ (1/l)||h1_i - h1_j||^2 - (1/2)(1 - cos(t_i, t_j)) ]^2.

    Codes at normalised squared distance (1/l)||h1_i - h1_j||^2 in [0, 1] are pulled to the
    tag-embedding cosine distance (1 - cos)/2 in [0, 1]; the diagonal (i = j) is 0 - 0.
    """
    n_bits = h1.shape[1]
    code_distance = torch.cdist(h1, h1).pow(2) / n_bits
    tag_distance = 0.5 * (1.0 - cosine_matrix(t))
    terms = (code_distance - tag_distance) ** 2
    return _reduce(terms, h1.shape[0] ** 2, reduction)


def tag_hinge_loss(
    h2: torch.Tensor, t: torch.Tensor, margin: float = 1.0, reduction: Reduction = "sum"
) -> torch.Tensor:
    """L3 (Eq. 9): sum_i sum_{j != i} max(0, m + t_j^T h2_i - t_i^T h2_i).

    Each image's tag-space embedding h2_i must score its own tags t_i higher, by the margin m,
    than any other image's tags t_j of the batch.
    """
    scores = h2 @ t.T  # scores[i, j] = t_j^T h2_i
    own = scores.diagonal().unsqueeze(1)
    terms = F.relu(margin + scores - own)
    off_diagonal = ~torch.eye(len(h2), dtype=torch.bool, device=h2.device)
    n = h2.shape[0]
    return _reduce(terms[off_diagonal], n * (n - 1), reduction)


def discrimination_loss(
    logits: torch.Tensor, tag_targets: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """L4 (Eq. 11-12): (1/N) sum_i -sum_c y_ic log softmax(W4 x_i + b4)_c.

    y_i is the image's 0/1 tag vector, so an image with M tags contributes M log-probability
    terms (as written in the paper; no renormalisation of y_i). The paper already averages
    over images, so ``"mean"`` is its formula; ``"sum"`` drops the 1/N.
    """
    per_item = -(tag_targets.to(logits.dtype) * F.log_softmax(logits, dim=1)).sum(dim=1)
    return _reduce(per_item, logits.shape[0], reduction)


def idea_loss(
    h1: torch.Tensor,
    h2: torch.Tensor,
    logits: torch.Tensor | None,
    t: torch.Tensor,
    tag_targets: torch.Tensor | None,
    lambda1: float = 1.0,
    lambda3: float = 1.0,
    lambda4: float = 0.01,
    margin: float = 1.0,
    reduction: Reduction = "mean",
) -> dict[str, torch.Tensor]:
    """Eq. 6: L = lambda1 L1 + L2 + lambda3 L3 + lambda4 L4, with each term for logging.

    ``logits`` / ``tag_targets`` may be None when lambda4 = 0 (IDEA-L has no tag classifier).
    """
    terms = {
        "quantization": quantization_loss(h1, reduction),
        "pairwise": pairwise_tag_loss(h1, t, reduction),
        "hinge": tag_hinge_loss(h2, t, margin, reduction),
    }
    total = lambda1 * terms["quantization"] + terms["pairwise"] + lambda3 * terms["hinge"]
    if lambda4 != 0:
        if logits is None or tag_targets is None:
            raise ValueError("lambda4 != 0 needs the tag logits and the tag indicator vectors")
        # the paper averages L4 over images (Eq. 11) whatever it does with the other terms
        terms["discrimination"] = discrimination_loss(logits, tag_targets, "mean")
        total = total + lambda4 * terms["discrimination"]
    terms["total"] = total
    return terms


def binarize(h1: torch.Tensor) -> torch.Tensor:
    """Eq. 13: b = (sgn(h1 - 0.5) + 1) / 2, as uint8 0/1 (h1 = 0.5 exactly maps to 1)."""
    return (h1 >= 0.5).to(torch.uint8)
