"""Binary Reconstructive Embeddings (BRE), unsupervised version.

Kulis & Darrell, "Learning to Hash with Binary Reconstructive Embeddings", NIPS 2009. Each bit
is a kernel hash function h_p(x) = [sum_q W_qp kbar(x, a_q) > 0] over landmark points a_q
(Gaussian kernel, centred by its training mean), and the weights minimise how badly scaled
Hamming distances reconstruct the input distances over a set of training pairs N:

    O(W) = sum_{(i, j) in N} (d(x_i, x_j) - d~(x_i, x_j))^2,
    d(x_i, x_j) = 1/2 ||x_i - x_j||^2 (scaled to [0, 1]),  d~ = Hamming(x_i, x_j) / K.

The paper minimises O by exact coordinate descent: for one weight W_qp, the objective is
piecewise constant in its value, changing only where some training point's bit p flips;
all those flip points are sorted and the best interval is taken. Here this is done exactly
and in O(n^2) per coordinate: writing s = 2h - 1 for bit p, O = const - 1/2 s^T A s with
A_ij = 1 / (2 K^2) - R_ij / K and R the residual distance left by the other bits, so the
objective after flipping the first m points of the sorted list is a prefix sum of A.

Training uses all pairs among a random subsample of n_train = 500 points, 64 landmarks shared
by all bits, random Gaussian initial weights and 2 sweeps over all coordinates. The paper
also samples its training points and landmarks from the data, but with more of both; the
cost is O(n_train^2) per coordinate and n_anchors * K coordinates per sweep, so these defaults
keep a fit to seconds (about 15 s on 2 busy cores); raise them for a closer fit.
"""

from __future__ import annotations

import numpy as np

from hashlab.methods._linalg import rbf_anchors, rbf_kernel, squared_distances, subsample
from hashlab.methods.base import ShallowMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags


def best_flip_prefix(
    order: np.ndarray, signs: np.ndarray, coupled_signs: np.ndarray, coupling: np.ndarray
) -> tuple[int, float]:
    """Flip signs[order[:m]] for the m that maximises s^T A s; returns (m, gain over m = 0).

    With f the flipped part of s, (s - 2f)^T A (s - 2f) = s^T A s - 4 f^T A s + 4 f^T A f;
    ``coupled_signs`` is A s, and f^T A f grows by 2 s_m sum_{l<m} s_l A_lm when the m-th
    point of the order flips (A has a zero diagonal).
    """
    if len(order) == 0:
        return 0, 0.0
    s = signs[order]
    linear = np.cumsum(s * coupled_signs[order])
    quadratic = np.cumsum(s * (s @ np.triu(coupling[order][:, order], 1)))
    gains = 8 * quadratic - 4 * linear
    best = int(np.argmax(gains))
    return (best + 1, float(gains[best])) if gains[best] > 0 else (0, 0.0)


@register("bre")
class BinaryReconstructiveEmbedding(ShallowMethod):
    """Kernel hash functions whose Hamming distances reconstruct Euclidean distances."""

    tags = MethodTags(family="shallow", supervision="none", inputs="features")

    def __init__(
        self,
        n_bits: int = 32,
        seed: int = 0,
        n_train: int = 500,
        n_anchors: int = 64,
        n_sweeps: int = 2,
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.n_train = int(n_train)
        self.n_anchors = int(n_anchors)
        self.n_sweeps = int(n_sweeps)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        rng = np.random.default_rng(self.seed)
        self.mean_ = x.mean(axis=0)
        centred = x - self.mean_
        sample = centred[subsample(len(x), self.n_train, rng)]
        self.anchors_, self.two_sigma_squared_ = rbf_anchors(
            centred, self.n_anchors, rng, width_points=sample
        )
        kernel = rbf_kernel(sample, self.anchors_, self.two_sigma_squared_)
        self.kernel_mean_ = kernel.mean(axis=0)
        kernel -= self.kernel_mean_
        target = squared_distances(sample, sample)
        target /= max(target.max(), np.finfo(np.float64).tiny)  # d scaled to [0, 1]
        k = self.n_bits
        weights = rng.standard_normal((len(self.anchors_), k))  # random kernel hyperplanes
        outputs = kernel @ weights
        signs = np.where(outputs > 0, 1.0, -1.0)
        hamming = (k - signs @ signs.T) / 2
        for _ in range(self.n_sweeps):
            for p in range(k):
                own = (1 - np.outer(signs[:, p], signs[:, p])) / 2
                residual = target - (hamming - own) / k
                coupling = 1 / (2 * k * k) - residual / k
                np.fill_diagonal(coupling, 0.0)
                for q in range(len(self.anchors_)):
                    self._update_weight(kernel[:, q], outputs, signs, weights, coupling, p, q)
                hamming += (1 - np.outer(signs[:, p], signs[:, p])) / 2 - own
        self.weights_ = weights

    @staticmethod
    def _update_weight(
        column: np.ndarray,
        outputs: np.ndarray,
        signs: np.ndarray,
        weights: np.ndarray,
        coupling: np.ndarray,
        p: int,
        q: int,
    ) -> None:
        """Exact minimisation over W_qp: try every interval between bit-flip points."""
        with np.errstate(divide="ignore", invalid="ignore"):
            flips_at = -outputs[:, p] / column  # W_qp + alpha flips point i at alpha_i
        valid = np.isfinite(flips_at)
        coupled_signs = coupling @ signs[:, p]
        best = (0, 0.0, None)
        for direction in (1.0, -1.0):
            ahead = np.flatnonzero(valid & (direction * flips_at > 0))
            order = ahead[np.argsort(direction * flips_at[ahead], kind="stable")]
            m, gain = best_flip_prefix(order, signs[:, p], coupled_signs, coupling)
            if gain > best[1]:
                best = (m, gain, order)
        m, _, order = best
        if m == 0:
            return
        crossed = flips_at[order[m - 1]]
        # step to the middle of the interval after the m-th flip (or a bit past the last one)
        step = (crossed + flips_at[order[m]]) / 2 if m < len(order) else crossed * 1.5
        weights[q, p] += step
        outputs[:, p] += step * column
        signs[:, p] = np.where(outputs[:, p] > 0, 1.0, -1.0)

    def _project(self, x: np.ndarray) -> np.ndarray:
        kernel = rbf_kernel(x - self.mean_, self.anchors_, self.two_sigma_squared_)
        return (kernel - self.kernel_mean_) @ self.weights_
