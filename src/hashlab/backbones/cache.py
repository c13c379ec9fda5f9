"""Extract backbone features once and keep them on disk.

A cache entry is a folder keyed by (data set key, backbone, input size, and a fingerprint of
the image paths or, for in-memory pixels, of the array's bytes) holding fixed-size
chunks ``chunk_00000.npy ...`` and a ``manifest.json``. Each chunk is written to a temporary
name and renamed, so an interrupted extraction resumes at the first missing chunk and never
reads a half-written one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from hashlab.backbones.registry import DEFAULT_BACKBONE
from hashlab.data.cache import (  # noqa: F401  (re-exported: callers import them from here)
    array_feature_cache_path,
    array_fingerprint,
    cache_dir,
    feature_cache_path,
)

# input size is known only once the backbone is built; the cache key uses this hint so a
# fully cached extraction never builds the network
_SIZE_HINTS = {"efficientnet_lite2": 260, "small_cnn": 32, "digit_pixels": 32}


def _extract_chunked(
    folder: Path,
    n_items: int,
    load_images: Callable[[int, int], list],
    backbone: str,
    dataset_key: str,
    tag: str,
    chunk_size: int,
    batch_size: int,
    weights: str | None,
    progress: bool,
    feature_map: bool,
) -> np.ndarray:
    """Fill the missing chunks of ``folder``; ``load_images(start, stop)`` gives PIL images."""
    import torch

    from hashlab.backbones.registry import create_backbone

    folder.mkdir(parents=True, exist_ok=True)
    n_chunks = (n_items + chunk_size - 1) // chunk_size
    chunk_files = [folder / f"chunk_{i:05d}.npy" for i in range(n_chunks)]
    missing = [i for i, f in enumerate(chunk_files) if not f.is_file()]
    if missing:
        model = create_backbone(backbone, weights=weights)
        forward = model.feature_map if feature_map else model.module
        if forward is None:
            raise ValueError(f"backbone {backbone!r} has no feature map")
        bar = tqdm(
            total=sum(min(chunk_size, n_items - i * chunk_size) for i in missing),
            desc=f"features {backbone}",
            unit="img",
            disable=not progress,
        )
        with torch.inference_mode():
            for index in missing:
                chunk_start = index * chunk_size
                chunk_stop = min(chunk_start + chunk_size, n_items)
                outputs = []
                for start in range(chunk_start, chunk_stop, batch_size):
                    images = load_images(start, min(start + batch_size, chunk_stop))
                    out = forward(model.preprocess(images))
                    if feature_map:
                        out = torch.nn.functional.adaptive_avg_pool2d(out, 7)
                    outputs.append(out.float().numpy())
                    bar.update(len(images))
                tmp = chunk_files[index].with_suffix(".tmp.npy")
                np.save(tmp, np.concatenate(outputs).astype(np.float32))
                os.replace(tmp, chunk_files[index])
        bar.close()
        (folder / "manifest.json").write_text(
            json.dumps({"dataset": dataset_key, "backbone": tag, "n": n_items}, indent=2)
        )
    return np.concatenate([np.load(f) for f in chunk_files])


def extract_features(
    image_paths: Sequence[str | Path],
    backbone: str = DEFAULT_BACKBONE,
    dataset_key: str = "images",
    chunk_size: int = 500,
    batch_size: int = 50,
    weights: str | None = None,
    progress: bool = True,
    feature_map: bool = False,
) -> np.ndarray:
    """Features (N, D) float32 for every image, computed once and cached on disk.

    ``feature_map=True`` caches the last convolutional map pooled to (N, C, 7, 7)-shaped
    region features instead (used by IDEA); it is a separate cache entry.
    """
    from hashlab.data.images import open_image

    paths = [str(p) for p in image_paths]
    if not paths:
        raise ValueError("no images to extract features from")
    tag = backbone + ("-map" if feature_map else "")
    size_hint = _SIZE_HINTS.get(backbone, 224)
    folder = feature_cache_path(dataset_key, tag, size_hint, paths)

    def load_images(start: int, stop: int) -> list:
        # the service's decoder, so a file and the same photo uploaded hash alike (EXIF
        # orientation applied, transparency on white); for an RGB JPEG without an orientation
        # tag the pixels are PIL's convert("RGB") as before, so existing caches stay valid.
        # No pixel limit beyond PIL's own: a folder of large scans must not fail mid-cache.
        return [open_image(p, max_pixels=None) for p in paths[start:stop]]

    return _extract_chunked(
        folder, len(paths), load_images, backbone, dataset_key, tag,
        chunk_size, batch_size, weights, progress, feature_map,
    )  # fmt: skip


def extract_features_from_arrays(
    images: np.ndarray,
    backbone: str = DEFAULT_BACKBONE,
    dataset_key: str = "arrays",
    chunk_size: int = 500,
    batch_size: int = 50,
    weights: str | None = None,
    progress: bool = True,
    feature_map: bool = False,
) -> np.ndarray:
    """Like ``extract_features`` for in-memory pixels: (N, H, W, 3) or (N, H, W) uint8.

    Used for the CIFAR-10 pickles and scikit-learn's digits. The cache entry is keyed by a
    hash of the array's bytes, so the same pixels reuse it and different pixels never do.
    """
    from PIL import Image

    array = np.asarray(images)
    if (
        array.dtype != np.uint8
        or array.ndim not in (3, 4)
        or (array.ndim == 4 and array.shape[3] not in (1, 3))
    ):
        raise ValueError(
            f"in-memory images must be uint8 (N, H, W) or (N, H, W, 3), got {array.dtype} "
            f"{array.shape}"
        )
    if len(array) == 0:
        raise ValueError("no images to extract features from")
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    tag = backbone + ("-map" if feature_map else "")
    size_hint = _SIZE_HINTS.get(backbone, 224)
    folder = array_feature_cache_path(dataset_key, tag, size_hint, array)

    def load_images(start: int, stop: int) -> list:
        return [Image.fromarray(pixels).convert("RGB") for pixels in array[start:stop]]

    return _extract_chunked(
        folder, len(array), load_images, backbone, dataset_key, tag,
        chunk_size, batch_size, weights, progress, feature_map,
    )  # fmt: skip
