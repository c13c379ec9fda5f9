"""Deep Discrete Supervised Hashing (DDSH: Jiang, Cui & Li, IEEE TIP 2018; the issue's "CVPR
2018" is the arXiv version's year), as in the authors' MatConvNet code (jiangqy/DDSH-TIP2018).

The supervision is used directly by the discrete codes: each outer iteration samples a small
set Omega of m training items (the rest is Gamma) and minimises

    ||K S_Gamma - B_Gamma B_Omega^T||^2 + ||K S_Omega - B_Omega B_Omega^T||^2    (J)

with S = 1 for similar pairs and -r for dissimilar ones, r = #similar / #dissimilar (the
authors' balancing), alternating:

* discrete coding (in ``epoch_order``, before the epoch's batches): B_Omega bit by bit; with
  the other bits fixed, bit column b of B_Omega maximises b^T R b + p^T b, R = K S_Omega -
  sum_{l != k} b_l b_l^T (zero diagonal) and p = R_Gamma^T g (g the bit's column of
  B_Gamma). The authors solve each such binary quadratic programme with a rounding of its
  Cholesky embedding (Solve.m); here by discrete coordinate ascent, b_i = sgn(2 R_i. b + p_i)
  until no bit flips (at most ``bit_sweeps`` sweeps), which never increases J (a local
  optimum instead of their rounding);
* deep hash function learning: the network is trained on Gamma with tanh(F(x)) in place of
  B_Gamma in the first term (``hashlab.losses.discrete.similarity_reconstruction_loss``),
  after which B_Gamma = sgn(F(x)) (``on_epoch_end``).

One trainer epoch is one of the authors' iterations; Omega is resampled every ``iters``
epochs (their epochs x iters = 50 x 3). Defaults from the authors' CIFAR-10 settings:
m = 100 (``n_samples``), iters = 3; B starts random (as their code). Multi-label data:
handled (similar = a shared label; the authors' note on NUS-WIDE's extra rule is not applied).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hashlab.losses.discrete import similarity_reconstruction_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class DDSHConfig(DeepHashConfig):
    n_samples: int = 100  # m = |Omega| (authors' sample_column for CIFAR-10)
    iters: int = 3  # epochs per sampled Omega
    bit_sweeps: int = 10  # coordinate-ascent sweeps per bit (at most)

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "n_samples": ("int", 50, 500)}


def balanced_similarity(labels: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
    """(n, m) similarity: 1 for a shared label, -r otherwise, r = #similar / #dissimilar."""
    similar = (labels.float() @ sampled.float().T > 0).float()
    ratio = similar.sum() / (1.0 - similar).sum().clamp(min=1.0)
    return similar * (1.0 + ratio) - ratio


def update_sampled_codes(
    omega_codes: torch.Tensor, gamma_codes: torch.Tensor, s_omega: torch.Tensor,
    s_gamma: torch.Tensor, sweeps: int,
) -> torch.Tensor:  # fmt: skip
    """DDSH discrete coding: B_Omega (m, K) bit by bit, the other codes fixed (see above)."""
    n_bits = omega_codes.shape[1]
    codes = omega_codes.clone()
    for k in range(n_bits):
        b, g = codes[:, k].clone(), gamma_codes[:, k]
        r = n_bits * s_omega - codes @ codes.T + torch.outer(b, b)
        r.fill_diagonal_(0.0)
        p = (n_bits * s_gamma - gamma_codes @ codes.T + torch.outer(g, b)).T @ g
        for _ in range(sweeps):
            flips = 0
            for i in range(len(b)):
                new = 1.0 if 2.0 * (r[i] @ b) + p[i] >= 0 else -1.0
                flips += int(new != b[i])
                b[i] = new
            if flips == 0:
                break
        codes[:, k] = b
    return codes


@register("ddsh")
class DDSH(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = DDSHConfig
    head_activation = "tanh"

    def on_train_start(self, state: TrainState) -> None:
        n = len(state.train_labels)
        generator = torch.Generator().manual_seed(self.seed)
        codes = torch.randint(0, 2, (n, self.n_bits), generator=generator).float() * 2 - 1
        state.extras["codes"] = codes.to(state.device)

    def epoch_order(self, state: TrainState, rng: np.random.Generator) -> np.ndarray:
        n, config = len(state.train_labels), self.hparams
        if state.epoch % config.iters == 0 or "omega" not in state.extras:
            m = min(config.n_samples, n - 1)
            state.extras["omega"] = np.sort(rng.choice(n, size=m, replace=False))
        omega = state.extras["omega"]
        gamma = np.setdiff1d(np.arange(n), omega)
        omega_t, gamma_t = (torch.from_numpy(i).to(state.device) for i in (omega, gamma))
        s = balanced_similarity(state.train_labels, state.train_labels[omega_t])
        codes = state.extras["codes"]
        codes[omega_t] = update_sampled_codes(codes[omega_t], codes[gamma_t], s[omega_t],
                                              s[gamma_t], config.bit_sweeps)  # fmt: skip
        state.extras["similarity"] = s  # (n, m): every item against Omega
        return rng.permutation(gamma)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        batch = torch.from_numpy(state.batch_indices).to(state.device)
        omega = torch.from_numpy(state.extras["omega"]).to(state.device)
        s = state.extras["similarity"][batch]
        return similarity_reconstruction_loss(outputs, state.extras["codes"][omega], s)

    def on_epoch_end(self, state: TrainState) -> None:
        gamma = np.setdiff1d(np.arange(len(state.train_labels)), state.extras["omega"])
        outputs = state.predict(gamma)
        state.extras["codes"][torch.from_numpy(gamma).to(state.device)] = torch.where(
            outputs >= 0, 1.0, -1.0
        )
