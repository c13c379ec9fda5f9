"""What every tag-supervised (weakly supervised) deep method shares: IDEA and WDHT.

Weak supervision (IDEA, Liu et al. 2022, Sec. 2.2; WDHT, Gattupalli et al., CVPR 2019):
``fit`` learns from images and their user tags only. Class labels are refused by ``fit``
(``y`` must be None) so a benchmark cannot leak them by accident; they are for evaluation.

``fit(x, tags=(N, V) bag-of-words, tag_vectors=(V, d) | None, tag_vocab=[V words] | None,
embedding="glove" | "word2vec" | path)``, or ``fit(dataset)`` with a ``Dataset`` that has
tags and a tag vocabulary. Each image's tag embedding t_i is the mean word vector of its
known tags (Eq. 5 of IDEA). Without ``tag_vectors`` they come from ``embedding`` over
``tag_vocab``: GloVe 6B 50-d, word2vec trained on the fitted tag lists, or a local word2vec
file. The (V, d) matrix is learned state (``tag_vectors_``, saved with the model).

These are ordinary :class:`DeepHashMethod` s on the one trainer: the trainer's targets are
the (N, V) tag indicator vectors (:meth:`training_targets`), and t_i is computed per batch
from them (:func:`mean_tag_embeddings`). Validation, when asked for
(``validation_fraction`` > 0, or ``validation=(x_val, tags_val)``), scores map@all with
"shares a tag" as relevance: still weak supervision, never labels, never the queries. The
paper trains for fixed epochs, so by default there is none.

``center_tag_embeddings=True`` (ours, off by default) subtracts the training items' mean t
before any use: averaged word vectors share a large common direction (Mu and Viswanath,
"All-but-the-Top", ICLR 2018), so cos(t_i, t_j) is positive for almost every pair
(mean 0.37 with GloVe on MIRFlickr), and pairwise targets built from it ask unrelated images
for similar codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from hashlab.errors import ConfigError, InputError
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod
from hashlab.text.embeddings import (
    load_word_vectors,
    tag_embedding_matrix,
    tag_lists_from_matrix,
    train_word2vec,
)

__all__ = ["TagSupervisedConfig", "TagSupervisedMethod", "mean_tag_embeddings",
           "resolve_tag_vectors"]  # fmt: skip


def resolve_tag_vectors(
    tags: np.ndarray, tag_vocab: list[str] | None, embedding: str, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """(V, d) tag vectors from an embedding name/path, and a record of coverage (OOV count)."""
    if tag_vocab is None:
        raise InputError("pass tag_vectors=(V, d) or tag_vocab=[V tag words] to fit()")
    if len(tag_vocab) != tags.shape[1]:
        raise InputError(f"tag_vocab has {len(tag_vocab)} words, tags have {tags.shape[1]}")
    if embedding == "word2vec":
        vectors = train_word2vec(tag_lists_from_matrix(tags, tag_vocab), seed=seed)
    else:
        vectors = load_word_vectors(embedding)
    matrix, n_missing = tag_embedding_matrix(tag_vocab, vectors)
    return matrix, {"embedding": vectors.name, "oov_tags": n_missing, "n_tags": len(tag_vocab)}


def mean_tag_embeddings(tags: torch.Tensor, tag_vectors: torch.Tensor) -> torch.Tensor:
    """Eq. 5: t_i = mean vector of image i's known tags (OOV rows are zero and left out).

    The torch twin of ``hashlab.text.average_tag_embeddings``; an image with no known tag
    gets the zero vector.
    """
    known = (tag_vectors.abs().sum(dim=1) > 0).to(tags.dtype)
    counts = (tags @ known).clamp(min=1.0)
    return (tags @ tag_vectors) / counts[:, None]


@dataclass
class TagSupervisedConfig(DeepHashConfig):
    """IDEA's training settings (Sec. 4.2), shared by the WDHT-style baseline."""

    epochs: int = 30  # not given in the paper
    batch_size: int = 50
    lr: float = 0.01
    weight_decay: float = 5e-4
    optimizer: str = "sgd"
    momentum: float = 0.9
    patience: int | None = None  # the paper trains for fixed epochs
    validation_fraction: float = 0.0
    center_tag_embeddings: bool = False  # ours (see the module docstring)
    #: tag word vectors when fit() is not given them: glove, word2vec or a word2vec file
    embedding: str = "glove"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode != "frozen":
            raise ConfigError(
                "tag-supervised methods train heads on frozen backbone features: mode must be "
                f"'frozen', got {self.mode!r}"
            )


class TagSupervisedMethod(DeepHashMethod):
    """A deep method whose training targets are the images' tags, never their labels."""

    Config: ClassVar[type[DeepHashConfig]] = TagSupervisedConfig

    @property
    def tag_dim(self) -> int:
        return int(self.tag_vectors_.shape[1])

    @property
    def n_tags(self) -> int:
        return int(self.tag_vectors_.shape[0])

    # -- data hooks -----------------------------------------------------------------------
    def training_targets(
        self,
        x: Any,
        y: Any,
        n_items: int,
        *,
        tags: Any = None,
        tag_vectors: Any = None,
        tag_vocab: list[str] | None = None,
        embedding: str | None = None,
    ) -> np.ndarray:
        """The (N, V) tag indicators; also learns ``tag_vectors_`` (V, d) for Eq. 5."""
        if embedding is not None:  # the array form's keyword wins and is what gets recorded
            self.hparams.embedding = embedding
        embedding = self.hparams.embedding
        if y is not None:
            raise InputError(
                f"{self.name} is weakly supervised: it learns from tags (fit(x, tags=...)), "
                "class labels are for evaluation only and must not be passed to fit"
            )
        if tags is None:
            tags = getattr(x, "tags", None)
            tag_vocab = tag_vocab if tag_vocab is not None else getattr(x, "tag_vocab", None)
        if tags is None:
            raise InputError(f"{self.name} needs the images' tags: fit(x, tags=(N, V) 0/1)")
        tags = self._check_tags(tags, n_items)
        if tag_vectors is None:
            tag_vectors, record = resolve_tag_vectors(tags, tag_vocab, embedding, self.seed)
        else:
            tag_vectors = np.asarray(tag_vectors, dtype=np.float32)
            if tag_vectors.ndim != 2 or len(tag_vectors) != tags.shape[1]:
                raise InputError(
                    f"tag_vectors must be ({tags.shape[1]}, d) for {tags.shape[1]} tags, "
                    f"got {tag_vectors.shape}"
                )
            record = {"embedding": "given", "oov_tags": int((~tag_vectors.any(axis=1)).sum())}
        self.tag_vectors_ = np.asarray(tag_vectors, dtype=np.float32)
        self.tag_center_ = np.zeros(self.tag_vectors_.shape[1], dtype=np.float32)
        if self.hparams.center_tag_embeddings:
            t = mean_tag_embeddings(torch.from_numpy(tags.astype(np.float32)),
                                    torch.from_numpy(self.tag_vectors_))  # fmt: skip
            self.tag_center_ = t.mean(dim=0).numpy()
        known = np.abs(self.tag_vectors_).sum(axis=1) > 0
        record["images_without_known_tag"] = int((tags @ known == 0).sum())
        record["supervision"] = "tags only (labels never passed to fit)"
        self.extra_config_ = {**getattr(self, "extra_config_", {}), **record}
        return tags

    def validation_targets(self, x: Any, y: Any, n_items: int) -> np.ndarray:
        """``validation=(x_val, tags_val)``, or a Dataset's tags: relevance = shared tag."""
        return self._check_tags(y if y is not None else getattr(x, "tags", None), n_items)

    def _check_tags(self, tags: Any, n_items: int) -> np.ndarray:
        if tags is None:
            raise InputError(f"{self.name} validates on tags: pass validation=(x, tags)")
        tags = (np.asarray(tags) > 0).astype(np.uint8)
        if tags.ndim != 2 or len(tags) != n_items:
            raise InputError(f"tags must be (N, V) for {n_items} images, got {tags.shape}")
        return tags

    # -- trainer hooks --------------------------------------------------------------------
    def on_train_start(self, state: Any) -> None:
        state.extras["tag_vectors"] = torch.from_numpy(self.tag_vectors_).to(state.device)
        state.extras["tag_center"] = torch.from_numpy(self.tag_center_).to(state.device)

    def batch_tag_embeddings(self, tag_targets: torch.Tensor, state: Any) -> torch.Tensor:
        """t_i (Eq. 5) of the batch's images, from their tag indicator rows."""
        t = mean_tag_embeddings(tag_targets, state.extras["tag_vectors"])
        return t - state.extras["tag_center"]
