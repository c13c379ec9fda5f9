"""SADH (Shen, Liu & Shao, "Unsupervised Deep Hashing with Similarity-Adaptive and Discrete
Optimization", IEEE TPAMI 2018): unsupervised; alternates three steps, numbered here:

1. network step: the hash network F regresses the current codes B,
   min_F mean ||B_i - F(x_i)||^2 (the paper's Euclidean loss), for ``inner_epochs`` epochs;
2. similarity update: the anchor graph (m anchors by k-means, each item joined to its s
   nearest; AGH's construction) is rebuilt on the network's outputs U = F(X): the
   "similarity-adaptive" part, the graph follows the learned representation;
3. code step: B = argmin -tr(B^T S~ B) + (lambda / 2) ||B - U||^2 over {-1, 1}^{n x K} by
   ADMM (``hashlab.losses.sadh``), S~ the graph with its constant direction removed (bit
   balance).

Before the first network step B comes from the code step on a graph of the input features,
with U the PCA projections of the features, scaled to unit variance per bit (PCAH's codes as
the start; ours: the paper starts from its pretrained network's outputs, which on frozen
features are the features themselves). Defaults: m = 300 anchors and s = 2 (AGH's), lambda = 1
and 50 ADMM iterations (``max_iter``; ours), 5 network epochs per outer iteration (ours). The
codes B are kept in ``state.extras`` (checkpointed). Held-out criterion, no labels: minus
tr(B_v^T S~_v B_v) / (n K) of held-out items, their codes B_v = sgn(F(x_v)) and S~_v their anchor
graph on the training graph's anchors, centred: how well the codes split the held-out items'
own similarity graph (the objective of step 3 without the coupling term).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hashlab.errors import ConfigError
from hashlab.losses.sadh import anchor_graph_factor, discrete_code_step, graph_objective
from hashlab.methods._linalg import kmeans_anchors, pca_directions, squared_distances
from hashlab.methods.agh import anchor_graph_rows
from hashlab.methods.deep.unsupervised import UnsupervisedConfig, UnsupervisedDeepMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState

__all__ = ["SADH", "SADHConfig"]


@dataclass
class SADHConfig(UnsupervisedConfig):
    inner_epochs: int = 5  # network epochs between graph / code updates (ours)
    n_anchors: int = 300  # m (AGH's)
    n_nearest: int = 2  # s (AGH's)
    coupling: float = 1.0  # lambda of step 3 (ours)
    max_iter: int = 50  # ADMM iterations of step 3 (ours)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode != "frozen":
            raise ConfigError(f"sadh builds its graph on frozen features, got mode={self.mode!r}")
        if self.inner_epochs < 1:
            raise ConfigError(f"inner_epochs must be at least 1, got {self.inner_epochs}")


class AnchorGraph:
    """An anchor graph on some points: anchors, bandwidth and the factor of S~."""

    def __init__(self, points: np.ndarray, n_anchors: int, n_nearest: int,
                 rng: np.random.Generator) -> None:  # fmt: skip
        self.n_anchors = min(n_anchors, len(points))
        self.n_nearest = min(n_nearest, self.n_anchors)
        self.anchors = kmeans_anchors(points, self.n_anchors, rng)
        distances = squared_distances(points, self.anchors)
        sth = np.partition(distances, self.n_nearest - 1, axis=1)[:, self.n_nearest - 1]
        self.bandwidth = max(float(np.mean(np.sqrt(sth)) ** 2), 1e-12)
        self.factor, self.signs = anchor_graph_factor(self.rows(points))

    def rows(self, points: np.ndarray) -> np.ndarray:
        return anchor_graph_rows(points, self.anchors, self.n_nearest, self.bandwidth)


@register("sadh")
class SADH(UnsupervisedDeepMethod):
    tags = MethodTags(family="deep", supervision="none", inputs="features")
    Config = SADHConfig
    head_activation = "tanh"
    criterion = "graph objective (minus tr(B^T S B) / nK of held-out codes on their own graph)"

    def _features(self, state: TrainState) -> np.ndarray:
        network = state.network
        x = state.train_inputs.features.to(state.device)
        return ((x - network.feature_mean) / network.feature_std).cpu().numpy().astype(np.float64)

    def _code_step(
        self, points: np.ndarray, u: np.ndarray, rng: np.random.Generator
    ) -> tuple[AnchorGraph, np.ndarray]:
        config = self.hparams
        graph = AnchorGraph(points, config.n_anchors, config.n_nearest, rng)
        codes = discrete_code_step(u, graph.factor, graph.signs, config.coupling,
                                   config.max_iter)  # fmt: skip
        return graph, codes

    def on_train_start(self, state: TrainState) -> None:
        rng = np.random.default_rng(self.seed)
        features = self._features(state)
        centred = features - features.mean(axis=0)
        k = min(self.n_bits, centred.shape[1])
        directions, variances = pca_directions(centred, k)
        u = centred @ directions / np.sqrt(np.maximum(variances, 1e-12))
        if k < self.n_bits:  # more bits than feature dimensions: random extra projections
            extra = centred @ rng.standard_normal((centred.shape[1], self.n_bits - k))
            u = np.concatenate([u, extra / extra.std(axis=0).clip(1e-12)], axis=1)
        self._input_graph, codes = self._code_step(features, u, rng)  # the start of step 1
        state.extras["codes"] = torch.as_tensor(codes, dtype=torch.float32, device=state.device)
        state.extras["graph_objective"] = [graph_objective(codes, self._input_graph.factor,
                                                           self._input_graph.signs)]  # fmt: skip

    def on_epoch_start(self, state: TrainState) -> None:
        if getattr(self, "_input_graph", None) is None:  # a resumed run: rebuild the anchors
            rng = np.random.default_rng(self.seed)
            self._input_graph = AnchorGraph(self._features(state), self.hparams.n_anchors,
                                            self.hparams.n_nearest, rng)  # fmt: skip

    def on_epoch_end(self, state: TrainState) -> None:
        if (state.epoch + 1) % self.hparams.inner_epochs:
            return
        u = state.predict(np.arange(len(state.train_labels))).cpu().numpy().astype(np.float64)
        rng = np.random.default_rng((self.seed, state.epoch))
        graph, codes = self._code_step(u, u, rng)  # steps 2 and 3
        state.extras["codes"] = torch.as_tensor(codes, dtype=torch.float32, device=state.device)
        state.extras["graph_objective"].append(graph_objective(codes, graph.factor, graph.signs))

    def on_train_end(self, state: TrainState) -> None:
        extra = getattr(self, "extra_config_", {})
        self.extra_config_ = {
            **extra,
            "graph_objective_per_update": state.extras["graph_objective"],
        }

    def unsupervised_loss(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        codes = state.extras["codes"][torch.from_numpy(state.batch_indices).to(state.device)]
        return (codes - outputs).pow(2).sum(dim=1).mean()  # step 1

    def heldout_criterion(
        self, outputs: torch.Tensor, features: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        graph = self._input_graph
        factor, signs = anchor_graph_factor(graph.rows(features.cpu().numpy().astype(np.float64)))
        codes = np.where(outputs.cpu().numpy() >= 0, 1.0, -1.0)
        return torch.tensor(-graph_objective(codes, factor, signs))
