"""Supervised Discrete Hashing (SDH).

Shen, Shen, Liu & Shen, "Supervised Discrete Hashing", CVPR 2015. Codes B in {-1, 1}^{n x L}
are learnt so that labels are linearly predictable from them and a kernel hash function can
reproduce them, keeping B discrete throughout:

    min_{B, W, P} ||Y - B W||^2 + lambda ||W||^2 + nu ||B - F(X)||^2,  F(x) = P^T phi(x),

with phi(x) = [exp(-||x - a_j||^2 / (2 sigma^2))]_j an RBF map on m anchors (random training
points). Alternating minimisation (Sec. 3 of the paper):
  * F-step: P = (Phi^T Phi + delta I)^-1 Phi^T B (ridge regression; delta = 0.01 as in the
    authors' code, the paper writes plain least squares);
  * G-step: W = (B^T B + lambda I)^-1 B^T Y;
  * B-step: min_B ||B W||^2 - 2 tr(B^T Q), Q = Y W^T + nu F(X), solved bit by bit by discrete
    cyclic coordinate descent: column b_l = sgn(q_l - B' W' w_l), B' and W' without bit l.
Paper defaults: lambda = 1, nu = 1e-5, 5 outer iterations, m = 1,000 anchors. hashlab uses
m = 500 by default (half the kernel and regression cost, for fitting on 2 CPU cores in seconds;
pass n_anchors=1000 for the paper's setting). sigma defaults to the root mean squared distance
from the training points to the anchors (the paper tunes it per data set).
"""

from __future__ import annotations

import numpy as np

from hashlab.data.dataset import as_multihot
from hashlab.methods._linalg import rbf_anchors, rbf_kernel
from hashlab.methods.base import ShallowMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags


def discrete_cyclic_coordinate_descent(
    codes: np.ndarray, weights: np.ndarray, q: np.ndarray, n_sweeps: int
) -> np.ndarray:
    """Minimise ||B W||^2 - 2 tr(B^T Q) over B in {-1, 1}^{n x L}, one column at a time."""
    codes = codes.copy()
    predicted = codes @ weights  # B W, kept up to date as columns change
    for _ in range(n_sweeps):
        previous = codes.copy()
        for bit in range(codes.shape[1]):
            w_l = weights[bit]
            others = predicted - np.outer(codes[:, bit], w_l)  # B' W'
            column = np.where(q[:, bit] - others @ w_l >= 0, 1.0, -1.0)
            predicted = others + np.outer(column, w_l)
            codes[:, bit] = column
        if np.array_equal(codes, previous):
            break
    return codes


@register("sdh")
class SupervisedDiscreteHashing(ShallowMethod):
    """Discrete codes that linearly predict the labels, reproduced by an RBF hash function."""

    tags = MethodTags(family="shallow", supervision="labels", inputs="features")

    def __init__(
        self,
        n_bits: int = 32,
        seed: int = 0,
        n_anchors: int = 500,
        lam: float = 1.0,
        nu: float = 1e-5,
        delta: float = 0.01,
        n_iter: int = 5,
        n_dcc_sweeps: int = 10,
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.n_anchors = int(n_anchors)
        self.lam = float(lam)
        self.nu = float(nu)
        self.delta = float(delta)
        self.n_iter = int(n_iter)
        self.n_dcc_sweeps = int(n_dcc_sweeps)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        rng = np.random.default_rng(self.seed)
        labels = as_multihot(y).astype(np.float64)
        self.mean_ = x.mean(axis=0)
        centred = x - self.mean_
        self.anchors_, self.two_sigma_squared_ = rbf_anchors(centred, self.n_anchors, rng)
        phi = rbf_kernel(centred, self.anchors_, self.two_sigma_squared_)
        # centring phi plays the role of the bias column of the authors' code
        self.kernel_mean_ = phi.mean(axis=0)
        phi -= self.kernel_mean_
        # the F-step solves against the same matrix every time: factor it once
        gram = phi.T @ phi
        gram[np.diag_indices_from(gram)] += self.delta
        f_step = np.linalg.solve(gram, phi.T)  # (Phi^T Phi + delta I)^-1 Phi^T
        eye_bits = self.lam * np.eye(self.n_bits)

        codes = np.where(rng.standard_normal((len(x), self.n_bits)) >= 0, 1.0, -1.0)
        projection = f_step @ codes
        for _ in range(self.n_iter):
            weights = np.linalg.solve(codes.T @ codes + eye_bits, codes.T @ labels)  # G-step
            q = labels @ weights.T + self.nu * (phi @ projection)
            codes = discrete_cyclic_coordinate_descent(codes, weights, q, self.n_dcc_sweeps)
            projection = f_step @ codes  # F-step
        self.projection_ = projection

    def _project(self, x: np.ndarray) -> np.ndarray:
        phi = rbf_kernel(x - self.mean_, self.anchors_, self.two_sigma_squared_)
        return (phi - self.kernel_mean_) @ self.projection_
