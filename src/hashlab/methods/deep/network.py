"""The default network of a deep method: [backbone ->] [standardise ->] hash head.

``HashHead`` is the papers' fc hash layer (optionally after a hidden layer) with the method's
output activation; ``DeepHashNetwork`` puts it on frozen, standardised features or on a
backbone that is fine-tuned end to end.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DeepHashNetwork", "HashHead"]


class HashHead(nn.Module):
    """[fc -> ReLU -> dropout ->] fc to K units -> activation ("tanh", "sigmoid", "identity")."""

    def __init__(
        self,
        input_dim: int,
        n_bits: int,
        hidden: int = 0,
        dropout: float = 0.0,
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        if hidden:
            layers += [nn.Linear(input_dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, n_bits))
        self.layers = nn.Sequential(*layers)
        if activation not in ("tanh", "sigmoid", "identity"):
            raise ValueError(f"unknown head activation {activation!r}")
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.layers(x)
        if self.activation == "tanh":
            return torch.tanh(z)
        if self.activation == "sigmoid":
            return torch.sigmoid(z)
        return z


class DeepHashNetwork(nn.Module):
    """[backbone ->] [standardise ->] head. Frozen mode standardises; fine-tune has a backbone."""

    def __init__(self, head: nn.Module, backbone: nn.Module | None, input_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        if backbone is None:
            self.register_buffer("feature_mean", torch.zeros(input_dim))
            self.register_buffer("feature_std", torch.ones(input_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backbone is not None:
            x = self.backbone(x)
        else:
            x = (x - self.feature_mean) / self.feature_std
        return self.head(x)
