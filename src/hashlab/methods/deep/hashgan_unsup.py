"""Unsupervised HashGAN (Ghasedi Dizaji, Zheng, Sadoughi, Yang, Deng & Huang, "Unsupervised
Deep Generative Adversarial Hashing Network", CVPR 2018): the encoder shares its weights with
the discriminator, and a generator makes items from random binary codes.

Not Cao et al.'s supervised HashGAN (that is ``pc_wgan``). On frozen features (the game of
``adversarial_hashing``: the shared encoder-discriminator on the Trainer's side, G the
game's player), numbered here:

1. One trunk T(x) with two heads: the code head u = tanh(W_e T(x)) (the encoder) and the
   critic head D(x) = w_d^T T(x) (real-vs-generated logit). G(z_b, noise) makes an item from a
   random code z_b uniform on {-1, 1}^K.
2. G: min BCE(D(G(z_b)), 1) + lambda_c ||u(G(z_b)) - z_b||^2: fool D, and make items whose
   code the encoder reads back as z_b (the paper's code-reconstruction loss, which ties the
   generator's code space to the encoder's).
3. T, heads: min BCE(D(x), 1) + BCE(D(G(z_b)), 0) + lambda_c ||u(G(z_b)) - z_b||^2
   + lambda_b L_bal(u(x)) + lambda_i L_ind(u(x)) + lambda_q mean (|u(x)| - 1)^2 on real items:
   the paper's encoder terms on real images, bit balance (each bit +1 for half the items,
   ``bit_balance_loss``), independence (uncorrelated bits, ``bit_independence_loss``) and
   minimum entropy (bits away from 0).

Defaults: lambda_c = 1, lambda_b = 1, lambda_i = 1, lambda_q = 0.1, noise of 16 dimensions:
ours (the paper's weights go with its image losses). Left out: the paper's collaborative loss
between the real images' codes and their augmentations (on frozen features there are no
image augmentations). Held-out criterion: the real-item terms of Eq. 3 (balance,
independence, entropy) on held-out items, no labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hashlab.losses.generative import (
    bit_balance_loss,
    bit_independence_loss,
    code_reconstruction_loss,
    gan_discriminator_loss,
    gan_generator_loss,
)
from hashlab.methods.deep.adversarial_hashing import (
    AdversarialConfig,
    AdversarialHashMethod,
    FeatureGenerator,
)
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState

__all__ = ["HashGANUnsupervised", "HashGANUnsupervisedConfig"]


@dataclass
class HashGANUnsupervisedConfig(AdversarialConfig):
    code_weight: float = 1.0  # lambda_c (ours)
    balance_weight: float = 1.0  # lambda_b (ours)
    independence_weight: float = 1.0  # lambda_i (ours)
    quantization_weight: float = 0.1  # lambda_q (ours)


class SharedEncoderDiscriminator(nn.Module):
    """Eq. 1: a trunk shared by the code head (``forward``) and the critic head (``critic``)."""

    def __init__(self, input_dim: int, hidden: int, n_bits: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(input_dim, hidden), nn.LeakyReLU(0.2),
                                   nn.Linear(hidden, hidden), nn.LeakyReLU(0.2))  # fmt: skip
        self.code_head = nn.Linear(hidden, n_bits)
        self.critic_head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.code_head(self.trunk(x)))

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(codes u in (-1, 1), critic logits) of one pass through the trunk."""
        shared = self.trunk(x)
        return torch.tanh(self.code_head(shared)), self.critic_head(shared).squeeze(1)


@register("hashgan_unsup")
class HashGANUnsupervised(AdversarialHashMethod):
    tags = MethodTags(family="deep", supervision="none", inputs="features")
    Config = HashGANUnsupervisedConfig
    head_activation = "tanh"
    criterion = "real-item encoder terms (balance, independence, entropy)"

    def build_players(self, input_dim: int) -> nn.Module:
        return SharedEncoderDiscriminator(input_dim, self.hparams.head_hidden, self.n_bits)

    def build_adversary(self, input_dim: int) -> nn.Module:
        config = self.hparams
        return FeatureGenerator(self.n_bits, config.noise_dim, input_dim, config.hidden)

    def adversary_loss(self, x: torch.Tensor, state: TrainState) -> torch.Tensor:
        random_codes = self.random_codes(len(x), x.device)
        codes, logits = self.players(state).both(self.adversary(random_codes))
        return gan_generator_loss(logits) + self.hparams.code_weight * code_reconstruction_loss(
            codes, random_codes
        )  # Eq. 2

    def real_item_terms(self, codes: torch.Tensor) -> torch.Tensor:
        config = self.hparams
        return (config.balance_weight * bit_balance_loss(codes)
                + config.independence_weight * bit_independence_loss(codes)
                + config.quantization_weight * (codes.abs() - 1.0).pow(2).mean())  # fmt: skip

    def trainee_loss(self, x: torch.Tensor, state: TrainState) -> torch.Tensor:
        players = self.players(state)
        random_codes = self.random_codes(len(x), x.device)
        with torch.no_grad():
            generated = self.adversary(random_codes)
        real_codes, real_logits = players.both(x)
        fake_codes, fake_logits = players.both(generated)
        return (gan_discriminator_loss(real_logits, fake_logits)  # Eq. 3
                + self.hparams.code_weight * code_reconstruction_loss(fake_codes, random_codes)
                + self.real_item_terms(real_codes))  # fmt: skip

    def heldout_criterion(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        return self.real_item_terms(outputs)
