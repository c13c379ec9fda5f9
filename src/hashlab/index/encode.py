"""Image files -> binary codes with a saved hashing model (shared by the CLI and the service).

Models trained end to end on images may expose ``encode_images(paths)``; it is used when
present. Otherwise the model hashes backbone features: the backbone named in the model's
config (``config()["extra"]["backbone"]``, default ``efficientnet_lite0``) extracts features
through the on-disk feature cache (:func:`hashlab.backbones.extract_features`) and the
model's ``encode`` turns them into (N, K) 0/1 codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["encode_image_files", "model_backbone", "IMAGE_SUFFIXES", "list_images"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def model_backbone(model: Any) -> str:
    """The backbone whose features the model was trained on."""
    extra = model.config().get("extra") or {}
    return str(extra.get("backbone", "efficientnet_lite0"))


def encode_image_files(
    model: Any,
    paths: Sequence[str | Path],
    dataset_key: str = "index-images",
    progress: bool = False,
) -> np.ndarray:
    """(N, K) uint8 0/1 codes for the image files, in order."""
    paths = [str(p) for p in paths]
    if not paths:
        return np.zeros((0, model.n_bits), dtype=np.uint8)
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"image file not found: {missing[0]}")
    if hasattr(model, "encode_images"):
        return np.asarray(model.encode_images(paths), dtype=np.uint8)
    from hashlab.backbones import extract_features

    features = extract_features(
        paths, model_backbone(model), dataset_key=dataset_key, progress=progress
    )
    return np.asarray(model.encode(features), dtype=np.uint8)


def list_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path for a stable id order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
