"""BiHalf: unsupervised hashing through a bi-half layer (Li & van Gemert, AAAI 2021).

"Deep Unsupervised Image Hashing by Maximizing Bit Entropy". A bit carries the most
information when it is +1 for half of the images and -1 for the other half. The bi-half layer
enforces that exactly, per batch: each bit's continuous values u are ranked over the batch and
the top half is coded +1, the rest -1 (the optimal transport of the batch's values onto the
half/half binary distribution). Its gradient is the incoming one passed straight through,
plus gamma * (u - b) / (B K), which pulls u towards its code. Numbered as here (the paper's
text is not in shared/seeds, so these are this file's numbers, following the authors' code):

(1) u = W x + c                                     (one fc hash layer on the features)
(2) b_k = bi-half(u_k): +1 for the floor(B/2) largest of u_k over the batch, else -1
(3) dL/du = dL/db + gamma (u - b) / (B K)           (authors' backward)
(4) L = mean_i (cos(b_i, b_i') - cos(x_i, x_i'))^2  over the batch's halves paired i <-> i'

(4) is the authors' unsupervised loss for image retrieval (their CIFAR/Flickr code: the batch
split in two halves, cosine similarities of codes regressed on those of the features that
went into the hash layer). At test time the codes are sgn(u) (authors' code: ``sign`` of the
fc output in eval), so ``head_activation`` is the identity and binarisation is u > 0.

Defaults: gamma = 6 (authors' code and DeepHash-pytorch's BiHalf config); one linear hash
layer on the features (authors: fc on VGG16's fc7; ``head_hidden=0``, ``dropout=0``).
Deviations: the features are hashlab's frozen backbone features, standardised (what the head
sees), where the authors fine-tune VGG16 and compare raw fc7 outputs; the optimiser and
learning rate are the shared defaults (Adam, 1e-3, batch 64) where the authors use lr 1e-4
and batch 32 for 100 epochs of fine-tuning: a frozen linear head converges in far fewer.
Validation (no labels): the loss (4) on held-out items, with codes from (2) on each batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from hashlab.errors import ConfigError
from hashlab.losses.similarity_preserving import bi_half, paired_cosine_mse
from hashlab.methods.deep.unsupervised import UnsupervisedConfig, UnsupervisedDeepMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class BiHalfConfig(UnsupervisedConfig):
    gamma: float = 6.0  # weight of the pull of u towards b in (3); authors' code
    head_hidden: int = 0  # one fc hash layer (1), as the authors
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gamma < 0:
            raise ConfigError(f"gamma must be non-negative, got {self.gamma}")

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "gamma": ("float", 0.5, 20.0, "log")}


@register("bihalf")
class BiHalf(UnsupervisedDeepMethod):
    """Bi-half layer (2)-(3) trained on the similarity-preserving loss (4)."""

    tags = MethodTags(family="deep", supervision="none", inputs="features")
    Config: ClassVar[type[UnsupervisedConfig]] = BiHalfConfig
    head_activation: ClassVar[str] = "identity"

    def unsupervised_loss(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        codes = bi_half(outputs, self.hparams.gamma)  # (2), with the gradient (3)
        return paired_cosine_mse(codes, features)  # (4)
