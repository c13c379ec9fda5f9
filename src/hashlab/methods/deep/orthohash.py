"""OrthoHash (Hoe, Ng, Zhang, Chan, Chan & Yang, NeurIPS 2021): one loss for all.

Each class owns a fixed binary codeword (near-orthogonal for random +-1 codewords in K
bits); the only objective is a margin cross-entropy over the scaled cosine similarities of
the continuous code v to all codewords (``hashlab.losses.hash_centre.orthohash_loss``):
OrthoCos, s (cos - m) for the true class (default), or OrthoArc, s cos(theta + m)
(``margin_type="arc"``). Maximising the cosine to a +-1 codeword also shrinks the
quantisation error, so there is no separate quantisation term. The hash layer is linear
followed by batch normalisation (the paper's code-balance device). Multi-label data: the
authors' default ``label_smoothing`` (softmax CE against the labels divided by their count)
or ``multilabel_loss="bce"``. Equation numbers are not given: the paper's text is not in
``shared/seeds``.

Defaults (authors' code, kamwoh/orthohash ``main.py``): s = 8, m = 0.2, cos margin,
Bernoulli(0.5) codewords (``--codebook-method B``; ``centres="hadamard"`` is the option),
no quantisation term (``--quan 0``), linear hash layer without bias + BatchNorm1d. The
authors' README runs CIFAR-10 with m = 0.3, so m is in the search space. Training options
are hashlab's shared protocol, not the paper's fine-tuned AlexNet.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hashlab.errors import ConfigError
from hashlab.losses.hash_centre import orthohash_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod, HashHead
from hashlab.methods.deep.centre_hooks import CentreHooks
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class OrthoHashConfig(DeepHashConfig):
    scale: float = 8.0  # s (authors' code)
    margin: float = 0.2  # m (authors' code; their CIFAR-10 command uses 0.3)
    margin_type: str = "cos"  # "cos" (OrthoCos) or "arc" (OrthoArc)
    multilabel_loss: str = "label_smoothing"  # or "bce" (authors' code offers both)
    centres: str = "bernoulli"  # codewords: "bernoulli" (authors' default) or "hadamard"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.margin_type not in ("cos", "arc"):
            raise ConfigError(f"margin_type must be 'cos' or 'arc', got {self.margin_type!r}")
        if self.multilabel_loss not in ("label_smoothing", "bce"):
            raise ConfigError(
                f"multilabel_loss must be 'label_smoothing' or 'bce', got {self.multilabel_loss!r}"
            )

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        """The shared lr / weight decay, and the margin m (0.2 default, 0.3 for CIFAR-10)."""
        return {**super().search_space(), "margin": ("float", 0.05, 0.5, "linear")}


@register("orthohash")
class OrthoHash(CentreHooks, DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = OrthoHashConfig
    head_activation = "identity"

    def build_network(self, input_dim: int) -> nn.Module:
        """The shared head, linear output, then BatchNorm1d over the K code units."""
        config = self.hparams
        head = HashHead(input_dim, self.n_bits, config.head_hidden, config.dropout, "identity")
        return nn.Sequential(head, nn.BatchNorm1d(self.n_bits))

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        config = self.hparams
        return orthohash_loss(outputs, labels, self.centres(state), config.scale, config.margin,
                              config.margin_type, config.multilabel_loss)  # fmt: skip
