"""DCMH on features: Jiang & Li, "Deep Cross-Modal Hashing", CVPR 2017.

Objective (Eq. 2-3), with F (image) and G (text) the real-valued network outputs of the n
training items, S the 0/1 label-sharing matrix and B in {-1, +1}^{n x K}:

    min -sum_ij (S_ij Theta_ij - ln(1 + e^Theta_ij)) + gamma (||B - F||^2 + ||B - G||^2)
        + eta (||F 1||^2 + ||G 1||^2),   Theta_ij = 0.5 F_i^T G_j

optimised alternately (Algorithm 1): the image network on mini-batches with G fixed, the
text network with F fixed, then B = sign(gamma (F + G)) (Eq. 6). Codes of new items are the
signs of their network outputs. gamma = eta = 1 as in the paper, but the balance term is
taken per item, (eta / n) ||F 1||^2: see "Balance scale" below.

"On features" (the DCMH_vgg19 row of Zhang & Zhou 2021): both modalities go through a
two-layer network (the paper's text network, width 512 here instead of 8,192) on precomputed
features instead of CNN-F on pixels. Each mini-batch loss is divided by (batch x n), as in
the authors' code, so one learning rate fits any data size; Adam lr 1e-3, 60 epochs, batch
128 (ours: the authors use SGD with a decaying rate and 500 epochs on raw pixels).

Training runs on the one :class:`~hashlab.train.Trainer` (``TrainedCrossModalMethod``): one
epoch is the image phase (mini-batches of image items, G fixed) then the text phase, each a
permutation of the training items; F, G (the latest outputs of every item) and B live in the
checkpointed ``state.extras``, so a resumed run continues exactly. The epoch kept is the one
with the best validation score (mean of i2t and t2i map@all), early stopping after
``patience`` epochs without improvement.

Balance scale (deviation). ||F 1||^2 is the square of a sum over all n items, so its gradient
on one output is 2 eta (column sum), which grows with n, while the quantisation pull of that
output towards +-1 does not. With the literal eta = 1 on Wikipedia (n = 1,673 of a validation
split carved from the 2,173 training pairs) the balance term swamps the image network: its
outputs shrink to |F| ~ 0.07, its bits swing between balanced and nearly constant from epoch
to epoch (the column sums come from stale outputs of the other items), and its codes of the
training items agree with the text codes on 57% of bits, about chance. The database of
text-to-image search is those image codes, so 16-bit validation t2i map@all was 0.15
(random codes: 0.11) and i2t 0.14. With balance / n, validation t2i is 0.64 / 0.67 / 0.69 at
16 / 32 / 64 bits (i2t 0.23 / 0.24 / 0.26); with no balance term at all, 0.62 / 0.66 / 0.65.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hashlab.losses.cross_modal import (
    dcmh_balance_loss,
    dcmh_inter_modal_likelihood,
    dcmh_quantisation_loss,
)
from hashlab.methods.cross_modal.base import TrainedCrossModalMethod, TwoLayerNet
from hashlab.methods.registry import register
from hashlab.train import TrainConfig
from hashlab.train.trainer import TrainState

__all__ = ["DCMH"]


@register("dcmh")
class DCMH(TrainedCrossModalMethod):
    """DCMH on precomputed image and text features (see the module docstring)."""

    hidden_activation = "relu"

    def __init__(
        self,
        n_bits: int = 32,
        seed: int = 0,
        hidden: int = 512,
        epochs: int = 60,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        gamma: float = 1.0,
        eta: float = 1.0,
        patience: int | None = 10,
        validation_fraction: float = 0.1,
        device: str | None = None,
        amp: bool = False,
        progress: bool = False,
        checkpoint_dir: str | None = None,
        resume: bool = False,
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.gamma = gamma
        self.eta = eta
        self.patience = patience
        self.validation_fraction = validation_fraction
        # runtime options (not saved): mixed precision buys nothing for two small MLPs
        self.device, self.amp, self.progress = device, amp, progress
        self.checkpoint_dir, self.resume = checkpoint_dir, resume

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.learning_rate,
            weight_decay=0.0, patience=self.patience, seed=self.seed, device=self.device,
            amp=self.amp, progress=self.progress, checkpoint_dir=self.checkpoint_dir,
            resume=self.resume,
        )  # fmt: skip

    def steps_per_epoch(self, labels: np.ndarray) -> int:
        return max(1, len(labels) // self.batch_size)  # one pass over the items per phase

    def build_nets(self, image_dim: int, text_dim: int) -> nn.ModuleDict:
        return nn.ModuleDict({
            m: TwoLayerNet(dim, self.hidden, self.n_bits, "relu", sigmoid=False)
            for m, dim in (("image", image_dim), ("text", text_dim))
        })  # fmt: skip

    def _similarity(self, state: TrainState) -> torch.Tensor:
        cached = getattr(self, "_similarity_cache", None)
        if cached is None or cached.device != state.device:
            labels = state.train_labels
            cached = (labels @ labels.T > 0).to(torch.float32)
            self._similarity_cache = cached
        return cached

    # -- trainer hooks ---------------------------------------------------------------------
    def on_train_start(self, state: TrainState) -> None:
        inputs = self.device_inputs(state)
        with torch.no_grad():
            outputs = {m: state.network[m](x).float() for m, x in inputs.items()}
        state.extras["outputs"] = outputs  # F and G of every item, refreshed batch by batch
        state.extras["codes"] = torch.sign(outputs["image"] + outputs["text"] + 1e-12)

    def training_batches(self, state: TrainState, rng: np.random.Generator) -> Any:
        n = len(state.train_labels)
        for modality in ("image", "text"):  # Algorithm 1: image network, then text network
            for batch in np.array_split(rng.permutation(n), max(1, n // self.batch_size)):
                yield modality, batch

    def training_step(self, batch: tuple[str, np.ndarray], state: TrainState) -> torch.Tensor:
        modality, indices = batch
        other = "text" if modality == "image" else "image"
        outputs, codes = state.extras["outputs"], state.extras["codes"]
        n = len(state.train_labels)
        batch_t = torch.from_numpy(indices).to(state.device)
        with state.autocast():
            batch_out = state.network[modality](self.device_inputs(state)[modality][batch_t])
        batch_out = batch_out.float()
        # rows of S: this modality's batch items against all items of the other
        pair_similarity = self._similarity(state)[batch_t]
        fixed = outputs[other]
        if modality == "image":
            likelihood = dcmh_inter_modal_likelihood(batch_out, fixed, pair_similarity)
        else:  # Theta is symmetric in (F, G): the same term seen from text rows
            likelihood = dcmh_inter_modal_likelihood(fixed, batch_out, pair_similarity.T)
        # balance uses the current outputs of the other items of this modality
        others_sum = outputs[modality].sum(dim=0) - outputs[modality][batch_t].sum(0)
        balance = dcmh_balance_loss(torch.cat([batch_out, others_sum.unsqueeze(0)], dim=0))
        # balance / n: a per-item weight, so it does not outgrow the quantisation term as n
        # grows (see "Balance scale" in the module docstring)
        loss = (
            likelihood
            + self.gamma * dcmh_quantisation_loss(codes[batch_t], batch_out)
            + self.eta * balance / n
        ) / (len(indices) * n)
        outputs[modality][batch_t] = batch_out.detach()
        return loss

    def on_epoch_end(self, state: TrainState) -> None:
        outputs = state.extras["outputs"]
        state.extras["codes"] = torch.sign(  # Eq. 6
            self.gamma * (outputs["image"] + outputs["text"]) + 1e-12
        )
