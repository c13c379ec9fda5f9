"""faiss's binary indexes behind the HammingIndex API, for comparison and for users who want them.

``faiss-flat`` is ``IndexBinaryFlat`` (exhaustive, exact), ``faiss-multihash`` is
``IndexBinaryMultiHash`` (faiss's multi-index hashing: exact for range search when
``nflip >= floor(r / nhash)``, approximate for k-NN), ``faiss-hnsw`` is ``IndexBinaryHNSW``
(approximate k-NN, no range search). faiss radii are strict (``distance < r``); this module
passes ``radius + 1`` so that hashlab's radius stays inclusive. faiss breaks ties in its own
order; results are re-sorted by (distance, id) among what faiss returned.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["FAISS_BACKENDS", "FaissEngine"]

FAISS_BACKENDS = ("faiss-flat", "faiss-multihash", "faiss-hnsw")


class FaissEngine:
    """A faiss binary index over the alive rows of a HammingIndex, rebuilt when they change."""

    def __init__(self, kind: str, n_bits: int, params: dict[str, Any] | None = None) -> None:
        if kind not in FAISS_BACKENDS:
            raise ValueError(f"unknown faiss backend {kind!r}; expected one of {FAISS_BACKENDS}")
        if n_bits % 8:
            raise ValueError(f"faiss binary indexes need a multiple of 8 bits, got {n_bits}")
        self.kind = kind
        self.n_bits = n_bits
        self.params = dict(params or {})
        self.index = None
        self.rows = np.zeros(0, dtype=np.int64)

    def build(self, codes: np.ndarray, rows: np.ndarray) -> None:
        import faiss

        if self.kind == "faiss-flat":
            index = faiss.IndexBinaryFlat(self.n_bits)
        elif self.kind == "faiss-multihash":
            log2_n = math.log2(max(len(rows), 2))
            nhash = int(self.params.get("nhash", max(1, round(self.n_bits / log2_n))))
            bits_per_hash = int(self.params.get("b", min(self.n_bits // nhash, 63)))
            index = faiss.IndexBinaryMultiHash(self.n_bits, nhash, bits_per_hash)
            index.nflip = int(self.params.get("nflip", 1))
        else:
            index = faiss.IndexBinaryHNSW(self.n_bits, int(self.params.get("M", 16)))
            index.hnsw.efConstruction = int(self.params.get("efConstruction", 40))
            index.hnsw.efSearch = int(self.params.get("efSearch", 64))
        if len(rows):
            index.add(np.ascontiguousarray(codes))
        self.index = index
        self.rows = np.asarray(rows, dtype=np.int64)

    @property
    def memory_bytes(self) -> int:
        """Bytes faiss holds (serialised size: codes plus its hash maps / graph)."""
        import faiss

        if self.index is None:
            return 0
        return int(faiss.serialize_index_binary(self.index).size)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, rows), each (Q, k); -1 where faiss found fewer than k."""
        distances, labels = self.index.search(np.ascontiguousarray(queries), k)
        rows = np.where(labels >= 0, self.rows[np.clip(labels, 0, None)], -1)
        return distances.astype(np.int32), rows

    def range_search(self, queries: np.ndarray, radius: int):
        """(lims, rows, distances) of rows within ``radius`` (inclusive)."""
        if self.kind == "faiss-hnsw":
            raise ValueError("faiss-hnsw has no range search; use the native or faiss-flat backend")
        queries = np.ascontiguousarray(queries)
        if self.kind == "faiss-multihash":
            # probing floor(r / nhash) flips per table makes faiss's MIH range search exact
            saved = self.index.nflip
            self.index.nflip = max(saved, radius // self.index.nhash)
            try:
                lims, distances, labels = self.index.range_search(queries, radius + 1)
            finally:
                self.index.nflip = saved
        else:
            lims, distances, labels = self.index.range_search(queries, radius + 1)
        return lims.astype(np.int64), self.rows[labels], distances.astype(np.int32)
