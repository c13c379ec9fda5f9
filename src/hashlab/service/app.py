"""HTTP search service: upload a photo (or send a hex code or text), get its Hamming neighbours.

The service wraps one fitted hashing model (``hashlab.load``) and one durable
:class:`~hashlab.index.HammingIndex` (``HammingIndex.open``). The pieces live beside this
module: :mod:`~hashlab.service.search` (``SearchService``: search, filters, paging, writes),
:mod:`~hashlab.service.routes` (``create_app``: the HTTP routes),
:mod:`~hashlab.service.limits` (request limits that hold against hostile clients),
:mod:`~hashlab.service.store` (the service's own upload store) and
:mod:`~hashlab.service.ingest` (batch ingestion). This module keeps the glue from images to
codes and from directories to a service.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.index import HammingIndex
from hashlab.service.errors import ServiceError
from hashlab.service.routes import create_app
from hashlab.service.search import MAX_K, SearchService

__all__ = ["MAX_K", "SearchService", "ServiceError", "build_service", "create_app", "encode_images"]

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def encode_images(model: Any, images: Sequence[Any], backbone: Any | None = None) -> np.ndarray:
    """(N, K) uint8 codes for PIL images: :func:`hashlab.pipeline.encode_images`, the one
    images -> codes road (so an upload hashes exactly as the same file did at index build).

    ``backbone``: a built backbone to reuse (see :func:`model_backbone`); pixel models
    (fine-tuned, generative) ignore it.
    """
    from hashlab import pipeline

    return pipeline.encode_images(model, list(images), backbone=backbone)


def model_backbone(model: Any) -> Any:
    """The built backbone whose features ``model`` hashes (the one its fit recorded)."""
    from hashlab import pipeline
    from hashlab.backbones import create_backbone

    return create_backbone(pipeline.model_backbone(model))


def build_service(
    model_dir: str | Path,
    index_dir: str | Path,
    image_store: str | Path | None = None,
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    shared_writes: bool = False,
) -> SearchService:
    """Reopen a saved model and a durable index directory as a :class:`SearchService`.

    ``shared_writes``: one of several worker processes over the directory (``hashlab serve
    --workers N``): the index is opened as a reader and each write takes the writer lock
    for itself (see :class:`SearchService`).
    """
    import hashlab

    model_path = Path(model_dir)
    if not model_path.is_dir():
        raise FileNotFoundError(f"model directory {model_path} does not exist")
    if not Path(index_dir).is_dir():
        raise FileNotFoundError(f"index directory {index_dir} does not exist")
    model = hashlab.load(model_path)
    # a token makes this server the index's one writer (the lock names its pid); without
    # one it is a reader that never modifies the directory
    # (with shared_writes, every worker is a reader and a write holds the lock for itself)
    index = HammingIndex.open(index_dir, mode="w" if token and not shared_writes else "r")
    if image_store is None:
        image_store = _built_from_folder(Path(index_dir))
    return SearchService(
        model,
        index,
        model_name=model_path.resolve().name,
        image_store=image_store,
        token=token,
        max_upload_bytes=max_upload_bytes,
        shared_writes=shared_writes,
    )


def _built_from_folder(index_dir: Path) -> Path | None:
    """The image folder the index was built from (its build record, absolute since 0.1)."""
    from hashlab.pipeline import read_build_record

    folder = (read_build_record(index_dir) or {}).get("images")
    return Path(folder) if isinstance(folder, str) and Path(folder).is_dir() else None
