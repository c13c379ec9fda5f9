"""The adversarial game of PC-AEGAN (Eq. 6-11, 17) and PC-WGAN, one batch at a time.

:class:`AdversarialGame` holds the players that are not the hash network: the approximate
codes H (stage 1, as logits), the generator G, the image discriminator D and, for PC-AEGAN, the
code discriminator C, each with its own Adam optimiser. Eq. 6 is scored on codes in {-1, 1}
(tanh-relaxed), shown to the generator and to C as (h + 1) / 2 in {0, 1}: printed with H in
{0, 1}, Eq. 6 has no good solution beyond two classes (a similar pair needs both codes all
ones, a dissimilar pair disjoint ones; our stage 1 ended at all-zero codes unweighted and at
all-one codes class-balanced), while with +-1 codes S_ij = 0 asks for orthogonal codes, which
exist (CNNH's form of the same objective). The Trainer trains the hash network F; the method's
loss hook calls :meth:`AdversarialGame.step` once per batch, which plays, in order (Eq. 17):

1. D: min L_D = L_Ds + L_Dc (Eq. 7 + Eq. 8 = Eq. 9). Eq. 17 writes min_D L_F + eta L_D, but L_F
   does not depend on D's parameters, so D's step is eta L_D alone.
2. C: min L_C (Eq. 11): a WGAN-GP critic between approximate codes H and the random codes
   Z_r ~ Bernoulli(1/2)^q that are fed to the generator.
3. G and H: min L_F(fakes) + eta (L_G + L_H + L_C), Eq. 17, where G and H see L_C through its
   first term only: H plays the generated side of Eq. 11 (its codes are pushed towards the
   distribution of Z_r, the code adversary of alpha-GAN), and G renders both H and Z_r, so
   that images from random codes look real too. L_H is Eq. 6 on the batch's pairs; L_F(fakes)
   is the hash loss of the fakes through F (``hash_loss_of_fakes``; optional because on a CPU
   its backward pass through the backbone costs more than the rest of the step).

Returns the batch's fakes (detached) with the labels of the real images whose codes made them,
for F's own step (F is trained on real and generated images).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hashlab.losses.adversarial import (
    approximate_code_loss,
    generator_adversarial_loss,
    gradient_penalty,
    pair_similarity_loss,
    wasserstein_critic_loss,
)
from hashlab.losses.pairwise import label_similarity
from hashlab.methods.deep.pc_aegan_networks import CodeDiscriminator, Discriminator, Generator

__all__ = ["GameSettings", "AdversarialGame"]


@dataclass
class GameSettings:
    n_bits: int
    image_size: int = 32
    code_discriminator: bool = True
    noise_dim: int = 64
    generator_channels: int = 32
    discriminator_channels: int = 32
    code_hidden: int = 256
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)  # the paper's Adam settings
    eta: float = 1.0
    gp_weight: float = 10.0  # lambda of Eq. 7 / 11 (WGAN-GP's value; the paper prints none)
    code_lr: float = 0.05
    code_pretrain_steps: int = 300
    code_pairs: int = 4096


class AdversarialGame:
    """H, G, D (and C) with their optimisers; see the module docstring."""

    def __init__(
        self, settings: GameSettings, train_labels: torch.Tensor, device: torch.device
    ) -> None:
        self.settings = settings
        self.device = device
        self.labels = train_labels.float().to(device)
        q = settings.n_bits
        # unit-scale logits: tanh(0) = 0 is a stationary point of Eq. 6, start away from it
        self.code_logits = torch.nn.Parameter(torch.randn(len(self.labels), q, device=device))
        self.generator = Generator(q, settings.noise_dim, settings.image_size,
                                   settings.generator_channels).to(device)  # fmt: skip
        self.discriminator = Discriminator(settings.image_size,
                                           settings.discriminator_channels).to(device)  # fmt: skip
        self.code_critic = (
            CodeDiscriminator(q, settings.code_hidden).to(device)
            if settings.code_discriminator else None
        )  # fmt: skip
        adam = {"lr": settings.lr, "betas": settings.betas}
        self.optimizers = {
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), **adam),
            "generator": torch.optim.Adam(
                [{"params": self.generator.parameters()},
                 {"params": [self.code_logits], "lr": settings.code_lr}], **adam),
        }  # fmt: skip
        if self.code_critic is not None:
            self.optimizers["code_critic"] = torch.optim.Adam(self.code_critic.parameters(), **adam)
        self.history: list[dict[str, float]] = []

    # -- stage 1 ------------------------------------------------------------------------
    def signed_codes(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Relaxed approximate codes in (-1, 1) (tanh of the logits), what Eq. 6 scores."""
        logits = self.code_logits if indices is None else self.code_logits[indices]
        return torch.tanh(logits)

    def codes(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Relaxed approximate codes H in (0, 1) of training items (all when ``None``): what the
        generator and the code discriminator see, on the scale of Z_r in {0, 1}^q."""
        return 0.5 * (self.signed_codes(indices) + 1.0)

    def pretrain_codes(self, generator: torch.Generator | None = None) -> list[float]:
        """Stage 1: minimise Eq. 6 on ``code_pairs`` random pairs per step; returns L_H."""
        settings, n = self.settings, len(self.labels)
        optimizer = torch.optim.Adam([self.code_logits], lr=settings.code_lr)
        losses = []
        for _ in range(settings.code_pretrain_steps):
            i = torch.randint(n, (settings.code_pairs,), device=self.device, generator=generator)
            j = torch.randint(n, (settings.code_pairs,), device=self.device, generator=generator)
            s = ((self.labels[i] * self.labels[j]).sum(1) > 0).float()
            loss = approximate_code_loss(self.signed_codes(i), self.signed_codes(j), s)  # Eq. 6
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    def binary_codes(self) -> torch.Tensor:
        """Stage 1's output: H binarised at 1/2 (0/1 bits)."""
        return (self.codes() > 0.5).to(torch.uint8)

    # -- stage 2 ------------------------------------------------------------------------
    def random_codes(self, n: int) -> torch.Tensor:
        """Z_r ~ Bernoulli(1/2)^q: the random codes fed to the generator."""
        return torch.bernoulli(torch.full((n, self.settings.n_bits), 0.5, device=self.device))

    def noise(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.settings.noise_dim, device=self.device)

    def step(
        self,
        real: torch.Tensor,
        indices: torch.Tensor,
        hash_loss_of_fakes: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One round of D, C, G/H updates on a batch of real images (in [-1, 1]) and their
        training-item indices. Returns (fakes made from the batch's codes, their labels)."""
        record: dict[str, float] = {}
        real_embedding = self.update_discriminator(real, indices, record)
        random_codes = self.random_codes(len(indices))
        if self.code_critic is not None:
            self.update_code_critic(indices, random_codes, record)
        fakes = self.update_generator(indices, real_embedding, random_codes, hash_loss_of_fakes,
                                      record)  # fmt: skip
        self.history.append(record)
        return fakes, self.labels[indices]

    def update_discriminator(
        self, real: torch.Tensor, indices: torch.Tensor, record: dict[str, float]
    ) -> torch.Tensor:
        """D's step (Eq. 7-9); returns the real images' pair embeddings (detached)."""
        settings, n = self.settings, len(indices)
        labels = self.labels[indices]
        with torch.no_grad():
            fakes = self.generator(self.codes(indices), self.noise(n))
            if self.code_critic is not None:  # G renders the random codes Z_r too
                fakes = torch.cat([fakes, self.generator(self.random_codes(n), self.noise(n))])
        real_scores, real_embedding = self.discriminator(real)
        fake_scores, _ = self.discriminator(fakes)
        critic = wasserstein_critic_loss(real_scores, fake_scores)
        penalty = gradient_penalty(self.discriminator.score, real, fakes[:n])
        loss_ds = critic + settings.gp_weight * penalty  # Eq. 7
        loss_dc = pair_similarity_loss(  # Eq. 8
            self.discriminator.pair_logits(real_embedding, real_embedding),
            label_similarity(labels, labels),
        )
        self._update("discriminator", settings.eta * (loss_ds + loss_dc))  # Eq. 9
        record.update(critic=critic.item(), discriminator=(loss_ds + loss_dc).item(),
                      pair=loss_dc.item())  # fmt: skip
        return real_embedding.detach()

    def update_code_critic(
        self, indices: torch.Tensor, random_codes: torch.Tensor, record: dict[str, float]
    ) -> None:
        """C's step (Eq. 11): Z_r is the "real" side, the approximate codes the generated side."""
        critic, codes = self.code_critic, self.codes(indices).detach()
        loss_c = wasserstein_critic_loss(critic(random_codes), critic(codes)) + (
            self.settings.gp_weight * gradient_penalty(critic, random_codes, codes)
        )
        self._update("code_critic", self.settings.eta * loss_c)
        record["code_critic"] = loss_c.item()

    def update_generator(
        self,
        indices: torch.Tensor,
        real_embedding: torch.Tensor,
        random_codes: torch.Tensor,
        hash_loss_of_fakes: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
        record: dict[str, float],
    ) -> torch.Tensor:
        """G's and H's step (Eq. 10, Eq. 6, the first term of Eq. 11, L_F of the fakes: Eq. 17).

        Returns the fakes of the batch's codes, detached.
        """
        n = len(indices)
        labels = self.labels[indices]
        s = label_similarity(labels, labels)
        codes = self.codes(indices)
        fakes = self.generator(codes, self.noise(n))
        fake_scores, fake_embedding = self.discriminator(fakes)
        # fake_i is made from real_i's code, so S(fake_i, real_j) = S_ij
        pair_logits = self.discriminator.pair_logits(fake_embedding, real_embedding)
        loss_g = generator_adversarial_loss(fake_scores, pair_logits, s)  # Eq. 10
        signed = 2.0 * codes - 1.0
        loss_h = approximate_code_loss(  # Eq. 6 on the batch's pairs
            signed.repeat_interleave(n, 0), signed.repeat(n, 1), s.flatten()
        )
        adversarial = loss_g + loss_h
        if self.code_critic is not None:
            random_fakes = self.generator(random_codes, self.noise(n))
            loss_g = loss_g - self.discriminator.score(random_fakes).mean()
            code_adversary = -self.code_critic(codes).mean()  # first term of Eq. 11, for H
            adversarial = loss_g + loss_h + code_adversary
            record["code_adversary"] = code_adversary.item()
        total = self.settings.eta * adversarial
        if hash_loss_of_fakes is not None:
            loss_f = hash_loss_of_fakes(fakes, labels)
            total = total + loss_f
            record["hash_of_fakes"] = loss_f.item()
        self._update("generator", total)
        record.update(generator=loss_g.item(), codes=loss_h.item())
        return fakes.detach()

    def _update(self, player: str, loss: torch.Tensor) -> None:
        optimizer = self.optimizers[player]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    # -- sampling and persistence -----------------------------------------------------------
    @torch.no_grad()
    def render(self, indices: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """Images G(H[indices], noise) with a fixed noise, the generator in eval mode."""
        rng = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.randn(len(indices), self.settings.noise_dim, generator=rng).to(self.device)
        was_training = self.generator.training
        self.generator.eval()
        images = self.generator(self.codes(indices), noise)
        self.generator.train(was_training)
        return images

    def state_dict(self) -> dict[str, Any]:
        players = {"generator": self.generator, "discriminator": self.discriminator}
        if self.code_critic is not None:
            players["code_critic"] = self.code_critic
        return {
            "code_logits": self.code_logits.detach().cpu(),
            "players": {k: v.state_dict() for k, v in players.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.code_logits.copy_(state["code_logits"].to(self.device))
        for name, weights in state["players"].items():
            getattr(self, name).load_state_dict(weights)
        for name, optimizer_state in state["optimizers"].items():
            self.optimizers[name].load_state_dict(optimizer_state)
        self.history = list(state["history"])
