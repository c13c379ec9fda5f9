"""Data sets, loaders per format and protocol splits (see ``shared/specs/protocols.md``).

Loaders return a ``Dataset``; ``make_split`` turns one into seeded, leak-checked
query / train / validation / database index arrays.
"""

from hashlab.data.cifar10 import load_cifar10, load_cifar10_pickles
from hashlab.data.dataset import DataError, Dataset, as_multihot
from hashlab.data.digits import load_digits_dataset
from hashlab.data.folders import load_image_csv, load_image_folder
from hashlab.data.images import ImageError, dataset_images, open_image
from hashlab.data.listfile import LIST_SETS, load_list_file, load_list_split
from hashlab.data.mirflickr import load_mirflickr, load_mirflickr_images, load_mirflickr_official
from hashlab.data.splits import PROTOCOLS, Split, make_split


def load_wikipedia(*args, **kwargs) -> Dataset:
    """The Wikipedia image-text set; see ``hashlab.data.wikipedia.load_wikipedia``."""
    from hashlab.data.wikipedia import load_wikipedia as load

    return load(*args, **kwargs)


__all__ = [
    "LIST_SETS",
    "PROTOCOLS",
    "DataError",
    "Dataset",
    "ImageError",
    "Split",
    "as_multihot",
    "dataset_images",
    "load_cifar10",
    "load_cifar10_pickles",
    "load_digits_dataset",
    "load_image_csv",
    "load_image_folder",
    "load_list_file",
    "load_list_split",
    "load_mirflickr",
    "load_mirflickr_images",
    "load_mirflickr_official",
    "load_wikipedia",
    "make_split",
    "open_image",
]
