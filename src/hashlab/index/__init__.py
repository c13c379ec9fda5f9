"""Hamming-space search: ``HammingIndex`` and its engines (scan, multi-index hashing, faiss).

``from hashlab.index import HammingIndex`` is the interface the CLI and the service use.
"""

from hashlab.index.hamming_index import BACKENDS, HammingIndex
from hashlab.index.storage import IndexFormatError

__all__ = ["BACKENDS", "HammingIndex", "IndexFormatError"]
