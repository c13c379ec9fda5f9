"""Iterative Quantization (ITQ).

Gong & Lazebnik, "Iterative Quantization: A Procrustean Approach to Learning Binary Codes",
CVPR 2011 (and Gong, Lazebnik, Gordo & Perronnin, TPAMI 2013). Centre the data, project on
the top-K principal directions W (the relaxed variance objective max tr(W^T X^T X W)), then
find the orthogonal rotation R minimising the quantization loss

    Q(B, R) = ||B - V R||_F^2,   V = X W,  B in {-1, 1}^{n x K}

by alternating its two exact minimisers: B = sgn(V R) for fixed R, and for fixed B the
orthogonal Procrustes solution R = S_hat S^T from the SVD B^T V = S Omega S_hat^T.
The paper runs 50 iterations from a random orthogonal R; so do we.
"""

from __future__ import annotations

import numpy as np

from hashlab.methods._linalg import check_bits_available, pca_directions, random_orthogonal
from hashlab.methods.base import ShallowMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags


def learn_itq_rotation(v: np.ndarray, n_iter: int, rng: np.random.Generator) -> np.ndarray:
    """The K x K rotation R minimising ||sgn(V R) - V R||_F^2 by alternating minimisation."""
    rotation = random_orthogonal(v.shape[1], rng)
    for _ in range(n_iter):
        codes = np.where(v @ rotation >= 0, 1.0, -1.0)  # fix R, update B = sgn(V R)
        s, _, s_hat_t = np.linalg.svd(codes.T @ v)  # fix B: Procrustes on B^T V = S Omega S_hat^T
        rotation = s_hat_t.T @ s.T
    return rotation


@register("itq")
class ITQ(ShallowMethod):
    """PCA to K dimensions, then the rotation that best aligns the data with the hypercube."""

    tags = MethodTags(family="shallow", supervision="none", inputs="features")

    def __init__(self, n_bits: int = 32, seed: int = 0, n_iter: int = 50) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.n_iter = int(n_iter)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        check_bits_available(
            self.name,
            self.n_bits,
            min(x.shape[1], x.shape[0] - 1),
            "one bit per principal direction: at most min(feature dimension, training items - 1)",
        )
        self.mean_ = x.mean(axis=0)
        centred = x - self.mean_
        self.components_, _ = pca_directions(centred, self.n_bits)
        rng = np.random.default_rng(self.seed)
        self.rotation_ = learn_itq_rotation(centred @ self.components_, self.n_iter, rng)

    def _project(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) @ self.components_ @ self.rotation_
