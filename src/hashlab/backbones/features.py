"""Images -> the features a method consumes: one implementation for data sets and for
single images (an upload, a folder to index, a query file).

``dataset_features`` gives a Dataset's feature matrix (shipped features as they are, else
backbone features from the on-disk cache); ``image_features`` gives the same features for
image files or PIL images, from the cache when a ``cache_key`` is named, else in memory
(what the service does for an upload). Both run the backbone's own preprocessing, so a file
and the same photo uploaded hash alike; ``feature_map=True`` gives the (N, C, 7, 7) region
maps that IDEA pools itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.backbones.cache import extract_features, extract_features_from_arrays
from hashlab.backbones.registry import DEFAULT_BACKBONE, Backbone, create_backbone
from hashlab.data.dataset import DataError, Dataset

__all__ = ["dataset_features", "image_features"]

#: images per forward pass when hashing images in memory
IMAGE_BATCH = 64


def dataset_features(
    dataset: Dataset,
    backbone: str = DEFAULT_BACKBONE,
    weights: str | None = None,
    progress: bool = True,
    feature_map: bool = False,
) -> tuple[np.ndarray, str]:
    """Feature matrix for ``dataset`` and a description of where it came from.

    ``feature_map=True``: the backbone's last map pooled to (N, C, 7, 7) region features
    (for IDEA's region attention) instead of (N, C) vectors; data sets that ship features
    have no maps.
    """
    if dataset.features is not None:
        if feature_map:
            raise DataError(
                f"{dataset.name} ships feature vectors, not images: a method that needs "
                "region feature maps cannot train on it"
            )
        return np.asarray(dataset.features, dtype=np.float32), dataset.info.get(
            "feature_source", "features shipped with the data set"
        )
    if dataset.image_paths is not None:
        features = extract_features(
            dataset.image_paths,
            backbone,
            dataset_key=dataset.name,
            weights=weights,
            progress=progress,
            feature_map=feature_map,
        )
        return features, _feature_text(backbone, feature_map)
    if dataset.images is not None:
        features = extract_features_from_arrays(
            dataset.images, backbone, dataset_key=dataset.name, progress=progress,
            feature_map=feature_map,
        )  # fmt: skip
        return features, _feature_text(backbone, feature_map)
    raise DataError(f"{dataset.name} has neither features nor images")


def _feature_text(backbone: str, feature_map: bool) -> str:
    if feature_map:
        return f"{backbone} (ImageNet, frozen, last conv map as 7 x 7 regions)"
    return f"{backbone} (ImageNet, frozen, pooled last conv map)"


def image_features(
    images: Sequence[Any],
    backbone: str | Backbone = DEFAULT_BACKBONE,
    feature_map: bool = False,
    cache_key: str | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(N, D) (or (N, C, 7, 7) with ``feature_map``) float32 features of image files / PIL images.

    With ``cache_key`` and only file paths, features go through the on-disk cache (a large
    folder is extracted once and an interrupted run resumes); otherwise they are computed in
    memory with ``backbone`` (a name, or a built :class:`Backbone` to reuse).
    """
    import torch

    from hashlab.data.images import open_image

    images = list(images)
    if cache_key is not None and images and all(isinstance(i, str | Path) for i in images):
        name = backbone if isinstance(backbone, str) else backbone.name
        return extract_features([str(i) for i in images], name, dataset_key=cache_key,
                                progress=progress, feature_map=feature_map)  # fmt: skip
    model = create_backbone(backbone) if isinstance(backbone, str) else backbone
    if feature_map and model.feature_map is None:
        raise DataError(f"backbone {model.name!r} has no feature map")
    forward = model.feature_map if feature_map else model.module
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), IMAGE_BATCH):
            chunk = [img if hasattr(img, "convert") else open_image(img, max_pixels=None)
                     for img in images[start : start + IMAGE_BATCH]]  # fmt: skip
            out = forward(model.preprocess(chunk))
            if feature_map:  # 7 x 7 region maps, as cached
                out = torch.nn.functional.adaptive_avg_pool2d(out, 7)
            outputs.append(out.float().numpy())
    if not outputs:
        return np.zeros((0, model.feature_dim), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)
