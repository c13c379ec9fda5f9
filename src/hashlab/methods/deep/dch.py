"""Deep Cauchy Hashing (DCH: Cao, Long, Liu & Wang, CVPR 2018).

A tanh hash layer trained with the Cauchy cross-entropy over in-batch pairs (Eq. 7, with the
class-balance weights of Eq. 4) plus lambda times the Cauchy quantisation loss (Eq. 8); see
``hashlab.losses.cauchy`` for the formulas. DCH picks gamma by validation per data set and
bit length; our default gamma = 20 is the value around which the paper's sensitivity plot
(Fig. 5) is flat for 64 bits, lambda = 0.1 (Sec. 4.1). Both are recorded in config.json.
PC-AEGAN's hash network uses exactly these losses (``shared/specs/pc_aegan.md``, Eq. 14-16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashlab.losses.cauchy import cauchy_cross_entropy, cauchy_quantization
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class DCHConfig(DeepHashConfig):
    gamma: float = 20.0  # Cauchy scale (Eq. 5): chosen by validation in the paper
    quantization_weight: float = 0.1  # lambda of Eq. 9

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        """The shared lr / weight decay, and gamma (the paper picks it per code length)."""
        return {**super().search_space(), "gamma": ("float", 1.0, 200.0, "log")}


@register("dch")
class DCH(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = DCHConfig
    head_activation = "tanh"

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        gamma = self.hparams.gamma
        s = self.similarity(labels, labels)
        return cauchy_cross_entropy(outputs, outputs, s, gamma) + (
            self.hparams.quantization_weight * cauchy_quantization(outputs, gamma)
        )
