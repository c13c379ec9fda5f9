"""What every tag-supervised (weakly supervised) deep method shares: IDEA and WDHT.

Weak supervision (IDEA, Liu et al. 2022, Sec. 2.2; WDHT, Gattupalli et al., CVPR 2019):
``fit`` learns from images and their user tags only. Class labels are refused by ``fit``
(``y`` must be None) so a benchmark cannot leak them by accident; they are for evaluation.

``fit(x, tags=(N, V) bag-of-words, tag_vectors=(V, d) | None, tag_vocab=[V words] | None,
embedding="glove" | "word2vec" | path)``: each image's tag embedding t_i is the mean word
vector of its known tags (Eq. 5 of IDEA, ``hashlab.text.average_tag_embeddings``). Without
``tag_vectors`` they come from ``embedding`` over ``tag_vocab``: GloVe 6B 50-d, word2vec
trained on the fitted tag lists, or a local word2vec file. Training runs in the one trainer
(``hashlab.train.Trainer``) on frozen, pooled image vectors; the trainer's "labels" are the
(N, V) tag indicator vectors and t_i is looked up by batch index in ``state.extras``.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hashlab.methods.base import HashMethod
from hashlab.text.embeddings import (
    average_tag_embeddings,
    load_word_vectors,
    tag_embedding_matrix,
    tag_lists_from_matrix,
    train_word2vec,
)

__all__ = ["TagSupervisedMethod", "resolve_tag_vectors"]


def resolve_tag_vectors(
    tags: np.ndarray, tag_vocab: list[str] | None, embedding: str, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """(V, d) tag vectors from an embedding name/path, and a record of coverage (OOV count)."""
    if tag_vocab is None:
        raise ValueError("pass tag_vectors=(V, d) or tag_vocab=[V tag words] to fit()")
    if len(tag_vocab) != tags.shape[1]:
        raise ValueError(f"tag_vocab has {len(tag_vocab)} words, tags have {tags.shape[1]}")
    if embedding == "word2vec":
        vectors = train_word2vec(tag_lists_from_matrix(tags, tag_vocab), seed=seed)
    else:
        vectors = load_word_vectors(embedding)
    matrix, n_missing = tag_embedding_matrix(tag_vocab, vectors)
    return matrix, {"embedding": vectors.name, "oov_tags": n_missing, "n_tags": len(tag_vocab)}


class TagSupervisedMethod(HashMethod):
    """Fit/encode/save for networks trained on pooled image vectors and tag embeddings."""

    supervised: ClassVar[bool] = False
    weak_supervision: ClassVar[str] = "tags"

    def __init__(self, n_bits: int = 32, seed: int = 0, hparams: Any = None) -> None:
        super().__init__(n_bits=n_bits, seed=seed)
        self.hparams = hparams

    # -- what a method supplies -------------------------------------------------------------
    @abstractmethod
    def pool(self, x: Any) -> np.ndarray:
        """Backbone outputs -> (N, D) image vectors (fixed: the backbone is frozen)."""

    @abstractmethod
    def build_network(self, in_dim: int, tag_dim: int, n_tags: int) -> nn.Module:
        """A fresh network on (N, D) standardised vectors."""

    # -- fit / encode ---------------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        tags: Any = None,
        tag_vectors: Any = None,
        tag_vocab: list[str] | None = None,
        embedding: str = "glove",
        device: str | None = None,
        progress: bool = False,
    ) -> TagSupervisedMethod:
        from hashlab.train import FeatureInputs, TrainConfig, Trainer

        if y is not None:
            raise ValueError(
                f"{self.name} is weakly supervised: it learns from tags (fit(x, tags=...)), "
                "class labels are for evaluation only and must not be passed to fit"
            )
        if tags is None:
            raise ValueError(f"{self.name} needs the images' tags: fit(x, tags=(N, V) 0/1)")
        tags = (np.asarray(tags) > 0).astype(np.float32)
        pooled = self.pool(x)
        if tags.ndim != 2 or len(tags) != len(pooled):
            raise ValueError(f"tags must be (N, V) for {len(pooled)} images, got {tags.shape}")
        if tag_vectors is None:
            tag_vectors, record = resolve_tag_vectors(tags, tag_vocab, embedding, self.seed)
        else:
            tag_vectors = np.asarray(tag_vectors, dtype=np.float32)
            record = {"embedding": "given", "oov_tags": int((~tag_vectors.any(axis=1)).sum())}
        t, record["images_without_known_tag"] = average_tag_embeddings(tags, tag_vectors)
        self.mean_ = pooled.mean(axis=0)
        self.scale_ = pooled.std(axis=0) + 1e-6
        inputs = (pooled - self.mean_) / self.scale_
        self._tag_embeddings = torch.from_numpy(t)
        cfg = self.hparams
        trainer = Trainer(
            TrainConfig(
                epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, optimizer="sgd",
                momentum=cfg.momentum, weight_decay=cfg.weight_decay, patience=None,
                seed=self.seed, device=device, progress=progress,
            )
        )  # fmt: skip
        dims = (inputs.shape[1], t.shape[1], tags.shape[1])
        network, result = trainer.fit(
            self, lambda: self.build_network(*dims), FeatureInputs(inputs), tags
        )
        self.network_ = network.cpu().eval()
        self.dims_ = np.asarray(dims, dtype=np.int64)
        self.extra_config_ = {**record, "final_loss": result.history[-1]["loss"]}
        return self

    def encode(self, x: Any) -> np.ndarray:
        self._check_fitted()
        pooled = self.pool(x)
        if pooled.shape[1] != self.mean_.shape[0]:
            raise ValueError(
                f"inputs pool to {pooled.shape[1]} dimensions, the model was fitted on "
                f"{self.mean_.shape[0]}"
            )
        inputs = torch.from_numpy(((pooled - self.mean_) / self.scale_).astype(np.float32))
        with torch.no_grad():
            return self.binarize(self.network_(inputs)).astype(np.uint8)

    @abstractmethod
    def binarize(self, outputs: torch.Tensor) -> np.ndarray:
        """(N, K) uint8 codes from network outputs."""

    # -- trainer hooks --------------------------------------------------------------------
    def on_train_start(self, state: Any) -> None:
        state.extras["tag_embeddings"] = self._tag_embeddings.to(state.device)

    def on_epoch_start(self, state: Any) -> None:
        """Nothing to refresh per epoch: t_i is fixed."""

    def on_epoch_end(self, state: Any) -> None:
        """No per-epoch state."""

    def on_train_end(self, state: Any) -> None:
        """Nothing to finalise: codes come from the trained network alone."""

    def epoch_order(self, state: Any, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(len(state.extras["tag_embeddings"]))

    def parameter_groups(self, network: nn.Module, lr: float) -> list[dict[str, Any]]:
        return [{"params": list(network.parameters()), "lr": lr}]

    def batch_tag_embeddings(self, state: Any) -> torch.Tensor:
        index = torch.from_numpy(np.asarray(state.batch_indices, dtype=np.int64))
        return state.extras["tag_embeddings"][index.to(state.device)]

    # -- persistence: network weights go into weights.npz as "network.<name>" ------------
    def state(self) -> dict[str, np.ndarray]:
        arrays = {k: v for k, v in super().state().items() if k != "network_"}
        for key, value in self.network_.state_dict().items():
            arrays[f"network.{key}"] = value.cpu().numpy()
        return arrays

    @classmethod
    def load(cls, path: str | Path) -> TagSupervisedMethod:
        model = super().load(path)
        weights = {k: v for k, v in vars(model).items() if k.startswith("network.")}
        for key in weights:
            delattr(model, key)
        network = model.build_network(*(int(d) for d in model.dims_))
        network.load_state_dict({k[len("network.") :]: torch.from_numpy(np.asarray(v))
                                 for k, v in weights.items()})  # fmt: skip
        model.network_ = network.eval()
        return model  # type: ignore[return-value]
