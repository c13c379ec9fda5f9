"""ACMR with a hashing head: Wang, Yang, Xu, Hanjalic & Shen, "Adversarial Cross-Modal
Retrieval", ACM MM 2017.

A projector per modality maps features to a common space; two players compete (Sec. 3):

* the feature projector minimises L_emb = beta L_imd + L_imi (Eq. 10): label prediction
  L_imd (Eq. 4, softmax cross-entropy of one label classifier shared by both modalities) and
  inter-modal structure preservation L_imi (Eq. 5-7, triplets: the anchor's paired item of
  the other modality as positive, as negative the item of the other modality, with a
  different label, whose own features are closest in cosine to the anchor's: the authors'
  code), :func:`~hashlab.losses.cross_modal_adversarial.acmr_triplet_loss`;
* the modality classifier D (three linear layers, ``dim / 2``, ``dim / 4``, 1, as the
  authors' code) tells image from text representations (Eq. 9,
  :func:`~hashlab.losses.cross_modal_adversarial.modality_adversarial_loss`), and the
  projectors play against it through a gradient reversal layer with weight
  l = 2 / (1 + exp(-10 p)) - 1, p the fraction of training done (the authors' schedule):
  one optimiser step is the whole min-max, as their ``flip_gradient``.

Hashing head (ours: ACMR retrieves with real vectors). The common representation is
u = tanh(W2 tanh(W1 x + b1) + b2) with K = ``n_bits`` units, a
:class:`~hashlab.methods.cross_modal.base.TwoLayerNet` (the authors' projector has three
layers ending in a tanh of 40 units on Wikipedia), and the codes are sign(u); the label
classifier and D read u. Defaults from the authors' code: margin 0.1, alpha 5, beta 100,
batch 64, Adam lr 1e-4 (theirs with beta1 = 0.5; the one trainer's Adam keeps 0.9). The
hidden width 512 is their first layer. Losses are per-triplet means (their code sums
``l2_loss`` over the batch inside one hinge).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as functional
from torch import nn

from hashlab.losses.cross_modal_adversarial import (
    acmr_triplet_loss,
    gradient_reversal,
    modality_adversarial_loss,
)
from hashlab.methods.cross_modal.base import TwoLayerNet
from hashlab.methods.cross_modal.paired import PairedBatchMethod
from hashlab.methods.registry import register
from hashlab.train.trainer import TrainState

__all__ = ["ACMR", "hardest_negatives", "reversal_weight"]


def reversal_weight(progress: float) -> float:
    """The authors' schedule of the reversal weight: 2 / (1 + exp(-10 p)) - 1, p in [0, 1]."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


def hardest_negatives(features: torch.Tensor, similar: torch.Tensor) -> torch.Tensor:
    """Per item, the dissimilar item whose features are closest in cosine (authors' code);
    an item with no dissimilar item in the batch gets itself."""
    unit = functional.normalize(features, dim=1)
    cosine = (unit @ unit.T).masked_fill(similar.bool(), -2.0)
    best = cosine.argmax(1)
    none = similar.bool().all(1)
    return torch.where(none, torch.arange(len(features), device=features.device), best)


def _discriminator(dim: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(dim, max(1, dim // 2)),
        nn.Linear(max(1, dim // 2), max(1, dim // 4)),
        nn.Linear(max(1, dim // 4), 1),
    )  # linear layers, as the authors' domain classifier


@register("acmr")
class ACMR(PairedBatchMethod):
    """Adversarial cross-modal retrieval with a tanh / sign hashing head (module docstring)."""

    hidden_activation = "tanh"

    def __init__(
        self,
        n_bits: int = 32,
        seed: int = 0,
        hidden: int = 512,
        epochs: int = 200,
        batch_size: int = 64,
        learning_rate: float = 1e-4,
        margin: float = 0.1,
        alpha: float = 5.0,
        beta: float = 100.0,
        patience: int | None = 20,
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
        self.margin = margin
        self.alpha = alpha
        self.beta = beta
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.device, self.amp, self.progress = device, amp, progress
        self.checkpoint_dir, self.resume = checkpoint_dir, resume

    def build_nets(self, image_dim: int, text_dim: int) -> nn.ModuleDict:
        return nn.ModuleDict({
            "image": TwoLayerNet(image_dim, self.hidden, self.n_bits, "tanh", sigmoid=False),
            "text": TwoLayerNet(text_dim, self.hidden, self.n_bits, "tanh", sigmoid=False),
            "classifier": nn.Linear(self.n_bits, self._n_classes),
            "discriminator": _discriminator(self.n_bits),
        })  # fmt: skip

    def training_step(self, batch: torch.Tensor, state: TrainState) -> torch.Tensor:
        nets, x = state.network, self.batch_inputs(state, batch)
        labels = x["labels"]
        with state.autocast():
            u = {m: torch.tanh(nets[m].logits(x[m])).float() for m in ("image", "text")}
        # L_imd (Eq. 4): one classifier for both modalities; softmax CE on the (normalised)
        # label rows, which for single-label data is the usual cross-entropy
        target = labels / labels.sum(1, keepdim=True).clamp_min(1.0)
        label_loss = sum(
            -(target * functional.log_softmax(nets["classifier"](u[m]), 1)).sum(1).mean()
            for m in ("image", "text")
        )
        # L_imi (Eq. 5-7): paired item as positive, hardest dissimilar item as negative
        similar = (labels @ labels.T > 0).float()
        triplet = 0.0
        for anchor, other in (("image", "text"), ("text", "image")):
            negatives = hardest_negatives(x[anchor], similar)
            triplet = triplet + acmr_triplet_loss(
                u[anchor], u[other], u[other][negatives], self.margin, self.alpha
            )
        # Eq. 9 through the reversal: D descends it, the projectors ascend it
        weight = reversal_weight(state.epoch / max(1, self.epochs - 1))
        scores = {m: nets["discriminator"](gradient_reversal(u[m], weight)).squeeze(1)
                  for m in ("image", "text")}  # fmt: skip
        adversarial = modality_adversarial_loss(scores["image"], scores["text"])
        return self.beta * label_loss + triplet + adversarial
