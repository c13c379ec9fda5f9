"""DeepBit (Lin, Lu, Chen & Zhou, CVPR 2016), on frozen features.

"Learning Compact Binary Descriptors with Unsupervised Deep Neural Networks". A fc layer
with sigmoid outputs f(x) in [0, 1], binarised at 0.5, trained on three label-free terms
(the numbering follows the paper's objective and its three terms; the paper's text is not in
shared/seeds, so the numbers are this file's):

(1) L = alpha L1 + beta L2 + gamma L3
(2) L1 = 1/2 mean_n ||b_n - f(x_n)||^2,  b_n = 1[f(x_n) > 0.5]          (quantisation)
(3) L2 = 1/2 sum_m (mu_m - 0.5)^2,  mu_m = mean_n f_m(x_n)              (even distribution)
(4) L3 = sum_j C_j mean_n ||f(x_n) - f(v_j(x_n))||^2                     (invariance)

Deviations, and why. The paper's L3 compares an image with its rotations by theta, weighted
by a Gaussian C(theta) that trusts small rotations more. On frozen features there is no
image to rotate, so a view is a *feature-space augmentation*: v_j(x) = x + s_j eps (eps
standard normal noise on the standardised features), of growing strength s_j = noise * j / J
for j = 1..J, weighted C_j = exp(-(j / J)^2 / 2), the same Gaussian fall-off with strength.
The paper computes mu_m on the binary codes (no gradient); (3) uses the relaxed outputs so
that it trains. Means over the batch replace the paper's sums over items, so the weights do
not depend on the batch size.

Defaults: one fc layer with a sigmoid on the features (the paper replaces VGG16's fc8 with a
K-unit sigmoid layer; ``head_hidden=0``); alpha = beta = gamma = 1, noise = 0.5 and J = 2
views are hashlab's choices (the paper's weights could not be checked against its text), all
in the search space. Validation (no labels): the objective (1) on held-out items, with the
views drawn under a fixed seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from hashlab.errors import ConfigError
from hashlab.losses.bit_statistics import (
    even_distribution,
    threshold_quantization,
    view_invariance,
)
from hashlab.methods.deep.unsupervised import UnsupervisedConfig, UnsupervisedDeepMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class DeepBitConfig(UnsupervisedConfig):
    alpha: float = 1.0  # quantisation (2)
    beta: float = 1.0  # even distribution (3)
    gamma: float = 1.0  # invariance (4)
    view_noise: float = 0.5  # strength of the strongest view, in feature standard deviations
    n_views: int = 2
    head_hidden: int = 0  # the K-unit sigmoid layer on the features, as the paper's fc8
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.alpha, self.beta, self.gamma, self.view_noise) < 0 or self.n_views < 1:
            raise ConfigError(
                "alpha, beta, gamma and view_noise must be non-negative and n_views at least "
                f"1, got {self.alpha}, {self.beta}, {self.gamma}, {self.view_noise}, "
                f"{self.n_views}"
            )

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "beta": ("float", 0.1, 10.0, "log"),
                "gamma": ("float", 0.1, 10.0, "log"),
                "view_noise": ("float", 0.1, 1.0, "log")}  # fmt: skip


@register("deepbit")
class DeepBit(UnsupervisedDeepMethod):
    """Sigmoid codes trained on quantisation (2), even distribution (3), invariance (4)."""

    tags = MethodTags(family="deep", supervision="none", inputs="features")
    Config: ClassVar[type[UnsupervisedConfig]] = DeepBitConfig
    head_activation: ClassVar[str] = "sigmoid"
    code_threshold: ClassVar[float] = 0.5

    def unsupervised_loss(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        config = self.hparams
        n = config.n_views
        views, weights = [], []
        for j in range(1, n + 1):
            noisy = features + config.view_noise * j / n * torch.randn_like(features)
            views.append(state.network.head(noisy).float())
            weights.append(math.exp(-((j / n) ** 2) / 2))  # C_j of (4)
        return (
            config.alpha * threshold_quantization(outputs)  # (2)
            + config.beta * even_distribution(outputs)  # (3)
            + config.gamma * view_invariance(outputs, views, weights)  # (4)
        )
