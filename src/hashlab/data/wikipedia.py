"""Paired image-text data sets for cross-modal hashing.

- ``load_wikipedia(path)``: the Wikipedia set of Rasiwasia et al. ("A new approach to
  cross-modal multimedia retrieval", ACM MM 2010) in the ``wiki_data.mat`` format that the
  field's code distributes: ``I_tr`` / ``I_te`` (128-d SIFT bag-of-visual-words histograms),
  ``T_tr`` / ``T_te`` (10-d LDA topic vectors of the texts), ``L_tr`` / ``L_te`` (classes
  1..10). 2,866 pairs: the 2,173 ``_tr`` pairs are the training and retrieval set, the 693
  ``_te`` pairs the queries (the split of the cross-modal hashing papers, e.g. Zhang & Zhou
  2021, Table 1). Caveat: these are the classic SIFT / LDA features, not the VGG-19 fc2 /
  1,000-d bag-of-words of that paper; compare methods side by side on them, not with the
  paper's absolute numbers.
- ``load_mirflickr_pairs(root, image_features)``: MIRFlickr-25K's 20,015 cleaned pairs with
  the tag bag-of-words (``YAll``, 1,386 words) as the text side and ``LAll`` (24 labels) for
  evaluation. The image side must be supplied as features (one row per ``YAll`` row): the
  shared data has images for only 730 items, so there is no image side to compute here.

Returned ``Dataset``: image features in ``features``, text features in ``text``, labels in
``labels``; ``info["text_featurizer"]`` records how raw text becomes the text side (a model
trained on the data copies it, so ``hashlab search --text`` can featurise a query).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hashlab.data.dataset import DataError, Dataset
from hashlab.data.mirflickr import load_mat_array, load_mirflickr
from hashlab.data.splits import Split

WIKIPEDIA_CLASSES = (
    "art", "biology", "geography", "history", "literature",
    "media", "music", "royalty", "sport", "warfare",
)  # fmt: skip
WIKIPEDIA_CAVEAT = (
    "Wikipedia features here are the classic 128-d SIFT bag-of-visual-words / 10-d LDA topic "
    "version (Rasiwasia et al. 2010), not the VGG-19 fc2 / 1,000-d bag-of-words version of "
    "Zhang & Zhou 2021: compare methods side by side, not against the paper's numbers"
)
LDA_TEXT_FEATURIZER: dict[str, Any] = {
    "kind": "lda",
    "dim": 10,
    "description": (
        "10-d LDA topic proportions of the article text (Rasiwasia et al. 2010); the data set "
        "ships the topic vectors but not the LDA model or its vocabulary"
    ),
}


def load_wikipedia(path: str | Path) -> Dataset:
    """The 2,866 Wikipedia pairs: train rows (2,173) first, then the query rows (693).

    ``features`` (N, 128) float32 SIFT histograms, ``text`` (N, 10) float32 LDA topics,
    ``labels`` (N,) class ids 0..9; ``info["n_train"]`` marks where the queries start, and
    :func:`wikipedia_split` gives the standard split.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "wiki_data.mat"
    if not path.is_file():
        raise DataError(f"Wikipedia file {path} does not exist (expected wiki_data.mat)")
    parts: dict[str, np.ndarray] = {}
    for key in ("I_tr", "I_te", "T_tr", "T_te", "L_tr", "L_te"):
        parts[key] = load_mat_array(path, key)
    n_train, n_query = len(parts["I_tr"]), len(parts["I_te"])
    for key, n in [("T_tr", n_train), ("L_tr", n_train), ("T_te", n_query), ("L_te", n_query)]:
        if len(parts[key]) != n:
            raise DataError(f"{path}: {key} has {len(parts[key])} rows, expected {n}")
    images = np.concatenate([parts["I_tr"], parts["I_te"]]).astype(np.float32)
    texts = np.concatenate([parts["T_tr"], parts["T_te"]]).astype(np.float32)
    labels = np.concatenate([parts["L_tr"].ravel(), parts["L_te"].ravel()]).astype(np.int64)
    if labels.min() < 1 or labels.max() > len(WIKIPEDIA_CLASSES):
        raise DataError(f"{path}: labels should be 1..10, got {labels.min()}..{labels.max()}")
    return Dataset(
        name="wikipedia",
        features=images,
        text=texts,
        labels=labels - 1,  # the .mat counts classes from 1
        class_names=list(WIKIPEDIA_CLASSES),
        info={
            "source": str(path),
            "n_train": n_train,
            "image_features": "128-d SIFT bag-of-visual-words histogram",
            "text_featurizer": dict(LDA_TEXT_FEATURIZER),
            "caveat": WIKIPEDIA_CAVEAT,
        },
    )


def wikipedia_split(dataset: Dataset) -> Split:
    """The papers' split: queries = the 693 ``_te`` pairs; train = database = the 2,173 ``_tr``.

    Index arrays are in file order (the file is not sorted by class, so ties in the Hamming
    ranking are not broken in favour of any class).
    """
    n_train = int(dataset.info.get("n_train", 0))
    if not 0 < n_train < len(dataset):
        raise DataError(f"{dataset.name} has no train/query boundary (info['n_train'])")
    train = np.arange(n_train)
    return Split(
        query=np.arange(n_train, len(dataset)),
        train=train,
        database=train.copy(),
        protocol="wikipedia",
        info={"train_in_database": True, "sampling": "fixed (the .mat file's _tr / _te)"},
    )


def _read_image_features(image_features: np.ndarray | str | Path | None, n_items: int) -> Any:
    if image_features is None:
        raise DataError(
            "MIRFlickr-25K pairs need image features: the shared data has images for only 730 "
            f"of the {n_items} items, so pass image_features= a ({n_items}, D) array or .npy "
            "file with one row per YAll/LAll row (e.g. VGG-19 fc2 features, 4,096-d, as in "
            "Zhang & Zhou 2021)"
        )
    if isinstance(image_features, str | Path):
        feature_path = Path(image_features).expanduser()
        if not feature_path.is_file():
            raise DataError(f"image feature file {feature_path} does not exist")
        try:
            image_features = np.load(feature_path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"{feature_path} is not a readable .npy array: {error}") from None
    features = np.asarray(image_features)
    if features.ndim != 2 or len(features) != n_items:
        raise DataError(
            f"MIRFlickr image features must be ({n_items}, D), one row per YAll/LAll row; "
            f"got shape {features.shape}"
        )
    return features.astype(np.float32)


def load_mirflickr_pairs(
    root: str | Path, image_features: np.ndarray | str | Path | None = None
) -> Dataset:
    """MIRFlickr-25K image-text pairs: user-supplied image features + the tag bag-of-words.

    ``text`` is ``YAll`` (N, 1,386) 0/1 as float32, ``labels`` is ``LAll`` (N, 24) multi-hot
    (relevance = sharing a label). ``info["text_featurizer"]`` holds the 1,386-word tag
    vocabulary (``YAll`` column order), so a query such as "sky clouds sunset" becomes a
    bag-of-words row. Raises ``DataError`` naming what to pass when image features are missing.
    """
    tagged = load_mirflickr(root)
    features = _read_image_features(image_features, len(tagged))
    if tagged.tag_vocab is None:
        raise DataError(
            f"{root} has no tag vocabulary (mirflickr_yall_vocab.txt or an npz with "
            "tag_vocab_yall): the text side cannot be described"
        )
    return Dataset(
        name="mirflickr25k-pairs",
        features=features,
        text=tagged.tags.astype(np.float32),
        labels=tagged.labels,
        tags=tagged.tags,
        tag_vocab=tagged.tag_vocab,
        metadata=tagged.metadata,
        class_names=tagged.class_names,
        info={
            **tagged.info,
            "text_featurizer": {
                "kind": "bow",
                "binary": True,
                "vocabulary": list(tagged.tag_vocab),
                "description": "binary bag of MIRFlickr user tags over the 1,386-word YAll "
                "vocabulary (tags seen more than 20 times)",
            },
        },
    )
