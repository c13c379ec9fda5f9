"""Locality-sensitive hashing by signs of random projections.

Charikar, "Similarity estimation techniques from rounding algorithms", STOC 2002: for a
random Gaussian vector w, h(x) = sgn(w^T x) collides for two vectors with probability
1 - angle(x, y) / pi. Used as the data-independent baseline of every hashing paper (e.g.
Gong & Lazebnik 2011, "LSH"). Data are centred on the training mean first so that each bit
splits the data near its middle rather than leaving all points on one side.
"""

from __future__ import annotations

import numpy as np

from hashlab.methods.base import ShallowMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags


@register("lsh")
class LSH(ShallowMethod):
    """Sign random projections of centred features: h_k(x) = sgn(w_k^T (x - mean))."""

    tags = MethodTags(family="shallow", supervision="none", inputs="features")

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        rng = np.random.default_rng(self.seed)
        self.mean_ = x.mean(axis=0)
        # w_k ~ N(0, I): the projection is rotation invariant, so collision probability
        # depends only on the angle between the centred vectors.
        self.projection_ = rng.standard_normal((x.shape[1], self.n_bits))

    def _project(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) @ self.projection_
