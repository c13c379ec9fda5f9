"""The discrete code step of SADH (Shen, Liu & Shao, "Unsupervised Deep Hashing with
Similarity-Adaptive and Discrete Optimization", IEEE TPAMI 2018), in numpy.

The similarity graph is an anchor graph (Liu et al. 2011; ``hashlab.methods.agh``) with its
trivial (constant) eigenvector removed, S~ = Z Lambda^-1 Z^T - 1 1^T / n, never formed: it is
kept as a low-rank factor S~ = F C F^T with F = [Z Lambda^-1/2, 1 / sqrt(n)] and
C = diag(1, ..., 1, -1) (:func:`anchor_graph_factor`). Removing the constant direction is the
bit-balance constraint B^T 1 = 0 of the paper's code problem, relaxed into the objective.

The code step (numbered as in ``hashlab.methods.deep.sadh``):

    (3)  min_B  -tr(B^T S~ B) + (lambda / 2) ||B - U||_F^2,   B in {-1, 1}^{n x K}

with U the network's outputs (the coupling that ties codes to what the network can regress,
and keeps the K columns apart: without it every column would go to the same top eigenvector).
Solved by ADMM, as the paper does, in the l_p-box form of Wu & Ghanem (TPAMI 2019):
{-1, 1}^{nK} is the intersection of the box [-1, 1]^{nK} and the sphere ||B||_F^2 = nK, each
held by a copy (Z1, Z2) with multipliers (Y1, Y2) and penalty mu (:func:`discrete_code_step`):

* B = argmin of the augmented Lagrangian, the linear system
  ((lambda + 2 mu) I - 2 S~) B = lambda U + mu (Z1 + Z2) - Y1 - Y2, solved exactly through the
  low-rank factor (Woodbury: (aI - 2FCF^T)^-1 = (1/a) [I + F ((a/2) C^-1 - F^T F)^-1 F^T]);
* Z1 = clip(B + Y1 / mu, -1, 1), Z2 = sqrt(nK) v / ||v||_F with v = B + Y2 / mu;
* Y1 += mu (B - Z1), Y2 += mu (B - Z2), mu = min(rho mu, mu_max).

mu starts at 2 (so that lambda + 2 mu > 2 >= 2 lambda_max(S~): the system is positive definite
from the first iteration), rho = 1.05 and mu_max = 1e3 (ours: an increasing penalty, as in
Wu & Ghanem's scheme).
"""

from __future__ import annotations

import numpy as np

__all__ = ["anchor_graph_factor", "discrete_code_step", "graph_objective"]


def anchor_graph_factor(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(F, c): S~ = F diag(c) F^T for the anchor graph of (n, m) rows ``z`` minus 1 1^T / n."""
    n = len(z)
    degree = np.maximum(z.sum(axis=0), np.finfo(np.float64).tiny)  # Lambda = diag(Z^T 1)
    factor = np.concatenate([z * degree**-0.5, np.full((n, 1), n**-0.5)], axis=1)
    signs = np.ones(factor.shape[1])
    signs[-1] = -1.0
    return factor, signs


def graph_objective(b: np.ndarray, factor: np.ndarray, signs: np.ndarray) -> float:
    """tr(B^T S~ B) / (n K): 1 when every bit splits the graph perfectly, ~0 for random bits."""
    projected = factor.T @ b  # (m + 1, K)
    return float((signs[:, None] * projected**2).sum() / b.size)


def _solve(rhs: np.ndarray, factor: np.ndarray, signs: np.ndarray, a: float) -> np.ndarray:
    """((a I - 2 F C F^T)^-1) rhs by Woodbury (see the module docstring)."""
    inner = np.diag(0.5 * a / signs) - factor.T @ factor
    return (rhs + factor @ np.linalg.solve(inner, factor.T @ rhs)) / a


def discrete_code_step(
    u: np.ndarray,
    factor: np.ndarray,
    signs: np.ndarray,
    lam: float = 1.0,
    iterations: int = 50,
    init: np.ndarray | None = None,
    mu: float = 2.0,
    rho: float = 1.05,
    mu_max: float = 1e3,
) -> np.ndarray:
    """Eq. 3 by l_p-box ADMM; returns B in {-1, 1}^{n x K} (float64)."""
    u = np.asarray(u, dtype=np.float64)
    b = np.where(u >= 0, 1.0, -1.0) if init is None else np.asarray(init, dtype=np.float64)
    z1, z2 = b.copy(), b.copy()
    y1, y2 = np.zeros_like(b), np.zeros_like(b)
    radius = np.sqrt(b.size)
    for _ in range(iterations):
        b = _solve(lam * u + mu * (z1 + z2) - y1 - y2, factor, signs, lam + 2.0 * mu)
        z1 = np.clip(b + y1 / mu, -1.0, 1.0)
        v = b + y2 / mu
        z2 = radius * v / max(np.linalg.norm(v), 1e-12)
        y1 += mu * (b - z1)
        y2 += mu * (b - z2)
        mu = min(rho * mu, mu_max)
    return np.where(b >= 0, 1.0, -1.0)
