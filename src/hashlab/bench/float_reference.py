"""The float upper reference of every table: off-the-shelf CNN descriptors ranked by cosine.

The survey's first tier of deep retrieval is the pooled CNN feature itself, compared by
cosine similarity, with no hashing. It bounds what codes that only summarise those features
can reach at map@all / map@k (unsupervised hashing: a code is a lossy summary of the
feature; label-supervised codes learn the labels' similarity and can pass it), and it is
what a user pays for in memory and time by *not* hashing. :func:`float_reference` scores it
on a split with the table's ranking metrics (radius metrics such as map@r2 have no float
analogue and are left out) and measures, in the same run, the memory per item and the
top-``k`` search time per query of an exact float index (faiss ``IndexFlatIP`` on
L2-normalised features) against an exact binary index (faiss ``IndexBinaryFlat``) over codes
of each table length: time is a ratio measured side by side, never a number to copy.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from hashlab.metrics import parse_metric, relevance_matrix

__all__ = ["float_reference", "ranking_scores"]


def _normalised(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def ranking_metrics(metrics: Sequence[str]) -> list[str]:
    """The metrics of ``metrics`` that a float ranking has: map@all and map@k (a Hamming
    radius has no float analogue)."""
    return [m for m in metrics if (s := parse_metric(m)).measure == "map" and s.cutoff != "radius"]


def ranking_scores(
    query_features: np.ndarray,
    db_features: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    metrics: Sequence[str] = ("map@all",),
    chunk: int = 64,
) -> dict[str, float]:
    """Mean AP over queries of the database ranked by cosine similarity (map@all, map@k with
    the "retrieved" convention: AP over the top k, divided by the relevant items in it)."""
    names = ranking_metrics(metrics)
    if not names:
        return {}
    q, d = _normalised(query_features), _normalised(db_features)
    cutoffs = {n: parse_metric(n).value for n in names}
    sums = dict.fromkeys(names, 0.0)
    for start in range(0, len(q), chunk):
        similarity = q[start : start + chunk] @ d.T
        # stable order on ties (database order), as the Hamming metrics break ties
        order = np.argsort(-similarity, axis=1, kind="stable")
        relevant = relevance_matrix(query_labels[start : start + chunk], db_labels)
        ranked = np.take_along_axis(relevant, order, axis=1)
        for name, k in cutoffs.items():
            top = ranked if k is None else ranked[:, :k]
            hits = np.cumsum(top, axis=1)
            precision = hits / np.arange(1, top.shape[1] + 1)
            n_relevant = top.sum(axis=1)
            ap = np.where(
                n_relevant > 0, (precision * top).sum(axis=1) / np.maximum(n_relevant, 1), 0.0
            )
            sums[name] += float(ap.sum())
    return {name: sums[name] / len(q) for name in names}


def _seconds_per_query(index: Any, queries: np.ndarray, k: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        index.search(queries, k)
        best = min(best, time.process_time() - started)
    return best / len(queries)


def search_costs(
    db_features: np.ndarray, query_features: np.ndarray, bits: Sequence[int], k: int = 100
) -> dict[str, Any]:
    """Bytes per item and exact top-``k`` CPU seconds per query: float cosine vs codes.

    The codes are random (search time of an exact binary scan does not depend on what the
    bits mean); both indexes hold the same number of items and answer the same queries.
    """
    import faiss

    d, q = _normalised(db_features), _normalised(query_features)
    float_index = faiss.IndexFlatIP(d.shape[1])
    float_index.add(d)
    float_seconds = _seconds_per_query(float_index, q, k)
    rng = np.random.default_rng(0)
    codes = {}
    for n_bits in bits:
        n_bytes = -(-n_bits // 8)  # codes are stored packed, whole bytes per item
        binary = faiss.IndexBinaryFlat(8 * n_bytes)
        binary.add(rng.integers(0, 256, (len(d), n_bytes), dtype=np.uint8))
        queries = rng.integers(0, 256, (len(q), n_bytes), dtype=np.uint8)
        seconds = _seconds_per_query(binary, queries, k)
        codes[str(n_bits)] = {
            "bytes_per_item": n_bytes,
            "seconds_per_query": seconds,
            "float_time_ratio": float_seconds / seconds if seconds > 0 else None,
        }
    return {
        "n_items": int(len(d)),
        "k": k,
        "float": {"bytes_per_item": int(d.shape[1] * 4), "seconds_per_query": float_seconds},
        "codes": codes,
        "timing": "faiss IndexFlatIP (float32, normalised) vs IndexBinaryFlat, process CPU "
        "time, best of 3, same queries and database size",
    }


def float_reference(
    features: np.ndarray,
    labels: np.ndarray,
    query: np.ndarray,
    database: np.ndarray,
    metrics: Sequence[str],
    bits: Sequence[int],
) -> dict[str, Any]:
    """Scores of the pooled features by cosine on ``query`` vs ``database``, and their costs."""
    started = time.perf_counter()
    scores = ranking_scores(
        features[query], features[database], labels[query], labels[database], metrics
    )
    return {
        "scores": scores,
        "not_applicable": [m for m in metrics if parse_metric(m).name not in scores],
        "costs": search_costs(features[database], features[query], bits),
        "feature_dim": int(features.shape[1]),
        "seconds": round(time.perf_counter() - started, 1),
    }
