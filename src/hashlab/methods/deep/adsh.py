"""Asymmetric Deep Supervised Hashing (ADSH: Jiang & Li, AAAI 2018).

Asymmetric: the database (here the training items, as in the paper) gets binary codes
V in {-1, +1}^{n x K} learned directly, while queries go through the network,
u = tanh(F(x)). One trainer epoch is one outer iteration of Algorithm 1:

1. sample m query items Omega from the database (m = ``n_samples``, 2,000 in the paper);
2. train F for ``inner_epochs`` passes over Omega (3 in the paper) on the loss of Eq. 3,
   sum_{i in Omega, j} (u_i^T v_j - K s_ij)^2 + gamma sum_{i in Omega} ||v_i - u_i||^2
   (``hashlab.losses.asymmetric``; gamma = 200);
3. update V by discrete cyclic coordinate descent, one bit column at a time (Eq. 6-8):
   with U the network outputs of Omega and Q = -2K S^T U - 2 gamma U_bar (U_bar: U placed at
   the rows of Omega, zero elsewhere), V_k = -sgn(2 V_{-k} U_{-k}^T U_k + Q_k).

V starts at zero (as in the authors' code) and lives in ``state.extras`` (checkpointed); after
fit it is ``database_codes_`` (0/1, from the last outer iteration). ``encode`` uses the
network for every input, so the codes of new items are out-of-sample, the protocol hashlab
uses for every method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hashlab.losses.asymmetric import asymmetric_inner_product_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class ADSHConfig(DeepHashConfig):
    gamma: float = 200.0  # weight of ||v_i - u_i||^2 (Sec. 4.1)
    n_samples: int = 2000  # m = |Omega| per outer iteration
    inner_epochs: int = 3  # T_in: passes over Omega per outer iteration


def update_database_codes(
    codes: torch.Tensor, outputs: torch.Tensor, omega: torch.Tensor, s: torch.Tensor, gamma: float
) -> torch.Tensor:
    """One DCC sweep over the K bit columns of V (ADSH Eq. 8); returns the new V (n, K).

    ``outputs`` U (m, K) are the network outputs of the sampled items ``omega`` (m,), ``s``
    their (m, n) similarity to the database.
    """
    n_bits = codes.shape[1]
    u_bar = torch.zeros_like(codes)
    u_bar[omega] = outputs
    q = -2.0 * n_bits * s.T @ outputs - 2.0 * gamma * u_bar
    codes = codes.clone()
    for k in range(n_bits):
        rest = [j for j in range(n_bits) if j != k]
        value = q[:, k] + 2.0 * codes[:, rest] @ (outputs[:, rest].T @ outputs[:, k])
        codes[:, k] = torch.where(value > 0, -1.0, 1.0)  # -sgn(value), sgn(0) taken as -1
    return codes


@register("adsh")
class ADSH(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = ADSHConfig
    head_activation = "tanh"

    def on_train_start(self, state: TrainState) -> None:
        n = len(state.train_labels)
        state.extras["database_codes"] = torch.zeros(n, self.n_bits, device=state.device)

    def epoch_order(self, state: TrainState, rng: np.random.Generator) -> np.ndarray:
        n = len(state.train_labels)
        omega = np.sort(rng.choice(n, size=min(self.hparams.n_samples, n), replace=False))
        state.extras["omega"] = omega
        return np.concatenate([rng.permutation(omega) for _ in range(self.hparams.inner_epochs)])

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        codes = state.extras["database_codes"]
        s = self.similarity(labels, state.train_labels)
        own = codes[torch.from_numpy(state.batch_indices).to(state.device)]
        return asymmetric_inner_product_loss(outputs, codes, s, own, self.hparams.gamma)

    def on_epoch_end(self, state: TrainState) -> None:
        omega = state.extras["omega"]
        outputs = state.predict(omega)
        omega_t = torch.from_numpy(omega).to(state.device)
        s = self.similarity(state.train_labels[omega_t], state.train_labels)
        state.extras["database_codes"] = update_database_codes(
            state.extras["database_codes"], outputs, omega_t, s, self.hparams.gamma
        )

    def on_train_end(self, state: TrainState) -> None:
        # V of the last outer iteration (the network holds the best epoch's weights)
        self.database_codes_ = (state.extras["database_codes"] > 0).to(torch.uint8).cpu().numpy()
