"""SSDH: semi-supervised deep hashing (Zhang & Peng, "SSDH: Semi-supervised Deep Hashing for
Large Scale Image Retrieval", arXiv:1607.08477, 2016; IEEE TCSVT 2019): a ranking loss on the
labelled items plus a graph embedding loss over labelled and unlabelled items alike.

Not Yang et al.'s "supervised semantics-preserving deep hashing" (also abbreviated SSDH).
Numbered here (the paper's loss, on the hash layer u = sigmoid(fc(x)) in (0, 1)^K):

1. L_rank: the triplet ranking loss on the labelled items of the batch,
   max(0, m_r - ||u_a - u_n||^2 + ||u_a - u_p||^2) over every (a, p, n) with a, p sharing a
   label and a, n not (``batch_triplet_ranking_loss``, DNNH's form, which SSDH adopts).
2. L_embed: over *all* items of the batch, the graph Laplacian term sum_ij w_ij ||u_i - u_j||^2
   plus the margin term for non-neighbours ((2a) + (2b) of ``hashlab.losses.semi_supervised``),
   w_ij = 1 when i and j are k-NN in the frozen feature space (either direction).
3. L = L_rank + alpha L_embed.

Which items are labelled: an item whose label is unknown has class id -1 (single-label) or an
all-zero multi-hot row; ``n_labelled`` (when set) additionally keeps the labels of only that
many training items, drawn at random with the model's seed, so that one labelled data set
gives the 500- and 5,000-label rows of a table. Validation: the labelled held-out items only
(map@all against the labelled training items). Batches pair each item with a feature-space
neighbour (``neighbours.neighbour_pair_order``), so that L_embed sees neighbour pairs.

Defaults: m_r = 1 (DNNH's, for codes in [0, 1]), k = 20 neighbours, margin m_e = K / 4 of the
embedding term and alpha = 1: ours (the paper tunes them on validation). Left out: the
paper's pseudo-label term for unlabelled items (it reports the two losses above as the core).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hashlab.errors import ConfigError, InputError
from hashlab.losses.semi_supervised import graph_embedding_loss
from hashlab.losses.triplet import batch_triplet_ranking_loss
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.methods.deep.neighbours import knn_graph, neighbour_pair_order, neighbour_similarity
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState

__all__ = ["SSDH", "SSDHConfig", "known_label_rows"]


@dataclass
class SSDHConfig(DeepHashConfig):
    n_labelled: int | None = None  # keep only this many training labels (None: all known)
    ranking_margin: float = 1.0  # m_r (DNNH's)
    embedding_margin: float | None = None  # m_e; None: K / 4 (ours)
    embedding_weight: float = 1.0  # alpha (ours)
    n_neighbours: int = 20  # k of the feature-space graph (ours)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode != "frozen":
            raise ConfigError(f"ssdh builds its graph on frozen features, got mode={self.mode!r}")
        if self.n_labelled is not None and self.n_labelled < 2:
            raise ConfigError(f"n_labelled must be at least 2, got {self.n_labelled}")


def known_label_rows(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(multi-hot (N, C) with unknown rows all zero, (N,) bool known) from ids or multi-hot.

    Unknown: class id -1 (or any negative id) in (N,) labels, an all-zero row in (N, C) ones.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        multihot = (labels > 0).astype(np.uint8)
        return multihot, multihot.any(axis=1)
    ids = labels.astype(np.int64)
    known = ids >= 0
    multihot = np.zeros((len(ids), int(ids.max(initial=0)) + 1), dtype=np.uint8)
    multihot[np.flatnonzero(known), ids[known]] = 1
    return multihot, known


@register("ssdh")
class SSDH(DeepHashMethod):
    tags = MethodTags(family="deep", supervision="labels", inputs="features")
    Config = SSDHConfig
    head_activation = "sigmoid"
    code_threshold = 0.5

    def training_targets(self, x: Any, y: Any, n_items: int, **supervision: Any) -> np.ndarray:
        multihot, known = known_label_rows(super().training_targets(x, y, n_items, **supervision))
        n_labelled = self.hparams.n_labelled
        if n_labelled is not None and n_labelled < known.sum():
            # a stream of its own: the validation carving draws from default_rng(seed), and
            # the same stream would hold every kept label out for validation
            rng = np.random.default_rng((self.seed, 1))
            dropped = rng.permutation(np.flatnonzero(known))[n_labelled:]
            multihot[dropped] = 0
            known[dropped] = False
        if known.sum() < 2:
            raise InputError(f"ssdh needs at least 2 labelled training items, got {known.sum()}")
        self.n_labelled_ = int(known.sum())
        return multihot

    def validation_targets(self, x: Any, y: Any, n_items: int) -> np.ndarray:
        return known_label_rows(super().validation_targets(x, y, n_items))[0]

    def on_train_start(self, state: TrainState) -> None:
        network = state.network
        features = state.train_inputs.features.to(state.device)
        standardised = (features - network.feature_mean) / network.feature_std
        self._neighbours = knn_graph(standardised, self.hparams.n_neighbours)

    def on_epoch_start(self, state: TrainState) -> None:
        if getattr(self, "_neighbours", None) is None:  # a resumed run
            self.on_train_start(state)

    def epoch_order(self, state: TrainState, rng: np.random.Generator) -> np.ndarray:
        return neighbour_pair_order(self._neighbours.cpu().numpy(), rng)

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor, state: TrainState) -> torch.Tensor:
        config = self.hparams
        known = labels.sum(dim=1) > 0
        ranking = outputs.sum() * 0.0
        if int(known.sum()) >= 3:  # a triplet needs three labelled items
            labelled, labelled_labels = outputs[known], labels[known]
            s = self.similarity(labelled_labels, labelled_labels)
            ranking = batch_triplet_ranking_loss(labelled, s, config.ranking_margin)  # Eq. 1
        indices = torch.from_numpy(state.batch_indices).to(state.device)
        w = neighbour_similarity(self._neighbours, indices)
        margin = config.embedding_margin or self.n_bits / 4
        return ranking + config.embedding_weight * graph_embedding_loss(outputs, w, margin)

    def validation_score(self, state: TrainState, validation: Any, metric: str) -> float:
        """``metric`` of the labelled held-out items against the labelled training items."""
        from hashlab.metrics import evaluate

        inputs, val_labels = validation
        val_known = np.flatnonzero(np.asarray(val_labels).any(axis=1))
        train_labels = state.train_labels.cpu().numpy()
        train_known = np.flatnonzero(train_labels.any(axis=1))
        if len(val_known) == 0:
            return 0.0
        query = self.binarize(state.network(inputs.features[val_known].to(state.device)))
        database = self.binarize(state.predict(train_known))
        scores = evaluate(query, database, np.asarray(val_labels)[val_known],
                          train_labels[train_known], metrics=[metric])  # fmt: skip
        return float(scores[metric])
