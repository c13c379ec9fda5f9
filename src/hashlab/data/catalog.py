"""Named data sets for the CLI and benchmarks: ``load_dataset(name, root)``.

The features a method is trained on come from ``hashlab.backbones.dataset_features`` (image
data sets: backbone features from the on-disk cache; data sets that are already features,
digits pixels or Wikipedia SIFT, as they are).
"""

from __future__ import annotations

from pathlib import Path

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
