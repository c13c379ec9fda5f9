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


def load_dataset(
    name: str,
    root: str | Path | None = None,
    csv: str | Path | None = None,
    label_column: str | None = None,
    tags_column: str | None = None,
) -> Dataset:
    """Load a data set by name; ``root`` is its path (not needed for ``digits``).

    ``folder`` with ``csv``: the images listed in that CSV (paths relative to ``root``), with
    labels and / or tags from the named columns (``hashlab.data.folders.load_image_csv``).
    """
    if csv is not None and name != "folder":
        raise DataError(f"--csv lists the images of a folder data set, not of {name!r}")
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
        from hashlab.data.folders import load_image_csv, load_image_folder

        if csv is not None:
            return load_image_csv(root, csv, label_column=label_column, tags_column=tags_column)
        return load_image_folder(root)
    from hashlab.data.mirflickr import load_mirflickr_images

    return load_mirflickr_images(root)


def dataset_features(
    dataset: Dataset,
    backbone: str = "efficientnet_lite0",
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
    from hashlab.backbones import extract_features

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
        from hashlab.backbones.cache import extract_features_from_arrays

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
