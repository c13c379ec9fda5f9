"""scikit-learn's handwritten digits as a small real data set that needs no download.

1,797 8x8 grey images of the digits 0-9 (the UCI "optical recognition of handwritten digits"
test set, Alpaydin & Kaynak 1998), shipped inside scikit-learn. ``features`` are the 64 raw
pixel values (0..16), which shallow hashing methods can use directly; ``images`` are the same
pixels as dark ink on white, upscaled to RGB uint8 so the digits can also be shown, saved as
image files or fed to an image backbone.
"""

from __future__ import annotations

import numpy as np

from hashlab.data.dataset import DataError, Dataset

DIGITS_MAX_VALUE = 16  # sklearn's pixel values are counts of set pixels in 4x4 blocks


def digits_to_rgb(pixels: np.ndarray, image_size: int = 32) -> np.ndarray:
    """(N, 8, 8) values 0..16 -> (N, image_size, image_size, 3) uint8, black ink on white."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim != 3 or pixels.shape[1:] != (8, 8):
        raise DataError(f"digit images must have shape (N, 8, 8), got {pixels.shape}")
    if image_size % 8:
        raise DataError(f"image_size must be a multiple of 8, got {image_size}")
    grey = 255.0 - pixels * (255.0 / DIGITS_MAX_VALUE)
    scale = image_size // 8
    # nearest-neighbour upscaling keeps the blocky look instead of inventing detail
    grey = grey.repeat(scale, axis=1).repeat(scale, axis=2)
    grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=3)


def load_digits_dataset(image_size: int = 32) -> Dataset:
    """The 1,797 digits: features (N, 64) float32, labels (N,), images (N, S, S, 3) uint8."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.asarray(bunch.images)
    return Dataset(
        name="digits",
        images=digits_to_rgb(pixels, image_size),
        features=np.asarray(bunch.data, dtype=np.float32),
        labels=np.asarray(bunch.target, dtype=np.int64),
        class_names=[str(d) for d in range(10)],
        info={
            "source": "sklearn.datasets.load_digits",
            "feature_source": "the 64 raw pixel values (0..16) of the 8x8 images",
        },
    )
