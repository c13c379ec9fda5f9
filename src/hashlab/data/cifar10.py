"""CIFAR-10 in two layouts: a JPEG folder tree and the official python pickles.

Folder layout (``../shared/data/cifar10_jpg.tar.gz`` once extracted, or the tarball itself):
``train/<class>/*.jpg`` (5,000 per class) and ``test/<class>/*.jpg`` (1,000 per class).
Items are ordered train then test, classes alphabetically, files by name, so the order (and
so every seeded split and feature cache) is reproducible.

Pickle layout (the official ``cifar-10-python.tar.gz``): ``cifar-10-batches-py/data_batch_1``
... ``data_batch_5`` and ``test_batch``, each a pickled dict with ``b"data"`` (10,000 x 3,072
uint8, channel-major) and ``b"labels"``. ``download=True`` fetches it with torchvision; nothing
is downloaded unless asked.
"""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from hashlab.data.cache import cache_dir
from hashlab.data.dataset import DataError, Dataset

CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def _extract_tarball(tarball: Path) -> Path:
    """Unpack a .tar.gz once into hashlab's cache and return the folder."""
    target = cache_dir() / "data" / tarball.name.split(".")[0]
    marker = target / ".complete"
    if marker.is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise DataError(f"cannot unpack {tarball}: {error}") from None
    marker.touch()
    return target


def _find_root(root: Path) -> Path:
    """The folder that holds ``train/`` and ``test/`` (possibly one level down)."""
    if (root / "train").is_dir():
        return root
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if (child / "train").is_dir():
            return child
    raise DataError(f"{root} holds no CIFAR-10 train/<class>/ folders")


def _download(root: Path) -> None:
    """Fetch the official pickles into ``root/cifar-10-batches-py`` (torchvision checks MD5)."""
    try:
        from torchvision.datasets import CIFAR10
    except ModuleNotFoundError:
        raise DataError("downloading CIFAR-10 needs torchvision, which is not installed") from None
    root.mkdir(parents=True, exist_ok=True)
    try:
        CIFAR10(str(root), train=True, download=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        raise DataError(f"could not download CIFAR-10 into {root}: {error}") from None


def load_cifar10(root: str | Path, download: bool = False) -> Dataset:
    """All 60,000 CIFAR-10 images from a JPEG folder tree, a tarball or the pickles.

    With ``download=True`` and no CIFAR-10 at ``root``, the official pickles are downloaded
    there first (through torchvision); by default nothing is downloaded.
    """
    root = Path(root).expanduser()
    has_pickles = (root / "cifar-10-batches-py" / "data_batch_1").is_file() or (
        root / "data_batch_1"
    ).is_file()
    if download and not has_pickles and not (root.is_file() or (root / "train").is_dir()):
        _download(root)
    if not root.exists():
        raise DataError(
            f"CIFAR-10 path {root} does not exist (pass download=True to fetch the official copy)"
        )
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz", ".tar")):
        root = _extract_tarball(root)
    pickles = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    if (pickles / "data_batch_1").is_file():
        return load_cifar10_pickles(pickles)
    base = _find_root(root)
    paths: list[str] = []
    labels: list[int] = []
    splits: list[str] = []
    for split in ("train", "test"):
        split_dir = base / split
        if not split_dir.is_dir():
            raise DataError(f"{base} has no {split}/ folder")
        for class_id, class_name in enumerate(CLASSES):
            class_dir = split_dir / class_name
            if not class_dir.is_dir():
                raise DataError(f"{split_dir} has no {class_name}/ folder")
            files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            paths.extend(str(p) for p in files)
            labels.extend([class_id] * len(files))
            splits.extend([split] * len(files))
    if not paths:
        raise DataError(f"{base} holds no images")
    return Dataset(
        name="cifar10",
        image_paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        class_names=list(CLASSES),
        info={"source": str(base), "official_split": np.asarray(splits)},
    )


def load_cifar10_pickles(folder: str | Path) -> Dataset:
    """The official ``cifar-10-batches-py`` pickles (pixels kept in memory)."""
    folder = Path(folder)
    batches = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    images, labels, splits = [], [], []
    for batch in batches:
        path = folder / batch
        if not path.is_file():
            raise DataError(f"{folder} is missing the CIFAR-10 file {batch}")
        try:
            with open(path, "rb") as handle:
                entry = pickle.load(handle, encoding="bytes")
            data = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError) as error:
            raise DataError(f"{path} is not a CIFAR-10 pickle: {error}") from None
        images.append(data.transpose(0, 2, 3, 1))
        labels.extend(entry[b"labels"])
        splits.extend(["test" if batch == "test_batch" else "train"] * len(data))
    return Dataset(
        name="cifar10",
        images=np.concatenate(images),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=list(CLASSES),
        info={"source": str(folder), "official_split": np.asarray(splits)},
    )
