"""One ``Dataset`` type for everything hashlab learns from or searches.

An item has an image (a file path, or a pixel array) and/or a feature vector, and may have a
label (single class id) or labels (multi-hot), tags (bag-of-words over a vocabulary),
paired text (a second modality's feature vector or raw string) and free metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hashlab.errors import DataError  # noqa: E402  (re-exported: one error root)


@dataclass
class Dataset:
    name: str
    image_paths: list[str] | None = None
    images: np.ndarray | None = None  # (N, H, W, 3) uint8 when pixels are in memory
    features: np.ndarray | None = None  # (N, D) float
    labels: np.ndarray | None = None  # (N,) int class ids or (N, C) multi-hot
    tags: np.ndarray | None = None  # (N, V) 0/1 tag bag-of-words
    tag_vocab: list[str] | None = None
    text: np.ndarray | list[str] | None = None  # (N, T) text features or raw strings
    metadata: list[dict[str, Any]] | None = None
    class_names: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self)
        for attr in ("image_paths", "images", "features", "labels", "tags", "text", "metadata"):
            value = getattr(self, attr)
            if value is not None and len(value) != n:
                raise DataError(f"{self.name}: {attr} has {len(value)} items, expected {n}")
        if self.features is not None and np.issubdtype(
            np.asarray(self.features).dtype, np.floating
        ):
            bad = ~np.isfinite(self.features).all(axis=1)
            if bad.any():
                raise DataError(
                    f"{self.name}: features contain NaN or infinite values in {int(bad.sum())} rows"
                )

    def __len__(self) -> int:
        for attr in ("image_paths", "images", "features", "labels", "tags", "text", "metadata"):
            value = getattr(self, attr)
            if value is not None:
                return len(value)
        return 0

    @property
    def multilabel(self) -> bool:
        return self.labels is not None and np.asarray(self.labels).ndim == 2

    def subset(self, indices: Sequence[int] | np.ndarray, name: str | None = None) -> Dataset:
        """The items at ``indices`` (in that order), as a new Dataset."""
        idx = np.asarray(indices, dtype=np.int64)

        def take(value: Any) -> Any:
            if value is None:
                return None
            if isinstance(value, list):
                return [value[i] for i in idx]
            return np.asarray(value)[idx]

        return replace(
            self,
            name=name or self.name,
            image_paths=take(self.image_paths),
            images=take(self.images),
            features=take(self.features),
            labels=take(self.labels),
            tags=take(self.tags),
            text=take(self.text),
            metadata=take(self.metadata),
            info={**self.info, "indices": None},
        )

    def with_features(self, features: np.ndarray, backbone: str | None = None) -> Dataset:
        info = dict(self.info)
        if backbone:
            info["backbone"] = backbone
        return replace(self, features=np.asarray(features), info=info)

    def label_matrix(self) -> np.ndarray:
        """Labels as (N, C) multi-hot, whatever form they were given in."""
        if self.labels is None:
            raise DataError(f"{self.name} has no labels")
        return as_multihot(self.labels)


def as_multihot(labels: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """(N,) class ids -> (N, C) one-hot; (N, C) multi-hot passes through as uint8."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return (labels > 0).astype(np.uint8)
    if labels.ndim != 1:
        raise DataError(f"labels must be (N,) or (N, C), got shape {labels.shape}")
    ids = labels.astype(np.int64)
    n_classes = int(ids.max()) + 1 if n_classes is None else n_classes
    out = np.zeros((len(ids), n_classes), dtype=np.uint8)
    out[np.arange(len(ids)), ids] = 1
    return out
