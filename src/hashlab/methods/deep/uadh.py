"""UADH (Deng, Yang, Liu, Tao et al., "Unsupervised Semantic-Preserving Adversarial Hashing
for Image Search", IEEE TIP 2019): an encoder, a generator and a discriminator on
(code, item) pairs, BiGAN / ALI style (Donahue et al. 2017; Dumoulin et al. 2017), with a
semantic-preserving term from feature-space neighbours.

On frozen features (the game of ``adversarial_hashing``: E and G on the Trainer's side, the
joint discriminator D(x, b) the game's player), numbered here:

1. E: u = tanh(E(x)) in (-1, 1); the code is sgn(u). G: x' = G(z_b, noise) with random codes
   z_b uniform on {-1, 1}^K (the paper's generator makes images from codes).
2. D: min L_D = BCE(D(x, u), 1) + BCE(D(G(z_b), z_b), 0): the encoder's pairs are "real", the
   generator's "fake" (``gan_discriminator_loss``).
3. E, G: min L_adv + lambda_s L_s + lambda_r L_r + lambda_q L_q with L_adv the same BCE with
   the labels swapped (each side wants its pairs taken for the other's, BiGAN's E/G loss);
   L_s = mean_ij (s_ij - u_i^T u_j / K)^2, the semantic-preserving term with s_ij = 1 for
   feature-space k-NN pairs, 0 otherwise (``approximate_code_loss``); L_r = ||G(sgn u) - x||^2
   (cycle reconstruction: the paper's generator must rebuild the item from its code);
   L_q = mean (|u| - 1)^2, the quantisation gap.

Defaults: k = 20 neighbours, lambda_s = 1, lambda_r = 1, lambda_q = 0.1, noise of 16
dimensions: ours (the paper's weights are for image losses). Held-out criterion: L_r of
held-out items, no labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hashlab.losses.adversarial import approximate_code_loss
from hashlab.losses.generative import (
    feature_reconstruction_loss,
    gan_discriminator_loss,
    sign_straight_through,
)
from hashlab.methods.deep.adversarial_hashing import (
    AdversarialConfig,
    AdversarialHashMethod,
    FeatureDiscriminator,
    FeatureGenerator,
)
from hashlab.methods.deep.bgan import BGANPlayers
from hashlab.methods.deep.neighbours import neighbour_similarity
from hashlab.methods.deep.network import HashHead
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState

__all__ = ["UADH", "UADHConfig"]


@dataclass
class UADHConfig(AdversarialConfig):
    similarity_weight: float = 1.0  # lambda_s (ours)
    reconstruction_weight: float = 1.0  # lambda_r (ours)
    quantization_weight: float = 0.1  # lambda_q (ours)


@register("uadh")
class UADH(AdversarialHashMethod):
    tags = MethodTags(family="deep", supervision="none", inputs="features")
    Config = UADHConfig
    head_activation = "tanh"
    criterion = "reconstruction error of the items from their codes"
    uses_neighbours = True

    def build_players(self, input_dim: int) -> nn.Module:
        config = self.hparams
        encoder = HashHead(input_dim, self.n_bits, config.head_hidden, config.dropout, "tanh")
        generator = FeatureGenerator(self.n_bits, config.noise_dim, input_dim, config.hidden)
        return BGANPlayers(encoder, generator)  # E (forward) and G, as in BGAN

    def build_adversary(self, input_dim: int) -> nn.Module:
        return FeatureDiscriminator(input_dim, self.hparams.hidden, n_bits=self.n_bits)

    def _pairs(self, x: torch.Tensor, state: TrainState) -> tuple[torch.Tensor, ...]:
        players = self.players(state)
        codes = players.encoder(x)
        random_codes = self.random_codes(len(x), x.device)
        return codes, random_codes, players.generator(random_codes)

    def adversary_loss(self, x: torch.Tensor, state: TrainState) -> torch.Tensor:
        with torch.no_grad():
            codes, random_codes, generated = self._pairs(x, state)
        return gan_discriminator_loss(self.adversary(x, codes),  # Eq. 2
                                      self.adversary(generated, random_codes))  # fmt: skip

    def trainee_loss(self, x: torch.Tensor, state: TrainState) -> torch.Tensor:
        config = self.hparams
        codes, random_codes, generated = self._pairs(x, state)
        adversarial = gan_discriminator_loss(
            self.adversary(generated, random_codes), self.adversary(x, codes)
        )  # Eq. 3, swapped labels
        indices = torch.from_numpy(state.batch_indices).to(state.device)
        s = neighbour_similarity(self._neighbours, indices)
        n = len(codes)
        similarity = approximate_code_loss(codes.repeat_interleave(n, 0), codes.repeat(n, 1),
                                           s.flatten())  # fmt: skip
        rebuilt = self.players(state).generator(sign_straight_through(codes))
        return (adversarial + config.similarity_weight * similarity
                + config.reconstruction_weight * feature_reconstruction_loss(rebuilt, x)
                + config.quantization_weight * (codes.abs() - 1.0).pow(2).mean())  # fmt: skip

    def heldout_criterion(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        rebuilt = self.players(state).generator(sign_straight_through(outputs))
        return feature_reconstruction_loss(rebuilt, features)
