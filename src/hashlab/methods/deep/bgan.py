"""BGAN (Song, He, Gao, Shen et al., "Binary Generative Adversarial Networks for Image
Retrieval", AAAI 2018): unsupervised hashing with a sign layer trained without relaxation.

An encoder E gives u = E(x) and the code b = sgn(u); a generator G rebuilds the item from b
alone; a discriminator D tells real items from rebuilt ones; a neighbourhood-structure loss
makes codes of feature-space neighbours agree. On frozen features (the game of
``adversarial_hashing``: E and G on the Trainer's side, D the game's player), numbered here:

1. b = sgn(u) forward, the gradient of the identity backward (straight-through: the paper's
   point is that the codes are binary while training, not tanh-relaxed);
   ``hashlab.losses.generative.sign_straight_through``.
2. D: min L_D = BCE(D(x), 1) + BCE(D(G(b)), 0) (``gan_discriminator_loss``).
3. E, G: min lambda_a L_adv + lambda_c L_c + lambda_n L_N, with L_adv = BCE(D(G(b)), 1)
   (``gan_generator_loss``), the content loss L_c = ||G(b) - x||^2 (mean; the paper's
   content loss is pixels plus D's features, on features it is the feature error itself),
   and L_N = mean_ij (s_ij - b_i^T b_j / K)^2 (PC-AEGAN's Eq. 6 form,
   ``approximate_code_loss``) with s_ij = 1 for k-NN pairs of the features (either
   direction), 0 otherwise: neighbours share bits, other pairs are pushed to orthogonal.
   Each batch pairs items with a neighbour (``neighbours.neighbour_pair_order``).

Defaults, ours (the paper's weights are set for pixel losses on 32 x 32 images and do not
transfer): lambda_a = 0.1, lambda_n = 1, and k = 50 neighbours with lambda_c = 3, chosen on
digits (1,597 items, 10 epochs) over k = 20, lambda_c = 1, whose neighbourhood term was too
strict at 32 bits (map@all 0.46 -> 0.56 on one random split, where LSH has 0.49; 0.48 -> 0.53
on a second);
G takes the code alone (no noise), as in the paper. Held-out criterion: L_c of held-out items
(how well their codes rebuild them), no labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hashlab.losses.adversarial import approximate_code_loss
from hashlab.losses.generative import (
    feature_reconstruction_loss,
    gan_discriminator_loss,
    gan_generator_loss,
    sign_straight_through,
)
from hashlab.methods.deep.adversarial_hashing import (
    AdversarialConfig,
    AdversarialHashMethod,
    FeatureDiscriminator,
    FeatureGenerator,
)
from hashlab.methods.deep.neighbours import neighbour_similarity
from hashlab.methods.deep.network import HashHead
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState

__all__ = ["BGAN", "BGANConfig", "bgan_neighbourhood_loss"]


@dataclass
class BGANConfig(AdversarialConfig):
    noise_dim: int = 0  # G(b): the code alone
    n_neighbours: int = 50  # k (ours, see the module docstring)
    adversarial_weight: float = 0.1  # lambda_a (ours)
    content_weight: float = 3.0  # lambda_c (ours, see the module docstring)
    neighbour_weight: float = 1.0  # lambda_n (ours)


class BGANPlayers(nn.Module):
    """E (forward: u, the pre-sign outputs) and G on the Trainer's side."""

    def __init__(self, encoder: nn.Module, generator: FeatureGenerator) -> None:
        super().__init__()
        self.encoder = encoder
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


def bgan_neighbourhood_loss(codes: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Eq. 3's L_N over all ordered pairs of a batch: mean (s_ij - b_i^T b_j / K)^2."""
    n = len(codes)
    return approximate_code_loss(codes.repeat_interleave(n, 0), codes.repeat(n, 1), s.flatten())


@register("bgan")
class BGAN(AdversarialHashMethod):
    tags = MethodTags(family="deep", supervision="none", inputs="features")
    Config = BGANConfig
    head_activation = "identity"  # Eq. 1: the sign is taken of u itself
    criterion = "content loss (feature reconstruction from the codes)"
    uses_neighbours = True

    def build_players(self, input_dim: int) -> nn.Module:
        config = self.hparams
        encoder = HashHead(input_dim, self.n_bits, config.head_hidden, config.dropout, "identity")
        generator = FeatureGenerator(self.n_bits, config.noise_dim, input_dim, config.hidden)
        return BGANPlayers(encoder, generator)

    def build_adversary(self, input_dim: int) -> nn.Module:
        return FeatureDiscriminator(input_dim, self.hparams.hidden)

    def adversary_loss(self, x: torch.Tensor, state: TrainState) -> torch.Tensor:
        players = self.players(state)
        with torch.no_grad():
            rebuilt = players.generator(sign_straight_through(players.encoder(x)))
        return gan_discriminator_loss(self.adversary(x), self.adversary(rebuilt))  # Eq. 2

    def trainee_loss(self, x: torch.Tensor, state: TrainState) -> torch.Tensor:
        config, players = self.hparams, self.players(state)
        codes = sign_straight_through(players.encoder(x))  # Eq. 1
        rebuilt = players.generator(codes)
        indices = torch.from_numpy(state.batch_indices).to(state.device)
        s = neighbour_similarity(self._neighbours, indices)
        return (config.adversarial_weight * gan_generator_loss(self.adversary(rebuilt))  # Eq. 3
                + config.content_weight * feature_reconstruction_loss(rebuilt, x)
                + config.neighbour_weight * bgan_neighbourhood_loss(codes, s))  # fmt: skip

    def heldout_criterion(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        rebuilt = self.players(state).generator(sign_straight_through(outputs))
        return feature_reconstruction_loss(rebuilt, features)
