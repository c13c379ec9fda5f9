"""UH-BDNN: unsupervised hashing with a binary deep neural network (Do, Doan & Cheung, ECCV
2016, "Learning to Hash with Binary Deep Neural Network").

A binary autoencoder: an encoder maps the features x to K units H, the codes B = sgn(H), and
a linear decoder reconstructs x from B. Its objective (this file's numbering, term by term
as the paper's; the paper's text is not in shared/seeds):

(1) min 1/(2m) ||X - W_d B - c||^2 + lambda1/2 sum ||W||^2 + lambda2/(2m) ||H - B||^2
        + lambda3/2 ||H H^T / m - I||^2 + lambda4/(2m) ||H 1||^2
(2) reconstruction: mean_n 1/2 ||x_n - (W_d b_n + c)||^2
(3) quantisation:   lambda2 mean_n 1/2 ||h_n - b_n||^2
(4) independence:   lambda3/2 ||H^T H / m - I||_F^2      (bits uncorrelated, unit power)
(5) balance:        lambda4/2 ||H^T 1 / m||^2 * m        (each bit zero-mean over the batch)

Deviations, and why. The paper solves (1) by alternating: B by a discrete step, the network
by back-propagation with B fixed. On the one trainer the step is end to end instead: the
decoder sees B through a straight-through sign (b = sgn(h) forward, identity gradient), so
(2) trains the encoder and (3) keeps H near B, which is what the alternation enforces. The
paper's data term is over a batch of m items; here (2)-(3) are batch means; lambda1 is the
trainer's ``weight_decay``. (5) is the paper's lambda4/(2m)||H 1||^2 written with the batch
means (||H 1||^2 / m = m ||H^T 1 / m||^2).

Defaults: lambda2 = 5e-2, lambda3 = 1e-2, lambda4 = 1e-6 (our reading of the paper's
settings, unverified against its text here) and one hidden layer of 1024 ReLU units in the
encoder (the shared head; the paper's encoders are small MLPs on hand-crafted features).
Validation (no labels): the held-out *reconstruction error* (2), the quantity the
autoencoder exists to minimise, not the whole objective.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from hashlab.errors import ConfigError
from hashlab.losses.bit_statistics import code_balance, code_independence
from hashlab.losses.similarity_preserving import straight_through_sign
from hashlab.methods.deep.network import HashHead
from hashlab.methods.deep.unsupervised import UnsupervisedConfig, UnsupervisedDeepMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class UHBDNNConfig(UnsupervisedConfig):
    lambda2: float = 5e-2  # quantisation (3)
    lambda3: float = 1e-2  # independence (4)
    lambda4: float = 1e-6  # balance (5)
    dropout: float = 0.0  # the paper's encoder has none

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.lambda2, self.lambda3, self.lambda4) < 0:
            raise ConfigError(
                f"lambda2, lambda3 and lambda4 must be non-negative, got {self.lambda2}, "
                f"{self.lambda3}, {self.lambda4}"
            )

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "lambda2": ("float", 1e-3, 1.0, "log"),
                "lambda3": ("float", 1e-3, 1.0, "log")}  # fmt: skip


class BinaryAutoencoder(nn.Module):
    """Encoder to K real units (forward: what codes are taken from) and a linear decoder."""

    def __init__(self, encoder: nn.Module, n_bits: int, input_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = nn.Linear(n_bits, input_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def reconstruction_error(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """(2): mean over items of 1/2 ||x - x_hat||^2."""
    return 0.5 * ((x - reconstruction) ** 2).sum(dim=1).mean()


@register("uh_bdnn")
class UHBDNN(UnsupervisedDeepMethod):
    """Binary autoencoder (2) with quantisation (3), independence (4) and balance (5)."""

    tags = MethodTags(family="deep", supervision="none", inputs="features")
    Config: ClassVar[type[UnsupervisedConfig]] = UHBDNNConfig
    head_activation: ClassVar[str] = "identity"
    criterion: ClassVar[str] = "reconstruction error"

    def build_network(self, input_dim: int) -> nn.Module:
        config = self.hparams
        encoder = HashHead(input_dim, self.n_bits, config.head_hidden, config.dropout, "identity")
        return BinaryAutoencoder(encoder, self.n_bits, input_dim)

    def _reconstruct(self, outputs: torch.Tensor, state: TrainState) -> torch.Tensor:
        return state.network.head.decoder(straight_through_sign(outputs))

    def unsupervised_loss(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        config = self.hparams
        codes = straight_through_sign(outputs).detach()  # B, held fixed in (3)
        return (
            reconstruction_error(features, self._reconstruct(outputs, state))  # (2)
            + config.lambda2 * 0.5 * ((outputs - codes) ** 2).sum(dim=1).mean()  # (3)
            + config.lambda3 * 0.5 * code_independence(outputs)  # (4)
            + config.lambda4 * 0.5 * len(outputs) * code_balance(outputs)  # (5)
        )

    def heldout_criterion(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        return reconstruction_error(features, self._reconstruct(outputs, state))
