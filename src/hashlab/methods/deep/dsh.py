"""Deep Supervised Hashing (DSH: Liu, Wang, Shan & Chen, CVPR 2016).

The hash layer is linear (no squashing); every pair of a batch enters the contrastive loss of
Eq. 5: similar pairs are pulled together, dissimilar pairs pushed beyond the margin
m = 2K, and an L1 regulariser (alpha = 0.01) pulls every output towards +-1 so that sgn()
loses little. See ``hashlab.losses.contrastive``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashlab.losses.contrastive import contrastive_hashing_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class DSHConfig(DeepHashConfig):
    margin_times_bits: float = 2.0  # m = 2K (Sec. 3.2)
    alpha: float = 0.01  # weight of the +-1 regulariser (Sec. 4.1)


@register("dsh")
class DSH(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = DSHConfig
    head_activation = "identity"

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        s = self.similarity(labels, labels)
        margin = self.hparams.margin_times_bits * self.n_bits
        return contrastive_hashing_loss(outputs, outputs, s, margin, self.hparams.alpha)
