"""Where hashlab keeps what it computes once: decoded data, features, pixels.

``cache_dir()`` is ``$HASHLAB_CACHE`` (default ``~/.cache/hashlab``); the folder names of
feature and pixel caches are keyed by data set, extractor, input size and a fingerprint of the
image paths (or of the bytes of in-memory images). Kept in ``data`` because data loaders
(CIFAR-10's unpacked archive, the pixel cache) need it and must not import ``backbones``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["array_feature_cache_path", "array_fingerprint", "cache_dir", "feature_cache_path"]

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


def array_fingerprint(images: np.ndarray) -> str:
    """A short digest of an in-memory image array: its shape, dtype and every byte."""
    array = np.ascontiguousarray(images)
    digest = hashlib.sha1()
    digest.update(f"{array.shape}|{array.dtype.str}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:12]


def array_feature_cache_path(
    dataset_key: str, backbone: str, input_size: int, images: np.ndarray
) -> Path:
    """Cache folder for features of in-memory images (``arr`` marks an array fingerprint)."""
    safe_key = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset_key)
    name = f"{safe_key}-{backbone}-{input_size}px-arr{array_fingerprint(images)}"
    return cache_dir() / "features" / name
