"""DBD-MQ (Duan, Lu, Wang, Tian & Zhou, "Learning Deep Binary Descriptor with
Multi-Quantization", CVPR 2017): unsupervised binary descriptors whose binarisation is learned
as a multi-quantisation by K-AutoEncoders (KAEs) instead of a fixed sign.

The network F gives a real-valued descriptor u = F(x) in (-1, 1)^K (tanh). M autoencoders
(E_k, D_k), each a K x K linear map with bias, binarise it: b^k = sgn(E_k u) (straight-through
gradient), rebuild D_k b^k, and the item's code is that of the autoencoder that rebuilds it
best (``KAEHead``: the assignment is part of encoding). Numbered here:

1. J1 = mean_n min_k ||u_n - D_k b_n^k||^2, the multi-quantisation loss
   (``hashlab.losses.multi_quantization``); trains F and the KAEs together;
2. J2 = -mean_k Var(u_k): maximise the descriptor's variance (informative bits);
3. J3 = bit balance of the codes (``bit_balance_loss``: each bit +1 for half of the batch,
   the even distribution of binary descriptors);
4. J4 = independence of the descriptor's dimensions (``bit_independence_loss`` on u): ours, on
   frozen features; without it J2 turns every dimension towards the same top direction.
   J = J1 + alpha J2 + beta J3 + gamma J4.

Defaults: M = 4 autoencoders, alpha = 1, beta = 1, gamma = 1: ours (the paper's weights go
with its image network and its rotation-invariance term, left out here: frozen features
have no images to rotate). The autoencoders start as random rotations (E_k) and their
transposes (D_k), so that they quantise differently from the first step. Held-out criterion:
J of held-out items, no labels.

Measured on digits (1,597 training items, 10 epochs, map@all at 16 / 32 bits): M = 4 gives
0.41 / 0.45, M = 1 gives 0.45 / 0.53 (LSH 0.35 / 0.49). Items quantised by different
autoencoders get codes in different bases, which the Hamming distance compares as if they
were one; M = 4 stays the default because multi-quantisation is the method, and M = 1 is the
ablation to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hashlab.errors import ConfigError
from hashlab.losses.generative import bit_balance_loss, bit_independence_loss, sign_straight_through
from hashlab.losses.multi_quantization import descriptor_variance, multi_quantization_loss
from hashlab.methods.deep.network import HashHead
from hashlab.methods.deep.unsupervised import UnsupervisedConfig, UnsupervisedDeepMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState

__all__ = ["DBDMQ", "DBDMQConfig", "KAEHead"]


@dataclass
class DBDMQConfig(UnsupervisedConfig):
    n_autoencoders: int = 4  # M (ours)
    variance_weight: float = 1.0  # alpha (ours)
    balance_weight: float = 1.0  # beta (ours)
    independence_weight: float = 1.0  # gamma (ours)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_autoencoders < 1:
            raise ConfigError(f"n_autoencoders must be at least 1, got {self.n_autoencoders}")


class KAEHead(nn.Module):
    """F (the descriptor) and the M autoencoders; ``forward`` gives the chosen E_k u."""

    def __init__(self, descriptor: nn.Module, n_bits: int, n_autoencoders: int) -> None:
        super().__init__()
        self.descriptor = descriptor
        rotations = torch.linalg.qr(torch.randn(n_autoencoders, n_bits, n_bits)).Q
        self.encoders = nn.Parameter(rotations.clone())
        self.encoder_bias = nn.Parameter(torch.zeros(n_autoencoders, 1, n_bits))
        self.decoders = nn.Parameter(rotations.transpose(1, 2).clone())
        self.decoder_bias = nn.Parameter(torch.zeros(n_autoencoders, 1, n_bits))

    def quantize(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pre-sign E_k u (M, n, K), codes b^k (M, n, K), errors ||u - D_k b^k||^2 (M, n))."""
        pre = torch.einsum("nk,mjk->mnj", u, self.encoders) + self.encoder_bias
        codes = sign_straight_through(pre)
        rebuilt = torch.einsum("mnk,mjk->mnj", codes, self.decoders) + self.decoder_bias
        return pre, codes, (rebuilt - u[None]).pow(2).sum(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre, _, errors = self.quantize(self.descriptor(x))
        best = errors.argmin(dim=0)  # the autoencoder that rebuilds each item best
        return pre[best, torch.arange(len(x), device=x.device)]


@register("dbd_mq")
class DBDMQ(UnsupervisedDeepMethod):
    tags = MethodTags(family="deep", supervision="none", inputs="features")
    Config = DBDMQConfig
    head_activation = "tanh"

    def build_network(self, input_dim: int) -> nn.Module:
        config = self.hparams
        descriptor = HashHead(input_dim, self.n_bits, config.head_hidden, config.dropout, "tanh")
        return KAEHead(descriptor, self.n_bits, config.n_autoencoders)

    def unsupervised_loss(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        config, head = self.hparams, state.network.head
        u = head.descriptor(features)
        _, codes, errors = head.quantize(u)
        chosen = codes[errors.argmin(dim=0), torch.arange(len(u), device=u.device)]
        return (multi_quantization_loss(errors)  # Eq. 1
                - config.variance_weight * descriptor_variance(u)  # Eq. 2
                + config.balance_weight * bit_balance_loss(chosen)  # Eq. 3
                + config.independence_weight * bit_independence_loss(u))  # fmt: skip
