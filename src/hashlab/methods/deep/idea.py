"""IDEA: context-aware deep weakly supervised image hashing from user tags.

Liu, Zhou, Tian, Qi and Nie, J. National University of Defense Technology 44(3), 2022.
Training sees each image's user tags only, never its class labels.

- Region features (Eq. 1): the backbone's last feature map, 7 x 7 regions. The paper uses
  ResNet-50 (2,048 channels); offline we use EfficientNet-Lite0 (1,280 channels), frozen.
- Context by self-attention (Eq. 2): A = softmax_row(X^ X^^T), X~ = A X^; then (Eq. 3)
  x = mean over regions of (X^ + X~). IDEA-A drops the attention: x = mean of X^.
  Eq. 2-3 have no parameters, so with a frozen backbone x is computed once per image
  (:func:`context_pool`) and the trained network is the heads below; nothing changes.
- Hash head (Eq. 4): h~ = ReLU(W1 x + b1) (256 units), h1 = sigmoid(W2 h~ + b2) (l bits);
  tag head (Eq. 10): h2 = tanh(W3 h~ + b3) in the tag-embedding space; tag classifier
  (Eq. 12): softmax(W4 x + b4) over the tag vocabulary.
- Loss (Eq. 6) from ``hashlab.losses.idea``: lambda1 L1 + L2 + lambda3 L3 + lambda4 L4 with
  the paper's 1.0, 1.0, 0.01; IDEA-L sets lambda4 = 0. Codes (Eq. 13): h1 >= 0.5.

Deviations, stated: frozen backbone (the paper fine-tunes at lr 0.001; we have CPUs); loss
terms averaged over their summands (``reduction="mean"``; the paper's sums would make
lambda4 = 0.01 vanish against N^2 pair terms); t unit-normalised in L3 so one margin
(m = 1, the paper gives no value) fits every embedding; features standardised with the
training mean and deviation before the heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hashlab.errors import InputError
from hashlab.losses.idea import binarize, idea_loss
from hashlab.methods.deep.tagged import TagSupervisedConfig, TagSupervisedMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags

__all__ = ["IDEA", "IDEAConfig", "IDEANetwork", "context_pool", "region_attention"]


def region_attention(regions: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Eq. 2: A = softmax over each row of X^ X^^T / temperature; (N, R, R), rows sum to 1.

    The paper's temperature is 1 (plain dot products of region features).
    """
    scores = regions @ regions.transpose(1, 2) / temperature
    return torch.softmax(scores, dim=-1)


def context_pool(
    feature_maps: torch.Tensor | np.ndarray,
    attention: bool = True,
    temperature: float = 1.0,
    chunk: int = 128,
) -> np.ndarray:
    """Eq. 2-3: (N, C, H, W) maps (or (N, R, C) regions) -> (N, C) image vectors x_i."""
    maps = torch.as_tensor(np.array(feature_maps, dtype=np.float32))
    if maps.ndim == 4:
        maps = maps.flatten(2).transpose(1, 2)  # X^: (N, H*W regions, C)
    if maps.ndim != 3:
        raise ValueError(f"feature maps must be (N, C, H, W) or (N, R, C), got {tuple(maps.shape)}")
    pooled = []
    with torch.no_grad():
        for start in range(0, len(maps), chunk):
            regions = maps[start : start + chunk]
            if attention:
                regions = regions + region_attention(regions, temperature) @ regions  # X^ + X~
            pooled.append(regions.mean(dim=1))
    return torch.cat(pooled).numpy()


class IDEANetwork(nn.Module):
    """Eq. 4, 10 and 12 on x: returns [h1 (l) | h2 (d) | tag logits (V or 0)] per row.

    ``adapter`` stands in for fine-tuning the backbone's last layer: a 1 x 1 convolution on
    the region map (identity at start). Being linear it commutes with the region means of
    Eq. 3, so it is applied to the pooled x. Without it, a frozen backbone would leave L4 no
    way to reach the codes (W4 sits beside the hash head) and IDEA-L would equal IDEA.
    """

    def __init__(
        self, in_dim: int, n_bits: int, tag_dim: int, n_tags: int, hidden: int = 256
    ) -> None:
        super().__init__()
        self.adapter = nn.Linear(in_dim, in_dim)
        with torch.no_grad():
            self.adapter.weight.copy_(torch.eye(in_dim))
            self.adapter.bias.zero_()
        self.hidden = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())  # h~
        self.hash_head = nn.Linear(hidden, n_bits)  # W2, b2
        self.tag_head = nn.Linear(hidden, tag_dim)  # W3, b3
        self.classifier = nn.Linear(in_dim, n_tags) if n_tags > 0 else None  # W4, b4
        self.split_sizes = (n_bits, tag_dim, n_tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.adapter(x)
        h_tilde = self.hidden(x)
        parts = [torch.sigmoid(self.hash_head(h_tilde)), torch.tanh(self.tag_head(h_tilde))]
        if self.classifier is not None:
            parts.append(self.classifier(x))
        return torch.cat(parts, dim=1)


@dataclass
class IDEAConfig(TagSupervisedConfig):
    """The paper's settings (Sec. 4.2) unless marked; training ones in TagSupervisedConfig.

    ``backbone_lr_scale`` (0.1) is the paper's backbone lr 0.001 = 0.1 x the heads' 0.01,
    applied to the adapter that stands in for the backbone's last layer.
    """

    hidden: int = 256
    lambda1: float = 1.0
    lambda3: float = 1.0
    lambda4: float = 0.01
    margin: float = 1.0  # not given in the paper
    attention: bool = True
    attention_temperature: float = 1.0
    reduction: str = "mean"  # the paper sums (see the module docstring)

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        """For the bench harness: lr (the paper's 0.01 is for summed losses; see the module
        docstring) and the loss weights lambda1, lambda3, lambda4."""
        return {"lr": ("float", 1e-3, 0.3, "log"), "lambda1": ("float", 0.1, 10.0, "log"),
                "lambda3": ("float", 0.1, 10.0, "log"),
                "lambda4": ("float", 1e-3, 0.1, "log")}  # fmt: skip


@register("idea")
class IDEA(TagSupervisedMethod):
    """IDEA on backbone feature maps (N, C, 7, 7); ``fit(maps, tags=..., tag_vectors=...)``."""

    tags = MethodTags(family="deep", supervision="tags", inputs="feature_maps")

    Config = IDEAConfig
    variant_defaults: dict[str, Any] = {}

    def __init__(self, n_bits: int = 32, seed: int = 0, **params: Any) -> None:
        super().__init__(n_bits=n_bits, seed=seed, **{**self.variant_defaults, **params})

    def input_features(self, features: np.ndarray) -> np.ndarray:
        """Region maps (N, C, H, W) -> x_i by Eq. 2-3 (IDEA-A: plain region mean)."""
        maps = np.asarray(features, dtype=np.float32)
        if maps.ndim == 2:  # already pooled vectors (only meaningful for IDEA-A)
            if self.hparams.attention:
                raise InputError("IDEA needs region feature maps (N, C, H, W), got (N, D)")
            return maps
        return context_pool(maps, self.hparams.attention, self.hparams.attention_temperature)

    def build_network(self, input_dim: int) -> nn.Module:
        n_classes = self.n_tags if self.hparams.lambda4 != 0 else 0
        return IDEANetwork(input_dim, self.n_bits, self.tag_dim, n_classes, self.hparams.hidden)

    def loss(self, outputs: torch.Tensor, tag_targets: torch.Tensor, state: Any) -> torch.Tensor:
        n_bits, tag_dim = self.n_bits, self.tag_dim
        h1, h2 = outputs[:, :n_bits], outputs[:, n_bits : n_bits + tag_dim]
        logits = outputs[:, n_bits + tag_dim :] if self.hparams.lambda4 != 0 else None
        t = self.batch_tag_embeddings(tag_targets, state)
        terms = idea_loss(
            h1, h2, logits, t, tag_targets,
            lambda1=self.hparams.lambda1, lambda3=self.hparams.lambda3,
            lambda4=self.hparams.lambda4, margin=self.hparams.margin,
            reduction=self.hparams.reduction,  # type: ignore[arg-type]
        )  # fmt: skip
        return terms["total"]

    def parameter_groups(self, network: nn.Module, lr: float) -> list[dict[str, Any]]:
        """The paper's two learning rates: backbone 0.001 (here the adapter), heads 0.01."""
        adapter = list(network.head.adapter.parameters())
        adapter_ids = {id(p) for p in adapter}
        heads = [p for p in network.parameters() if id(p) not in adapter_ids]
        return [{"params": adapter, "lr": lr * self.hparams.backbone_lr_scale},
                {"params": heads, "lr": lr}]  # fmt: skip

    def binarize(self, outputs: torch.Tensor) -> np.ndarray:
        return binarize(outputs[:, : self.n_bits]).cpu().numpy()


@register("idea_l")
class IDEAL(IDEA):
    """IDEA-L: no discrimination loss (lambda4 = 0)."""

    variant_defaults = {"lambda4": 0.0}


@register("idea_a")
class IDEAA(IDEA):
    """IDEA-A: no context attention, x = mean of the region features."""

    variant_defaults = {"attention": False}
