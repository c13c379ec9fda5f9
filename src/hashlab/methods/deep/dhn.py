"""Deep Hashing Network (DHN: Zhu, Long, Wang & Cao, AAAI 2016).

Pairwise cross-entropy (the negative log-likelihood of Eq. 3-4, Theta_ij = <z_i, z_j> / 2)
over in-batch pairs plus lambda times the smooth quantisation loss
sum_k log cosh(|z_ik| - 1) (Eq. 6), on a linear hash layer. lambda is chosen by validation
in the paper; we default to 0.1 and record it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashlab.losses.pairwise import pairwise_likelihood_loss
from hashlab.losses.quantization import log_cosh_quantization_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class DHNConfig(DeepHashConfig):
    alpha: float = 0.5  # Theta_ij = alpha <z_i, z_j> (Eq. 3)
    quantization_weight: float = 0.1  # lambda of Eq. 7


@register("dhn")
class DHN(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = DHNConfig
    head_activation = "identity"

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        s = self.similarity(labels, labels)
        return pairwise_likelihood_loss(outputs, outputs, s, self.hparams.alpha) + (
            self.hparams.quantization_weight * log_cosh_quantization_loss(outputs)
        )
