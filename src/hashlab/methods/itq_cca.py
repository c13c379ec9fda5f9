"""CCA-ITQ: Iterative Quantization on a supervised (CCA) embedding.

Gong, Lazebnik, Gordo & Perronnin, "Iterative Quantization: A Procrustean Approach to
Learning Binary Codes for Large-Scale Image Retrieval", TPAMI 2013 (the supervised variant,
also in the CVPR 2011 paper).
PCA is replaced by canonical correlation analysis between the features X and the label
indicator matrix Y: the directions w maximise corr(X w, Y v), i.e. solve the regularised
generalised eigenproblem

    C_xy (C_yy + r I)^-1 C_yx w = rho^2 (C_xx + r I) w.

As in the paper, the top directions are scaled by their canonical correlations rho (so weakly
correlated directions count less) and the ITQ rotation (see hashlab.methods.itq) is learnt on
V = X W diag(rho).

CCA against C classes yields at most min(D, C) directions with non-zero correlation (C - 1 for
single-label one-hot Y, whose centred columns sum to zero). The paper nonetheless reports
CCA-ITQ at 32-256 bits on 10-class data: the remaining directions have rho ~ 0 and so scale to
~0, and the rotation then spreads the few discriminative directions over all K bits (K
hyperplanes through the discriminative subspace). We do the same with exact zeros instead of
numerically-null directions, so the result does not depend on rounding.
"""

from __future__ import annotations

import numpy as np

from hashlab.data.dataset import as_multihot
from hashlab.errors import InputError
from hashlab.methods.base import ShallowMethod
from hashlab.methods.itq import learn_itq_rotation
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags


def cca_directions(
    x: np.ndarray, y: np.ndarray, regularization: float
) -> tuple[np.ndarray, np.ndarray]:
    """Canonical directions (D, r) of centred x against centred y and their correlations (r,).

    Solved by whitening both sides and an SVD: with C_xx = L_x L_x^T and C_yy = L_y L_y^T,
    the singular values of L_x^-1 C_xy L_y^-T are the canonical correlations and
    W = L_x^-T U. Only directions with a non-zero correlation are returned. ``regularization``
    is relative to the mean feature variance so it does not depend on the feature scale.
    """
    n = len(x)
    c_xx = x.T @ x / n
    c_yy = y.T @ y / n
    c_xx[np.diag_indices_from(c_xx)] += regularization * np.trace(c_xx) / len(c_xx)
    c_yy[np.diag_indices_from(c_yy)] += regularization * np.trace(c_yy) / len(c_yy)
    l_x = np.linalg.cholesky(c_xx)
    l_y = np.linalg.cholesky(c_yy)
    whitened = np.linalg.solve(l_x, np.linalg.solve(l_y, (x.T @ y / n).T).T)
    u, correlations, _ = np.linalg.svd(whitened, full_matrices=False)
    keep = correlations > 1e-8 * max(correlations[0], np.finfo(np.float64).tiny)
    return np.linalg.solve(l_x.T, u[:, keep]), correlations[keep]


@register("itq_cca")
class ITQCCA(ShallowMethod):
    """CCA against the labels, directions scaled by their correlations, then the ITQ rotation."""

    tags = MethodTags(family="shallow", supervision="labels", inputs="features")

    def __init__(
        self, n_bits: int = 32, seed: int = 0, n_iter: int = 50, regularization: float = 1e-4
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.n_iter = int(n_iter)
        self.regularization = float(regularization)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        labels = as_multihot(y).astype(np.float64)
        if not (labels.std(axis=0) > 0).any():
            raise InputError(f"{self.name} needs labels from at least 2 classes")
        self.mean_ = x.mean(axis=0)
        centred = x - self.mean_
        directions, correlations = cca_directions(
            centred, labels - labels.mean(axis=0), self.regularization
        )
        # at most K directions; with fewer, pad V with zero columns (see the module docstring)
        n_used = min(self.n_bits, len(correlations))
        scaled = directions[:, :n_used] * correlations[:n_used]
        v = np.zeros((len(x), self.n_bits))
        v[:, :n_used] = centred @ scaled
        rotation = learn_itq_rotation(v, self.n_iter, np.random.default_rng(self.seed))
        # [X W diag(rho), 0] R == X W diag(rho) R[:n_used]
        self.projection_ = scaled @ rotation[:n_used]

    def _project(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) @ self.projection_
