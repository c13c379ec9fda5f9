"""GreedyHash, unsupervised (Su, Zhang, Han & Tian, NeurIPS 2018).

"Greedy Hash: Towards Fast Optimization for Accurate Hash Coding in CNN", the unsupervised
setting: the hash layer outputs b = sgn(h) in the forward pass and passes the gradient
straight through backward (the greedy principle: optimise as if the network produced b
directly), and the loss keeps the codes' cosine similarities equal to the features':

(1) h = W x + c                                   (one fc hash layer on the features)
(2) b = sgn(h);  dL/dh := dL/db                   (straight-through hash layer)
(3) L = mean_i (cos(b_i, b_i') - cos(x_i, x_i'))^2 + alpha * mean | |h| - 1 |^3

with the pairs i <-> i' the two halves of the batch, as in the authors' unsupervised code
(``cos(b[:B/2], b[B/2:])`` against the same of the fc7 features); the cubic term keeps h near
+-1 so the straight-through gradient stays close to the true one. (These numbers are this
file's: the paper's text is not in shared/seeds.)

Defaults: alpha = 0.1 (the authors' CIFAR-10 code's penalty weight); one linear hash layer
(authors: fc on VGG16's fc7; ``head_hidden=0``, ``dropout=0``). Deviations: frozen,
standardised hashlab features (what the head sees) instead of fine-tuned VGG16 fc7 outputs;
the shared optimiser defaults (Adam, 1e-3) instead of the authors' SGD at 1e-4, which a
frozen linear head does not need. Validation (no labels): the loss (3) on held-out items.
The supervised GreedyHash is ``greedyhash`` (its own file).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from hashlab.errors import ConfigError
from hashlab.losses.similarity_preserving import (
    cubic_sign_penalty,
    paired_cosine_mse,
    straight_through_sign,
)
from hashlab.methods.deep.unsupervised import UnsupervisedConfig, UnsupervisedDeepMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class GreedyHashUnsupConfig(UnsupervisedConfig):
    alpha: float = 0.1  # weight of the cubic penalty in (3); authors' CIFAR-10 code
    head_hidden: int = 0  # one fc hash layer (1), as the authors
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha < 0:
            raise ConfigError(f"alpha must be non-negative, got {self.alpha}")

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "alpha": ("float", 0.01, 1.0, "log")}


@register("greedyhash_unsup")
class GreedyHashUnsup(UnsupervisedDeepMethod):
    """Straight-through sign (2) trained on the similarity-preserving loss (3)."""

    tags = MethodTags(family="deep", supervision="none", inputs="features")
    Config: ClassVar[type[UnsupervisedConfig]] = GreedyHashUnsupConfig
    head_activation: ClassVar[str] = "identity"

    def unsupervised_loss(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        codes = straight_through_sign(outputs)  # (2)
        return paired_cosine_mse(codes, features) + self.hparams.alpha * cubic_sign_penalty(
            outputs
        )  # (3)
