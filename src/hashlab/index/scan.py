"""Exact linear scans: the fallback of every search and the baseline it is measured against.

Both scans read packed codes (``(N, B)`` uint8) and skip rows marked in a bit-packed
tombstone mask. The native kernels (:mod:`hashlab.index.native`) XOR + popcount 64-bit
words over cache-sized chunks with query blocking and keep each query's top-k by partial
selection; the numpy versions here compute the same answers chunk by chunk and are used when
no C compiler is available.

Ranking convention (the same everywhere in hashlab.index): ascending Hamming distance, ties
broken by ascending id. Radii are inclusive (``distance <= radius``), unlike faiss.
"""

from __future__ import annotations

import numpy as np

from hashlab.codes import hamming_distance_matrix
from hashlab.index.native import load_native

__all__ = ["knn_scan", "range_scan", "is_dead_rows"]

#: rows per chunk in the numpy fallback (keeps the (Q, chunk) distance block small)
_NUMPY_CHUNK_ELEMENTS = 1 << 22


def is_dead_rows(dead: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    """Whether each row is tombstoned in the bit-packed (little bit order) mask."""
    if dead is None:
        return np.zeros(rows.shape, dtype=bool)
    return ((dead[rows >> 3] >> (rows & 7).astype(np.uint8)) & 1).astype(bool)


def knn_scan(
    codes: np.ndarray,
    row_range: tuple[int, int],
    n_bits: int,
    ids: np.ndarray,
    dead: np.ndarray | None,
    queries: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k over rows ``[r0, r1)``: (distances, ids, rows), each (Q, k), -1 padded."""
    native = load_native()
    if native is not None:
        return native.knn_scan(codes, row_range, n_bits, ids, dead, queries, k)
    r0, r1 = row_range
    nq = queries.shape[0]
    best_d = np.full((nq, 0), -1, dtype=np.int32)
    best_id = np.full((nq, 0), -1, dtype=np.int64)
    best_row = np.full((nq, 0), -1, dtype=np.int64)
    chunk = max(1024, _NUMPY_CHUNK_ELEMENTS // max(nq, 1))
    for start in range(r0, r1, chunk):
        stop = min(start + chunk, r1)
        rows = np.arange(start, stop, dtype=np.int64)
        alive = ~is_dead_rows(dead, rows)
        rows = rows[alive]
        if rows.size == 0:
            continue
        block = hamming_distance_matrix(queries, codes[rows], packed=True)
        all_d = np.concatenate([best_d, block], axis=1)
        all_id = np.concatenate([best_id, np.broadcast_to(ids[rows], block.shape)], axis=1)
        all_row = np.concatenate([best_row, np.broadcast_to(rows, block.shape)], axis=1)
        order = np.lexsort((all_id, all_d), axis=1)[:, :k]
        best_d = np.take_along_axis(all_d, order, axis=1)
        best_id = np.take_along_axis(all_id, order, axis=1)
        best_row = np.take_along_axis(all_row, order, axis=1)
    missing = k - best_d.shape[1]
    if missing > 0:
        pad = ((0, 0), (0, missing))
        best_d = np.pad(best_d, pad, constant_values=-1)
        best_id = np.pad(best_id, pad, constant_values=-1)
        best_row = np.pad(best_row, pad, constant_values=-1)
    return best_d.astype(np.int32), best_id, best_row


def range_scan(
    codes: np.ndarray,
    row_range: tuple[int, int],
    dead: np.ndarray | None,
    queries: np.ndarray,
    radius: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows within ``radius`` (inclusive): (lims (Q+1,), rows, distances), unsorted."""
    native = load_native()
    if native is not None:
        return native.range_scan(codes, row_range, dead, queries, radius)
    r0, r1 = row_range
    nq = queries.shape[0]
    per_query_rows: list[list[np.ndarray]] = [[] for _ in range(nq)]
    per_query_d: list[list[np.ndarray]] = [[] for _ in range(nq)]
    chunk = max(1024, _NUMPY_CHUNK_ELEMENTS // max(nq, 1))
    for start in range(r0, r1, chunk):
        stop = min(start + chunk, r1)
        rows = np.arange(start, stop, dtype=np.int64)
        rows = rows[~is_dead_rows(dead, rows)]
        if rows.size == 0:
            continue
        block = hamming_distance_matrix(queries, codes[rows], packed=True)
        q_index, col = np.nonzero(block <= radius)
        for qi in np.unique(q_index):
            hit = col[q_index == qi]
            per_query_rows[qi].append(rows[hit])
            per_query_d[qi].append(block[qi, hit])
    counts = np.array([sum(part.size for part in parts) for parts in per_query_rows], np.int64)
    lims = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(counts, out=lims[1:])
    flat_rows = [part for parts in per_query_rows for part in parts]
    flat_d = [part for parts in per_query_d for part in parts]
    rows_out = np.concatenate(flat_rows) if flat_rows else np.zeros(0, dtype=np.int64)
    d_out = np.concatenate(flat_d).astype(np.int32) if flat_d else np.zeros(0, dtype=np.int32)
    return lims, rows_out, d_out
