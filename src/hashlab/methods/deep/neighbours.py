"""Feature-space k-nearest-neighbour graphs for the unsupervised and semi-supervised methods.

BGAN's neighbourhood structure, UADH's semantic-preserving term and SSDH's graph term all ask
"which training items are near each other in the (frozen) feature space": :func:`knn_graph`
answers once per fit (cosine similarity of the standardised features, in chunks so that the
n x n matrix is never held), :func:`neighbour_similarity` reads a batch's 0/1 similarity
from it (symmetrised: i ~ j when either is among the other's k nearest), and
:func:`neighbour_pair_order` orders an epoch so that each batch holds items next to one of
their neighbours: with k = 20 of 5,000 items a uniformly drawn batch of 64 holds about 16
neighbour pairs of 2,016, too few to learn a neighbourhood from.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["knn_graph", "neighbour_pair_order", "neighbour_similarity"]


def knn_graph(features: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """(n, k) int64 indices of each row's k most cosine-similar other rows (itself excluded)."""
    n = len(features)
    k = min(int(k), n - 1)
    unit = torch.nn.functional.normalize(features.float(), dim=1)
    rows = []
    for start in range(0, n, chunk):
        similarity = unit[start : start + chunk] @ unit.T
        own = torch.arange(start, min(start + chunk, n), device=features.device)
        similarity[torch.arange(len(own)), own] = -float("inf")  # an item is not its neighbour
        rows.append(similarity.topk(k, dim=1).indices)
    return torch.cat(rows)


def neighbour_similarity(neighbours: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """(B, B) float 0/1: s_ab = 1 when b is among a's neighbours, a among b's, or a = b."""
    batch_neighbours = neighbours[indices]  # (B, k)
    direct = (batch_neighbours[:, :, None] == indices[None, None, :]).any(dim=1)  # (B, B)
    same = indices[:, None] == indices[None, :]
    return (direct | direct.T | same).float()


def neighbour_pair_order(neighbours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An epoch of n positions: n/2 random items, each followed by one of its neighbours."""
    n, k = neighbours.shape
    anchors = rng.permutation(n)[: max(n // 2, 1)]
    partners = neighbours[anchors, rng.integers(0, k, size=len(anchors))]
    return np.stack([anchors, partners], axis=1).reshape(-1)
