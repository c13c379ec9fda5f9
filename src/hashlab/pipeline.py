"""The one road from a dataset and a method to a fitted model, to codes, to a built index.

The CLI, the benchmarks and the service call these functions and never branch on what kind
of method they hold: what a method needs is its tags (``model.tags``, and ``model.input_kind``
for a deep model that fine-tunes on pixels), read here and nowhere else.

* :func:`method_inputs`: the Dataset a method is fitted on / encodes: backbone features (or
  region feature maps) for an image data set, the images for pixel methods, the tags and
  vocabulary for tag-supervised ones (labels withheld from those, and from unsupervised
  ones: dropped unread), paired text for cross-modal ones;
* :func:`fit_on_split`: fit on a protocol split's training part (with its validation part,
  or carving one) and return the model with a :class:`FitRecord` (config, protocol, timings,
  best epoch), also written into the model's ``config.json`` on save;
* :func:`encode_split`: query and database codes of a split, out-of-sample;
* :func:`encode_images`: image files or PIL images -> codes (one implementation, used by the
  index build, the service, ``hashlab encode`` and ``hashlab search --image``);
* :func:`build_index`: a model directory + a folder of images -> an index directory, built
  under a temporary name and renamed into place (an interrupted build leaves nothing
  half-built and a rerun starts clean); it owns the build record (``build.json``: absolute
  model and image paths) that the service reads back with :func:`read_build_record`.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.backbones.features import dataset_features, image_features
from hashlab.backbones.registry import DEFAULT_BACKBONE, Backbone
from hashlab.data.dataset import Dataset
from hashlab.data.splits import Split
from hashlab.errors import (
    DataError,
    HashlabFileNotFoundError,
    HashlabValueError,
    InputError,
)
from hashlab.methods.base import HashMethod

__all__ = [
    "BUILD_RECORD",
    "IMAGE_SUFFIXES",
    "BuildRecord",
    "FitRecord",
    "build_index",
    "encode_images",
    "encode_split",
    "encode_text",
    "fit_on_split",
    "list_images",
    "method_inputs",
    "model_backbone",
    "read_build_record",
    "refuse_multi_label",
]

#: written next to the index files by :func:`build_index`; read by the service and the CLI
BUILD_RECORD = "build.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


# -- what a method gets ------------------------------------------------------------------
def model_backbone(model: HashMethod) -> str:
    """The backbone whose features the model hashes (recorded at fit; else the default)."""
    extra = getattr(model, "extra_config_", None) or {}
    hparams = getattr(model, "hparams", None)
    return str(extra.get("backbone") or getattr(hparams, "backbone", None) or DEFAULT_BACKBONE)


def method_inputs(
    model: HashMethod,
    dataset: Dataset,
    backbone: str | None = None,
    weights: str | None = None,
    progress: bool = False,
    precomputed: dict[str, np.ndarray | None] | None = None,
) -> Dataset:
    """``dataset`` as the model consumes it, every item kept (subset it by split rows after).

    Features are computed once for the whole data set (so the on-disk cache is keyed as
    before); ``info["feature_source"]`` says where they came from. ``precomputed`` maps an
    input kind (``"features"``, ``"feature_maps"``) to an array already extracted for every
    item, used instead of extracting again.
    """
    tags = model.tags
    if tags is None:
        raise HashlabValueError(f"{model.name} declares no tags: the pipeline cannot feed it")
    if tags.supervision == "none":
        # dropped unread before anything below looks at them: labels only score the codes
        dataset = replace(dataset, labels=None)
    kind = model.input_kind
    backbone = backbone or model_backbone(model)
    given = (precomputed or {}).get(kind)
    refuse_multi_label(model, dataset)  # before any feature extraction
    if kind == "pixels":
        if dataset.image_paths is None and dataset.images is None:
            raise DataError(f"{model.name} trains on images and {dataset.name} has none")
        inputs = replace(dataset, features=None, info=dict(dataset.info))
    elif kind in ("features", "feature_maps", "paired_text"):
        if given is not None:
            features = np.asarray(given)
            source = dataset.info.get("feature_source", "features given to the pipeline")
        else:
            maps = kind == "feature_maps"
            features, source = dataset_features(dataset, backbone, weights, progress,
                                                feature_map=maps)  # fmt: skip
        info = {**dataset.info, "feature_source": source}
        if dataset.features is None:
            info["backbone"] = backbone
        inputs = replace(dataset, features=features, info=info)
        if kind == "paired_text" and dataset.text is None:
            raise DataError(
                f"{model.name} learns from image-text pairs and {dataset.name} has no text"
            )
    else:  # pragma: no cover - MethodTags validates its inputs
        raise HashlabValueError(f"unknown input kind {kind!r}")
    if tags.supervision == "tags":
        if dataset.tags is None:
            raise DataError(
                f"{model.name} learns from user tags and {dataset.name} has none: use a data set "
                "with tags (--dataset mirflickr, or --dataset folder --csv FILE --tags-column C)"
            )
        inputs = replace(inputs, labels=None)  # weak supervision: labels only score the result
    elif tags.supervision == "labels" and dataset.labels is None:
        raise DataError(f"{model.name} is supervised and {dataset.name} has no labels")
    return inputs


def refuse_multi_label(model: HashMethod, dataset: Dataset) -> None:
    """Raise ``InputError`` when a one-label-per-item method (``tags.multi_label`` False)
    would be fitted on items with several labels (or none), naming the methods that take them.
    """
    tags = model.tags
    if tags is None or tags.supervision != "labels" or tags.multi_label or dataset.labels is None:
        return
    labels = np.asarray(dataset.labels)
    if labels.ndim == 1:
        return
    per_item = (labels > 0).sum(axis=1)
    if np.all(per_item == 1):
        return  # one-hot rows: single-label data in matrix form
    from hashlab.methods.registry import list_methods, method_tags

    capable = [n for n in list_methods(supervision="labels") if method_tags(n).multi_label]
    raise InputError(
        f"{model.name} assumes one label per item, but {int((per_item != 1).sum())} of the "
        f"{len(labels)} items of {dataset.name} have several labels or none; methods that "
        f"learn from multi-label data: {', '.join(capable)}"
    )


# -- fit on a split ------------------------------------------------------------------------
@dataclass
class FitRecord:
    """What one fit did: enough to trust or rerun it."""

    method: str
    n_bits: int
    tags: dict[str, Any]
    params: dict[str, Any]
    protocol: str
    n_train: int
    n_validation: int
    validation: str
    feature_source: str | None
    timings: dict[str, float] = field(default_factory=dict)
    best_epoch: int | None = None
    best_score: float | None = None
    epochs_run: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fit_on_split(
    model: HashMethod,
    dataset: Dataset,
    split: Split,
    validation: str = "split",
    inputs: Dataset | None = None,
    backbone: str | None = None,
    weights: str | None = None,
    progress: bool = False,
) -> tuple[HashMethod, FitRecord]:
    """Fit ``model`` on ``split``'s training items; the model, and a record of the fit.

    ``validation="split"`` hands the split's validation items to ``fit`` (deep methods select
    their best epoch on them, shallow ones train on them too: no model selection);
    ``"carve"`` hands train + validation as one training set and lets a deep method carve its
    own validation from it (what ``hashlab bench`` does). ``inputs`` reuses a
    :func:`method_inputs` result (one feature extraction for several methods).
    """
    if validation not in ("split", "carve"):
        raise HashlabValueError(f"validation must be 'split' or 'carve', got {validation!r}")
    started = time.perf_counter()
    if inputs is None:
        inputs = method_inputs(model, dataset, backbone, weights, progress)
    inputs_seconds = time.perf_counter() - started
    if validation == "split" and split.validation is not None:
        train_rows, validation_rows = split.train, split.validation
    else:
        train_rows, validation_rows = split.train_all, None
    if model.tags is not None and model.tags.supervision == "none":
        inputs = replace(inputs, labels=None)  # never handed to an unsupervised fit
    train = inputs.subset(train_rows)
    refuse_multi_label(model, train)
    held = None if validation_rows is None else inputs.subset(validation_rows)
    started = time.perf_counter()
    model.fit(train, validation=held)
    fit_seconds = time.perf_counter() - started
    source = inputs.info.get("feature_source")
    extra = dict(getattr(model, "extra_config_", {}) or {})
    if source is not None:
        extra["feature_source"] = source
    extra.setdefault("backbone", inputs.info.get("backbone", backbone or model_backbone(model)))
    training = extra.get("training") or {}
    record = FitRecord(
        method=model.name,
        n_bits=model.n_bits,
        tags=model.tags.to_json(),
        params=model.get_params(),
        protocol=split.describe(),
        n_train=int(len(train_rows)),
        n_validation=0 if validation_rows is None else int(len(validation_rows)),
        validation="the split's validation items" if validation_rows is not None
        else "none given (a deep method carves its own from the training items)",
        feature_source=source,
        timings={"inputs_seconds": round(inputs_seconds, 3), "fit_seconds": round(fit_seconds, 3)},
        best_epoch=training.get("best_epoch"),
        best_score=training.get("best_score"),
        epochs_run=len(training["history"]) if "history" in training else None,
    )  # fmt: skip
    extra["fit"] = record.to_json()
    model.extra_config_ = extra
    return model, record


def encode_split(model: HashMethod, inputs: Dataset, split: Split) -> tuple[np.ndarray, np.ndarray]:
    """(query codes, database codes): the database encoded out-of-sample, as deployed."""
    return model.encode(inputs.subset(split.query)), model.encode(inputs.subset(split.database))


# -- images -> codes -----------------------------------------------------------------------
def encode_images(
    model: HashMethod,
    images: Sequence[str | Path | Any],
    backbone: Backbone | None = None,
    cache_key: str | None = None,
    progress: bool = False,
) -> np.ndarray:
    """(N, K) uint8 codes of image files or PIL images, hashed as the model was trained.

    Feature models: the recorded backbone's features (``backbone`` reuses a built network;
    ``cache_key`` sends image files through the on-disk feature cache), then ``encode``.
    Pixel models (fine-tuned, generative): the images themselves, as a Dataset.
    """
    images = list(images)
    if not images:
        return np.zeros((0, model.n_bits), dtype=np.uint8)
    missing = [i for i in images if isinstance(i, str | Path) and not Path(i).is_file()]
    if missing:
        raise HashlabFileNotFoundError(f"image file not found: {missing[0]}")
    kind = model.input_kind
    if kind == "pixels":
        return _encode_pixels(model, images)
    if kind not in ("features", "feature_maps", "paired_text"):  # pragma: no cover
        raise HashlabValueError(f"{model.name} does not encode images ({kind})")
    name = model_backbone(model)
    features = image_features(images, backbone or name, feature_map=kind == "feature_maps",
                              cache_key=cache_key, progress=progress)  # fmt: skip
    try:
        return np.asarray(model.encode(features), dtype=np.uint8)
    except InputError as error:
        source = (getattr(model, "extra_config_", None) or {}).get("feature_source", "its features")
        raise InputError(
            f"{model.name} cannot encode images through {name}: {error} (it was trained on "
            f"{source})"
        ) from None


def _encode_pixels(model: HashMethod, images: list[Any]) -> np.ndarray:
    paths = [str(i) for i in images if isinstance(i, str | Path)]
    if len(paths) == len(images):
        return np.asarray(model.encode(Dataset(name="images", image_paths=paths)), dtype=np.uint8)
    # in-memory images (uploads): lossless PNG files keep the decoded pixels exactly
    with tempfile.TemporaryDirectory(prefix="hashlab-images-") as folder:
        written = []
        for position, image in enumerate(images):
            if isinstance(image, str | Path):
                written.append(str(image))
                continue
            path = Path(folder) / f"{position}.png"
            image.save(path, format="PNG")
            written.append(str(path))
        dataset = Dataset(name="images", image_paths=written)
        return np.asarray(model.encode(dataset), dtype=np.uint8)


def encode_text(
    model: HashMethod, text: str | None = None, features_file: str | Path | None = None
) -> np.ndarray:
    """Codes of a text query for a model with a text side (raw text or a .npy feature file)."""
    modalities = model.tags.modalities if model.tags is not None else ("image",)
    if "text" not in modalities:
        raise InputError(f"text queries need a cross-modal model; {model.name} hashes images only")
    from hashlab.methods.cross_modal.text import text_features_from_file, text_to_features

    if text is not None:
        features = text_to_features(model, text)
    elif features_file is not None:
        features = text_features_from_file(model, features_file)
    else:
        raise HashlabValueError("pass text or features_file")
    return np.asarray(model.encode(features, modality="text"), dtype=np.uint8)


# -- build an index from a model and a folder -----------------------------------------------
def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path for a stable id order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HashlabFileNotFoundError(f"image folder not found: {folder}")
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )  # fmt: skip


def read_metadata_csv(path: str | Path, folder: str | Path) -> dict[str, dict[str, Any]]:
    """Fields per image from a CSV whose ``path`` column names it (relative to ``folder``)."""
    path, folder = Path(path), Path(folder)
    if not path.is_file():
        raise HashlabFileNotFoundError(f"metadata CSV not found: {path}")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise DataError(f"{path} needs a 'path' column naming each image")
        table = {}
        for row in reader:
            image = Path(row["path"])
            image = image if image.is_absolute() else folder / image
            table[str(image.resolve())] = {k: v for k, v in row.items() if k != "path"}
    return table


@dataclass
class BuildRecord:
    """``build.json``: what an index was built from, with absolute paths."""

    model: str
    images: str
    n_images: int
    n_bits: int
    method: str
    backbone: str | None
    metadata_csv: str | None = None
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_build_record(index_dir: str | Path) -> dict[str, Any] | None:
    """The build record of an index directory, or None when it has none (or it is unreadable)."""
    try:
        record = json.loads((Path(index_dir) / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def build_index(
    model_dir: str | Path,
    images: str | Path,
    out: str | Path,
    metadata_csv: str | Path | None = None,
    batch_size: int = 1000,
    on_batch: Callable[[int], None] | None = None,
    backend: str = "native",
    backend_params: dict[str, Any] | None = None,
) -> BuildRecord:
    """Encode every image under ``images`` with the saved model into a new index at ``out``.

    Built in ``.{name}.partial`` beside ``out`` and renamed when complete, so ``out`` either
    does not exist or is a complete index; a leftover partial build is removed by the next
    run. Metadata per image: its absolute path plus the CSV's fields. ``on_batch(n)`` is
    called after each committed batch (progress display).
    """
    import hashlab
    from hashlab.index import HammingIndex

    started = time.perf_counter()
    folder, out, model_dir = Path(images).resolve(), Path(out), Path(model_dir).resolve()
    if batch_size < 1:
        raise HashlabValueError(f"batch size must be positive, got {batch_size}")
    if out.exists():
        raise HashlabValueError(f"{out} already exists: choose a new index directory")
    files = list_images(folder)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
    extra = read_metadata_csv(metadata_csv, folder) if metadata_csv else {}
    model = hashlab.load(model_dir)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)  # an earlier build that was interrupted
    out.parent.mkdir(parents=True, exist_ok=True)
    record = BuildRecord(
        model=str(model_dir), images=str(folder), n_images=len(files), n_bits=model.n_bits,
        method=model.name, backbone=model_backbone(model),
        metadata_csv=None if metadata_csv is None else str(Path(metadata_csv).resolve()),
    )  # fmt: skip
    try:
        index = HammingIndex.create(
            partial, model.n_bits, backend=backend, backend_params=backend_params
        )
        try:
            for start in range(0, len(files), batch_size):
                batch = files[start : start + batch_size]
                codes = encode_images(model, batch, cache_key=f"index-{folder.name}")
                metadata = [{"path": str(p)} | extra.get(str(p.resolve()), {}) for p in batch]
                index.add(codes, metadata=metadata)
                if on_batch is not None:
                    on_batch(len(batch))
        finally:
            index.close()
        record.seconds = round(time.perf_counter() - started, 3)
        (partial / BUILD_RECORD).write_text(json.dumps(record.to_json(), indent=2))
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return record
