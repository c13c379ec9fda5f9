"""PCA hashing (PCAH): signs of the top principal components.

The baseline of Wang, Kumar & Chang, "Semi-supervised hashing for large-scale search"
(TPAMI 2012) and of Gong & Lazebnik, "Iterative quantization" (CVPR 2011, "PCA-Direct"):
W = the top-K eigenvectors of the covariance (the variance-maximising Eq. (1) of the ITQ
paper with the sign relaxed away), h(x) = sgn(W^T (x - mean)). K is limited by the feature
dimension.
"""

from __future__ import annotations

import numpy as np

from hashlab.methods._linalg import check_bits_available, pca_directions
from hashlab.methods.base import ShallowMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags


@register("pcah")
class PCAH(ShallowMethod):
    """h(x) = sgn(W^T (x - mean)), W = top-K principal directions of the training data."""

    tags = MethodTags(family="shallow", supervision="none", inputs="features")

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        check_bits_available(
            self.name,
            self.n_bits,
            min(x.shape[1], x.shape[0] - 1),
            "one bit per principal direction: at most min(feature dimension, training items - 1)",
        )
        self.mean_ = x.mean(axis=0)
        self.components_, _ = pca_directions(x - self.mean_, self.n_bits)

    def _project(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) @ self.components_
