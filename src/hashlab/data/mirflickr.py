"""MIRFlickr-25K (Huiskes & Lew, MIR 2008) as used by cross-modal and tag-supervised hashing.

Two loaders over the files of ``shared/data/mirflickr25k`` (the formats the field's code
distributes, e.g. DCMH, Jiang & Li, CVPR 2017):

- ``load_mirflickr(root)``: the cleaned 20,015-item set, from ``mirflickr25k-lall.mat``
  (key ``LAll``: 20,015 x 24 multi-hot labels) and ``mirflickr25k-yall.mat`` (key ``YAll``:
  20,015 x 1,386 binary tag bag-of-words), with the tag vocabulary from
  ``mirflickr_yall_vocab.txt`` (or an npz's ``tag_vocab_yall``) and, when
  ``mirflickr20015_ids_tags_vocab.npz`` is present, each row's Flickr image id and raw tags.
- ``load_mirflickr_images(root)``: the 730 items of that set whose images are at hand
  (``mirflickr1k_tags_labels.npz`` + ``thumbs/im{id}.jpg``), enough for a real tag-supervised
  run at small scale but not for the usual 16,000 / 2,000 split: say so beside any number.

``load_mirflickr_official(root)`` reads the LIACS distribution itself (``mirflickr25k.zip``:
``mirflickr/im{id}.jpg`` and ``mirflickr/meta/tags/tags{id}.txt``; the annotations zip:
``animals.txt`` ... one image id per line) and applies the cleaning that produced the
20,015-item set: keep tags used by at least 20 images (columns ordered by frequency, as in
YAll), then drop items with no label or no kept tag.

The .mat files are MATLAB v5 and read with ``scipy.io.loadmat``; v7.3 (HDF5) copies are read
with h5py when it is installed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashlab.data.dataset import DataError, Dataset

# LAll's column order (alphabetical), as shipped in mirflickr1k_tags_labels.npz
LABEL_NAMES = (
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor",
    "lake", "male", "night", "people", "plant_life", "portrait", "river", "sea", "sky",
    "structures", "sunset", "transport", "tree", "water",
)  # fmt: skip
LABELS_FILE = "mirflickr25k-lall.mat"
TAGS_FILE = "mirflickr25k-yall.mat"
VOCAB_FILE = "mirflickr_yall_vocab.txt"
IDS_FILE = "mirflickr20015_ids_tags_vocab.npz"
IMAGES_FILE = "mirflickr1k_tags_labels.npz"
IMAGE_FOLDERS = ("thumbs", "mirflickr", "images")  # ours, the official zip's, a common one
SMALL_SET_CAVEAT = (
    "MIRFlickr-25K images are available for only 730 of the 20,015 items (ids 1-1000): a real "
    "tag-supervised run at small scale, not the papers' 16,000 / 2,000 split"
)


def load_mat_array(path: str | Path, key: str) -> np.ndarray:
    """One variable of a MATLAB file, v5 (scipy) or v7.3 (h5py, transposed to row-major)."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise DataError(f"MATLAB file {path} does not exist")
    with open(path, "rb") as handle:
        header = handle.read(128)
    if header.startswith(b"MATLAB 7.3"):
        try:
            import h5py
        except ModuleNotFoundError:
            raise DataError(
                f"{path} is a MATLAB v7.3 (HDF5) file; install h5py to read it"
            ) from None
        try:
            with h5py.File(path, "r") as mat:
                if key not in mat:
                    raise DataError(f"{path} has no variable {key!r} (it has {', '.join(mat)})")
                # HDF5 stores MATLAB's column-major arrays transposed
                return np.asarray(mat[key][()]).T
        except OSError as error:
            raise DataError(f"{path} is not a readable MATLAB v7.3 file: {error}") from None
    try:
        mat = scipy.io.loadmat(path, variable_names=[key])
    # scipy signals an HDF5 (v7.3) or otherwise unsupported .mat with NotImplementedError
    except (ValueError, TypeError, OSError, NotImplementedError) as error:
        raise DataError(f"{path} is not a readable MATLAB file: {error}") from None
    if key not in mat:
        raise DataError(f"{path} has no variable {key!r}")
    return np.asarray(mat[key])


def _read_vocab(root: Path, n_tags: int) -> tuple[list[str] | None, str | None]:
    """The YAll column words and where they came from (None if no vocabulary file)."""
    vocab_txt = root / VOCAB_FILE
    if vocab_txt.is_file():
        words = vocab_txt.read_text(encoding="utf-8").splitlines()
        words = [w.strip() for w in words if w.strip()]
        source = str(vocab_txt)
    else:
        for npz_name in (IDS_FILE, IMAGES_FILE):
            npz = root / npz_name
            if npz.is_file():
                with np.load(npz, allow_pickle=False) as stored:
                    if "tag_vocab_yall" in stored.files:
                        words = [str(w) for w in stored["tag_vocab_yall"]]
                        source = str(npz)
                        break
        else:
            return None, None
    if len(words) != n_tags:
        raise DataError(f"{source} has {len(words)} tag words but YAll has {n_tags} columns")
    return words, source


def _split_tag_words(raw: str) -> list[str]:
    return [w for w in raw.split(",") if w]


def _find_image_folder(root: Path, image_ids: np.ndarray) -> Path | None:
    """The first folder that has ``im{id}.jpg`` for every id, if any."""
    for folder_name in IMAGE_FOLDERS:
        folder = root / folder_name
        if folder.is_dir() and all((folder / f"im{i}.jpg").is_file() for i in image_ids):
            return folder
    return None


def load_mirflickr(root: str | Path) -> Dataset:
    """The 20,015-item set: labels (N, 24) multi-hot, tags (N, 1,386), tag vocabulary, ids."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"MIRFlickr folder {root} does not exist or is not a folder")
    for needed in (LABELS_FILE, TAGS_FILE):
        if not (root / needed).is_file():
            raise DataError(f"{root} is missing the MIRFlickr-25K file {needed}")
    labels = load_mat_array(root / LABELS_FILE, "LAll").astype(np.uint8)
    tags = load_mat_array(root / TAGS_FILE, "YAll").astype(np.uint8)
    if labels.ndim != 2 or labels.shape[1] != len(LABEL_NAMES):
        raise DataError(f"LAll should be N x {len(LABEL_NAMES)}, got {labels.shape}")
    if tags.ndim != 2 or len(tags) != len(labels):
        raise DataError(f"YAll has shape {tags.shape} but LAll has {len(labels)} rows")
    vocab, vocab_source = _read_vocab(root, tags.shape[1])
    info = {"source": str(root), "tag_vocab_source": vocab_source}

    metadata = None
    image_paths = None
    ids_file = root / IDS_FILE
    if ids_file.is_file():
        with np.load(ids_file, allow_pickle=False) as stored:
            image_ids = stored["image_id"].astype(np.int64)
            tag_words = stored["tag_words"] if "tag_words" in stored.files else None
        if len(image_ids) != len(labels):
            raise DataError(f"{ids_file} has {len(image_ids)} ids but LAll has {len(labels)}")
        metadata = [
            {
                "image_id": int(image_id),
                "tag_words": _split_tag_words(str(tag_words[i])) if tag_words is not None else [],
            }
            for i, image_id in enumerate(image_ids)
        ]
        folder = _find_image_folder(root, image_ids)
        if folder is not None:
            image_paths = [str(folder / f"im{i}.jpg") for i in image_ids]
        info["image_ids_source"] = str(ids_file)
    info["images"] = "all items" if image_paths else "not all items have images here"
    return Dataset(
        name="mirflickr25k",
        image_paths=image_paths,
        labels=labels,
        tags=tags,
        tag_vocab=vocab,
        metadata=metadata,
        class_names=list(LABEL_NAMES),
        info=info,
    )


def load_mirflickr_images(root: str | Path) -> Dataset:
    """The 730 items with images: image_paths, labels (730, 24), tags (730, 1,386), raw tags."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"MIRFlickr folder {root} does not exist or is not a folder")
    npz = root / IMAGES_FILE
    if not npz.is_file():
        raise DataError(f"{root} is missing the MIRFlickr-25K file {IMAGES_FILE}")
    expected = ("image_id", "row_in_20015", "tags_yall", "labels_lall", "tag_vocab_yall")
    try:
        with np.load(npz, allow_pickle=False) as stored:
            absent = [k for k in expected if k not in stored.files]
            if absent:
                raise DataError(f"{npz} lacks the arrays {', '.join(absent)}")
            image_ids = stored["image_id"].astype(np.int64)
            rows = stored["row_in_20015"].astype(np.int64)
            tags = stored["tags_yall"].astype(np.uint8)
            labels = stored["labels_lall"].astype(np.uint8)
            vocab = [str(w) for w in stored["tag_vocab_yall"]]
            names = [str(n) for n in stored["label_names"]] if "label_names" in stored else None
            words = [str(w) for w in stored["tag_words"]] if "tag_words" in stored else None
    except (OSError, ValueError) as error:
        raise DataError(f"{npz} is not a readable npz file: {error}") from None
    folders = [root / f for f in IMAGE_FOLDERS if (root / f).is_dir()]
    if not folders:
        raise DataError(f"{root} has no image folder ({', '.join(IMAGE_FOLDERS)})")
    folder = _find_image_folder(root, image_ids) or folders[0]
    paths = [folder / f"im{i}.jpg" for i in image_ids]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(
            f"{len(missing)} of the {len(paths)} MIRFlickr images are missing from {folder} "
            f"(first: {missing[0].name})"
        )
    metadata = [
        {
            "image_id": int(image_id),
            "row_in_20015": int(rows[i]),
            "tag_words": _split_tag_words(words[i]) if words is not None else [],
        }
        for i, image_id in enumerate(image_ids)
    ]
    return Dataset(
        name="mirflickr25k-730",
        image_paths=[str(p) for p in paths],
        labels=labels,
        tags=tags,
        tag_vocab=vocab,
        metadata=metadata,
        class_names=names or list(LABEL_NAMES),
        info={"source": str(npz), "images": str(folder), "caveat": SMALL_SET_CAVEAT},
    )


ANNOTATION_FOLDERS = ("mirflickr25k_annotations_v080", "annotations", ".", "mirflickr")


def _read_lines(path: Path) -> list[str]:
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError:
        return [line.strip() for line in path.read_text(encoding="latin-1").splitlines()]


def load_mirflickr_official(
    root: str | Path, min_tag_count: int = 20, clean: bool = True
) -> Dataset:
    """MIRFlickr-25K from the official zips: images, 24 labels and tags, cleaned as usual.

    ``min_tag_count`` keeps tags used by at least that many images (20 gives the field's
    1,386-word vocabulary on the full 25,000); ``clean=True`` then drops items without a label
    or without a kept tag (20,015 on the full set).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"MIRFlickr folder {root} does not exist or is not a folder")
    image_dir = root / "mirflickr" if (root / "mirflickr").is_dir() else root
    image_ids = sorted(int(p.stem[2:]) for p in image_dir.glob("im*.jpg") if p.stem[2:].isdigit())
    if not image_ids:
        raise DataError(f"{image_dir} holds no MIRFlickr images (im1.jpg, im2.jpg, ...)")
    tag_dir = image_dir / "meta" / "tags"
    if not tag_dir.is_dir():
        raise DataError(f"{image_dir} has no meta/tags/ folder (from mirflickr25k.zip)")
    annotation_dir = next(
        (root / f for f in ANNOTATION_FOLDERS if (root / f / f"{LABEL_NAMES[0]}.txt").is_file()),
        None,
    )
    if annotation_dir is None:
        raise DataError(
            f"{root} has no annotation files (animals.txt ... from the annotations zip)"
        )

    position = {image_id: i for i, image_id in enumerate(image_ids)}
    labels = np.zeros((len(image_ids), len(LABEL_NAMES)), dtype=np.uint8)
    for column, label in enumerate(LABEL_NAMES):
        path = annotation_dir / f"{label}.txt"
        if not path.is_file():
            raise DataError(f"{annotation_dir} is missing the annotation file {label}.txt")
        for line in _read_lines(path):
            if line.isdigit() and int(line) in position:
                labels[position[int(line)], column] = 1

    tag_lists = []
    for image_id in image_ids:
        tag_file = tag_dir / f"tags{image_id}.txt"
        words = _read_lines(tag_file) if tag_file.is_file() else []
        tag_lists.append(sorted({w.lower() for w in words if w}))
    counts: dict[str, int] = {}
    for words in tag_lists:
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    # most frequent first, as YAll's columns are; ties alphabetically so the order is fixed
    vocab = sorted(
        (w for w, c in counts.items() if c >= min_tag_count), key=lambda w: (-counts[w], w)
    )
    column_of = {word: j for j, word in enumerate(vocab)}
    tags = np.zeros((len(image_ids), len(vocab)), dtype=np.uint8)
    for i, words in enumerate(tag_lists):
        tags[i, [column_of[w] for w in words if w in column_of]] = 1

    keep = np.arange(len(image_ids))
    if clean:
        keep = np.flatnonzero((labels.sum(axis=1) > 0) & (tags.sum(axis=1) > 0))
        if len(keep) == 0:
            raise DataError(f"no MIRFlickr item under {root} has both a label and a kept tag")
    return Dataset(
        name="mirflickr25k-official",
        image_paths=[str(image_dir / f"im{image_ids[i]}.jpg") for i in keep],
        labels=labels[keep],
        tags=tags[keep],
        tag_vocab=vocab,
        metadata=[{"image_id": image_ids[i], "tag_words": tag_lists[i]} for i in keep],
        class_names=list(LABEL_NAMES),
        info={
            "source": str(root),
            "min_tag_count": min_tag_count,
            "cleaned": clean,
            "n_before_cleaning": len(image_ids),
        },
    )
