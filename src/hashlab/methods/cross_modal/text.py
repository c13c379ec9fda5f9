"""Raw text -> a cross-modal model's text side, for ``hashlab search IDX --text "..."``.

A fitted :class:`CrossModalMethod` records its text featurizer in ``config.json``
(``extra.text_featurizer``, copied from the training ``Dataset``'s ``info``):

- ``{"kind": "bow", "vocabulary": [...], "binary": true}`` (MIRFlickr-25K tags, 1,386 words):
  :func:`text_to_features` lower-cases the query, splits it on anything that is not a letter,
  digit or underscore, and sets the column of every vocabulary word it contains (counts when
  ``binary`` is false). Words outside the vocabulary are ignored; a query with none in the
  vocabulary is an error that names the words.
- ``{"kind": "glove", "vectors": "glove-6b-50d", "dim": 50}`` (open vocabulary): the mean
  GloVe vector of the query's words, unknown words skipped
  (:mod:`hashlab.text.open_vocabulary`); any English word GloVe knows can be a query word.
- ``{"kind": "lda", ...}`` (Wikipedia: 10-d LDA topics) or ``{"kind": "features", ...}``:
  the data set ships only the precomputed vectors, not the model that makes them, so raw text
  cannot be featurised; the error says to pass ``--text-features FILE.npy`` instead, which
  :func:`text_features_from_file` reads and checks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.errors import InputError

__all__ = ["text_to_features", "text_features_from_file", "TextFeaturizerError"]

_TOKEN = re.compile(r"\w+")


class TextFeaturizerError(InputError):
    """Raw text that this model's text side cannot take, explained in one sentence (a user
    error: the CLI exits 2; still a ValueError for older callers)."""


def _featurizer(model: Any) -> dict[str, Any]:
    if "text" not in getattr(model, "modalities", ()):
        raise TextFeaturizerError(
            f"model {getattr(model, 'name', type(model).__name__)!r} has no text side: "
            "--text needs a cross-modal model (e.g. lbo_cmh, dcmh, seph, cmfh)"
        )
    return dict(getattr(model, "extra_config_", {}).get("text_featurizer", {}))


def text_to_features(model: Any, text: str) -> np.ndarray:
    """(1, D_text) float32 features of ``text`` for ``model.encode(..., modality="text")``."""
    featurizer = _featurizer(model)
    kind = featurizer.get("kind", "features")
    if kind == "glove":
        from hashlab.text.open_vocabulary import glove_query_features, word_vectors

        return glove_query_features(text, word_vectors(featurizer.get("vectors", "glove-6b-50d")))
    if kind != "bow":
        description = featurizer.get("description", f"{featurizer.get('dim', '?')}-d vectors")
        raise TextFeaturizerError(
            f"this model's text side is {kind} features ({description}); raw text needs a "
            "text featurizer the data set did not ship, so pass --text-features FILE.npy "
            f"with a (1, {featurizer.get('dim', 'D')}) array instead"
        )
    vocabulary = featurizer["vocabulary"]
    column = {word.lower(): i for i, word in enumerate(vocabulary)}
    tokens = _TOKEN.findall(text.lower())
    features = np.zeros((1, len(vocabulary)), dtype=np.float32)
    for token in tokens:
        if token in column:
            features[0, column[token]] += 1.0
    if not features.any():
        shown = ", ".join(tokens[:8]) or "(no words)"
        raise TextFeaturizerError(
            f"none of the words of {text!r} ({shown}) is in this model's "
            f"{len(vocabulary):,}-word vocabulary"
        )
    if featurizer.get("binary", True):
        features = (features > 0).astype(np.float32)
    return features


def text_features_from_file(model: Any, path: str | Path) -> np.ndarray:
    """(N, D_text) float32 text features from a ``.npy`` file, checked against ``model``."""
    featurizer = _featurizer(model)
    path = Path(path).expanduser()
    if not path.is_file():
        raise TextFeaturizerError(f"text feature file {path} does not exist")
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise TextFeaturizerError(f"{path} is not a readable .npy array: {error}") from None
    features = np.atleast_2d(np.asarray(features, dtype=np.float32))
    expected = featurizer.get("dim", getattr(model, "text_mean_", np.empty(0)).shape[0])
    if features.ndim != 2 or features.shape[1] != expected:
        raise TextFeaturizerError(
            f"{path} holds an array of shape {features.shape}; this model's text side takes "
            f"(N, {expected}) {featurizer.get('kind', 'feature')} vectors"
        )
    if not np.isfinite(features).all():
        raise TextFeaturizerError(f"{path} contains NaN or infinite values")
    return features
