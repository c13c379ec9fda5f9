"""Deep Priority Hashing (DPH: Cao, Sun, Long, Wang & Yu, ACM MM 2018, arXiv 1809.01238; the
issue's "2017" is a year early). Equation numbers are left out: the paper text was not at
hand to check them.

Hard examples first, as in focal loss: the priority cross-entropy weights each in-batch pair by
its class-balance weight times (1 - q_ij)^gamma, q_ij the probability that the pair's
similarity is predicted right from sigma(alpha <u_i, u_j>), and the priority
quantisation loss weights each code by (1 - q_i)^gamma with q_i = cos(|u_i|, 1) its
quantisation quality; ``hashlab.losses.priority``. Relaxed codes u = tanh(z).

Defaults: gamma = 2 (the focal-loss value; the DPH paper sets gamma by validation and we
could not check the value it printed), alpha = 10 / K (the adaptive sigmoid scale of the
same group's HashNet code), lambda = 0.1 for the quantisation term (DCH's, same group);
gamma is tuned on validation by the harness (``search_space``). Multi-label data: handled
(similar = a shared label).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashlab.losses.priority import priority_cross_entropy, priority_quantization_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class DPHConfig(DeepHashConfig):
    gamma: float = 2.0  # priority focusing exponent (both losses)
    alpha_times_bits: float = 10.0  # alpha = alpha_times_bits / K
    quantization_weight: float = 0.1  # lambda

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "gamma": ("float", 0.0, 5.0, "linear")}


@register("dph")
class DPH(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = DPHConfig
    head_activation = "tanh"

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        config = self.hparams
        s = self.similarity(labels, labels)
        alpha = config.alpha_times_bits / self.n_bits
        return priority_cross_entropy(outputs, outputs, s, alpha, config.gamma) + (
            config.quantization_weight * priority_quantization_loss(outputs, config.gamma)
        )
