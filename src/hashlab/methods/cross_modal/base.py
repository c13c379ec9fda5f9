"""The protocol of cross-modal hashing methods: two modalities, one Hamming space.

``fit(images, texts, labels)`` learns from paired feature matrices (row i of ``images`` and
row i of ``texts`` describe the same item) and labels (class ids or multi-hot; two items are
similar when they share a label). ``encode(x, modality="image" | "text")`` maps either
modality to (N, K) uint8 0/1 codes in the same space, so image codes can be searched with text
codes and back. ``save``/``hashlab.load`` work as for every method; ``config.json``'s
``extra.text_featurizer`` records how raw text becomes the text side (bag-of-words over a
stored vocabulary, or precomputed features the model cannot compute itself), which
:func:`hashlab.methods.cross_modal.text.text_to_features` reads.

Both modalities are standardised (zero mean, unit variance per dimension, statistics of the
training items) before any method sees them: SIFT histograms and LDA topic proportions live
on very different scales.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np

from hashlab.data.dataset import as_multihot
from hashlab.methods.base import HashMethod, check_features

__all__ = ["CrossModalMethod", "MODALITIES", "label_similarity"]

MODALITIES = ("image", "text")


def label_similarity(labels_a: np.ndarray, labels_b: np.ndarray | None = None) -> np.ndarray:
    """(N_a, N_b) bool: items share at least one label (multi-hot inputs)."""
    labels_b = labels_a if labels_b is None else labels_b
    return (labels_a.astype(np.float32) @ labels_b.astype(np.float32).T) > 0


class CrossModalMethod(HashMethod):
    """Base class of image-text hashing methods (see the module docstring)."""

    supervised: ClassVar[bool] = True
    #: generic single-modality code (``hashlab bench``, registry-wide tests) can skip these
    cross_modal: ClassVar[bool] = True
    modalities: ClassVar[tuple[str, ...]] = MODALITIES

    def fit(  # type: ignore[override]
        self,
        images: Any,
        texts: Any = None,
        labels: Any = None,
        *,
        text_featurizer: dict[str, Any] | None = None,
    ) -> CrossModalMethod:
        """Learn from paired (N, D_image) and (N, D_text) features and their labels.

        ``text_featurizer`` describes the text side for search (e.g. the ``Dataset``'s
        ``info["text_featurizer"]``); by default it says "precomputed features".
        """
        if texts is None or np.ndim(texts) != 2:
            raise ValueError(
                f"{self.name} is a cross-modal method: call fit(images, texts, labels) with "
                "paired image and text features"
            )
        image_features = check_features(images, "training image features")
        text_features = check_features(texts, "training text features")
        if len(image_features) != len(text_features):
            raise ValueError(
                f"got {len(image_features)} image rows but {len(text_features)} text rows; "
                "fit() needs paired rows"
            )
        label_rows = self._check_labels(labels, len(image_features))
        featurizer = dict(text_featurizer or {})
        featurizer.setdefault("kind", "features")
        featurizer.setdefault("dim", int(text_features.shape[1]))
        if featurizer["dim"] != text_features.shape[1]:
            raise ValueError(
                f"text_featurizer says {featurizer['dim']} dimensions but the text features "
                f"have {text_features.shape[1]}"
            )
        self.extra_config_ = {
            "modalities": list(self.modalities),
            "image_dim": int(image_features.shape[1]),
            "text_dim": int(text_features.shape[1]),
            "text_featurizer": featurizer,
        }
        for modality, features in (("image", image_features), ("text", text_features)):
            mean = features.mean(axis=0)
            scale = features.std(axis=0)
            scale[scale < 1e-12] = 1.0  # constant dimensions carry nothing; avoid 0-division
            setattr(self, f"{modality}_mean_", mean)
            setattr(self, f"{modality}_scale_", scale)
        self._fit(
            self._standardise(image_features, "image"),
            self._standardise(text_features, "text"),
            as_multihot(label_rows),
        )
        return self

    def encode(self, x: Any, modality: str = "image") -> np.ndarray:
        """(N, K) uint8 0/1 codes of image or text features (bit = real projection >= 0)."""
        if modality not in self.modalities:
            raise ValueError(
                f"modality must be one of {', '.join(self.modalities)}, got {modality!r}"
            )
        self._check_fitted()
        features = check_features(x, f"{modality} features")
        expected = getattr(self, f"{modality}_mean_").shape[0]
        if features.shape[1] != expected:
            raise ValueError(
                f"{modality} features have {features.shape[1]} dimensions, the model was "
                f"fitted on {expected}"
            )
        projections = self._project(self._standardise(features, modality), modality)
        return (projections >= 0).astype(np.uint8)

    def _standardise(self, features: np.ndarray, modality: str) -> np.ndarray:
        mean = getattr(self, f"{modality}_mean_")
        scale = getattr(self, f"{modality}_scale_")
        return ((features - mean) / scale).astype(np.float32)

    @property
    def text_featurizer(self) -> dict[str, Any]:
        """How raw text becomes this model's text side (see the module docstring)."""
        self._check_fitted()
        return dict(getattr(self, "extra_config_", {}).get("text_featurizer", {}))

    @abstractmethod
    def _fit(self, images: np.ndarray, texts: np.ndarray, labels: np.ndarray) -> None:
        """Learn the attributes ending in ``_`` from standardised features, (N, C) multi-hot."""

    @abstractmethod
    def _project(self, features: np.ndarray, modality: str) -> np.ndarray:
        """Real values whose signs (>= 0 -> 1) are the bits of standardised features."""


def two_layer_forward(
    features: np.ndarray,
    weight_1: np.ndarray,
    bias_1: np.ndarray,
    weight_2: np.ndarray,
    bias_2: np.ndarray,
    hidden_activation: str = "tanh",
) -> np.ndarray:
    """Pre-activation outputs of a two-layer network in numpy (weights stored as (in, out))."""
    hidden = features @ weight_1 + bias_1
    hidden = np.tanh(hidden) if hidden_activation == "tanh" else np.maximum(hidden, 0.0)
    return hidden @ weight_2 + bias_2
