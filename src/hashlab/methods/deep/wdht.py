"""WDHT-style baseline: weakly supervised deep hashing through tag embeddings.

Gattupalli, Zhuo and Li, "Weakly Supervised Deep Image Hashing through Tag Embeddings",
CVPR 2019. Its idea, as IDEA's paper summarises it: embed each image's tags with word2vec,
average them (t_i), and train the hash network so that code inner products follow the
cosine similarity of the tag embeddings. Here, on the same frozen pooled features as IDEA:

    u_i = tanh(W2 ReLU(W1 x_i + b1) + b2),  x_i = mean of the region features (no attention)
    L = mean_ij ((1/l) u_i^T u_j - cos(t_i, t_j))^2 + beta mean_i (1/l) || |u_i| - 1 ||^2

codes b = (u > 0). The quantisation weight beta = 0.1 is ours (the pairwise target is the
paper's idea; its exact regularisers and AlexNet backbone are not reproduced).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hashlab.losses.idea import cosine_matrix
from hashlab.methods.deep.tagged import TagSupervisedConfig, TagSupervisedMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags

__all__ = ["WDHT", "WDHTConfig", "tag_similarity_loss"]


def tag_similarity_loss(u: torch.Tensor, t: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """mean_ij ((1/l) u_i^T u_j - cos(t_i, t_j))^2 + beta mean_i (1/l) || |u_i| - 1 ||^2."""
    n_bits = u.shape[1]
    pairwise = ((u @ u.T) / n_bits - cosine_matrix(t)).pow(2).mean()
    quantization = (u.abs() - 1.0).pow(2).sum(dim=1).mean() / n_bits
    return pairwise + beta * quantization


@dataclass
class WDHTConfig(TagSupervisedConfig):
    """IDEA's training settings, so that the two compare like for like."""

    hidden: int = 256
    beta: float = 0.1


@register("wdht")
class WDHT(TagSupervisedMethod):
    """Tag-embedding cosine similarity as the pairwise target of a tanh hash layer."""

    tags = MethodTags(family="deep", supervision="tags", inputs="features")

    Config = WDHTConfig

    def input_features(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features as they are; (N, C, H, W) region maps by global average pooling."""
        maps = np.asarray(features, dtype=np.float32)
        if maps.ndim == 4:  # (N, C, H, W) region maps -> global average pooling
            return maps.mean(axis=(2, 3))
        if maps.ndim != 2:
            raise ValueError(f"WDHT needs (N, D) features or (N, C, H, W) maps, got {maps.shape}")
        return maps

    def build_network(self, input_dim: int) -> nn.Module:
        hidden = self.hparams.hidden
        return nn.Sequential(
            nn.Linear(input_dim, hidden), nn.ReLU(), nn.Linear(hidden, self.n_bits), nn.Tanh()
        )

    def loss(self, outputs: torch.Tensor, tag_targets: torch.Tensor, state: Any) -> torch.Tensor:
        t = self.batch_tag_embeddings(tag_targets, state)
        return tag_similarity_loss(outputs, t, self.hparams.beta)
