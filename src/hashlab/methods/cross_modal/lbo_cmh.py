"""LBO-CMH: cross-modal hashing with large-batch training and orthogonal regularisation.

Zhang & Zhou, "Cross-modal hashing method based on large batch training and orthogonal
regularization", Application Research of Computers 38(3), 2021.

- Each modality has a two-layer network F = sigmoid(W2 tanh(W1 f + B1) + B2) (Eq. 1); the
  code is H = 1[F >= 0.5] (Eq. 2), i.e. the pre-activation's sign.
- Text queries: triplets (q_T, I+, I-); loss L = L1 + lambda L2 + gamma L3 + L4 (Eq. 14), from
  :mod:`hashlab.losses.cross_modal` (Eq. 5, 9, 12, 13). Image queries: the same with the
  roles swapped (Eq. 15).
- Alternating optimisation (Algorithm 1): every epoch, train the text network with the image
  network fixed, then the image network with the text network fixed.
- Triplet sampling: for each training item as a query, m positives (share a label) and m
  negatives (share none) of the other modality, re-sampled every 30 epochs.
- L4's weight term (``regulariser``): ``"offdiagonal"`` (default), BigGAN's
  theta ||Gram(W) * (1 - I)||^2; ``"full"``, the paper's printed Eq. 13,
  theta ||W^T W - I||^2; ``"l2"``, the ablation without orthogonal regularisation (Eq. 19).
  Why the default is not the printed form: theta = 1e-4 is BigGAN's weight for the
  off-diagonal form; the full form also pulls every weight norm to 1 and shrinks the text
  network's first layer (:mod:`hashlab.losses.cross_modal`). Saved models of earlier versions
  say ``"orthogonal"``, which meant the full form and is read as ``"full"``.

Batches are of triplets (our reading of Algorithm 1, lines 8 and 16: ceil(k m / b) steps per
epoch). With k training pairs and m triplets per query the pool per direction is k m
triplets (Wikipedia: 2,173 x 4 = 8,692; 1,956 x 4 = 7,824 once a 10% validation split is
held out), so batch 8,192 gives one or two steps per direction per epoch. A batch larger
than the pool is one full step. Compare methods on equal optimiser steps, not epochs
(``hashlab.bench.cross_modal``): 150 epochs at batch 8,192 are only 150-300 steps.
Past :data:`MATRIX_LIMIT` (20,000) single-label training items the triplets are drawn class
by class (:func:`sample_triplets_by_class`, the same distribution) instead of from the (k, k)
label-sharing matrix, which would not fit in memory (``hashlab.bench.large_batch``'s 100,000
pairs).

Learning rate. The paper's Table 4 pairs batch 512 / 2,048 / 8,192 with lr 0.02 / 0.04 /
0.08: the square-root scaling rule lr = 0.02 sqrt(b / 512) (Krizhevsky 2014; Hoffer et al.
2017), which keeps the variance of one step's update about constant as the batch grows.
The paper names neither its optimiser nor its hidden width nor its epoch count. Deviation:
we use Adam, and with Adam the paper's rates saturate the sigmoids (Wikipedia, 16 bits, 150
epochs: t2i map@all 0.27 at 0.08 against 0.56 at 0.02); plain SGD with momentum 0.9 at 0.08
is still far from converged after 150 epochs (t2i 0.33). So we keep the square-root rule
with a quarter of the paper's base, 0.005 sqrt(b / 512): 0.005 / 0.01 / 0.02
(:func:`scaled_learning_rate`, used when ``learning_rate`` is None; ``optimiser="sgd"`` with
``learning_rate=0.08`` is the literal setting). Hidden width 256, 150 epochs.
Margins beta = 6 / 8 / 10 at 16 / 32 / 64 bits, i.e. 2 log2(K) - 2 at other lengths.

Training runs on the one :class:`~hashlab.train.Trainer` (``TrainedCrossModalMethod``):
its ``training_batches`` hook yields, per epoch, the text phase's triplet batches then the
image phase's; while one network trains, the other is fixed, so its outputs for all k
training items are computed once per phase (lazily, after the previous phase's steps), and
each distinct query item of a batch goes through the trained network once: the same
gradients as the literal per-triplet forward pass, for a fraction of the work. The triplet
pools are drawn from the trainer's checkpointed generator and kept in ``state.extras``, so
a resumed run continues exactly. The epoch kept is the best on validation (mean of i2t and
t2i map@all). Time per epoch still falls with the batch size (fewer steps, fewer repeated
query items), as in the paper's Table 4.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from hashlab.errors import ConfigError, InputError
from hashlab.losses.cross_modal import (
    bias_l2_regulariser,
    code_feature_l1_loss,
    distance_cross_entropy_loss,
    margin_hinge_loss,
    offdiagonal_orthogonal_regulariser,
    orthogonal_regulariser,
    triplet_distances,
    weight_l2_regulariser,
)
from hashlab.methods.cross_modal.base import TrainedCrossModalMethod, TwoLayerNet
from hashlab.methods.registry import register
from hashlab.train import TrainConfig
from hashlab.train.distributed import gather_chunks, local_chunk
from hashlab.train.trainer import TrainState

__all__ = [
    "LBOCMH", "scaled_learning_rate", "paper_margin", "sample_triplets",
    "sample_triplets_by_class", "REGULARISERS",
]  # fmt: skip

#: L4's weight term: the default, the paper's printed form, the ablation (module docstring)
REGULARISERS = ("offdiagonal", "full", "l2")
_WEIGHT_REGULARISERS = {
    "offdiagonal": offdiagonal_orthogonal_regulariser,
    "full": orthogonal_regulariser,
    "l2": weight_l2_regulariser,
}
OPTIMISERS = ("adam", "sgd")
#: above this many training items the (k, k) label-sharing matrix is not built (20,000 items
#: are 400 MB of bools): single-label items then draw triplets by class
#: (:func:`sample_triplets_by_class`, the same distribution); multi-label ones cannot.
MATRIX_LIMIT = 20_000


PAPER_BASE_LR = 0.02  # at batch 512 (Table 4)
ADAM_BASE_LR = 0.005  # ours: a quarter of the paper's, see the module docstring


def scaled_learning_rate(
    batch_size: int, base_lr: float = ADAM_BASE_LR, base_batch: int = 512
) -> float:
    """Square-root rule lr = base_lr sqrt(b / 512); the paper's base 0.02 gives its Table 4
    values 0.02 / 0.04 / 0.08 at 512 / 2,048 / 8,192, our Adam base 0.005 gives a quarter."""
    return base_lr * math.sqrt(batch_size / base_batch)


def paper_margin(n_bits: int) -> float:
    """beta = 6 / 8 / 10 for 16 / 32 / 64 bits (Sec. 2.3), 2 log2(K) - 2 in general."""
    return 2.0 * math.log2(n_bits) - 2.0


def _draw_columns(mask: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each entry of ``rows``, a uniformly random column j with ``mask[row, j]`` True."""
    flat_rows, flat_cols = np.nonzero(mask)  # row-major: columns grouped by row
    counts = np.bincount(flat_rows, minlength=mask.shape[0])
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    picks = offsets[rows] + (rng.random(len(rows)) * counts[rows]).astype(np.int64)
    return flat_cols[picks]


def sample_triplets(similar: np.ndarray, per_query: int, rng: np.random.Generator) -> np.ndarray:
    """(n_triplets, 3) rows (query, positive, negative) of indices into the training items.

    ``similar`` is the (k, k) bool label-sharing matrix between the query modality's items
    (rows) and the other modality's items (columns). Each query gets ``per_query`` positives
    and negatives drawn with replacement (a class may have fewer items than m); queries with
    no positive or no negative are skipped.
    """
    has_both = similar.any(axis=1) & (~similar).any(axis=1)
    queries = np.repeat(np.flatnonzero(has_both), per_query)
    if len(queries) == 0:
        raise InputError("no training item has both a similar and a dissimilar item")
    positives = _draw_columns(similar, queries, rng)
    negatives = _draw_columns(~similar, queries, rng)
    return np.stack([queries, positives, negatives], axis=1)


def sample_triplets_by_class(
    class_ids: np.ndarray, per_query: int, rng: np.random.Generator
) -> np.ndarray:
    """:func:`sample_triplets` for single-label items without the (k, k) matrix.

    The same distribution: every item is a query ``per_query`` times (with two classes or
    more each has a positive, itself included, and a negative), positives uniform over its
    class, negatives uniform over the other classes' items. O(k m) memory and time, for the
    100,000-pair stand-in of ``hashlab.bench.large_batch``.
    """
    class_ids = np.asarray(class_ids, dtype=np.int64)
    order = np.argsort(class_ids, kind="stable")
    classes, starts, counts = np.unique(class_ids[order], return_index=True, return_counts=True)
    if len(classes) < 2:
        raise InputError("no training item has both a similar and a dissimilar item")
    queries = np.repeat(np.arange(len(class_ids)), per_query)
    block = np.searchsorted(classes, class_ids[queries])
    positives = order[starts[block] + (rng.random(len(queries)) * counts[block]).astype(np.int64)]
    # uniform over the k - n_c items outside the query's block of the class-sorted order
    other = (rng.random(len(queries)) * (len(class_ids) - counts[block])).astype(np.int64)
    other = np.where(other >= starts[block], other + counts[block], other)
    return np.stack([queries, positives, order[other]], axis=1)


@register("lbo_cmh")
class LBOCMH(TrainedCrossModalMethod):
    """The paper's method (see the module docstring); ``regulariser`` picks L4's form."""

    hidden_activation = "tanh"

    def __init__(
        self,
        n_bits: int = 32,
        seed: int = 0,
        hidden: int = 256,
        epochs: int = 150,
        batch_size: int = 8192,
        learning_rate: float | None = None,
        triplets_per_query: int = 4,
        resample_every: int = 30,
        margin: float | None = None,
        lambda_cross_entropy: float = 0.01,
        gamma_quantisation: float = 0.01,
        theta: float = 1e-4,
        omega: float = 0.01,
        regulariser: str = "offdiagonal",
        optimiser: str = "adam",
        momentum: float = 0.9,
        patience: int | None = None,
        validation_fraction: float = 0.1,
        device: str | None = None,
        amp: bool = False,
        progress: bool = False,
        checkpoint_dir: str | None = None,
        resume: bool = False,
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        if regulariser == "orthogonal":  # saved by earlier versions: it meant the full form
            regulariser = "full"
        if regulariser not in REGULARISERS:
            raise ConfigError(f"regulariser must be one of {REGULARISERS}, got {regulariser!r}")
        if batch_size < 2 or epochs < 1 or triplets_per_query < 1 or resample_every < 1:
            raise ConfigError(
                "batch_size must be >= 2 and epochs, triplets_per_query, resample_every >= 1, "
                f"got {batch_size}, {epochs}, {triplets_per_query}, {resample_every}"
            )
        if optimiser not in OPTIMISERS:
            raise ConfigError(f"optimiser must be one of {OPTIMISERS}, got {optimiser!r}")
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.triplets_per_query = triplets_per_query
        self.resample_every = resample_every
        self.margin = margin
        self.lambda_cross_entropy = lambda_cross_entropy
        self.gamma_quantisation = gamma_quantisation
        self.theta = theta
        self.omega = omega
        self.regulariser = regulariser
        self.optimiser = optimiser
        self.momentum = momentum
        self.patience = patience
        self.validation_fraction = validation_fraction
        # runtime options (not saved): mixed precision buys nothing for two small MLPs
        self.device, self.amp, self.progress = device, amp, progress
        self.checkpoint_dir, self.resume = checkpoint_dir, resume

    @property
    def lr(self) -> float:
        """The learning rate in use: ``learning_rate``, else the square-root rule."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return scaled_learning_rate(self.batch_size)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=0.0,
            optimizer=self.optimiser, momentum=self.momentum, patience=self.patience,
            seed=self.seed, device=self.device, amp=self.amp, progress=self.progress,
            checkpoint_dir=self.checkpoint_dir, resume=self.resume,
        )  # fmt: skip

    def steps_per_epoch(self, labels: np.ndarray) -> int:
        if len(labels) > MATRIX_LIMIT and (labels.sum(axis=1) == 1).all():  # by class
            queries = len(labels) if len(np.unique(labels.argmax(1))) > 1 else 0
            return max(1, math.ceil(queries * self.triplets_per_query / self.batch_size))
        multihot = labels.astype(np.float32)
        similar = multihot @ multihot.T > 0
        queries = int((similar.any(axis=1) & (~similar).any(axis=1)).sum())
        return max(1, math.ceil(queries * self.triplets_per_query / self.batch_size))

    def build_nets(self, image_dim: int, text_dim: int) -> nn.ModuleDict:
        return nn.ModuleDict({  # Eq. 1: sigmoid(W2 tanh(W1 f + B1) + B2)
            m: TwoLayerNet(dim, self.hidden, self.n_bits, "tanh", sigmoid=True)
            for m, dim in (("image", image_dim), ("text", text_dim))
        })  # fmt: skip

    def loss(
        self, net: TwoLayerNet, queries: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> torch.Tensor:
        """Eq. 14 (text queries) / Eq. 15 (image queries); only ``net`` receives gradients."""
        margin = paper_margin(self.n_bits) if self.margin is None else self.margin
        d_pos, d_neg = triplet_distances(queries, pos, neg)
        loss = margin_hinge_loss(d_pos, d_neg, margin)  # L1, Eq. 5
        loss = loss + self.lambda_cross_entropy * distance_cross_entropy_loss(d_pos, d_neg)
        loss = loss + self.gamma_quantisation * code_feature_l1_loss(queries, pos, neg)  # L3
        # L4 (Eq. 13; the fixed network's terms are constants here)
        loss = loss + _WEIGHT_REGULARISERS[self.regulariser](net.weights(), self.theta)
        return loss + bias_l2_regulariser(net.biases(), self.omega)

    def _similar(self, state: TrainState) -> np.ndarray:
        """(k, k) bool label sharing of the training items, computed once per fit; past
        :data:`MATRIX_LIMIT` single-label items, their (k,) class ids instead."""
        cached = getattr(self, "_similar_cache", None)
        if cached is None or cached[0] is not state.train_labels:
            labels = state.train_labels.cpu().numpy()
            if len(labels) <= MATRIX_LIMIT:
                cached = (state.train_labels, (labels @ labels.T) > 0)
            elif (labels.sum(axis=1) == 1).all():
                cached = (state.train_labels, labels.argmax(axis=1))
            else:
                raise InputError(
                    f"lbo_cmh samples multi-label triplets from a (k, k) matrix: {len(labels):,}"
                    f" training items are more than {MATRIX_LIMIT:,}"
                )
            self._similar_cache = cached
        return cached[1]

    def _sample(self, similar: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        if similar.ndim == 1:  # class ids of a large single-label set
            return torch.from_numpy(sample_triplets_by_class(similar, self.triplets_per_query, rng))
        return torch.from_numpy(sample_triplets(similar, self.triplets_per_query, rng))

    # -- trainer hooks ---------------------------------------------------------------------
    def training_batches(self, state: TrainState, rng: np.random.Generator) -> Any:
        inputs = self.device_inputs(state)
        similar = self._similar(state)
        pools = state.extras.setdefault("pools", {})
        # Algorithm 1: text network first (text queries), then the image network.
        for query, other in (("text", "image"), ("image", "text")):
            if state.epoch % self.resample_every == 0 or query not in pools:
                pools[query] = self._sample(similar, rng)
            with torch.no_grad(), state.autocast():  # the other network is fixed this phase
                fixed = state.network[other](inputs[other]).float()
            pool = pools[query]
            order = torch.from_numpy(rng.permutation(len(pool)))
            for batch in torch.split(pool[order], self.batch_size):
                yield query, batch.to(state.device), fixed

    def training_step(
        self, batch: tuple[str, torch.Tensor, torch.Tensor], state: TrainState
    ) -> torch.Tensor:
        query, triplets, fixed = batch
        net = state.network[query]
        # each query item recurs m times in the pool: run it through the network once per
        # batch (same gradient, up to m times less work). Under torchrun each rank encodes
        # its chunk of the batch and the loss gathers every rank's codes (large batches).
        local = local_chunk(triplets)
        unique_queries, position = torch.unique(local[:, 0], return_inverse=True)
        with state.autocast():
            queries = net(self.device_inputs(state)[query][unique_queries])
        queries = gather_chunks(queries.float()[position], len(triplets))
        return self.loss(net, queries, fixed[triplets[:, 1]], fixed[triplets[:, 2]])
