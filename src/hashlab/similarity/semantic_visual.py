"""Semantic-visual continuous similarity S^ of EDDH (Yang et al., IP&M 2021, Eq. 10).

Pairs are split by semantics (s_ij = 1 when items share at least one label, else -1) and
graded by visual distance D_ij = 1 - cos(z_i, z_j) of pretrained backbone features z:

    s^_ij =  E(log((alpha + 1/n) / (D_ij + 1/n))) + 1     if s_ij = 1   -> in [1, 2]
    s^_ij = -E(log((D_ij + 1/n) / (beta + 1/n))) - 1      if s_ij = -1  -> in [-2, -1]

with E = clamp to [0, 1] (the slides name a "threshold function" without defining it; the
clamp gives exactly the ranges they state), alpha = (iota - sigma_l) e and
beta = (iota + sigma_r) / e, where (iota, sigma_l, sigma_r) is a split normal (``split_normal``)
fitted to the distances of 5,000 similar and 5,000 dissimilar random pairs. Dividing by e is
what makes the thresholds exact: log(alpha / D) >= 1 iff D <= iota - sigma_l (strongly
similar, s^ = 2) and log(D / beta) >= 1 iff D >= iota + sigma_r (strongly dissimilar, -2),
up to the 1/n smoothing.

S^ is n x n. Up to ``dense_limit`` items (default 8,192: 256 MiB of float32) it is formed
once, on first use: EDDH multiplies by S^ every outer iteration, and recomputing the d-dim
cosine distances each time dominated its CPU time on CIFAR-10 (n = 4,500, d = 1,280). Above
the limit nothing forms it: ``rows`` makes a block of rows on demand and ``times``
multiplies S^ by a thin matrix block by block, so memory stays O(block * n).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.similarity.split_normal import SplitNormal, fit_split_normal

__all__ = [
    "SemanticVisualSimilarity",
    "SimilarityThresholds",
    "continuous_similarity",
    "label_matrix",
    "sample_pairs",
]


def label_matrix(labels: np.ndarray) -> np.ndarray:
    """(n, c) float32 multi-hot labels from class ids (n,) or a multi-hot (n, c) matrix."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return (labels > 0).astype(np.float32)
    if labels.ndim != 1:
        raise ValueError(f"labels must be (n,) class ids or (n, c) multi-hot, got {labels.shape}")
    classes, ids = np.unique(labels, return_inverse=True)
    onehot = np.zeros((len(labels), len(classes)), dtype=np.float32)
    onehot[np.arange(len(labels)), ids] = 1.0
    return onehot


def _unit_rows(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float32)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    # A zero vector (an unlabeled item in label-only mode) is at distance 1 from everything.
    return z / np.where(norms > 0, norms, 1.0)


def continuous_similarity(
    distance: np.ndarray, similar: np.ndarray, alpha: float, beta: float, smoothing: float
) -> np.ndarray:
    """Eq. (10): s^ in [1, 2] for semantically similar pairs, in [-2, -1] otherwise."""
    distance = np.maximum(np.asarray(distance, dtype=np.float64), 0.0)
    positive = np.clip(np.log((alpha + smoothing) / (distance + smoothing)), 0.0, 1.0) + 1.0
    negative = -np.clip(np.log((distance + smoothing) / (beta + smoothing)), 0.0, 1.0) - 1.0
    return np.where(similar, positive, negative)


def sample_pairs(
    onehot: np.ndarray, n_similar: int, n_dissimilar: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random distinct pairs (i, j), ``n_similar`` sharing a label and ``n_dissimilar`` not.

    Returns (i, j, similar). If the data hold fewer pairs of one kind than asked for (a set
    where almost everything shares a label), all that 50 rounds of draws found are kept.
    """
    n = len(onehot)
    if n < 2:
        raise ValueError("need at least 2 items to sample pairs")
    found: dict[bool, list[np.ndarray]] = {True: [], False: []}
    wanted = {True: n_similar, False: n_dissimilar}
    for _ in range(50):
        i = rng.integers(0, n, size=4 * (n_similar + n_dissimilar))
        j = rng.integers(0, n, size=len(i))
        keep = i != j
        i, j = i[keep], j[keep]
        similar = np.einsum("pc,pc->p", onehot[i], onehot[j]) > 0
        for kind in (True, False):
            have = sum(len(p) for p in found[kind])
            take = np.flatnonzero(similar == kind)[: max(wanted[kind] - have, 0)]
            found[kind].append(np.stack([i[take], j[take]], axis=1))
        if all(sum(len(p) for p in found[k]) >= wanted[k] for k in (True, False)):
            break
    pairs = {k: np.concatenate(found[k]) for k in (True, False)}
    if len(pairs[True]) + len(pairs[False]) == 0:
        raise ValueError("no pairs could be drawn")
    both = np.concatenate([pairs[True], pairs[False]])
    flags = np.r_[np.ones(len(pairs[True]), bool), np.zeros(len(pairs[False]), bool)]
    return both[:, 0], both[:, 1], flags


@dataclass(frozen=True)
class SimilarityThresholds:
    """The fitted distribution and the thresholds of Eq. (10)."""

    distribution: SplitNormal
    alpha: float
    beta: float
    smoothing: float

    @classmethod
    def from_distribution(cls, distribution: SplitNormal, n_items: int) -> SimilarityThresholds:
        return cls(
            distribution=distribution,
            alpha=float((distribution.iota - distribution.sigma_l) * np.e),
            beta=float((distribution.iota + distribution.sigma_r) / np.e),
            smoothing=1.0 / n_items,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.distribution.to_dict(),
            "alpha": self.alpha,
            "beta": self.beta,
            "smoothing": self.smoothing,
            "strongly_similar_below": float(self.distribution.iota - self.distribution.sigma_l),
            "strongly_dissimilar_above": float(self.distribution.iota + self.distribution.sigma_r),
        }


class SemanticVisualSimilarity:
    """S^ over n training items, from visual features ``z`` (n, d) and labels.

    ``kind="binary"`` gives the plain s_ij in {-1, 1} through the same interface (the
    ablation of the continuous similarity).
    """

    def __init__(
        self,
        z: np.ndarray,
        labels: np.ndarray,
        kind: str = "continuous",
        n_pairs: int = 5000,
        seed: int = 0,
        dense_limit: int = 8192,
    ) -> None:
        if kind not in ("continuous", "binary"):
            raise ValueError(f"similarity kind must be 'continuous' or 'binary', got {kind!r}")
        self.unit_z = _unit_rows(z)
        self.onehot = label_matrix(labels)
        if len(self.unit_z) != len(self.onehot):
            raise ValueError(f"{len(self.unit_z)} feature rows but {len(self.onehot)} labels")
        self.kind = kind
        self.n = len(self.unit_z)
        self.dense_limit = dense_limit
        self._dense: np.ndarray | None = None
        rng = np.random.default_rng(seed)
        i, j, self.pair_similar = sample_pairs(self.onehot, n_pairs, n_pairs, rng)
        self.pair_distance = self.distance(i, j)
        self.thresholds = SimilarityThresholds.from_distribution(
            fit_split_normal(self.pair_distance), self.n
        )

    def distance(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Visual cosine distance of the pairs (i[p], j[p])."""
        return 1.0 - np.einsum("pd,pd->p", self.unit_z[i], self.unit_z[j])

    def rows(self, index: np.ndarray) -> np.ndarray:
        """(len(index), n) float32 block of S^ (or of S for ``kind="binary"``)."""
        dense = self._dense_matrix()
        return dense[np.asarray(index)] if dense is not None else self._make_rows(index)

    def _dense_matrix(self) -> np.ndarray | None:
        """The whole S^ (made on first call) when n <= ``dense_limit``, else None."""
        if self.n > self.dense_limit:
            return None
        if self._dense is None:
            blocks = [
                np.arange(start, min(start + 1024, self.n)) for start in range(0, self.n, 1024)
            ]
            self._dense = np.concatenate([self._make_rows(block) for block in blocks])
        return self._dense

    def _make_rows(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index)
        similar = (self.onehot[index] @ self.onehot.T) > 0
        if self.kind == "binary":
            return np.where(similar, 1.0, -1.0).astype(np.float32)
        distance = 1.0 - self.unit_z[index] @ self.unit_z.T
        t = self.thresholds
        return continuous_similarity(distance, similar, t.alpha, t.beta, t.smoothing).astype(
            np.float32
        )

    def times(self, matrix: np.ndarray, block: int = 1024) -> np.ndarray:
        """S^ @ matrix for an (n, m) matrix, one block of S^ rows at a time."""
        matrix = np.asarray(matrix, dtype=np.float32)
        dense = self._dense_matrix()
        if dense is not None:
            return (dense @ matrix).astype(np.float64)
        out = np.empty((self.n, matrix.shape[1]), dtype=np.float64)
        for start in range(0, self.n, block):
            stop = min(start + block, self.n)
            out[start:stop] = self.rows(np.arange(start, stop)) @ matrix
        return out

    def square_row_sums(self, block: int = 1024) -> np.ndarray:
        """sum_j s^_ij^2 for every row i (n,), one block of rows at a time."""
        out = np.empty(self.n, dtype=np.float64)
        for start in range(0, self.n, block):
            stop = min(start + block, self.n)
            out[start:stop] = (self.rows(np.arange(start, stop)).astype(np.float64) ** 2).sum(1)
        return out

    def save_fit(self, out_dir: str | Path, title: str = "") -> dict[str, Path]:
        """Write ``similarity_fit.json`` (fitted parameters) and ``similarity_fit.png``."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        params = {
            **self.thresholds.to_dict(),
            "n_similar_pairs": int(self.pair_similar.sum()),
            "n_dissimilar_pairs": int((~self.pair_similar).sum()),
        }
        json_path = out / "similarity_fit.json"
        json_path.write_text(json.dumps(params, indent=2))
        d, fit = self.pair_distance, self.thresholds.distribution
        fig, ax = plt.subplots(figsize=(7, 4))
        bins = np.linspace(d.min(), d.max(), 60)
        weight = 1.0 / (len(d) * (bins[1] - bins[0]))  # stacked bars integrate to 1
        ax.hist(
            [d[self.pair_similar], d[~self.pair_similar]],
            bins=bins,
            stacked=True,
            weights=[
                np.full(int(self.pair_similar.sum()), weight),
                np.full(int((~self.pair_similar).sum()), weight),
            ],
            label=["semantically similar pairs", "dissimilar pairs"],
            color=["tab:blue", "tab:orange"],
            alpha=0.7,
        )
        grid = np.linspace(d.min(), d.max(), 400)
        ax.plot(grid, fit.pdf(grid), "k-", label="split normal fit (zeta = 2)")
        for x, style, name in [
            (fit.iota - fit.sigma_l, "g--", "iota - sigma_l (s^ = 2 below)"),
            (fit.iota + fit.sigma_r, "r--", "iota + sigma_r (s^ = -2 above)"),
        ]:
            ax.axvline(x, color=style[0], linestyle="--", label=f"{name}: {x:.3f}")
        ax.set_xlabel("visual cosine distance D")
        ax.set_ylabel("density")
        ax.set_title(title or "EDDH semantic-visual similarity: distance distribution")
        ax.legend(fontsize=8)
        fig.tight_layout()
        png_path = out / "similarity_fit.png"
        fig.savefig(png_path, dpi=120)
        plt.close(fig)
        return {"json": json_path, "png": png_path}
