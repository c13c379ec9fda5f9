"""Anchor Graph Hashing (AGH), the one-layer version.

Liu, Wang, Kumar & Chang, "Hashing with Graphs", ICML 2011. Spectral hashing on a graph that
is never built: m anchors u_j (k-means centres) summarise the data, and each point is
connected to its s nearest anchors with normalised Gaussian weights

    Z_ij = exp(-||x_i - u_j||^2 / t) / sum_{j' in <i>} exp(-||x_i - u_j'||^2 / t),  j in <i>

(zero elsewhere). The anchor graph A = Z Lambda^-1 Z^T, Lambda = diag(Z^T 1), has the same
non-trivial eigenvectors as the m x m matrix M = Lambda^-1/2 Z^T Z Lambda^-1/2 = V Sigma V^T,
so the relaxed spectral embedding is Y = sqrt(n) Z Lambda^-1/2 V Sigma^-1/2 = Z W, skipping
the trivial eigenvalue 1. Out of sample, h(x) = sgn(W^T z(x)) with z(x) built like a row of
Z. Defaults are the paper's: m = 300 anchors, s = 2; the bandwidth t = sigma^2 with sigma the
mean distance of the training points to their s-th nearest anchor, as in the authors' code.
"""

from __future__ import annotations

import numpy as np

from hashlab.errors import ConfigError
from hashlab.methods._linalg import check_bits_available, kmeans_anchors, squared_distances
from hashlab.methods.base import ShallowMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags


def anchor_graph_rows(
    x: np.ndarray, anchors: np.ndarray, n_nearest: int, bandwidth: float
) -> np.ndarray:
    """(n, m) truncated, row-normalised Gaussian similarities to the s nearest anchors."""
    distances = squared_distances(x, anchors)
    nearest = np.argpartition(distances, n_nearest - 1, axis=1)[:, :n_nearest]
    near_distances = np.take_along_axis(distances, nearest, axis=1)
    # subtracting each row's minimum leaves the normalised weights unchanged and avoids
    # underflow to 0/0 for points far from every anchor
    weights = np.exp(-(near_distances - near_distances.min(axis=1, keepdims=True)) / bandwidth)
    z = np.zeros_like(distances)
    np.put_along_axis(z, nearest, weights / weights.sum(axis=1, keepdims=True), axis=1)
    return z


@register("agh")
class AnchorGraphHashing(ShallowMethod):
    """Spectral embedding of an anchor graph, extended to new points through Z."""

    tags = MethodTags(family="shallow", supervision="none", inputs="features")

    def __init__(
        self, n_bits: int = 32, seed: int = 0, n_anchors: int = 300, n_nearest: int = 2
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        if n_nearest < 1 or n_nearest > n_anchors:
            raise ConfigError(f"n_nearest must be in 1..n_anchors={n_anchors}, got {n_nearest}")
        self.n_anchors = int(n_anchors)
        self.n_nearest = int(n_nearest)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        rng = np.random.default_rng(self.seed)
        self.mean_ = x.mean(axis=0)
        centred = x - self.mean_
        self.anchors_ = kmeans_anchors(centred, self.n_anchors, rng)
        distances = squared_distances(centred, self.anchors_)
        sth_nearest = np.partition(distances, self.n_nearest - 1, axis=1)[:, self.n_nearest - 1]
        self.bandwidth_ = float(np.mean(np.sqrt(sth_nearest)) ** 2)
        z = anchor_graph_rows(centred, self.anchors_, self.n_nearest, self.bandwidth_)
        degree = z.sum(axis=0)  # Lambda = diag(Z^T 1)
        degree = np.maximum(degree, np.finfo(np.float64).tiny)  # an anchor nobody is near
        scale = degree**-0.5
        eigenvalues, eigenvectors = np.linalg.eigh(scale[:, None] * (z.T @ z) * scale[None, :])
        order = np.argsort(eigenvalues)[::-1]
        # drop the trivial eigenvalue 1 (constant eigenvector) and numerically null ones
        useful = order[(eigenvalues[order] > 1e-10) & (eigenvalues[order] < 1 - 1e-3)]
        check_bits_available(
            self.name,
            self.n_bits,
            len(useful),
            f"one bit per non-trivial eigenvector of the {self.n_anchors}-anchor graph",
        )
        top = useful[: self.n_bits]
        self.projection_ = (
            np.sqrt(len(x)) * scale[:, None] * eigenvectors[:, top] / np.sqrt(eigenvalues[top])
        )

    def _project(self, x: np.ndarray) -> np.ndarray:
        z = anchor_graph_rows(x - self.mean_, self.anchors_, self.n_nearest, self.bandwidth_)
        return z @ self.projection_
