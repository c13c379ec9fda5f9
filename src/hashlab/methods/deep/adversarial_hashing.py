"""One game loop for the unsupervised adversarial hashing methods (BGAN, HashGAN, UADH).

Each of these papers trains three players, an encoder E (item -> code), a generator G
(code [, noise] -> item) and a discriminator D, on images. hashlab's default protocol is
frozen backbone features, so here every player is a small MLP on the *feature space* (the
standardised features the hash head sees): G makes feature vectors, D tells real feature
vectors (or (feature, code) pairs) from generated ones. PC-AEGAN's image networks
(``pc_aegan_networks``) are the pixel-space version; these methods refuse
``mode="finetune"`` rather than pretend to play an image game on features.

The players split in two sides:

* the Trainer's side: the hash head (``build_players``: a module whose ``forward`` is the
  encoder, so ``encode`` / ``save`` / ``load`` are the ordinary ones; it may hold G too),
  trained by the one Trainer's optimiser on :meth:`AdversarialHashMethod.trainee_loss`;
* the game's side (``build_adversary``): the opponent, with its own Adam
  (``gan_lr``, betas (0.5, 0.999): DCGAN's, which the three papers' code bases start from).

Per batch, :meth:`AdversarialGame.step` plays (the loop all three methods share):

1. the opponent's step on :meth:`AdversarialHashMethod.adversary_loss`, the Trainer's side
   frozen (no gradients reach it);
2. the Trainer's side's loss, the opponent frozen (``requires_grad_(False)`` while the graph
   is built, so the backward pass the Trainer runs leaves the opponent untouched),
   returned to the Trainer, which does backward / step.

BGAN and UADH put E and G on the Trainer's side and D in the game; HashGAN's encoder shares
its trunk with the discriminator, so E+D are the Trainer's side and G is the game's. The
opponent's weights and optimiser are kept in ``state.extras["game"]`` after each epoch, so a
resumed run continues the same game. Validation is label free (``UnsupervisedDeepMethod``):
each method names its held-out criterion. Under ``torchrun`` the Trainer's side is averaged
across ranks as for any custom step, but each rank keeps its own opponent (not synchronised):
these methods are meant for one process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hashlab.errors import ConfigError
from hashlab.methods.deep.neighbours import knn_graph, neighbour_pair_order
from hashlab.methods.deep.unsupervised import UnsupervisedConfig, UnsupervisedDeepMethod
from hashlab.train.trainer import TrainState

__all__ = ["AdversarialConfig", "AdversarialGame", "AdversarialHashMethod", "FeatureDiscriminator",
           "FeatureGenerator", "frozen", "mlp"]  # fmt: skip


def mlp(input_dim: int, hidden: int, output_dim: int) -> nn.Sequential:
    """Linear -> LeakyReLU(0.2) -> Linear -> LeakyReLU(0.2) -> Linear (DCGAN's slope)."""
    return nn.Sequential(nn.Linear(input_dim, hidden), nn.LeakyReLU(0.2),
                         nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
                         nn.Linear(hidden, output_dim))  # fmt: skip


class FeatureGenerator(nn.Module):
    """G(code, noise) -> a (standardised) feature vector; linear output (features are real)."""

    def __init__(self, n_bits: int, noise_dim: int, feature_dim: int, hidden: int) -> None:
        super().__init__()
        self.noise_dim = noise_dim
        self.layers = mlp(n_bits + noise_dim, hidden, feature_dim)

    def forward(self, codes: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(len(codes), self.noise_dim, device=codes.device)
        return self.layers(torch.cat([codes, noise], dim=1))


class FeatureDiscriminator(nn.Module):
    """D(features [, code]) -> (B,) logits of "real"; with ``n_bits`` it scores joint pairs."""

    def __init__(self, feature_dim: int, hidden: int, n_bits: int = 0) -> None:
        super().__init__()
        self.layers = mlp(feature_dim + n_bits, hidden, 1)

    def forward(self, features: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        inputs = features if codes is None else torch.cat([features, codes], dim=1)
        return self.layers(inputs).squeeze(1)


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """No gradient reaches ``module``'s parameters from graphs built inside the block."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


class AdversarialGame:
    """The game's player (the opponent of the Trainer's side) and its optimiser."""

    def __init__(self, adversary: nn.Module, lr: float, betas: tuple[float, float]) -> None:
        self.adversary = adversary
        self.optimizer = torch.optim.Adam(adversary.parameters(), lr=lr, betas=betas)
        self.history: list[dict[str, float]] = []

    def step(
        self,
        trainee: nn.Module,
        adversary_loss: Callable[[], torch.Tensor],
        trainee_loss: Callable[[], torch.Tensor],
    ) -> torch.Tensor:
        """1. the opponent's update; 2. the Trainer's side's loss (see the module docstring)."""
        with frozen(trainee):
            loss_a = adversary_loss()
        self.optimizer.zero_grad(set_to_none=True)
        loss_a.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with frozen(self.adversary):
            loss_t = trainee_loss()
        self.history.append({"adversary": loss_a.item(), "trainee": loss_t.item()})
        return loss_t

    def state_dict(self) -> dict[str, Any]:
        return {
            "adversary": self.adversary.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.adversary.load_state_dict(state["adversary"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = list(state["history"])


@dataclass
class AdversarialConfig(UnsupervisedConfig):
    head_hidden: int = 512  # the encoder's hidden layer on the features (ours, see methods)
    dropout: float = 0.0  # a GAN's players see the same items twice per step: no dropout noise
    hidden: int = 256  # width of G's and D's MLPs (ours: the papers' are image CNNs)
    noise_dim: int = 16
    gan_lr: float = 2e-4  # the opponent's Adam (DCGAN's lr and betas)
    n_neighbours: int = 20  # k of the feature-space k-NN graph, where a method uses one

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode != "frozen":
            raise ConfigError(
                "the adversarial hashing methods play their game on frozen features "
                f"(mode='frozen'), got mode={self.mode!r}"
            )


class AdversarialHashMethod(UnsupervisedDeepMethod):
    """Base of BGAN, HashGAN (unsupervised) and UADH; see the module docstring."""

    Config = AdversarialConfig
    #: whether the epoch pairs each item with a feature-space neighbour (BGAN, UADH)
    uses_neighbours = False

    # -- what a method declares ---------------------------------------------------------
    def build_players(self, input_dim: int) -> nn.Module:
        raise TypeError(f"{type(self).__name__} must define build_players()")

    def build_adversary(self, input_dim: int) -> nn.Module:
        raise TypeError(f"{type(self).__name__} must define build_adversary()")

    def adversary_loss(self, x: torch.Tensor, state: TrainState) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must define adversary_loss()")

    def trainee_loss(self, x: torch.Tensor, state: TrainState) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} must define trainee_loss()")

    # -- shared machinery ---------------------------------------------------------------
    def build_network(self, input_dim: int) -> nn.Module:
        return self.build_players(input_dim)

    @property
    def adversary(self) -> nn.Module:
        return self._game.adversary

    def players(self, state: TrainState) -> nn.Module:
        return state.network.head

    def random_codes(self, n: int, device: torch.device) -> torch.Tensor:
        """Codes drawn uniformly from {-1, 1}^K (what G is fed in HashGAN and UADH)."""
        return torch.randint(0, 2, (n, self.n_bits), device=device).float() * 2.0 - 1.0

    def _new_game(self, state: TrainState) -> AdversarialGame:
        input_dim = int(state.network.feature_mean.shape[0])
        # built from its own seed in a forked RNG: a resumed run rebuilds the opponent before
        # loading its weights, and must not shift the training stream the trainer restored
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 1)
            adversary = self.build_adversary(input_dim).to(state.device)
        return AdversarialGame(adversary, self.hparams.gan_lr, (0.5, 0.999))

    def _standardised_training_features(self, state: TrainState) -> torch.Tensor:
        network = state.network
        features = state.train_inputs.features.to(state.device)
        return (features - network.feature_mean) / network.feature_std

    def on_train_start(self, state: TrainState) -> None:
        self._game = self._new_game(state)
        self._prepare(state)

    def _prepare(self, state: TrainState) -> None:
        if self.uses_neighbours:
            self._neighbours = knn_graph(self._standardised_training_features(state),
                                         self.hparams.n_neighbours)  # fmt: skip

    def on_epoch_start(self, state: TrainState) -> None:
        if getattr(self, "_game", None) is None:  # a resumed run: the game as it was saved
            self._game = self._new_game(state)
            self._game.load_state_dict(state.extras["game"])
            self._prepare(state)

    def on_epoch_end(self, state: TrainState) -> None:
        state.extras["game"] = self._game.state_dict()

    def on_train_end(self, state: TrainState) -> None:
        history = self._game.history
        self.extra_config_ = {**getattr(self, "extra_config_", {}), "adversarial": {
            "steps": len(history),
            "last_100_steps_mean": {key: float(np.mean([h[key] for h in history[-100:]]))
                                    for key in ("adversary", "trainee")} if history else {},
        }}  # fmt: skip
        self._game = None

    def epoch_order(self, state: TrainState, rng: np.random.Generator) -> np.ndarray:
        if not self.uses_neighbours:
            return super().epoch_order(state, rng)
        return neighbour_pair_order(self._neighbours.cpu().numpy(), rng)

    def training_step(
        self, batch: tuple[np.ndarray, torch.Tensor], state: TrainState
    ) -> torch.Tensor | None:
        indices, inputs = batch
        if len(indices) < 2:
            return None
        state.batch_indices = indices
        x = self.head_inputs(state.network, inputs.to(state.device)).float()
        players = self.players(state)
        return self._game.step(players, lambda: self.adversary_loss(x, state),
                               lambda: self.trainee_loss(x, state))  # fmt: skip
