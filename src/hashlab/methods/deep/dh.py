"""DH: Deep Hashing for compact binary codes (Liong, Lu, Wang, Moulin & Zhou, CVPR 2015).

A stack of fully connected tanh layers h^m = tanh(W^m h^(m-1) + c^m) on the features, the
last one K units wide, codes B = sgn(H^M), trained without labels on (this file's numbering,
following the paper's objective term by term; the paper's text is not in shared/seeds):

(1) J = J1 - lambda1 J2 + lambda2 J3 (+ lambda3 J4, the weight decay)
(2) J1 = 1/2 mean_n ||b_n - h^M_n||^2                      (quantisation loss)
(3) J2 = 1/2 sum_k var_n(h^M_nk)                          (balance: bit variance, maximised)
(4) J3 = 1/2 sum_m ||W^m W^m^T - I||_F^2                  (independence, layer by layer)
(5) J4 = 1/2 sum_m ||W^m||_F^2 + ||c^m||^2                (the trainer's weight_decay)

Deviations, and why. The paper writes J2 as tr(H H^T) / (2N), the variance of zero-mean
outputs; (3) centres H on the batch mean, which makes J2 the variance it means, maximised
when each bit is +1 for half of the items (balance). (4) takes the Gram of each weight's
smaller side, so that a layer wider than its input is not asked to be orthogonal the
impossible way. The paper sums J1 over all N items while averaging J2; here both are batch
means, so lambda1 is on the same scale as J1 rather than the paper's (N-dependent) one, and
is hashlab's choice, as are lambda2 and the widths. The paper learns on hand-crafted
features (GIST); here on frozen backbone features, standardised.

Defaults: hidden widths (60, 30) before the K-unit layer (a 3-layer network as the paper's),
tanh throughout (the paper); lambda1 = 0.5 and lambda2 = 1 are hashlab's, all in the search
space. lambda2 must bind: at 1e-3 or 0.1 the variance term (3) grows the weights until the
tanh units saturate along a few shared directions and the bits collapse (digits, 16 bits:
map@all 0.15-0.16, below LSH's 0.32; 0.55 at lambda2 = 1). Validation (no labels): the
objective (1) on held-out items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from hashlab.errors import ConfigError
from hashlab.losses.bit_statistics import centred_variance, orthogonality
from hashlab.losses.quantization import sign_quantization_loss
from hashlab.methods.deep.unsupervised import UnsupervisedConfig, UnsupervisedDeepMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class DHConfig(UnsupervisedConfig):
    lambda1: float = 0.5  # balance (3)
    lambda2: float = 1.0  # independence (4): strong enough to bind (see the module docstring)
    widths: tuple[int, ...] = (60, 30)  # hidden tanh layers before the K-unit layer

    def __post_init__(self) -> None:
        super().__post_init__()
        self.widths = tuple(int(w) for w in self.widths)
        if self.lambda1 < 0 or self.lambda2 < 0 or any(w < 1 for w in self.widths):
            raise ConfigError(
                f"lambda1 and lambda2 must be non-negative and widths positive, got "
                f"{self.lambda1}, {self.lambda2}, {self.widths}"
            )

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "lambda1": ("float", 0.05, 5.0, "log"),
                "lambda2": ("float", 1e-2, 10.0, "log")}  # fmt: skip


class TanhStack(nn.Module):
    """fc -> tanh layers (the paper's h^m = s(W^m h^(m-1) + c^m), s = tanh)."""

    def __init__(self, input_dim: int, widths: tuple[int, ...], n_bits: int) -> None:
        super().__init__()
        sizes = [input_dim, *widths, n_bits]
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


@register("dh")
class DH(UnsupervisedDeepMethod):
    """tanh stack trained on quantisation (2), balance (3) and layerwise independence (4)."""

    tags = MethodTags(family="deep", supervision="none", inputs="features")
    Config: ClassVar[type[UnsupervisedConfig]] = DHConfig

    def build_network(self, input_dim: int) -> nn.Module:
        return TanhStack(input_dim, self.hparams.widths, self.n_bits)

    def unsupervised_loss(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        config = self.hparams
        weights = [layer.weight for layer in state.network.head.layers]
        return (
            0.5 * sign_quantization_loss(outputs)  # (2): 1/2 mean ||sgn(h) - h||^2
            - config.lambda1 * 0.5 * centred_variance(outputs)  # (3)
            + config.lambda2 * 0.5 * orthogonality(weights)  # (4)
        )
