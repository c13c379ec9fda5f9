"""Deep Supervised Hashing with Triplet Labels (DTSH: Wang, Shi & Kitani, ACCV 2016).

Loss: the negative log-likelihood of triplet labels, -log sigma(Theta_qp - Theta_qn -
alpha) with Theta_ij = <u_i, u_j> / 2 and a margin alpha, over every valid in-batch triplet
(``hashlab.losses.triplet_likelihood``), plus lambda ||b_i - u_i||^2 with b_i = sgn(u_i)
(``hashlab.losses.quantization``), on a linear hash layer (the authors' fc8).

Defaults from the authors' code (Minione/DTSH, MatConvNet): alpha = K / 2 (``margin=None``);
their quantisation weight eta = 100 goes with a likelihood gradient *summed* over 22,500
sampled triplets per image, so on the mean over triplets used here it is
lambda = 2 * 100 / 22,500 ~= 0.01 (on the per-item sum over bits). Multi-label data: handled
(a triplet needs only "shares a label" / "shares none").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashlab.losses.quantization import sign_quantization_loss
from hashlab.losses.triplet_likelihood import batch_triplet_likelihood_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class DTSHConfig(DeepHashConfig):
    margin: float | None = None  # alpha, the triplet margin; None = K / 2 (authors' code)
    quantization_weight: float = 0.01  # lambda (authors' eta, rescaled: see above)

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "quantization_weight": ("float", 1e-3, 1.0, "log")}


@register("dtsh")
class DTSH(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = DTSHConfig
    head_activation = "identity"

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        config = self.hparams
        margin = self.n_bits / 2 if config.margin is None else config.margin
        s = self.similarity(labels, labels)
        return batch_triplet_likelihood_loss(outputs, s, margin, alpha=0.5) + (
            config.quantization_weight * sign_quantization_loss(outputs)
        )
