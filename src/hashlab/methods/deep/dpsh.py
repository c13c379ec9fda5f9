"""Deep Pairwise-Supervised Hashing (DPSH: Li, Wang & Kang, IJCAI 2016).

Loss (Eq. 5): the pairwise negative log-likelihood with Theta_ij = <u_i, u_j> / 2, plus
eta * ||b_i - u_i||^2 with b_i = sgn(u_i), on a linear hash layer. As in the paper's
Algorithm 1 the pairs of a batch item are with *all* training items: the outputs u_j of the
other items come from a memory U (n x K) that holds each item's latest output (updated
without gradient after each batch; kept in ``state.extras`` so it is checkpointed).
eta = 0.1 (DeepHash-pytorch's value; the paper picks it by validation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashlab.losses.pairwise import pairwise_likelihood_loss
from hashlab.losses.quantization import sign_quantization_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.train.trainer import TrainState


@dataclass
class DPSHConfig(DeepHashConfig):
    alpha: float = 0.5  # Theta_ij = alpha <u_i, u_j> (Eq. 2)
    quantization_weight: float = 0.1  # eta of Eq. 5


@register("dpsh")
class DPSH(DeepHashMethod):
    Config = DPSHConfig
    head_activation = "identity"

    def on_train_start(self, state: TrainState) -> None:
        n = len(state.train_labels)
        state.extras["memory"] = torch.zeros(n, self.n_bits, device=state.device)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        memory = state.extras["memory"]
        batch = torch.from_numpy(state.batch_indices).to(state.device)
        memory[batch] = outputs.detach()
        s = self.similarity(labels, state.train_labels)
        return pairwise_likelihood_loss(outputs, memory, s, self.hparams.alpha) + (
            self.hparams.quantization_weight * sign_quantization_loss(outputs)
        )
