"""Numerical pieces the shallow hashing methods share: PCA, distances, kernels, anchors.

Kept apart so each method file reads like its paper. Everything is float64 numpy; random
choices take an explicit ``numpy.random.Generator`` so that a method's ``seed`` fixes its
result.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, sparse

from hashlab.errors import InputError

__all__ = [
    "check_bits_available",
    "kmeans_anchors",
    "pca_directions",
    "random_orthogonal",
    "rbf_kernel",
    "squared_distances",
    "subsample",
]


def check_bits_available(method: str, n_bits: int, available: int, why: str) -> None:
    """Raise a ValueError naming the limit when a method cannot make ``n_bits`` useful bits."""
    if n_bits > available:
        raise InputError(
            f"{method} can make at most {available} bits here ({why}), got n_bits={n_bits}"
        )


def pca_directions(centred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` principal directions (D, k) of centred data and their variances (k,).

    Eigen-decomposition of the D x D covariance: cheaper than an SVD of the data when
    N >> D, which is the usual case (5,000 x 1,280 features). Signs are made deterministic
    (largest-magnitude loading positive) so that a refit gives the same codes.
    """
    n = centred.shape[0]
    covariance = centred.T @ centred / max(n - 1, 1)
    d = len(covariance)
    # only the top k eigenpairs: much cheaper than the full decomposition for k << D
    variances, vectors = linalg.eigh(covariance, subset_by_index=[d - k, d - 1])
    order = np.argsort(variances)[::-1]
    vectors = vectors[:, order]
    flip = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
    return vectors * np.where(flip == 0, 1.0, flip), variances[order]


def random_orthogonal(k: int, rng: np.random.Generator) -> np.ndarray:
    """A random k x k orthogonal matrix (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    return q * np.sign(np.diag(r))


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances, clipped at 0 against rounding."""
    out = (a * a).sum(axis=1)[:, None] - 2.0 * (a @ b.T) + (b * b).sum(axis=1)[None, :]
    return np.maximum(out, 0.0, out=out)


def rbf_kernel(x: np.ndarray, anchors: np.ndarray, two_sigma_squared: float) -> np.ndarray:
    """Gaussian kernel exp(-||x - a||^2 / (2 sigma^2)) between rows of x and the anchors."""
    return np.exp(-squared_distances(x, anchors) / two_sigma_squared)


def subsample(n: int, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``min(size, n)`` rows drawn without replacement (all rows if None)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=size, replace=False))


def rbf_anchors(
    points: np.ndarray,
    n_anchors: int,
    rng: np.random.Generator,
    width_points: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Anchors drawn from ``points`` and the kernel width 2 sigma^2 = 2 x mean squared
    distance of ``width_points`` (default: all points) to them: the KSH / SDH / BRE recipe."""
    anchors = points[subsample(len(points), n_anchors, rng)]
    reference = points if width_points is None else width_points
    return anchors, float(2 * squared_distances(reference, anchors).mean())


def kmeans_anchors(
    x: np.ndarray, n_anchors: int, rng: np.random.Generator, n_iter: int = 10
) -> np.ndarray:
    """``n_anchors`` cluster centres by Lloyd's k-means from random data points.

    A few iterations suffice: anchors only need to cover the data (Liu et al. 2011 run
    k-means for a handful of iterations too); a cluster that empties keeps its old centre.
    """
    if n_anchors > len(x):
        raise InputError(f"need at least {n_anchors} training items for {n_anchors} anchors")
    centres = x[rng.choice(len(x), size=n_anchors, replace=False)].copy()
    for _ in range(n_iter):
        assignment = squared_distances(x, centres).argmin(axis=1)
        membership = sparse.csr_matrix(
            (np.ones(len(x)), (assignment, np.arange(len(x)))), shape=(n_anchors, len(x))
        )
        counts = np.asarray(membership.sum(axis=1)).ravel()
        sums = membership @ x
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres
