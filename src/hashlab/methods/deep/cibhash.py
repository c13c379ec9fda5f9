"""CIBHash: unsupervised hashing with a contrastive information bottleneck (Qiu, Su, Li & Hao,
IJCAI 2021), on frozen features.

Two random views of each item go through the same encoder to Bernoulli probabilities
p = sigmoid(f(v)); a code is a *sample* b = sgn(p - u), u ~ U(0, 1), with the straight-through
gradient; the codes of the two views of an item are pulled together and pushed from the
other items' by a contrastive loss, and an information-bottleneck term keeps the two views'
code distributions close (this file's numbering; the paper's text is not in shared/seeds):

(1) p^1 = sigmoid(f(v1(x))),  p^2 = sigmoid(f(v2(x)))
(2) b^j = sgn(p^j - u),  u ~ U(0, 1)                (stochastic binary layer, straight through)
(3) L_cl = NT-Xent(b^1, b^2; tau)                   (the contrastive term)
(4) L_kl = 1/2 [KL(p^1 || p^2) + KL(p^2 || p^1)]    (Bernoulli KL, the other side detached)
(5) L = L_cl + beta L_kl

At test time the code is 1[p > 0.5] of the item itself (no view): the authors' ``encode``.

On frozen features there are no images to crop, colour-jitter and flip, so the views are
*feature-space augmentations*, as the issue asks and stated here: v(x) = dropout(x, q) +
sigma eps on the standardised features (each feature dropped with probability q, the rest
rescaled by 1/(1-q), then Gaussian noise of standard deviation sigma added).

Defaults: tau = 0.3 and beta = 0.001 (authors' code); the encoder fc(1024) -> ReLU -> fc(K)
(authors' code, on frozen VGG16 fc7 features as here; ``head_hidden=1024``, no dropout);
Adam at 1e-3 (authors' code; the shared default). The view strengths q = 0.2, sigma = 0.2 are
hashlab's (no counterpart in the paper), in the search space. Validation (no labels): the
loss (5) on held-out items, views and samples drawn under a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as functional

from hashlab.errors import ConfigError
from hashlab.losses.contrastive_bottleneck import bernoulli_kl, nt_xent, stochastic_binary
from hashlab.methods.deep.unsupervised import UnsupervisedConfig, UnsupervisedDeepMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class CIBHashConfig(UnsupervisedConfig):
    temperature: float = 0.3  # tau of (3); authors' code
    beta: float = 0.001  # weight of (4) in (5); authors' code ("weight")
    view_dropout: float = 0.2  # q of the feature-space views (hashlab's)
    view_noise: float = 0.2  # sigma of the feature-space views (hashlab's)
    head_hidden: int = 1024  # the authors' encoder: fc(1024) -> ReLU -> fc(K)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature <= 0 or self.beta < 0 or self.view_noise < 0:
            raise ConfigError(
                "temperature must be positive, beta and view_noise non-negative, got "
                f"{self.temperature}, {self.beta}, {self.view_noise}"
            )
        if not 0.0 <= self.view_dropout < 1.0:
            raise ConfigError(f"view_dropout must be in [0, 1), got {self.view_dropout}")

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "temperature": ("float", 0.1, 1.0, "log"),
                "view_noise": ("float", 0.05, 1.0, "log")}  # fmt: skip


@register("cibhash")
class CIBHash(UnsupervisedDeepMethod):
    """Two feature-space views (1), stochastic codes (2), contrastive (3) + KL (4) loss (5)."""

    tags = MethodTags(family="deep", supervision="none", inputs="features")
    Config: ClassVar[type[UnsupervisedConfig]] = CIBHashConfig
    head_activation: ClassVar[str] = "sigmoid"
    code_threshold: ClassVar[float] = 0.5

    def _view(self, features: torch.Tensor) -> torch.Tensor:
        config = self.hparams
        dropped = functional.dropout(features, config.view_dropout, training=True)
        return dropped + config.view_noise * torch.randn_like(features)

    def unsupervised_loss(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        config = self.hparams
        head = state.network.head
        p1 = head(self._view(features)).float()  # (1)
        p2 = head(self._view(features)).float()
        contrastive = nt_xent(stochastic_binary(p1), stochastic_binary(p2), config.temperature)
        kl = 0.5 * (bernoulli_kl(p1, p2) + bernoulli_kl(p2, p1))  # (4)
        return contrastive + config.beta * kl  # (3), (5)
