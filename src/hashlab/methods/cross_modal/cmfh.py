"""CMFH: Ding, Guo & Zhou, "Collective Matrix Factorization Hashing for Multimodal Data",
CVPR 2014. Unsupervised (labels are ignored): a shallow cross-modal baseline.

With X1 (d1 x n, image) and X2 (d2 x n, text) centred, V (K x n) the shared latent
representation, U_m the factor matrices and P_m the linear hash projections (Eq. 5):

    min lam ||X1 - U1 V||^2 + (1 - lam) ||X2 - U2 V||^2
        + mu (||V - P1 X1||^2 + ||V - P2 X2||^2) + gamma (sum ||U_m||^2 + ||V||^2 + sum ||P_m||^2)

Each block has a closed-form update (Eq. 7-10), iterated ``iterations`` times:
P_m = V X_m^T (X_m X_m^T + gamma/mu I)^-1, U_m = X_m V^T (V V^T + gamma/lam_m I)^-1,
V = (lam U1^T U1 + (1-lam) U2^T U2 + (2 mu + gamma) I)^-1 (lam U1^T X1 + (1-lam) U2^T X2
+ mu (P1 X1 + P2 X2)). Codes: sign(P_m x - t) with t the mean of V over training items
(V is not exactly zero-mean; thresholding at its mean balances the bits). Parameters as the
paper: lam = 0.5, mu = 100, gamma = 0.001 (we start V from a seeded random matrix).
"""

from __future__ import annotations

import numpy as np

from hashlab.methods.cross_modal.base import MODALITIES, CrossModalMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags

__all__ = ["CMFH"]


@register("cmfh")
class CMFH(CrossModalMethod):
    """Collective matrix factorisation hashing (see the module docstring)."""

    tags = MethodTags(
        family="cross_modal", supervision="none", inputs="paired_text", modalities=MODALITIES
    )

    def __init__(
        self,
        n_bits: int = 32,
        seed: int = 0,
        lam: float = 0.5,
        mu: float = 100.0,
        gamma: float = 1e-3,
        iterations: int = 50,
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.lam = lam
        self.mu = mu
        self.gamma = gamma
        self.iterations = iterations

    def _fit(self, images: np.ndarray, texts: np.ndarray, labels: np.ndarray | None) -> None:
        rng = np.random.default_rng(self.seed)
        views = [images.T.astype(np.float64), texts.T.astype(np.float64)]  # (d_m, n)
        weights = [self.lam, 1.0 - self.lam]
        k = self.n_bits
        latent = rng.standard_normal((k, images.shape[0]))
        # (X_m X_m^T + gamma/mu I)^-1 X_m does not change between iterations
        solvers = [
            np.linalg.solve(x @ x.T + (self.gamma / self.mu) * np.eye(len(x)), x) for x in views
        ]
        for _ in range(self.iterations):
            projections = [latent @ solver.T for solver in solvers]  # Eq. 10: P_m (K, d_m)
            factors = [
                x @ latent.T @ np.linalg.inv(latent @ latent.T + (self.gamma / w) * np.eye(k))
                for x, w in zip(views, weights, strict=True)
            ]  # Eq. 8-9
            system = sum(w * u.T @ u for u, w in zip(factors, weights, strict=True))
            system = system + (2 * self.mu + self.gamma) * np.eye(k)
            rhs = sum(w * u.T @ x for u, x, w in zip(factors, views, weights, strict=True))
            rhs = rhs + self.mu * sum(p @ x for p, x in zip(projections, views, strict=True))
            latent = np.linalg.solve(system, rhs)  # Eq. 7
        projections = [latent @ solver.T for solver in solvers]
        self.threshold_ = latent.mean(axis=1)
        self.image_projection_ = projections[0].T.astype(np.float32)  # (d1, K)
        self.text_projection_ = projections[1].T.astype(np.float32)

    def _project(self, features: np.ndarray, modality: str) -> np.ndarray:
        return features @ getattr(self, f"{modality}_projection_") - self.threshold_
