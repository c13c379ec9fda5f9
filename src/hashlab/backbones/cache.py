"""Extract backbone features once and keep them on disk.

A cache entry is a folder keyed by (data set key, backbone, input size) holding fixed-size
chunks ``chunk_00000.npy ...`` and a ``manifest.json``. Each chunk is written to a temporary
name and renamed, so an interrupted extraction resumes at the first missing chunk and never
reads a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

DEFAULT_CACHE = Path(os.environ.get("HASHLAB_CACHE", Path.home() / ".cache" / "hashlab"))


def cache_dir() -> Path:
    """Root of hashlab's caches (``$HASHLAB_CACHE``, default ``~/.cache/hashlab``)."""
    return Path(os.environ.get("HASHLAB_CACHE", DEFAULT_CACHE))


def _fingerprint(paths: Sequence[str | Path]) -> str:
    digest = hashlib.sha1()
    # Only the last three path components count, so moving the data (or the cache that an
    # archive was unpacked into) keeps the features valid.
    for path in paths:
        digest.update("/".join(Path(path).parts[-3:]).encode())
        digest.update(b"\0")
    return digest.hexdigest()[:12]


def feature_cache_path(dataset_key: str, backbone: str, input_size: int, paths: Sequence) -> Path:
    safe_key = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset_key)
    name = f"{safe_key}-{backbone}-{input_size}px-{_fingerprint(paths)}"
    return cache_dir() / "features" / name


def extract_features(
    image_paths: Sequence[str | Path],
    backbone: str = "efficientnet_lite0",
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
    import torch
    from PIL import Image

    from hashlab.backbones.registry import create_backbone

    paths = [str(p) for p in image_paths]
    if not paths:
        raise ValueError("no images to extract features from")
    tag = backbone + ("-map" if feature_map else "")
    # input size is known only once the backbone is built; build lazily only if needed
    size_hint = {"efficientnet_lite2": 260, "small_cnn": 32}.get(backbone, 224)
    folder = feature_cache_path(dataset_key, tag, size_hint, paths)
    folder.mkdir(parents=True, exist_ok=True)
    n_chunks = (len(paths) + chunk_size - 1) // chunk_size
    chunk_files = [folder / f"chunk_{i:05d}.npy" for i in range(n_chunks)]
    missing = [i for i, f in enumerate(chunk_files) if not f.is_file()]
    if missing:
        model = create_backbone(backbone, weights=weights)
        forward = model.feature_map if feature_map else model.module
        if forward is None:
            raise ValueError(f"backbone {backbone!r} has no feature map")
        bar = tqdm(
            total=sum(min(chunk_size, len(paths) - i * chunk_size) for i in missing),
            desc=f"features {backbone}",
            unit="img",
            disable=not progress,
        )
        with torch.inference_mode():
            for index in missing:
                chunk_paths = paths[index * chunk_size : (index + 1) * chunk_size]
                outputs = []
                for start in range(0, len(chunk_paths), batch_size):
                    images = []
                    for p in chunk_paths[start : start + batch_size]:
                        with Image.open(p) as img:
                            images.append(img.convert("RGB"))
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
            json.dumps({"dataset": dataset_key, "backbone": tag, "n": len(paths)}, indent=2)
        )
    return np.concatenate([np.load(f) for f in chunk_files])
