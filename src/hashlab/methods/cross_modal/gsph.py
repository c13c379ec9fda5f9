"""GSPH: Mandal, Chaudhury & Biswas, "Generalized Semantic Preserving Hashing for N-Label
Cross-Modal Retrieval", CVPR 2017. Supervised, shallow, two steps.

1. Codes (Sec. 3.2): one code matrix per view, A (image) and B (text) in {-1, +1}^{n x K},
   whose scaled inner products reproduce the label similarity S (s_ij = 1 when items i and j
   share a label, else 0; the paired items of the two views are the rows):

       min_{A, B} ||K S - A B^T||_F^2   (Eq. 3, the N-label case: A and B differ)

   relaxed to the box [-1, 1] and solved as the authors' code does
   (``generate_hash_codes8_matrix_update.m``, the matrix update of the journal version):
   alternate projected gradient steps on A and on B with step 1 / (2 lambda_max(B^T B)),
   ``code_iterations`` = 100 rounds from random signs, stop when the relative change of
   ||S - A B^T / K|| falls below 1e-6; then A, B = sign.
2. Hash functions (Sec. 3.3): per view, an RBF kernel on ``n_anchors`` = 500 random anchors
   (bandwidth the mean distance of an item to its nearest anchor, features centred with the
   training mean: the authors' ``apply_kernel.m``), then ridge regression of that view's
   codes with the penalty chosen per bit by 5-fold cross-validation from 10^-3 .. 10^3
   (``AdaptiveTrainLinearRidgeRegression_CV.m``). The paper's hash functions are kernel
   logistic regression; we use the authors' linear-regression variant (their
   ``*_Kernel_LinearR.m`` scripts), a closed form, without intercept as theirs.

Out-of-sample codes both ways: a query is coded by its own view's regression, and so is the
database (the authors code their database with both views of each item; our protocol
searches text queries against image codes and back).
"""

from __future__ import annotations

import numpy as np

from hashlab.losses.pairwise import label_similarity
from hashlab.methods.cross_modal.base import CrossModalMethod
from hashlab.methods.registry import register

__all__ = ["GSPH", "gsph_codes", "gsph_objective"]

PENALTIES = tuple(10.0**p for p in range(-3, 4))  # the authors' grid, 10^-3 .. 10^3


def gsph_objective(s: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """||K S - A B^T||_F^2 (Eq. 3) for (n, n) S and (n, K) A, B."""
    return float(((a.shape[1] * s - a @ b.T) ** 2).sum())


def gsph_codes(
    s: np.ndarray, n_bits: int, iterations: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Step 1: A, B in {-1, +1}^{n x K} by box-projected alternating gradient steps."""
    n, m = s.shape
    a = np.where(rng.random((n, n_bits)) < 0.5, -1.0, 1.0)
    b = np.where(rng.random((m, n_bits)) < 0.5, -1.0, 1.0)
    previous = None
    for t in range(iterations):
        # gradient of ||K S - A B^T||^2 in A is 2 A B^T B - 2 K S B; its Lipschitz constant
        # is 2 lambda_max(B^T B), whose inverse is the step
        gram = b.T @ b
        a = np.clip(a - (a @ gram - n_bits * s @ b) / np.linalg.eigvalsh(gram)[-1], -1, 1)
        gram = a.T @ a
        b = np.clip(b - (b @ gram - n_bits * s.T @ a) / np.linalg.eigvalsh(gram)[-1], -1, 1)
        value = float(np.linalg.norm(s - np.sign(a) @ np.sign(b).T / n_bits))
        if previous is not None and t > 4 and (previous - value) / max(value, 1e-12) <= 1e-6:
            break
        previous = value
    return np.where(a >= 0, 1.0, -1.0), np.where(b >= 0, 1.0, -1.0)


def _ridge_cv(
    kernel: np.ndarray, targets: np.ndarray, rng: np.random.Generator, folds: int = 5
) -> np.ndarray:
    """Per bit, the penalty of least held-out squared error; the (d, K) weights.

    No intercept, as the authors' code: the kernel features are centred, and the sign of a
    prediction without intercept does not depend on how much the penalty shrinks it.
    """
    order = rng.permutation(len(kernel))
    errors = np.zeros((len(PENALTIES), targets.shape[1]))
    eye = np.eye(kernel.shape[1])
    for held in np.array_split(order, folds):
        x, y = kernel[np.setdiff1d(order, held)], targets[np.setdiff1d(order, held)]
        gram, moment = x.T @ x, x.T @ y
        for p, penalty in enumerate(PENALTIES):
            w = np.linalg.solve(gram + penalty * eye, moment)
            errors[p] += ((kernel[held] @ w - targets[held]) ** 2).mean(0)
    best = errors.argmin(0)
    weights = np.zeros((kernel.shape[1], targets.shape[1]))
    for p in np.unique(best):
        bits = best == p
        weights[:, bits] = np.linalg.solve(
            kernel.T @ kernel + PENALTIES[p] * eye, kernel.T @ targets[:, bits]
        )
    return weights


@register("gsph")
class GSPH(CrossModalMethod):
    """GSPH with the authors' kernel ridge-regression hash functions (module docstring)."""

    def __init__(
        self, n_bits: int = 32, seed: int = 0, code_iterations: int = 100, n_anchors: int = 500
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.code_iterations = code_iterations
        self.n_anchors = n_anchors

    def _fit(self, images: np.ndarray, texts: np.ndarray, labels: np.ndarray) -> None:
        rng = np.random.default_rng(self.seed)
        s = label_similarity(labels).astype(np.float64)
        image_codes, text_codes = gsph_codes(s, self.n_bits, self.code_iterations, rng)
        for modality, features, codes in (("image", images, image_codes),
                                          ("text", texts, text_codes)):  # fmt: skip
            anchors = features[rng.choice(len(features), min(self.n_anchors, len(features)),
                                          replace=False)]  # fmt: skip
            setattr(self, f"{modality}_anchors_", anchors)
            nearest = np.sqrt(_squared_distances(features, anchors).min(1))
            setattr(self, f"{modality}_bandwidth_", max(float(nearest.mean()), 1e-6))
            # centred with the training mean, as the authors' apply_kernel.m
            setattr(self, f"{modality}_kernel_mean_", 0.0)
            kernel = self._kernel(features, modality)
            setattr(self, f"{modality}_kernel_mean_", kernel.mean(0).astype(np.float32))
            kernel = kernel - getattr(self, f"{modality}_kernel_mean_")
            setattr(self, f"{modality}_weights_", _ridge_cv(kernel, codes, rng).astype(np.float32))

    def _kernel(self, features: np.ndarray, modality: str) -> np.ndarray:
        squared = _squared_distances(features, getattr(self, f"{modality}_anchors_"))
        bandwidth = getattr(self, f"{modality}_bandwidth_")
        return np.exp(-squared / (2.0 * bandwidth**2))

    def _project(self, features: np.ndarray, modality: str) -> np.ndarray:
        kernel = self._kernel(features, modality) - getattr(self, f"{modality}_kernel_mean_")
        return kernel.astype(np.float32) @ getattr(self, f"{modality}_weights_")


def _squared_distances(x: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    squared = (x**2).sum(1, keepdims=True) - 2.0 * x @ anchors.T + (anchors**2).sum(1)
    return np.maximum(squared, 0.0)
