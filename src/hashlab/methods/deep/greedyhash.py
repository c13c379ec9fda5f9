"""GreedyHash, supervised (Su, Zhang, Han & Tian, NeurIPS 2018).

The hash layer outputs h; the forward pass uses b = sgn(h) itself and the backward pass
copies the gradient of b to h (straight through: ``hashlab.losses.greedy.greedy_sign``), so
the discrete codes are optimised directly. Supervised loss: softmax cross-entropy of a
linear classifier (no bias) on b, plus alpha times the penalty mean(| |h| - 1 |^3)
(``cubic_bit_penalty``) that keeps h close to sgn(h) so the copied gradient stays right.
Equation numbers are not given: the paper's text is not in ``shared/seeds``.

Defaults: alpha = 0.1, the authors' CIFAR-10 code (ssppp/GreedyHash ``cifar1.py``:
``loss1 + 0.1 * loss2``) and DeepHash-pytorch's (which uses alpha = 1 for ImageNet, so
alpha is in the search space). The classifier is single-label: multi-label data are refused
with an InputError (the paper trains on CIFAR-10 and ImageNet only). Training options are
hashlab's shared protocol, not the paper's SGD on a fine-tuned AlexNet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional
from torch import nn

from hashlab.data.dataset import as_multihot
from hashlab.errors import InputError
from hashlab.losses.greedy import cubic_bit_penalty, greedy_sign
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod, HashHead
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


class GreedyHashNetwork(nn.Module):
    """h = head(x); returns [h | W sgn(h)] (the class scores of the straight-through codes)."""

    def __init__(self, head: nn.Module, n_bits: int, n_classes: int) -> None:
        super().__init__()
        self.head = head
        self.classifier = nn.Linear(n_bits, n_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return torch.cat([h, self.classifier(greedy_sign(h))], dim=1)


@dataclass
class GreedyHashConfig(DeepHashConfig):
    alpha: float = 0.1  # penalty weight (authors' CIFAR-10 code; 1 for ImageNet)

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        """The shared lr / weight decay, and alpha (0.1 for CIFAR-10, 1 for ImageNet)."""
        return {**super().search_space(), "alpha": ("float", 0.01, 1.0, "log")}


@register("greedyhash")
class GreedyHash(DeepHashMethod):
    # one softmax class per item: the pipeline refuses multi-label data sets, fit() arrays
    tags = MethodTags(family="deep", supervision="labels", inputs="features", multi_label=False)
    Config = GreedyHashConfig
    head_activation = "identity"

    def training_targets(self, x: Any, y: Any, n_items: int, **supervision: Any) -> np.ndarray:
        labels = super().training_targets(x, y, n_items, **supervision)
        self._check_single_label(labels)
        self.n_classes_ = int(as_multihot(labels).shape[1])
        return labels

    def validation_targets(self, x: Any, y: Any, n_items: int) -> np.ndarray:
        labels = super().validation_targets(x, y, n_items)
        self.n_classes_ = max(int(self.n_classes_), int(as_multihot(labels).shape[1]))
        return labels

    @staticmethod
    def _check_single_label(labels: np.ndarray) -> None:
        multihot = as_multihot(labels)
        per_item = multihot.sum(axis=1)
        if np.any(per_item != 1):
            bad = int(np.flatnonzero(per_item != 1)[0])
            raise InputError(
                f"greedyhash trains a single-label classifier, but item {bad} has "
                f"{int(per_item[bad])} labels; use csq, orthohash or dpn for multi-label data"
            )

    def build_network(self, input_dim: int) -> nn.Module:
        config = self.hparams
        head = HashHead(input_dim, self.n_bits, config.head_hidden, config.dropout, "identity")
        return GreedyHashNetwork(head, self.n_bits, int(self.n_classes_))

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        h, scores = outputs[:, : self.n_bits], outputs[:, self.n_bits :]
        penalty = cubic_bit_penalty(h)
        return functional.cross_entropy(scores, labels.argmax(dim=1)) + (
            self.hparams.alpha * penalty
        )

    def binarize(self, outputs: torch.Tensor) -> np.ndarray:
        return super().binarize(outputs[:, : self.n_bits])
