"""HashNet (Cao, Long, Wang & Yu, "HashNet: Deep Learning to Hash by Continuation", ICCV 2017).

The hash layer outputs z; the relaxed code is h = tanh(beta * z) (Eq. 6). Training is a
continuation: beta grows so that tanh(beta z) approaches sgn(z), which is the code used at
test time (so codes do not depend on beta). Loss: weighted pairwise cross-entropy over
in-batch pairs, w_ij (log(1 + exp(alpha <h_i, h_j>)) - alpha s_ij <h_i, h_j>) (Eq. 4) with the
class-balance weights of Eq. 5 and the adaptive sigmoid scale alpha = 10 / K of the authors'
code.

Continuation schedule: the authors' code raises beta = (1 + 0.005 t)^0.5 every 200
iterations t, reaching about 7 after 10,000 iterations. We step it once per epoch,
beta_e = (1 + beta_growth * e)^0.5 (e = 0, 1, ...), with beta_growth = 1 so that 50 epochs
also end near 7. The beta of each epoch is kept in the checkpoint (``state.extras``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from hashlab.losses.pairwise import weighted_pairwise_cross_entropy
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class HashNetConfig(DeepHashConfig):
    alpha_times_bits: float = 10.0  # alpha = alpha_times_bits / K (authors' sigmoid_param)
    beta_growth: float = 1.0  # beta_e = (1 + beta_growth * epoch) ** 0.5


@register("hashnet")
class HashNet(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = HashNetConfig
    head_activation = "identity"  # the network gives z; tanh(beta z) is applied in the loss

    def beta(self, epoch: int) -> float:
        """The continuation parameter of ``epoch`` (0-based)."""
        return math.sqrt(1.0 + self.hparams.beta_growth * epoch)

    def on_epoch_start(self, state: TrainState) -> None:
        state.extras["beta"] = self.beta(state.epoch)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        relaxed = torch.tanh(state.extras["beta"] * outputs)
        alpha = self.hparams.alpha_times_bits / self.n_bits
        s = self.similarity(labels, labels)
        return weighted_pairwise_cross_entropy(relaxed, relaxed, s, alpha)
