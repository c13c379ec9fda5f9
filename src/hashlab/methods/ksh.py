"""Kernel-Based Supervised Hashing (KSH).

Liu, Wang, Ji, Jiang & Chang, "Supervised Hashing with Kernels", CVPR 2012. Each bit is a
kernel hash function h_k(x) = sgn(a_k^T kbar(x)), where kbar(x) is the vector of Gaussian
kernels to m anchors, centred by its training mean. Codes should reproduce pairwise label
similarity through their inner products, which equal K - 2 * Hamming distance:

    min_A || H_l H_l^T - K S ||_F^2,   S_ij = 1 if items i, j share a label, else -1,

over l labelled items. The bits are learnt greedily: with the residue R_{k-1} = K S -
sum_{t<k} h_t h_t^T, bit k maximises h_k^T R_{k-1} h_k, where h_k = sgn(Kbar_l a_k). That is
(1) initialised by the spectral relaxation, the top generalised eigenvector of
Kbar_l^T R Kbar_l a = lambda Kbar_l^T Kbar_l a scaled to a^T Kbar_l^T Kbar_l a = l, then
(2) refined by accelerated gradient descent on the smooth surrogate
-phi(Kbar_l a)^T R phi(Kbar_l a) with phi(t) = 2 / (1 + exp(-t)) - 1, keeping whichever of
the two gives the larger discrete objective, as in the authors' code.

Defaults follow the paper's CIFAR-10 setting: m = 300 anchors (random training points) and the
kernel width of the authors' code (exp(-d^2 / (2 sigma)), sigma = mean squared distance to the
anchors); l = 1,000 labelled items by default (the paper uses l = 1,000 and 2,000) because the
residue is l x l and every gradient step multiplies by it. Deviation: at most 100 gradient steps
per bit (max_iter) where the authors' code allows 500 with a stopping rule that rarely fires
before; 500 takes ~90 CPU-seconds for 32 bits, 100 takes ~18 s (5,000 x 1,280 features), and
on digits the mAP difference is within run-to-run noise (0.961 vs 0.978, 0.971 with none).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hashlab.data.dataset import as_multihot
from hashlab.methods._linalg import rbf_anchors, rbf_kernel, subsample
from hashlab.methods.base import ShallowMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags


def _smooth_sign(t: np.ndarray) -> np.ndarray:
    return np.tanh(t / 2)  # = 2 / (1 + exp(-t)) - 1, without overflow


def optimise_projection(
    kernel: np.ndarray,
    residue: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    max_iter: int,
) -> np.ndarray:
    """Minimise g(a) = -phi(K a)^T R phi(K a) by Nesterov's method with backtracking.

    ``residue(v)`` returns R v (R is applied, never needed as a matrix).
    """

    def cost_and_gradient(a: np.ndarray) -> tuple[float, np.ndarray]:
        smooth = _smooth_sign(kernel @ a)
        r_smooth = residue(smooth)
        # d/da of -phi^T R phi = -2 K^T [(R phi) * phi'], phi' = (1 - phi^2) / 2
        return -smooth @ r_smooth, -kernel.T @ (r_smooth * (1 - smooth**2))

    def cost(a: np.ndarray) -> float:
        smooth = _smooth_sign(kernel @ a)
        return -smooth @ residue(smooth)

    previous, current = start, start
    momentum_old, momentum = 0.0, 1.0
    lipschitz = 1.0
    current_cost = cost(current)
    for _ in range(max_iter):
        probe = current + (momentum_old - 1) / momentum * (current - previous)
        probe_cost, gradient = cost_and_gradient(probe)
        # backtracking: grow the Lipschitz estimate until the quadratic bound holds
        for _ in range(50):
            candidate = probe - gradient / lipschitz
            step = candidate - probe
            candidate_cost = cost(candidate)
            if candidate_cost <= probe_cost + gradient @ step + lipschitz / 2 * step @ step:
                break
            lipschitz *= 2
        else:
            break
        previous, current = current, candidate
        momentum_old, momentum = momentum, (1 + np.sqrt(1 + 4 * momentum**2)) / 2
        converged = abs(candidate_cost - current_cost) / len(kernel) <= 1e-2
        current_cost = candidate_cost
        if converged:
            break
    return current


def _similarity_operator(labels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """v -> S v for S_ij = 1 if rows i, j share a label, else -1.

    For single-label data S = 2 Y Y^T - 1 1^T has rank C + 1, so S v costs O(l C) instead of
    O(l^2); that makes the hundreds of gradient steps per bit cheap. Multi-label S is dense.
    """
    if np.all(labels.sum(axis=1) == 1):
        return lambda v: 2 * labels @ (labels.T @ v) - v.sum(axis=0)
    dense = np.where(labels @ labels.T > 0, 1.0, -1.0)
    return lambda v: dense @ v


@register("ksh")
class KernelSupervisedHashing(ShallowMethod):
    """Greedy kernel hash functions whose code inner products fit the label similarity."""

    tags = MethodTags(family="shallow", supervision="labels", inputs="features")

    def __init__(
        self,
        n_bits: int = 32,
        seed: int = 0,
        n_anchors: int = 300,
        n_labelled: int = 1000,
        max_iter: int = 100,
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.n_anchors = int(n_anchors)
        self.n_labelled = int(n_labelled)
        self.max_iter = int(max_iter)

    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        rng = np.random.default_rng(self.seed)
        labels = as_multihot(y).astype(np.float64)
        self.mean_ = x.mean(axis=0)
        centred = x - self.mean_
        self.anchors_, self.two_sigma_ = rbf_anchors(centred, self.n_anchors, rng)
        labelled = subsample(len(x), self.n_labelled, rng)
        kernel = rbf_kernel(centred[labelled], self.anchors_, self.two_sigma_)
        self.kernel_mean_ = kernel.mean(axis=0)
        kernel -= self.kernel_mean_
        n = len(labelled)
        similarity = _similarity_operator(labels[labelled])
        fixed_codes = np.zeros((n, 0))

        def residue(v: np.ndarray) -> np.ndarray:  # R_k v = (K S - sum_t h_t h_t^T) v
            return self.n_bits * similarity(v) - fixed_codes @ (fixed_codes.T @ v)

        # The spectral step lives in the column space of the kernel matrix: with the thin SVD
        # Kbar_l = U diag(s) V^T, the generalised eigenproblem becomes the ordinary one of
        # U^T R U (dropping numerically null directions, which the anchors' strongly
        # correlated kernel columns produce), and a = V diag(1/s) u.
        u, singular, vt = np.linalg.svd(kernel, full_matrices=False)
        keep = singular > 1e-6 * singular[0]
        u, singular, vt = u[:, keep], singular[keep], vt[keep]
        reduced_residue = u.T @ residue(u)  # then updated by rank-1 steps as bits are fixed
        projection = np.zeros((len(self.anchors_), self.n_bits))
        for bit in range(self.n_bits):
            _, vectors = np.linalg.eigh(reduced_residue)
            # scaled so that ||Kbar_l a||^2 = l, as in the paper
            spectral = vt.T @ (vectors[:, -1] / singular) * np.sqrt(n)
            refined = optimise_projection(kernel, residue, spectral, self.max_iter)
            best_codes, best_value = None, -np.inf
            for candidate in (spectral, refined):
                codes = np.where(kernel @ candidate > 0, 1.0, -1.0)
                value = codes @ residue(codes)
                if value > best_value:
                    best_codes, best_value, projection[:, bit] = codes, value, candidate
            fixed_codes = np.column_stack([fixed_codes, best_codes])  # R_k = R_{k-1} - h h^T
            reduced_codes = u.T @ best_codes
            reduced_residue -= np.outer(reduced_codes, reduced_codes)
        self.projection_ = projection

    def _project(self, x: np.ndarray) -> np.ndarray:
        kernel = rbf_kernel(x - self.mean_, self.anchors_, self.two_sigma_)
        return (kernel - self.kernel_mean_) @ self.projection_
