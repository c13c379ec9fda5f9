"""faiss's binary indexes as engines, for comparison and for users who want them.

* ``faiss-flat``: ``IndexBinaryFlat`` (exhaustive, exact);
* ``faiss-hash``: ``IndexBinaryHash`` (one hash table on the first ``b`` bits, probing
  ``nflip`` flipped keys; range search is made exact by probing ``nflip >= radius``, k-NN
  is approximate);
* ``faiss-multihash``: ``IndexBinaryMultiHash`` (multi-index hashing with ``nhash`` tables;
  range search exact with ``nflip >= floor(radius / nhash)``, k-NN approximate);
* ``faiss-hnsw``: ``IndexBinaryHNSW`` (approximate k-NN graph, no range search).

faiss radii are strict (``distance < r``): this module passes ``radius + 1``. faiss has no
removal for these indexes, so removed (and, in a filtered search, disallowed) rows are
dropped from faiss's answers, asking faiss for more until ``k`` are left. faiss breaks
distance ties in its own order: results are re-sorted by (distance, tie key) among what
faiss returned, so ties at the k-th distance may differ from the exact engines.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from hashlab.index.engines import RangeResult, register_engine

__all__ = ["FaissEngine", "FaissFlat", "FaissHash", "FaissMultiHash", "FaissHNSW"]


class FaissEngine:
    """Shared plumbing: codes go to faiss as added; tombstones and tie keys stay here."""

    name: ClassVar[str]
    exact: ClassVar[bool] = False
    has_range: ClassVar[bool] = True

    def __init__(self, n_bits: int, **params: Any) -> None:
        import faiss

        if n_bits % 8:
            raise ValueError(f"faiss binary indexes need a multiple of 8 bits, got {n_bits}")
        self.faiss = faiss
        self.n_bits = n_bits
        self.params = dict(params)
        self.index: Any = None
        self._keys = np.zeros(0, dtype=np.int64)
        self._dead = np.zeros(0, dtype=bool)
        self._n_dead = 0

    # subclasses build their faiss index, knowing how many codes come first
    def _make_index(self, n_first: int) -> Any:
        raise NotImplementedError

    def add(self, codes: np.ndarray, keys: np.ndarray | None = None) -> None:
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        n0 = len(self._keys)
        if keys is None:
            keys = np.arange(n0, n0 + len(codes), dtype=np.int64)
        if self.index is None:
            self.index = self._make_index(len(codes))
        if len(codes):
            self.index.add(codes)
        self._keys = np.concatenate([self._keys, np.asarray(keys, dtype=np.int64)])
        self._dead = np.concatenate([self._dead, np.zeros(len(codes), dtype=bool)])

    def remove(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        self._n_dead += int((~self._dead[rows]).sum())
        self._dead[rows] = True

    def _excluded(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return self._dead if self._n_dead else None
        excluded = np.ones(len(self._keys), dtype=bool)
        excluded[allowed] = False
        return excluded | self._dead

    def _set_knn_params(self) -> None:
        """Parameters that k-NN search uses (range search may change them for a call)."""

    def knn(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        nq = len(queries)
        out_d = np.full((nq, k), -1, dtype=np.int32)
        out_rows = np.full((nq, k), -1, dtype=np.int64)
        n = len(self._keys)
        if n == 0 or nq == 0:
            return out_d, out_rows
        excluded = self._excluded(allowed)
        queries = np.ascontiguousarray(queries)
        self._set_knn_params()
        ask = min(n, k + (0 if excluded is None else int(excluded.sum())))
        distances, labels = self.index.search(queries, ask)
        for i in range(nq):
            rows = labels[i]
            keep = rows >= 0
            if excluded is not None:
                keep &= ~excluded[np.clip(rows, 0, None)]
            rows, d = rows[keep], distances[i][keep]
            order = np.lexsort((self._keys[rows], d))[:k]
            out_d[i, : len(order)] = d[order]
            out_rows[i, : len(order)] = rows[order]
        return out_d, out_rows

    def range(
        self, queries: np.ndarray, radius: int, allowed: np.ndarray | None = None
    ) -> RangeResult:
        if not self.has_range:
            raise ValueError(
                f"{self.name} has no range search; use the native or faiss-flat engine"
            )
        if len(self._keys) == 0 or len(queries) == 0:
            return RangeResult.empty(len(queries))
        lims, distances, labels = self._range_search(np.ascontiguousarray(queries), radius)
        lims = lims.astype(np.int64)
        excluded = self._excluded(allowed)
        query_of = np.repeat(np.arange(len(queries)), np.diff(lims))
        if excluded is not None:
            keep = ~excluded[labels]
            labels, distances, query_of = labels[keep], distances[keep], query_of[keep]
        order = np.lexsort((self._keys[labels], distances, query_of))
        offsets = np.zeros(len(queries) + 1, dtype=np.int64)
        np.cumsum(np.bincount(query_of, minlength=len(queries)), out=offsets[1:])
        rows = labels[order].astype(np.int64)
        return RangeResult(offsets, rows, distances[order].astype(np.int32))

    def _range_search(self, queries: np.ndarray, radius: int):
        return self.index.range_search(queries, radius + 1)

    def memory_bytes(self) -> int:
        """faiss's serialised size (codes plus its hash maps / graph), tie keys, tombstones."""
        if self.index is None:
            return 0
        faiss_bytes = int(self.faiss.serialize_index_binary(self.index).size)
        return faiss_bytes + self._keys.nbytes + self._dead.nbytes

    def info(self) -> dict[str, Any]:
        return {"engine": self.name, "params": self.params, "exact_knn": self.exact}


@register_engine("faiss-flat")
class FaissFlat(FaissEngine):
    exact = True

    def _make_index(self, n_first: int) -> Any:
        return self.faiss.IndexBinaryFlat(self.n_bits)


@register_engine("faiss-hash")
class FaissHash(FaissEngine):
    """``IndexBinaryHash`` with a ``b``-bit key (default as in the issue's benchmark: 24)."""

    def _make_index(self, n_first: int) -> Any:
        b = int(self.params.get("b", min(24, self.n_bits)))
        index = self.faiss.IndexBinaryHash(self.n_bits, b)
        index.nflip = int(self.params.get("nflip", 2))
        return index

    def _set_knn_params(self) -> None:
        self.index.nflip = int(self.params.get("nflip", 2))

    def _range_search(self, queries: np.ndarray, radius: int):
        # the key is a substring of the code: its distance is at most the code's distance
        self.index.nflip = max(int(self.params.get("nflip", 2)), radius)
        try:
            return self.index.range_search(queries, radius + 1)
        finally:
            self._set_knn_params()


@register_engine("faiss-multihash")
class FaissMultiHash(FaissEngine):
    """``IndexBinaryMultiHash``: ``nhash`` tables (default K / log2 N) of ``b`` bits."""

    def _make_index(self, n_first: int) -> Any:
        log2_n = math.log2(max(n_first, 2))
        nhash = int(self.params.get("nhash", max(1, round(self.n_bits / log2_n))))
        b = int(self.params.get("b", min(self.n_bits // nhash, 63)))
        index = self.faiss.IndexBinaryMultiHash(self.n_bits, nhash, b)
        index.nflip = int(self.params.get("nflip", 1))
        return index

    def _set_knn_params(self) -> None:
        self.index.nflip = int(self.params.get("nflip", 1))

    def _range_search(self, queries: np.ndarray, radius: int):
        # pigeonhole: some table's key is within floor(r / nhash) of the query's
        self.index.nflip = max(int(self.params.get("nflip", 1)), radius // self.index.nhash)
        try:
            return self.index.range_search(queries, radius + 1)
        finally:
            self._set_knn_params()


@register_engine("faiss-hnsw")
class FaissHNSW(FaissEngine):
    has_range = False

    def _make_index(self, n_first: int) -> Any:
        index = self.faiss.IndexBinaryHNSW(self.n_bits, int(self.params.get("M", 16)))
        index.hnsw.efConstruction = int(self.params.get("efConstruction", 40))
        return index

    def _set_knn_params(self) -> None:
        self.index.hnsw.efSearch = int(self.params.get("efSearch", 64))
