"""UGACH on features: Zhang, Peng & Yuan, "Unsupervised Generative Adversarial Cross-Modal
Hashing", AAAI 2018. Unsupervised: labels are never read.

* Correlation graph (Sec. 3.2): from the original features of each modality, the k nearest
  neighbours of every training item (cosine, standardised features); for a query item of
  one modality, the "true" items of the other modality are its own pair and the pairs of
  its neighbours in either modality's graph.
* Generator (Eq. 3-4): for a query q it picks an item d of the other modality from a pool
  of candidates with probability softmax(-||g(q) - g(d)||^2) over the pool, g its own
  two-layer hash networks (sigmoid codes); it cannot differentiate through the pick, so it
  learns by policy gradient (REINFORCE) with the discriminator's reward
  log(1 + exp(f(q, d))) (Eq. 7).
* Discriminator (Eq. 5-6): hash networks h of the same shape, whose codes should rank a
  true pair above the generated one: f(q, d) = max(0, m + ||h(q) - h(d+)||^2 -
  ||h(q) - h(d)||^2), its loss the mean of f over the batch. Its codes are the method's
  (sign of the pre-sigmoid output, as the paper retrieves with the discriminator).

Both directions (image queries over text candidates and back) every step; one step
updates generator and discriminator together (the discriminator's f is detached inside
the reward). Validation without labels: the mean over both directions of map@all where a
validation item's only relevant item is its own pair among the validation items.

Defaults are ours: k = 5 neighbours, margin m = 1 (codes in (0, 1)^K; ``margin=None``
gives the authors' K / 8), 32 candidates per query drawn from the batch, one pick per
query, hidden width 512, batch 128, Adam 1e-3, 60 epochs; no discriminator pre-training.
The authors' code (PKU-ICST-MIPL/UGACH_AAAI2018, read after this file was written) differs:
a pre-trained discriminator, two picks per query never among the true items, the reward
sigmoid(f) instead of Eq. 7's log(1 + exp(f)), SGD with weight decay 0.01. Wikipedia
(1,000 pairs, 16 bits, 20 epochs): above CMFH both ways at seed 0 (0.224 / 0.184 against
0.208 / 0.174), not at seeds 1 and 2 (text->image 0.161, 0.171): not a robust win.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from hashlab.losses.cross_modal_adversarial import reinforce_loss, ugach_triplet_score
from hashlab.methods.cross_modal.base import MODALITIES, TwoLayerNet
from hashlab.methods.cross_modal.paired import PairedBatchMethod
from hashlab.methods.registry import register
from hashlab.methods.tags import MethodTags
from hashlab.train.trainer import TrainState

__all__ = ["UGACH", "correlation_graph"]


def correlation_graph(features: np.ndarray, k: int) -> np.ndarray:
    """(n, k) indices of each row's k nearest other rows by cosine similarity."""
    unit = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    k = min(k, len(features) - 1)
    return np.argsort(-similarity, axis=1)[:, :k]


@register("ugach")
class UGACH(PairedBatchMethod):
    """Unsupervised generative adversarial cross-modal hashing (see the module docstring)."""

    tags = MethodTags(
        family="cross_modal", supervision="none", inputs="paired_text", modalities=MODALITIES
    )
    hidden_activation = "tanh"
    #: epochs of discriminator pre-training on known negatives: none for the unsupervised
    #: UGACH; SCH-GAN (semi-supervised) sets it and overrides ``_known_negatives``
    pretrain_epochs: int = 0

    def __init__(
        self,
        n_bits: int = 32,
        seed: int = 0,
        hidden: int = 512,
        epochs: int = 60,
        batch_size: int = 128,
        learning_rate: float = 1e-3,
        neighbours: int = 5,
        margin: float | None = 1.0,
        candidates: int = 32,
        patience: int | None = 20,
        validation_fraction: float = 0.1,
        device: str | None = None,
        amp: bool = False,
        progress: bool = False,
        checkpoint_dir: str | None = None,
        resume: bool = False,
    ) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.neighbours = neighbours
        self.margin = margin
        self.candidates = candidates
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.device, self.amp, self.progress = device, amp, progress
        self.checkpoint_dir, self.resume = checkpoint_dir, resume

    def _fit_paired(self, images, texts, labels, validation) -> None:  # type: ignore[override]
        # unsupervised: one constant "label" stands in for the labels the trainer carries
        # (never read: validation and the losses use the pairing only)
        ones = np.ones((len(images), 1), dtype=np.uint8)
        if validation is not None:
            validation = (validation[0], validation[1], np.ones((len(validation[0]), 1)))
        super()._fit_paired(images, texts, ones, validation)

    def build_nets(self, image_dim: int, text_dim: int) -> nn.ModuleDict:
        nets = {}
        for prefix in ("", "generator_"):
            for m, dim in (("image", image_dim), ("text", text_dim)):
                nets[prefix + m] = TwoLayerNet(dim, self.hidden, self.n_bits, "tanh", sigmoid=True)
        return nn.ModuleDict(nets)

    @property
    def margin_in_use(self) -> float:
        """``margin``, else K / 8 (the authors' UGACH code, ``BETA = OUTPUT_DIM / 8``)."""
        return float(self.margin) if self.margin is not None else self.n_bits / 8.0

    def _graph(self, state: TrainState) -> torch.Tensor:
        """(n, 1 + 2k) true items of the other modality per item: itself and neighbours."""
        cached = getattr(self, "_graph_cache", None)
        if cached is None or cached.device != state.device:
            arrays = self._train_arrays
            graphs = [correlation_graph(arrays[m], self.neighbours) for m in MODALITIES]
            own = np.arange(len(graphs[0]))[:, None]
            cached = torch.from_numpy(np.concatenate([own, *graphs], axis=1)).to(state.device)
            self._graph_cache = cached
        return cached

    # -- where the game's items come from: queries, true items, the generator's pool -------
    def _queries(self, state: TrainState, batch: torch.Tensor) -> torch.Tensor:
        """The batch items that act as queries: all of them (unsupervised)."""
        return batch

    def _true_items(
        self, state: TrainState, queries: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """One true item of the other modality per query: from the correlation graph."""
        graph = self._graph(state)
        column = torch.randint(graph.shape[1], (len(queries),), generator=generator)
        return graph[queries, column.to(state.device)]

    def _candidates(
        self, state: TrainState, queries: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The pool the generator picks from: a random subset of the batch."""
        order = torch.randperm(len(queries), generator=generator).to(state.device)
        return queries[order[: self.candidates]]

    def _known_negatives(
        self, state: TrainState, queries: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Items known to be irrelevant to each query, for pre-training. Unsupervised UGACH
        knows none and never pre-trains (``pretrain_epochs = 0``), so this is never called
        on it; a subclass that pre-trains overrides it (SCH-GAN: items sharing no label)."""
        raise TypeError(f"{type(self).__name__} sets pretrain_epochs but knows no negatives")

    def training_step(self, batch: torch.Tensor, state: TrainState) -> torch.Tensor | None:
        nets, inputs = state.network, self.device_inputs(state)
        generator = torch.Generator(device="cpu").manual_seed(self.seed * 100_003 + state.step)
        queries = self._queries(state, batch)
        if len(queries) < 2:
            return None
        loss = torch.zeros((), device=state.device)
        # discriminator pre-training (SCH-GAN): known negatives instead of generated ones
        pretraining = state.epoch < self.pretrain_epochs
        for query, other in (("image", "text"), ("text", "image")):
            q = inputs[query][queries]
            pool = self._candidates(state, queries, generator)
            positive = self._true_items(state, queries, generator)
            if pretraining:
                negative = self._known_negatives(state, queries, generator)
                with state.autocast():
                    h_q = nets[query](q).float()
                    h_pos = nets[other](inputs[other][positive]).float()
                    h_neg = nets[other](inputs[other][negative]).float()
                    score = ugach_triplet_score(h_q, h_pos, h_neg, self.margin_in_use)
                loss = loss + score.mean()
                continue
            with state.autocast():
                g_q = nets["generator_" + query](q).float()
                g_pool = nets["generator_" + other](inputs[other][pool]).float()
                logits = -torch.cdist(g_q, g_pool).pow(2)  # Eq. 3: p(d | q) over the pool
                picks = torch.multinomial(torch.softmax(logits.detach(), 1), 1)
                log_p = torch.log_softmax(logits, 1).gather(1, picks).squeeze(1)
                h_q = nets[query](q).float()
                h_pos = nets[other](inputs[other][positive]).float()
                h_gen = nets[other](inputs[other][pool[picks.squeeze(1)]]).float()
                score = ugach_triplet_score(h_q, h_pos, h_gen, self.margin_in_use)  # Eq. 5
            reward = torch.log1p(torch.exp(score.detach()))  # Eq. 7
            loss = loss + score.mean() + reinforce_loss(log_p, reward)
        return loss

    def validation_score(
        self, state: TrainState, validation: dict[str, Any], metric: str = "map@all"
    ) -> float:
        """Label-free: each validation item's own pair is its one relevant item."""
        from hashlab.metrics import evaluate

        val = {m: torch.from_numpy(validation[m]).to(state.device) for m in MODALITIES}
        codes = {m: (state.network[m].logits(val[m]) >= 0).to(torch.uint8).cpu().numpy()
                 for m in MODALITIES}  # fmt: skip
        relevance = np.eye(len(codes["image"]), dtype=bool)
        scores = [
            evaluate(codes[a], codes[b], metrics=[metric], relevance=relevance)[metric]
            for a, b in (("image", "text"), ("text", "image"))
        ]
        return float(np.mean(scores))
