"""CNNH (Xia, Pan, Lai, Liu & Yan, "Supervised Hashing for Image Retrieval via Image
Representation Learning", AAAI 2014): two stages.

1. Approximate codes (``on_train_start``): with S in {-1, +1}^{n x n} the training items'
   similarity (+1 = a shared label), find H in [-1, 1]^{n x q} minimising
   ||S - H H^T / q||_F^2 (the same minimiser as ||H H^T - q S||^2). The paper's
   coordinate descent (Eq. 6-8, numbered as in DeepHash-pytorch's CNNH.py): entries (i, j) in
   random order, each moved by the Newton step d = -g'/g'' of the quartic in that one entry,
   g' = 4 L_i. H_.j, g'' = 4 (H_.j^T H_.j + H_ij^2 + L_ii), L = H H^T - q S, clipped to keep
   H_ij in [-1, 1], with L updated in O(n) per entry; ``stage1_sweeps`` sweeps over all n q entries
   (10, DeepHash-pytorch's T), a sweep that does not lower the objective undone (and the
   descent stopped) as in that code. When g'' <= 0 (the quartic is not convex there) the
   entry moves to the bound downhill.
2. The network regresses the codes (``loss``): mean squared error between tanh outputs and
   sgn(H) (``hashlab.losses.discrete.code_regression_loss``; DeepHash-pytorch uses the L1
   error to sgn(H)).

Not built: CNNH+'s extra class-label outputs (the paper's variant with a classification
layer beside the hash layer). Multi-label data: handled (S = +1 for a shared label). Cost:
stage 1 is O(T n^2 q) with a Python loop over the T n q entries: 12 s per sweep for 2,000
items at 32 bits on a busy 2-core machine, so minutes for CIFAR-10's 5,000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from hashlab.losses.discrete import code_regression_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState


@dataclass
class CNNHConfig(DeepHashConfig):
    stage1_sweeps: int = 10  # T: coordinate descent sweeps over all entries of H

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return {**super().search_space(), "stage1_sweeps": ("int", 2, 20)}


def approximate_codes(s: np.ndarray, n_bits: int, sweeps: int,
                      rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """CNNH stage 1: H (n, q) in [-1, 1] with H H^T ~ q S for S (n, n) in {-1, +1}."""
    n = len(s)
    h = rng.uniform(-1.0, 1.0, size=(n, n_bits))
    residual = h @ h.T - n_bits * s  # L of Eq. 6
    objective = float((residual**2).sum())
    step_column = np.empty(n)
    for _ in range(sweeps):
        kept = h.copy(), residual.copy()
        columns = [np.ascontiguousarray(h[:, j]) for j in range(n_bits)]  # H_.j, kept current
        norms = [float(c @ c) for c in columns]  # H_.j^T H_.j, kept current in O(1)
        for flat in rng.permutation(n * n_bits):
            i, j = divmod(int(flat), n_bits)
            column, h_ij = columns[j], float(columns[j][i])
            slope = 4.0 * float(residual[i] @ column)
            curvature = 4.0 * (norms[j] + h_ij * h_ij + float(residual[i, i]))
            step = -slope / curvature if curvature > 0 else -math.copysign(2.0, slope)
            step = min(max(step, -1.0 - h_ij), 1.0 - h_ij)
            if step == 0.0:
                continue
            # Eq. 8: only row and column i of L change
            np.multiply(column, step, out=step_column)
            residual[i] += step_column
            residual[:, i] += step_column
            residual[i, i] += step * step
            column[i] = h_ij + step
            norms[j] += 2.0 * step * h_ij + step * step
        h = np.stack(columns, axis=1)
        new_objective = float((residual**2).sum())
        if new_objective >= objective:
            h, residual = kept
            break
        objective = new_objective
    return h


@register("cnnh")
class CNNH(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = CNNHConfig
    head_activation = "tanh"

    def on_train_start(self, state: TrainState) -> None:
        labels = state.train_labels.cpu().numpy()
        s = np.where(labels @ labels.T > 0, 1.0, -1.0)
        rng = np.random.default_rng(self.seed)
        h = approximate_codes(s, self.n_bits, self.hparams.stage1_sweeps, rng)
        targets = np.where(h >= 0, 1.0, -1.0).astype(np.float32)
        state.extras["target_codes"] = torch.from_numpy(targets).to(state.device)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        batch = torch.from_numpy(state.batch_indices).to(state.device)
        return code_regression_loss(outputs, state.extras["target_codes"][batch])
