"""Named data sets for the CLI and benchmarks: ``load_dataset(name, root)`` and the features
a method is trained on (``dataset_features``).

Image data sets get backbone features from the on-disk cache (computed once); data sets that
are already features (digits pixels, Wikipedia SIFT) use them as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashlab.data.dataset import DataError, Dataset

DATASETS = ("cifar10", "digits", "folder", "mirflickr")


def load_dataset(name: str, root: str | Path | None = None) -> Dataset:
    """Load a data set by name; ``root`` is its path (not needed for ``digits``)."""
    if name == "digits":
        from hashlab.data.digits import load_digits_dataset

        return load_digits_dataset()
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")
    if root is None:
        raise DataError(f"data set {name!r} needs --root PATH")
    if name == "cifar10":
        from hashlab.data.cifar10 import load_cifar10

        return load_cifar10(root)
    if name == "folder":
        from hashlab.data.folders import load_image_folder

        return load_image_folder(root)
    from hashlab.data.mirflickr import load_mirflickr_images

    return load_mirflickr_images(root)


def dataset_features(
    dataset: Dataset,
    backbone: str = "efficientnet_lite0",
    weights: str | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, str]:
    """Feature matrix for ``dataset`` and a description of where it came from."""
    if dataset.features is not None:
        return np.asarray(dataset.features, dtype=np.float32), dataset.info.get(
            "feature_source", "features shipped with the data set"
        )
    from hashlab.backbones import extract_features

    if dataset.image_paths is not None:
        features = extract_features(
            dataset.image_paths,
            backbone,
            dataset_key=dataset.name,
            weights=weights,
            progress=progress,
        )
        return features, f"{backbone} (ImageNet, frozen, pooled last conv map)"
    if dataset.images is not None:
        from hashlab.backbones.cache import extract_features_from_arrays

        features = extract_features_from_arrays(
            dataset.images, backbone, dataset_key=dataset.name, progress=progress
        )
        return features, f"{backbone} (ImageNet, frozen, pooled last conv map)"
    raise DataError(f"{dataset.name} has neither features nor images")
