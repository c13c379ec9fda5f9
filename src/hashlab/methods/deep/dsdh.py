"""Deep Supervised Discrete Hashing (DSDH: Li, Sun, He & Tan, NeurIPS 2017).

The codes B (K x n) of the training items are learned *discretely*, and are asked both to
keep the pairwise similarities and to predict the labels with a linear classifier W (K x C):

    min_{B, W, F}  -sum_{s_ij} (s_ij Theta_ij - log(1 + e^{Theta_ij}))
                   + mu ||Y - W^T B||^2 + nu ||W||^2 + eta ||B - U||^2

with U = F(X) the network outputs and Theta_ij = <u_i, u_j> / 2 (equation numbers are left
out: the paper text was not at hand to check them). Alternating:

* network step (each batch): the likelihood of the batch against a memory of every training
  item's latest output (as in DPSH) + eta ||b_i - u_i||^2 with b_i the current discrete code
  (``hashlab.losses.pairwise``, ``hashlab.losses.discrete``);
* W step (closed form): W = (B B^T + nu/mu I)^{-1} B Y^T;
* B step (discrete cyclic coordinate descent): with P = W Y + (eta/mu) U, each
  bit row b^k = sgn(p^k - B'^T W' w^k) (B', W' without row k);

the W/B steps run ``dcc_iter`` times at the end of every epoch (``on_epoch_end``) on the whole
training set (the PyTorch code by the paper's readers runs them after every batch; once an
epoch is the paper's alternation with a cheaper schedule). B starts as sgn(U) of the initial
network.

Defaults: mu = nu = 1 (DeepHash-pytorch's DSDH.py), so nu/mu = 1; eta = 1, so eta/mu = 1 as in
TreezzZ/DSDH_PyTorch (1e-2 / 1e-2, the code DeepHash-pytorch cites); dcc_iter = 10 (both).
eta weighs a mean over entries here (the paper sums). Ours, not theirs: eta = 1 in the network
step, where TreezzZ's code has no such term: with eta = 1e-2 the linear outputs grew without
bound on CIFAR-10 EfficientNet-Lite0 features (1,000 training items, 32 bits, 20 epochs:
training loss 1.0 -> 2.7, map@all 0.196 against ITQ's 0.329); with mu = nu = eta = 1, 0.511.
Multi-label data: handled; the classifier regresses the multi-hot label vector (Y - W^T B is
a least squares fit, which needs no one-hot).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashlab.losses.discrete import code_regression_loss
from hashlab.losses.pairwise import pairwise_likelihood_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class DSDHConfig(DeepHashConfig):
    mu: float = 1.0  # weight of the classification term ||Y - W^T B||^2
    nu: float = 1.0  # weight of ||W||^2
    eta: float = 1.0  # weight of ||B - U||^2 (network step and B step)
    dcc_iter: int = 10  # W / B alternations per epoch

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "eta": ("float", 1e-2, 10.0, "log")}


def update_classifier(codes: torch.Tensor, labels: torch.Tensor, nu_over_mu: float) -> torch.Tensor:
    """DSDH's W step: W = (B B^T + nu/mu I)^{-1} B Y^T for B (K, n), Y (C, n); returns (K, C)."""
    n_bits = codes.shape[0]
    gram = codes @ codes.T + nu_over_mu * torch.eye(n_bits, dtype=codes.dtype, device=codes.device)
    return torch.linalg.solve(gram, codes @ labels.T)


def update_codes(
    codes: torch.Tensor, w: torch.Tensor, labels: torch.Tensor, outputs: torch.Tensor,
    eta_over_mu: float,
) -> torch.Tensor:  # fmt: skip
    """DSDH's B step: one DCC sweep over the K bit rows of B (K, n); returns the new B."""
    p = w @ labels + eta_over_mu * outputs
    codes = codes.clone()
    for k in range(codes.shape[0]):
        rest = [j for j in range(codes.shape[0]) if j != k]
        value = p[k] - codes[rest].T @ (w[rest] @ w[k])
        codes[k] = torch.where(value >= 0, 1.0, -1.0)  # sgn, with sgn(0) = +1 (no zero bits)
    return codes


@register("dsdh")
class DSDH(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = DSDHConfig
    head_activation = "identity"  # the paper's linear hash layer

    def on_train_start(self, state: TrainState) -> None:
        n = len(state.train_labels)
        outputs = state.predict(torch.arange(n).numpy())
        state.extras["memory"] = outputs.clone()
        state.extras["codes"] = torch.where(outputs >= 0, 1.0, -1.0).T.contiguous()
        self.discrete_step(state, outputs)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        memory = state.extras["memory"]
        batch = torch.from_numpy(state.batch_indices).to(state.device)
        memory[batch] = outputs.detach()
        s = self.similarity(labels, state.train_labels)
        codes = state.extras["codes"][:, batch].T
        return pairwise_likelihood_loss(outputs, memory, s, 0.5) + (
            self.hparams.eta * code_regression_loss(outputs, codes)
        )

    def on_epoch_end(self, state: TrainState) -> None:
        self.discrete_step(state, state.predict(torch.arange(len(state.train_labels)).numpy()))

    def discrete_step(self, state: TrainState, outputs: torch.Tensor) -> None:
        """``dcc_iter`` alternations of the W step and the B step on all training items."""
        config = self.hparams
        labels, codes = state.train_labels.T.float(), state.extras["codes"]
        for _ in range(config.dcc_iter):
            w = update_classifier(codes, labels, config.nu / config.mu)
            codes = update_codes(codes, w, labels, outputs.T, config.eta / config.mu)
        state.extras["codes"], state.extras["classifier"] = codes, w
