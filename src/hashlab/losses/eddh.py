"""EDDH's asymmetric discrete objective and its closed-form steps (Yang et al., IP&M 2021).

The paper (Eq. 9, with S^ of Eq. 10) writes, in its k x n column layout,

    min_{theta, B, A} ||F(X)^T A^T Y - k S^||^2 + lambda ||F(X) - B||^2
                      + gamma ||B - A^T Y||^2 + rho ||A^T Y||^2,   B in {-1, 1}^{k x n}.

hashlab keeps items in rows, so here U = F(X)^T (n, k), Y is (n, c), A is (c, k), the
label-transferred codes are V = Y A (n, k) and B is (n, k). One deviation, stated: the pair
term is divided by n,

    J = (1/n) ||U V^T - k S^||^2 + lambda ||U - B||^2 + gamma ||B - V||^2 + rho ||V||^2,

because it sums n^2 pairs while the other terms sum n items; without the 1/n the weights
would have to grow with the training set (paper weights = n * ours).

Closed forms (the slides cite Eqs. 22 and 25 without giving them; derived here):
- B-step (Eq. 25): J depends on B through -2 tr(B^T (lambda U + gamma V)) + const, so
  B = sign(lambda U + gamma V) is the exact minimiser over {-1, 1}^{n x k}.
- A-step (Eq. 22): dJ/dA = 0 gives
  (Y^T Y) A (U^T U / n + (gamma + rho) I) = (k / n) (S^ Y)^T U + gamma Y^T B.
  The right factor is positive definite; Y^T Y may be singular (labels that always occur
  together), and the Moore-Penrose inverse then still gives a minimiser because the
  right-hand side lies in Y^T's range. S^ Y (n, c) is computed by blocks of S^ rows.
- V-step, for the ablation without label transfer (V a free matrix):
  V (U^T U / n + (gamma + rho) I) = (k / n) S^ U + gamma B.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "a_step",
    "b_step",
    "eddh_objective",
    "eddh_theta_loss",
    "symmetric_theta_loss",
    "v_step",
]

SimilarityRows = Callable[[np.ndarray], np.ndarray]


def eddh_objective(
    u: np.ndarray,
    v: np.ndarray,
    b: np.ndarray,
    similarity_rows: SimilarityRows,
    n_bits: int,
    lam: float,
    gamma: float,
    rho: float,
    block: int = 1024,
) -> float:
    """J of the module docstring, evaluated directly (S^ rows made ``block`` at a time)."""
    u, v, b = (np.asarray(m, dtype=np.float64) for m in (u, v, b))
    n = len(u)
    pair_term = 0.0
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        residual = u[rows] @ v.T - n_bits * similarity_rows(rows)
        pair_term += float(np.sum(residual**2))
    return (
        pair_term / n
        + lam * float(np.sum((u - b) ** 2))
        + gamma * float(np.sum((b - v) ** 2))
        + rho * float(np.sum(v**2))
    )


def b_step(u: np.ndarray, v: np.ndarray, lam: float, gamma: float) -> np.ndarray:
    """Eq. (25): B = sign(lambda U + gamma V), with sign(0) = +1 so B stays binary."""
    return np.where(lam * np.asarray(u) + gamma * np.asarray(v) >= 0, 1.0, -1.0)


def _right_factor(u: np.ndarray, gamma: float, rho: float) -> np.ndarray:
    n, k = u.shape
    return u.T @ u / n + (gamma + rho) * np.eye(k)


def a_step(
    u: np.ndarray,
    b: np.ndarray,
    y: np.ndarray,
    s_times_y: np.ndarray,
    n_bits: int,
    gamma: float,
    rho: float,
) -> np.ndarray:
    """Eq. (22): the label transfer A (c, k) minimising J for fixed U and B.

    ``s_times_y`` is S^ @ Y (n, c), e.g. ``SemanticVisualSimilarity.times(y)``.
    """
    u, b, y, sy = (np.asarray(m, dtype=np.float64) for m in (u, b, y, s_times_y))
    n = len(u)
    rhs = (n_bits / n) * sy.T @ u + gamma * y.T @ b
    label_gram_pinv = np.linalg.pinv(y.T @ y, hermitian=True)
    # A R = label_gram_pinv @ rhs with R symmetric positive definite: solve, don't invert.
    return np.linalg.solve(_right_factor(u, gamma, rho), (label_gram_pinv @ rhs).T).T


def v_step(
    u: np.ndarray, b: np.ndarray, s_times_u: np.ndarray, n_bits: int, gamma: float, rho: float
) -> np.ndarray:
    """Ablation without label transfer: the free V (n, k) minimising J for fixed U and B."""
    u, b, su = (np.asarray(m, dtype=np.float64) for m in (u, b, s_times_u))
    rhs = (n_bits / len(u)) * su + gamma * b
    return np.linalg.solve(_right_factor(u, gamma, rho), rhs.T).T


def eddh_theta_loss(
    u_batch: torch.Tensor,
    v_gram: torch.Tensor,
    sv_batch: torch.Tensor,
    s_sq_batch: torch.Tensor,
    b_batch: torch.Tensor | None,
    n_bits: int,
    lam: float,
    n_items: int,
) -> torch.Tensor:
    """theta-step loss: the mini-batch's share of J, divided by the batch size.

    Only the first two terms of J depend on theta. With V fixed during the theta-step, row i
    of the pair term expands to u_i^T (V^T V) u_i - 2k u_i^T (S^ V)_i + k^2 sum_j s^_ij^2, so
    a batch needs only V^T V (k x k), its rows of S^ V (computed once per outer iteration,
    by blocks) and the constant sum_j s^_ij^2: the same value and gradient as the direct
    n-column residual at O(k^2) per item instead of O(n k). ``b_batch`` None drops the
    quantisation term (the tanh-relaxation-only ablation).
    """
    pair = (
        torch.einsum("bk,kl,bl->", u_batch, v_gram, u_batch)
        - 2 * n_bits * (u_batch * sv_batch).sum()
        + n_bits**2 * s_sq_batch.sum()
    ) / n_items
    if b_batch is not None and lam > 0:
        pair = pair + lam * ((u_batch - b_batch) ** 2).sum()
    return pair / u_batch.shape[0]


def symmetric_theta_loss(
    u_batch: torch.Tensor,
    u_all: torch.Tensor,
    s_rows: torch.Tensor,
    b_batch: torch.Tensor | None,
    n_bits: int,
    lam: float,
) -> torch.Tensor:
    """The symmetric ablation's batch loss: V replaced by the network's own outputs U
    (||U U^T - k S^||^2 / n + lambda ||U - B||^2), gradients through both factors."""
    pair = ((u_batch @ u_all.T - n_bits * s_rows) ** 2).sum() / u_all.shape[0]
    if b_batch is not None and lam > 0:
        pair = pair + lam * ((u_batch - b_batch) ** 2).sum()
    return pair / u_batch.shape[0]
