"""MIRFlickr-25K image-tag pairs for the images at hand: a cross-modal Dataset of 730 pairs.

The 730 items of the cleaned 20,015-item set whose thumbnails are in
``shared/data/mirflickr25k/thumbs`` (:func:`hashlab.data.mirflickr.load_mirflickr_images`):

- image side: the thumbnails' paths; the pipeline turns them into backbone features through
  the on-disk feature cache (EfficientNet-Lite0, ImageNet, frozen, pooled last conv map:
  1,280-d, the project's default backbone), or ``image_features`` given here;
- text side: ``text="glove"`` (default) the mean GloVe 6B 50-d vector of each item's tags
  (:mod:`hashlab.text.open_vocabulary`: open vocabulary, a query may use any word GloVe
  knows), or ``text="bow"`` the papers' 1,386-word binary tag bag-of-words (YAll);
- relevance: the 24 labels (LAll), multi-hot; two items are relevant when they share one.

Only 730 of the 20,015 items have images here, so this is a small real set, not the papers'
MIRFlickr protocol (5% queries, 5,000 training pairs out of ~20,000). A tags-only pair set of
all 20,015 items cannot be built: there are no images (and no image features) for the other
19,285 items; :func:`hashlab.data.wikipedia.load_mirflickr_pairs` takes user-supplied image
features for them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashlab.data.dataset import DataError, Dataset
from hashlab.data.mirflickr import SMALL_SET_CAVEAT, load_mirflickr_images

__all__ = ["TEXT_SIDES", "load_mirflickr_image_pairs"]

TEXT_SIDES = ("glove", "bow")
IMAGE_SIDE = "efficientnet_lite0 (ImageNet, frozen, pooled last conv map, 1,280-d)"


def load_mirflickr_image_pairs(
    root: str | Path, text: str = "glove", image_features: np.ndarray | None = None
) -> Dataset:
    """The 730 MIRFlickr image-tag pairs (see the module docstring).

    The Dataset is named ``mirflickr-pairs`` whatever the text side, so both share one
    feature-cache entry; ``info["text_featurizer"]`` says which text side it is.
    """
    if text not in TEXT_SIDES:
        raise DataError(f"MIRFlickr pairs text side must be one of {TEXT_SIDES}, got {text!r}")
    items = load_mirflickr_images(root)
    assert items.tags is not None and items.tag_vocab is not None  # the loader checks both
    if text == "glove":
        from hashlab.text.open_vocabulary import (
            glove_tag_features,
            glove_text_featurizer,
            word_vectors,
        )

        vectors = word_vectors()
        text_features, coverage = glove_tag_features(items.tags, items.tag_vocab, vectors)
        featurizer = {**glove_text_featurizer(vectors), "coverage": coverage}
    else:
        text_features = items.tags.astype(np.float32)
        featurizer = {
            "kind": "bow",
            "binary": True,
            "vocabulary": list(items.tag_vocab),
            "description": "binary bag of MIRFlickr user tags over the 1,386-word YAll "
            "vocabulary (tags seen more than 20 times)",
        }
    features = None
    if image_features is not None:
        features = np.asarray(image_features, dtype=np.float32)
        if features.ndim != 2 or len(features) != len(items):
            raise DataError(
                f"image_features must be ({len(items)}, D), one row per pair; got {features.shape}"
            )
    return Dataset(
        name="mirflickr-pairs",
        image_paths=items.image_paths,
        features=features,
        labels=items.labels,
        tags=items.tags,
        tag_vocab=items.tag_vocab,
        text=text_features,
        metadata=items.metadata,
        class_names=items.class_names,
        info={
            **items.info,
            "image_features": IMAGE_SIDE if features is None else "given by the caller",
            "text_side": text,
            "text_featurizer": featurizer,
            "relevance": "share at least one of the 24 LAll labels",
            "caveat": SMALL_SET_CAVEAT,
        },
    )
