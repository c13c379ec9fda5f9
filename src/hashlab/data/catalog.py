"""Named data sets for the CLI and benchmarks: ``load_dataset(name, root)``.

The features a method is trained on come from ``hashlab.backbones.dataset_features`` (image
data sets: backbone features from the on-disk cache; data sets that are already features,
digits pixels or Wikipedia SIFT, as they are).

List-file data sets (``hashlab.data.listfile``): ``listfile`` (any folder with train.txt,
test.txt and database.txt) and the named ``nuswide21``, ``coco`` and ``imagenet100``; they
split by their own lists (protocol ``listfile``) and each names the field's metric for it
(:func:`dataset_metric`).
"""

from __future__ import annotations

from pathlib import Path

from hashlab.data.dataset import DataError, Dataset
from hashlab.data.listfile import LIST_SETS, load_list_split

DATASETS = ("cifar10", "digits", "folder", "mirflickr", "mirflickr-pairs", "mirflickr-pairs-bow")
DATASETS += tuple(LIST_SETS)  # list-file sets: hashlab.data.listfile


def dataset_metric(name: str) -> str:
    """The headline metric the field reports on a named data set (map@all where none is set)."""
    return LIST_SETS[name].metric if name in LIST_SETS else "map@all"


def default_protocol(name: str, dataset: Dataset | None = None) -> str:
    """The split a data set is used with unless one is asked for.

    ``listfile`` for list-file sets (their own parts), ``dch`` for CIFAR-10, else ``per-class``.
    """
    if name in LIST_SETS or (dataset is not None and "list_split" in dataset.info):
        return "listfile"
    return "dch" if name == "cifar10" else "per-class"


def load_dataset(
    name: str,
    root: str | Path | None = None,
    csv: str | Path | None = None,
    label_column: str | None = None,
    tags_column: str | None = None,
    image_root: str | Path | None = None,
) -> Dataset:
    """Load a data set by name; ``root`` is its path (not needed for ``digits``).

    ``folder`` with ``csv``: the images listed in that CSV (paths relative to ``root``), with
    labels and / or tags from the named columns (``hashlab.data.folders.load_image_csv``).
    List-file sets: ``root`` holds the lists, ``image_root`` the images (default: ``root``).
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
    if image_root is not None and name not in LIST_SETS:
        raise DataError(f"--image-root is for list-file data sets, not for {name!r}")
    if name in LIST_SETS:
        return load_list_split(root, name, image_root=image_root)
    if name == "cifar10":
        from hashlab.data.cifar10 import load_cifar10

        return load_cifar10(root)
    if name == "folder":
        from hashlab.data.folders import load_image_csv, load_image_folder

        if csv is not None:
            return load_image_csv(root, csv, label_column=label_column, tags_column=tags_column)
        return load_image_folder(root)
    if name.startswith("mirflickr-pairs"):  # image-tag pairs: GloVe-mean or bag-of-words text
        from hashlab.data.mirflickr_pairs import load_mirflickr_image_pairs

        return load_mirflickr_image_pairs(root, text="bow" if name.endswith("-bow") else "glove")
    from hashlab.data.mirflickr import load_mirflickr_images

    return load_mirflickr_images(root)
