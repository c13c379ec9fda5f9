"""Exact linear scans in numpy: the fallback when the compiled kernel is not installed.

The same answers as the kernel's scans (:mod:`hashlab.index.native`), chunk by chunk:
top-k by (distance, key) and radius search (inclusive) sorted by (distance, key), skipping
rows set in a bit-packed (little bit order) mask. Slow (see ``NUMPY_SLOWDOWN``) but needs no
compiler.
"""

from __future__ import annotations

import numpy as np

from hashlab.codes import hamming_distance_matrix

__all__ = ["knn_scan", "range_scan", "skipped_rows"]

#: elements of the (Q, chunk) distance block per step
_CHUNK_ELEMENTS = 1 << 22


def skipped_rows(skip: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    """Whether each row is set in the bit-packed (little bit order) mask."""
    if skip is None:
        return np.zeros(rows.shape, dtype=bool)
    return ((skip[rows >> 3] >> (rows & 7).astype(np.uint8)) & 1).astype(bool)


def knn_scan(codes, keys, skip, queries, row_range, n_bits, k):
    """Exact top-k over rows ``[r0, r1)``: (distances, rows), each (Q, k), -1 padded."""
    r0, r1 = row_range
    nq = queries.shape[0]
    best_d = np.zeros((nq, 0), dtype=np.int64)
    best_key = np.zeros((nq, 0), dtype=np.int64)
    best_row = np.zeros((nq, 0), dtype=np.int64)
    chunk = max(1024, _CHUNK_ELEMENTS // max(nq, 1))
    for start in range(r0, r1, chunk):
        rows = np.arange(start, min(start + chunk, r1), dtype=np.int64)
        rows = rows[~skipped_rows(skip, rows)]
        if rows.size == 0 or nq == 0:
            continue
        block = hamming_distance_matrix(queries, codes[rows], packed=True).astype(np.int64)
        all_d = np.concatenate([best_d, block], axis=1)
        all_key = np.concatenate([best_key, np.broadcast_to(keys[rows], block.shape)], axis=1)
        all_row = np.concatenate([best_row, np.broadcast_to(rows, block.shape)], axis=1)
        order = np.lexsort((all_key, all_d), axis=1)[:, :k]
        best_d = np.take_along_axis(all_d, order, axis=1)
        best_key = np.take_along_axis(all_key, order, axis=1)
        best_row = np.take_along_axis(all_row, order, axis=1)
    missing = k - best_d.shape[1]
    if missing > 0:
        pad = ((0, 0), (0, missing))
        best_d = np.pad(best_d, pad, constant_values=-1)
        best_row = np.pad(best_row, pad, constant_values=-1)
    return best_d.astype(np.int32), best_row


def range_scan(codes, keys, skip, queries, row_range, n_bits, radius):
    """Rows within ``radius``: (offsets (Q+1,), rows, distances), sorted by (distance, key)."""
    r0, r1 = row_range
    nq = queries.shape[0]
    found_q, found_row, found_d = [], [], []
    chunk = max(1024, _CHUNK_ELEMENTS // max(nq, 1))
    for start in range(r0, r1, chunk):
        rows = np.arange(start, min(start + chunk, r1), dtype=np.int64)
        rows = rows[~skipped_rows(skip, rows)]
        if rows.size == 0 or nq == 0:
            continue
        block = hamming_distance_matrix(queries, codes[rows], packed=True)
        q_index, col = np.nonzero(block <= radius)
        found_q.append(q_index)
        found_row.append(rows[col])
        found_d.append(block[q_index, col])
    if not found_q:
        return np.zeros(nq + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32)
    q_of = np.concatenate(found_q)
    rows = np.concatenate(found_row)
    d = np.concatenate(found_d).astype(np.int32)
    order = np.lexsort((keys[rows], d, q_of))
    offsets = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(np.bincount(q_of, minlength=nq), out=offsets[1:])
    return offsets, rows[order], d[order]
