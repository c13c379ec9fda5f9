"""A Dataset's images as one (N, S, S, 3) uint8 array at a fixed small size.

Generative hashing (PC-AEGAN, PC-WGAN) trains on pixels, not on cached features. Images held
in memory are resized when needed; image files are decoded and resized once (bilinear) and,
for data sets of more than ``cache_above`` images, kept under ``hashlab``'s cache, keyed by the
image paths and the size (decoding CIFAR-10's 60,000 JPEGs takes about a minute).
"""

from __future__ import annotations

import os

import numpy as np

from hashlab.data.cache import feature_cache_path
from hashlab.data.dataset import DataError, Dataset
from hashlab.data.images import dataset_images

__all__ = ["dataset_pixels"]


def _resized(images: object, size: int) -> np.ndarray:
    return np.stack([
        np.asarray(img.convert("RGB").resize((size, size), resample=2), dtype=np.uint8)
        for img in images
    ])  # fmt: skip


def dataset_pixels(dataset: Dataset, size: int, cache_above: int = 2000) -> np.ndarray:
    """(N, size, size, 3) uint8 pixels of every item of ``dataset``."""
    if dataset.images is not None:
        images = np.asarray(dataset.images)
        if images.ndim == 4 and images.shape[1:] == (size, size, 3) and images.dtype == np.uint8:
            return images
        return _resized(dataset_images(dataset), size)
    if dataset.image_paths is None:
        raise DataError(f"{dataset.name} has no images (neither image_paths nor images)")
    if len(dataset) <= cache_above:
        return _resized(dataset_images(dataset), size)
    target = feature_cache_path(dataset.name, "pixels", size, dataset.image_paths) / "pixels.npy"
    if target.is_file():
        return np.load(target)
    pixels = _resized(dataset_images(dataset), size)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp.npy")
    np.save(tmp, pixels)
    os.replace(tmp, target)
    return pixels
