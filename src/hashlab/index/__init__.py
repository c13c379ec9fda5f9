"""Hamming-space search: ``HammingIndex`` and its engines (scan, multi-index hashing, faiss).

``from hashlab.index import HammingIndex`` is the interface the CLI and the service use.
"""

from hashlab.index.filters import FilterError, parse_filter
from hashlab.index.hamming_index import BACKENDS, HammingIndex
from hashlab.index.storage import (
    IndexFormatError,
    IndexFullError,
    IndexLockedError,
    IndexReadOnlyError,
    MetadataError,
)

__all__ = [
    "BACKENDS",
    "FilterError",
    "HammingIndex",
    "IndexFormatError",
    "IndexFullError",
    "IndexLockedError",
    "IndexReadOnlyError",
    "MetadataError",
    "parse_filter",
]
