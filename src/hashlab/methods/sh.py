"""Spectral Hashing (SH).

Weiss, Torralba & Fergus, "Spectral Hashing", NIPS 2008. The relaxed graph-partitioning
objective (minimise sum_ij W_ij ||y_i - y_j||^2 with balanced, uncorrelated bits) is solved by
eigenfunctions of the weighted Laplace-Beltrami operator. Assuming the data are uniformly
distributed in a box after PCA, the one-dimensional eigenfunctions on [a, b] are known in
closed form:

    Phi_k(x) = sin(pi/2 + k pi / (b - a) * x),
    lambda_k = 1 - exp(-eps^2 / 2 * |k pi / (b - a)|^2),

and the eigenfunctions of the box are products of these. The algorithm of the paper:
(1) PCA to min(K, D) dimensions; (2) fit a box [a_j, b_j] per PCA dimension (the training
min/max); (3) among all one-dimensional modes k = 1, 2, ... of every dimension, take
the K with the smallest eigenvalue, i.e. the smallest k / (b_j - a_j) (lambda_k is monotone in
it for any eps); (4) bit = sgn(Phi_k(x_j - a_j)). Like the authors' code, only single-dimension
modes are used (their products have larger eigenvalues to first order).
"""

from __future__ import annotations

import numpy as np

from hashlab.methods._linalg import pca_directions
from hashlab.methods.base import ShallowMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags


@register("sh")
class SpectralHashing(ShallowMethod):
    """Thresholded analytical eigenfunctions of a uniform box fitted to PCA-projected data."""

    tags = MethodTags(family="shallow", supervision="none", inputs="features")

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        n_pca = min(self.n_bits, x.shape[1], x.shape[0] - 1)
        self.mean_ = x.mean(axis=0)
        self.components_, _ = pca_directions(x - self.mean_, n_pca)
        projected = (x - self.mean_) @ self.components_
        eps = np.finfo(np.float64).eps
        self.box_low_ = projected.min(axis=0) - eps
        widths = projected.max(axis=0) + eps - self.box_low_
        # Candidate modes: k = 1..K on every PCA dimension; mode (j, k) has eigenvalue ordered
        # by its frequency k / (b_j - a_j). Taking K of them never needs k > K.
        dims, ks = np.meshgrid(np.arange(n_pca), np.arange(1, self.n_bits + 1), indexing="ij")
        frequencies = (ks / widths[:, None]).ravel()
        chosen = np.argsort(frequencies, kind="stable")[: self.n_bits]
        self.mode_dims_ = dims.ravel()[chosen]
        # angular frequency k pi / (b - a) of each chosen eigenfunction
        self.omegas_ = np.pi * frequencies[chosen]

    def _project(self, x: np.ndarray) -> np.ndarray:
        projected = (x - self.mean_) @ self.components_ - self.box_low_
        return np.sin(np.pi / 2 + projected[:, self.mode_dims_] * self.omegas_)
