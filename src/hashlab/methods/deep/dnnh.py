"""Deep Neural Network Hashing (DNNH: Lai, Pan, Liu & Yan, "Simultaneous Feature Learning and
Hash Coding with Deep Neural Networks", CVPR 2015).

Two parts of the paper (Sec. 3): a *divide-and-encode* module, which splits the shared
sub-network's output into K slices and maps each slice to one bit through its own fully
connected unit and a sigmoid, so bits depend on disjoint parts of the representation and
are less redundant; and the triplet ranking loss (Eq. 3) with margin 1 on the [0, 1] outputs,
here over every valid triplet of a batch (``hashlab.losses.triplet``). Codes are 1 where the
output exceeds 1/2.

Deviations, stated: the shared sub-network's output is a fc layer of ``slice_width * K``
ReLU units on the backbone features (the paper's is its NIN conv stack), and the piecewise
threshold that the paper applies to outputs near 0 or 1 during training is left out (it cuts
the gradient of outputs already past it; the triplet loss alone already learns).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hashlab.losses.triplet import batch_triplet_ranking_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class DNNHConfig(DeepHashConfig):
    margin: float = 1.0  # Eq. 3
    slice_width: int = 16  # units per slice of the divide-and-encode module


class DivideAndEncode(nn.Module):
    """fc (K * width) + ReLU, split into K slices, one fc unit + sigmoid per slice."""

    def __init__(self, input_dim: int, n_bits: int, width: int) -> None:
        super().__init__()
        self.shared = nn.Sequential(nn.Linear(input_dim, n_bits * width), nn.ReLU())
        self.n_bits, self.width = n_bits, width
        # one weight vector per slice: an einsum over (bit, slice unit)
        self.slice_weight = nn.Parameter(torch.randn(n_bits, width) / width**0.5)
        self.slice_bias = nn.Parameter(torch.zeros(n_bits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slices = self.shared(x).view(-1, self.n_bits, self.width)
        return torch.sigmoid(
            torch.einsum("nkw,kw->nk", slices, self.slice_weight) + self.slice_bias
        )


@register("dnnh")
class DNNH(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = DNNHConfig
    code_threshold = 0.5

    def build_network(self, input_dim: int) -> nn.Module:
        return DivideAndEncode(input_dim, self.n_bits, self.hparams.slice_width)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        s = self.similarity(labels, labels)
        return batch_triplet_ranking_loss(outputs, s, self.hparams.margin)
