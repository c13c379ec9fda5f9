"""The three adversarial players of PC-AEGAN (Qiang et al., 2020, Sec. 2.2) and PC-WGAN.

* :class:`Generator` G(code, noise): an fc layer to a 4 x 4 map, then per doubling of the
  resolution a nearest-neighbour upsampling followed by a 3 x 3 convolution (instead of a
  transposed convolution: no checkerboard artefacts), normalisation + ReLU after every layer;
  the last 3 x 3 convolution has no normalisation and ends in Tanh (images in [-1, 1]).
* :class:`Discriminator` D: five 4 x 4 convolutions; normalisation + LeakyReLU after each
  except the first (LeakyReLU only) and the last. The last layer has two heads: the WGAN-GP
  critic score (Eq. 7) and an embedding whose pairwise inner products are the logits of the
  pair head's "are these two images similar" probability (Eq. 8). The normalisation is layer
  normalisation (GroupNorm with one group), not batch normalisation: the gradient penalty is
  defined per image, and batch statistics would mix images (WGAN-GP paper, Sec. 4).
* :class:`CodeDiscriminator` C: three fully connected layers, LeakyReLU + layer
  normalisation after the first two; a WGAN-GP critic between approximate codes H and the
  random codes Z_r (Eq. 11).

Image sizes 32 and 64 are supported (the paper's 64 x 64; CIFAR-10's native 32 x 32).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["Generator", "Discriminator", "CodeDiscriminator", "SUPPORTED_IMAGE_SIZES"]

SUPPORTED_IMAGE_SIZES = (32, 64)


def _check_size(image_size: int) -> int:
    if image_size not in SUPPORTED_IMAGE_SIZES:
        raise ValueError(f"image_size must be 32 or 64, got {image_size}")
    return int(math.log2(image_size // 4))  # doublings from the 4 x 4 start


class Generator(nn.Module):
    """G(code, noise) -> (B, 3, S, S) images in [-1, 1]."""

    def __init__(self, code_dim: int, noise_dim: int, image_size: int, channels: int = 32) -> None:
        super().__init__()
        doublings = _check_size(image_size)
        self.noise_dim = noise_dim
        widths = [channels * 2 ** max(doublings - 1 - i, 0) for i in range(doublings + 1)]
        self.project = nn.Sequential(
            nn.Linear(code_dim + noise_dim, widths[0] * 16),
            nn.Unflatten(1, (widths[0], 4, 4)),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        for i in range(doublings):
            blocks += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(widths[i], widths[i + 1], 3, padding=1),
                nn.BatchNorm2d(widths[i + 1]),
                nn.ReLU(),
            ]
        blocks += [nn.Conv2d(widths[-1], 3, 3, padding=1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, code: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.project(torch.cat([code, noise], dim=1)))


class Discriminator(nn.Module):
    """Five 4 x 4 convolutions; ``forward`` gives (critic score (B,), pair embedding (B, E))."""

    def __init__(self, image_size: int, channels: int = 32, embedding_dim: int = 64) -> None:
        super().__init__()
        _check_size(image_size)
        c = channels
        # 64 px: four stride-2 layers reach 4 x 4; 32 px: three, then a stride-1 "same" layer
        if image_size == 64:
            fourth: nn.Module = nn.Conv2d(4 * c, 8 * c, 4, stride=2, padding=1)
        else:  # "same" padding of an even kernel is uneven: one before, two after
            fourth = nn.Sequential(nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(4 * c, 8 * c, 4))
        self.trunk = nn.Sequential(
            nn.Conv2d(3, c, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1),
            nn.GroupNorm(1, 2 * c),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 4 * c, 4, stride=2, padding=1),
            nn.GroupNorm(1, 4 * c),
            nn.LeakyReLU(0.2),
            fourth,
            nn.GroupNorm(1, 8 * c),
            nn.LeakyReLU(0.2),
        )
        # the fifth 4 x 4 layer, one output channel for the critic and E for the pair head
        self.head = nn.Conv2d(8 * c, 1 + embedding_dim, 4)
        self.pair_bias = nn.Parameter(torch.zeros(()))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.trunk(images)).flatten(1)
        return out[:, 0], out[:, 1:]

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """Critic score only (what the gradient penalty differentiates)."""
        return self(images)[0]

    def pair_logits(self, embedding_a: torch.Tensor, embedding_b: torch.Tensor) -> torch.Tensor:
        """(A, B) logits of 'a_i and b_j are similar' (Eq. 8's D(I_i, I_j) before the sigmoid)."""
        scale = embedding_a.shape[1] ** -0.5
        return scale * embedding_a @ embedding_b.T + self.pair_bias


class CodeDiscriminator(nn.Module):
    """C(code) -> (B,) critic score."""

    def __init__(self, code_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(code_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.LayerNorm(hidden),
            nn.Linear(hidden, 1),
        )

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.layers(codes).squeeze(1)
