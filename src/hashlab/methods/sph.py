"""Spherical Hashing (SpH).

Heo, Lee, He, Chang & Yoon, "Spherical Hashing", CVPR 2012. Each bit is a hypersphere with a
pivot p_k and radius t_k: h_k(x) = 1 if d(p_k, x) <= t_k, else 0. The pivots are adjusted
iteratively so that every bit is balanced, o_k = |{x : h_k(x) = 1}|
= n/2 (the radius t_k is set to the median distance to its pivot), and every pair of bits is
independent, o_ij = |{x : h_i(x) = h_j(x) = 1}| = n/4. Each step applies to every pivot the
"force" from every other pivot

    f_{i<-j} = 1/2 * (o_ij - n/4) / (n/4) * (p_i - p_j),   p_i += 1/K * sum_j f_{i<-j},

and stops once the mean and standard deviation of |o_ij - n/4| fall below eps_m = 10% and
eps_s = 15% of n/4 (the paper's tolerances). Pivots start as means of a few random training
points. The optimisation runs on a random subsample (default 2,000 points; the paper also
trains on a subset) because its cost is n x K distances per step.

hashlab ranks with the ordinary Hamming distance; the paper's "spherical Hamming distance"
(Hamming / number of common 1-bits) is not used, so numbers are comparable across methods.
"""

from __future__ import annotations

import numpy as np

from hashlab.methods._linalg import squared_distances, subsample
from hashlab.methods.base import ShallowMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags


@register("sph")
class SphericalHashing(ShallowMethod):
    """Hyperspheres with balanced, pairwise independent bits; bit = d(x, p_k) <= t_k."""

    tags = MethodTags(family="shallow", supervision="none", inputs="features")

    def __init__(
        self,
        n_bits: int = 32,
        seed: int = 0,
        n_train: int = 2000,
        max_iter: int = 100,
        eps_mean: float = 0.10,
        eps_std: float = 0.15,
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.n_train = int(n_train)
        self.max_iter = int(max_iter)
        self.eps_mean = float(eps_mean)
        self.eps_std = float(eps_std)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        rng = np.random.default_rng(self.seed)
        self.mean_ = x.mean(axis=0)
        sample = x[subsample(len(x), self.n_train, rng)] - self.mean_
        n, k = len(sample), self.n_bits
        pivots = sample[rng.integers(0, n, size=(k, 5))].mean(axis=1)
        quarter = n / 4.0
        off_diagonal = ~np.eye(k, dtype=bool)
        for _ in range(self.max_iter):
            distances = squared_distances(sample, pivots)
            radii = np.median(distances, axis=0)  # o_k = n/2: each sphere holds half the data
            inside = (distances <= radii).astype(np.float64)
            overlap = inside.T @ inside  # o_ij
            error = np.abs(overlap - quarter)[off_diagonal]
            if error.mean() <= self.eps_mean * quarter and error.std() <= self.eps_std * quarter:
                break
            pull = 0.5 * (overlap - quarter) / quarter
            np.fill_diagonal(pull, 0.0)
            # f_i = 1/K sum_j pull_ij (p_i - p_j)
            forces = (pull.sum(axis=1)[:, None] * pivots - pull @ pivots) / k
            pivots = pivots + forces
        distances = squared_distances(sample, pivots)
        self.pivots_ = pivots
        # stored one float above t^2 so that "next(t^2) - d^2 > 0" is exactly "d^2 <= t^2"
        self.squared_radii_ = np.nextafter(np.median(distances, axis=0), np.inf)

    def _project(self, x: np.ndarray) -> np.ndarray:
        return self.squared_radii_ - squared_distances(x - self.mean_, self.pivots_)
