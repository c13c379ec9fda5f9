"""Retrieval metrics for Hamming ranking, named exactly as in the protocols spec.

Metric names (parsed by :func:`parse_metric`):

* ``map@all``, ``map@<k>`` (``map@1000``, ``map@5000``, ``map@54000``): mean average precision
  of the top-k list of the Hamming ranking. Two conventions for the AP denominator:

  - ``"retrieved"`` (default): AP@k = (1/R_k) * sum_{t<=k} P(t) rel(t), R_k = relevant items
    within the top k. This is ``CalcTopMap`` of HashNet (Cao et al., ICCV 2017), DCH (Cao et
    al., CVPR 2018) and DeepHash-pytorch.
  - ``"min_r_k"``: the same sum divided by min(R, k), R = all relevant items of the query.

  ``map@all`` is ``map@N``; there R_N = R = min(R, N), so both conventions agree. A cut-off k
  larger than the database is clipped to N.
* ``map@r<r>`` (``map@r2`` = "MAP@H<=2" of DCH): AP over the items within Hamming radius r,
  ranked by distance, divided by the relevant items retrieved; the convention argument does
  not apply (the retrieved set is fixed by the radius, not by k).
* ``precision@r<r>``, ``recall@r<r>``: precision and recall of the set within radius r.
* ``precision@<k>``, ``recall@<k>``: precision and recall of the top-k list.

Conventions (all of them documented because they change the numbers):

* Relevance: a database item is relevant to a query when they share at least one label
  (single-label: the same class), unless a ``relevance`` matrix is passed explicitly.
* Radius is inclusive: "within r" means distance <= r (faiss and Milvus use distance < r).
* Ranking: by Hamming distance ascending, ties broken by database order (a stable sort), so
  the item stored first wins a tie. That order changes AP, precision@k and recall@k.
* Empty results: a query whose list holds no relevant item has AP 0; an empty retrieved set
  has precision 0; a query with no relevant item in the whole database has recall 0.
  Every metric is the plain mean over all queries, those included.
* ``tie_aware=True`` replaces every order-dependent metric by its expectation over all
  orders of tied items (He, Cakir, Bargal and Sclaroff, "Hashing as Tie-Aware Learning to
  Rank", CVPR 2018, tie-aware AP; the tied-score averaging of McSherry and Najork, ECIR
  2008). Closed form per distance bucket d holding n
  items, r of them relevant, after n_b items of which R_b relevant: position i of the bucket
  contributes E[rel * hits / t] = (r/n) (R_b + 1)/(n_b + i) + (i - 1) r (r - 1) / (n (n - 1))
  / (n_b + i). Summing over i gives harmonic-number differences (``_bucket_ap_sums``).
  For ``map@k`` whose cut-off falls inside a bucket, the ``"min_r_k"`` denominator is fixed
  and the same formula applies to the first m positions; under ``"retrieved"`` the
  denominator R_k = R_b + X is random, X ~ Hypergeometric(n, r, m), and the expectation is
  taken exactly by conditioning on X (given X = x the first m positions are a uniformly
  random order of x relevant and m - x irrelevant items). Radius metrics are sets, hence
  unaffected by ties.

Speed: Hamming distances take only K + 1 values, so radius metrics, PR curves and all
tie-aware metrics come from per-query histograms of (distance, relevant) counts (a
``bincount`` of 2 d + rel); only the database-order ranking needs a sort, and a stable
``argsort`` of ``uint8`` distances is a radix sort in numpy. After the sort only the ranks of
relevant items are kept, and AP numerators are segment sums over them. Queries are processed
in chunks of about 4M (query, item) pairs, so memory stays bounded (a few hundred MB).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import gammaln

from hashlab.codes import CodeLengthError, hamming_distance_matrix, pack_bits, validate_codes
from hashlab.errors import HashlabValueError

__all__ = [
    "CONVENTIONS",
    "MetricSpec",
    "parse_metric",
    "evaluate",
    "evaluate_distances",
    "pr_curve",
    "precision_at_k_curve",
    "relevance_matrix",
]

CONVENTIONS = ("retrieved", "min_r_k")
_VALID_FORMS = (
    "map@all, map@<k>, map@r<r>, precision@<k>, precision@r<r>, recall@<k>, recall@r<r> "
    "(k a positive integer, r a radius >= 0; e.g. map@1000, map@r2, precision@r2)"
)
_METRIC_PATTERN = re.compile(r"^(map|precision|recall)@(all|r\d+|\d+)$")
# Pairs (query, database item) per chunk: keeps the working arrays to ~100-200 MB.
_PAIRS_PER_CHUNK = 1 << 22


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: ``measure`` at a ``cutoff`` (``all``, ``top`` k or ``radius`` r)."""

    name: str
    measure: Literal["map", "precision", "recall"]
    cutoff: Literal["all", "top", "radius"]
    value: int | None  # k for "top", r for "radius", None for "all"


def parse_metric(name: str) -> MetricSpec:
    """Parse a metric name such as ``map@all``, ``map@5000``, ``map@r2`` or ``recall@r0``.

    Raises ValueError (one line, naming the bad metric and the valid forms) otherwise.
    """
    match = _METRIC_PATTERN.match(name) if isinstance(name, str) else None
    if match is None:
        raise HashlabValueError(f"unknown metric {name!r}; valid forms: {_VALID_FORMS}")
    measure, cutoff = match.group(1), match.group(2)
    if cutoff == "all":
        if measure != "map":
            raise HashlabValueError(
                f"unknown metric {name!r} (only map@all has an 'all' form); "
                f"valid forms: {_VALID_FORMS}"
            )
        return MetricSpec(name, "map", "all", None)
    if cutoff.startswith("r"):
        return MetricSpec(name, measure, "radius", int(cutoff[1:]))  # type: ignore[arg-type]
    k = int(cutoff)
    if k <= 0:
        raise HashlabValueError(
            f"metric {name!r}: k must be a positive integer; valid forms: {_VALID_FORMS}"
        )
    return MetricSpec(name, measure, "top", k)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Inputs: codes -> packed, labels -> relevance
# --------------------------------------------------------------------------------------------


def _packed_codes(
    query_codes: np.ndarray, db_codes: np.ndarray, packed: bool, n_bits: int | None
) -> tuple[np.ndarray, np.ndarray, int]:
    if packed:
        if n_bits is None:
            raise HashlabValueError("packed=True needs n_bits (the code length in bits)")
        n_bytes = (n_bits + 7) // 8
        arrays = []
        for what, codes in (("query", query_codes), ("database", db_codes)):
            codes = np.atleast_2d(np.asarray(codes))
            if codes.ndim != 2 or codes.shape[1] != n_bytes or codes.dtype != np.uint8:
                raise CodeLengthError(
                    f"packed {what} codes must be uint8 of shape (N, {n_bytes}) for "
                    f"{n_bits}-bit codes, got {codes.dtype} {codes.shape}"
                )
            arrays.append(np.ascontiguousarray(codes))
        return arrays[0], arrays[1], n_bits
    query_codes, db_codes = validate_codes(query_codes), validate_codes(db_codes)
    if query_codes.shape[1] != db_codes.shape[1]:
        raise CodeLengthError(
            f"query codes have {query_codes.shape[1]} bits but database codes have "
            f"{db_codes.shape[1]}"
        )
    if n_bits is not None and query_codes.shape[1] != n_bits:
        raise CodeLengthError(f"codes have {query_codes.shape[1]} bits, expected {n_bits}")
    return pack_bits(query_codes), pack_bits(db_codes), query_codes.shape[1]


def _check_labels(labels: np.ndarray, n_items: int, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim not in (1, 2) or labels.shape[0] != n_items:
        raise HashlabValueError(
            f"{what} labels must have shape ({n_items},) class ids or ({n_items}, C) multi-hot, "
            f"got {labels.shape}"
        )
    if labels.ndim == 2 and labels.size and not np.isin(labels, (0, 1)).all():
        raise HashlabValueError(
            f"2-D {what} labels must be 0/1 multi-hot; pass class ids as a 1-D array"
        )
    return labels


class _Relevance:
    """Relevance rows for a chunk of queries, computed on demand (never the full Q x N)."""

    def __init__(
        self,
        query_labels: np.ndarray | None,
        db_labels: np.ndarray | None,
        relevance: np.ndarray | None,
        n_query: int,
        n_db: int,
    ) -> None:
        self.matrix: np.ndarray | None = None
        if relevance is not None:
            if query_labels is not None or db_labels is not None:
                raise HashlabValueError("pass either labels or a relevance matrix, not both")
            relevance = np.asarray(relevance)
            if relevance.shape != (n_query, n_db):
                raise HashlabValueError(
                    f"relevance must have shape (n_queries, n_database) = ({n_query}, {n_db}), "
                    f"got {relevance.shape}"
                )
            self.matrix = relevance.astype(bool, copy=False)
            return
        if query_labels is None or db_labels is None:
            raise HashlabValueError(
                "labels for queries and database (or a relevance matrix) are needed"
            )
        self.query = _check_labels(query_labels, n_query, "query")
        self.db = _check_labels(db_labels, n_db, "database")
        if self.query.ndim != self.db.ndim or (
            self.query.ndim == 2 and self.query.shape[1] != self.db.shape[1]
        ):
            raise HashlabValueError(
                f"query labels {self.query.shape} and database labels {self.db.shape} are not "
                "of the same kind (both class ids, or both multi-hot with the same columns)"
            )
        if self.query.ndim == 2:
            # float32 matmul counts shared labels exactly (integers below 2**24)
            self.db_t = np.ascontiguousarray(self.db.T, dtype=np.float32)
            self.query = self.query.astype(np.float32)

    def rows(self, start: int, stop: int) -> np.ndarray:
        if self.matrix is not None:
            return self.matrix[start:stop]
        if self.query.ndim == 1:
            return self.query[start:stop, None] == self.db[None, :]
        return (self.query[start:stop] @ self.db_t) > 0


def relevance_matrix(query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """(Q, N) bool: True where query and database item share at least one label."""
    query_labels, db_labels = np.asarray(query_labels), np.asarray(db_labels)
    return _Relevance(query_labels, db_labels, None, len(query_labels), len(db_labels)).rows(
        0, len(query_labels)
    )


# --------------------------------------------------------------------------------------------
# Per-chunk scores
# --------------------------------------------------------------------------------------------


def _harmonic_numbers(n: int) -> np.ndarray:
    """H[j] = sum_{i<=j} 1/i for j = 0..n (H[0] = 0)."""
    out = np.zeros(n + 1)
    np.cumsum(1.0 / np.arange(1, n + 1), out=out[1:])
    return out


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (the empty-result conventions)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _bucket_ap_sums(
    n_before: np.ndarray,
    rel_before: np.ndarray,
    n_bucket: np.ndarray,
    rel_bucket: np.ndarray,
    m: np.ndarray,
    harmonic: np.ndarray,
) -> np.ndarray:
    """Expected sum of P(t) rel(t) over the first m positions of a tied bucket.

    He et al. (CVPR 2018), tie-aware AP: position i of a bucket of n items (r relevant) that
    starts after n_b items (R_b relevant) contributes
    (r/n) (R_b + 1) / (n_b + i) + (i - 1) r (r - 1) / (n (n - 1)) / (n_b + i), since
    P(rel_i) = r/n and P(rel_i and rel_j) = r (r - 1) / (n (n - 1)) for i != j.
    sum_{i<=m} 1/(n_b+i) = H(n_b+m) - H(n_b); sum_{i<=m} (i-1)/(n_b+i) = m - (n_b+1)(same).
    """
    n = n_bucket.astype(np.float64)
    r = rel_bucket.astype(np.float64)
    harm = harmonic[n_before + m] - harmonic[n_before]
    p_rel = _safe_divide(r, n)
    p_pair = _safe_divide(r * (r - 1), n * (n - 1))
    return p_rel * (rel_before + 1) * harm + p_pair * (m - (n_before + 1) * harm)


def _log_binomial(a, b):
    """log C(a, b) via log-gamma (scipy.stats.hypergeom.pmf is ~100x slower per call)."""
    return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)


def _tie_aware_retrieved_ap(
    before_sum: float, n_before: int, rel_before: int, n: int, r: int, m: int, harmonic
) -> float:
    """E[AP@k] under the "retrieved" convention when k cuts a bucket after m of its n items.

    X = relevant items among those m is Hypergeometric(n, r, m); given X = x the m positions
    hold a uniformly random order of x relevant items, so the bucket formula applies with
    (n, r) -> (m, x). E[AP] = sum_x P(X = x) (before + bucket(x)) / (R_b + x), 0 if R_b + x = 0.
    """
    x = np.arange(max(0, m - (n - r)), min(r, m) + 1)
    pmf = np.exp(_log_binomial(r, x) + _log_binomial(n - r, m - x) - _log_binomial(n, m))
    harm = harmonic[n_before + m] - harmonic[n_before]
    bucket = (x / m) * (rel_before + 1) * harm
    if m > 1:
        bucket = bucket + x * (x - 1) / (m * (m - 1)) * (m - (n_before + 1) * harm)
    values = _safe_divide(before_sum + bucket, rel_before + x)
    return float(np.sum(pmf * values))


class _DatabaseOrderRanking:
    """The Hamming ranking of a chunk of queries with ties broken by database order, kept as
    the positions of the relevant items only (about R/N of the pairs).

    ``top(p)`` returns, per query, the relevant items among the first p and
    sum_{t<=p} P(t) rel(t), the numerator of AP.
    """

    def __init__(self, distances: np.ndarray, relevant: np.ndarray, n_bits: int) -> None:
        n_chunk, self.n_db = distances.shape
        # Stable sort = ties broken by database order; on uint8 keys numpy uses a radix sort.
        order = np.argsort(
            distances.astype(np.uint8 if n_bits < 256 else np.uint16), axis=1, kind="stable"
        )
        row_offsets = np.arange(n_chunk, dtype=np.intp)[:, None] * self.n_db
        order += row_offsets  # flat indices: np.take on the flat array beats take_along_axis
        relevant_sorted = np.take(relevant.ravel(), order)
        del order
        # Flat positions (row * N + rank - 1) of relevant items, sorted by row then rank.
        self.positions = np.flatnonzero(relevant_sorted)
        self.row_starts = np.searchsorted(self.positions, row_offsets[:, 0])
        rows = self.positions // self.n_db
        ranks = self.positions - rows * self.n_db + 1
        hits = np.arange(1, len(self.positions) + 1) - self.row_starts[rows]
        # P(t) at each relevant item, plus a trailing 0 so reduceat indices may equal the length
        self.precisions = np.append(hits / ranks, 0.0)
        self.row_offsets = row_offsets[:, 0]

    def top(self, n_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        starts = self.row_starts
        stops = np.searchsorted(self.positions, self.row_offsets + n_items)
        bounds = np.empty(2 * len(starts), dtype=np.intp)
        bounds[0::2], bounds[1::2] = starts, stops
        # Segment sums (exact per query, unlike differences of one long cumsum).
        sums = np.add.reduceat(self.precisions, bounds)[0::2]
        sums[stops == starts] = 0.0
        return stops - starts, sums


def _chunk_scores(
    distances: np.ndarray,
    relevant: np.ndarray,
    n_bits: int,
    specs: Sequence[MetricSpec],
    convention: str,
    tie_aware: bool,
    harmonic: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Per-query scores of one chunk of queries: {metric name: (c,) float64}."""
    n_chunk, n_db = distances.shape
    n_dist = n_bits + 1
    # Histogram of (distance, relevant) per query: key = 2 d + rel, one bincount per row
    # (small int keys, cache-resident; faster than one bincount over (q, d, rel) int64 keys).
    keys = distances.astype(np.int16 if n_dist < 2**14 else np.int64) * 2
    keys += relevant
    counts = np.stack([np.bincount(row, minlength=2 * n_dist) for row in keys])
    counts = counts.reshape(n_chunk, n_dist, 2)
    del keys
    hist_rel = counts[:, :, 1]
    hist_all = counts[:, :, 0] + hist_rel
    cum_all = np.cumsum(hist_all, axis=1)  # items within radius d
    cum_rel = np.cumsum(hist_rel, axis=1)  # relevant items within radius d
    total_rel = cum_rel[:, -1]
    rows = np.arange(n_chunk)

    needs_order = not tie_aware and any(s.cutoff != "radius" or s.measure == "map" for s in specs)
    if needs_order:
        ranking = _DatabaseOrderRanking(distances, relevant, n_bits)
    if tie_aware:
        before_all = cum_all - hist_all
        before_rel = cum_rel - hist_rel
        bucket_sums = _bucket_ap_sums(
            before_all, before_rel, hist_all, hist_rel, hist_all, harmonic
        )
        cum_bucket_sums = np.cumsum(bucket_sums, axis=1)

    scores: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.cutoff == "radius":
            radius = min(spec.value, n_bits)
            within, rel_within = cum_all[:, radius], cum_rel[:, radius]
            if spec.measure == "precision":
                scores[spec.name] = _safe_divide(rel_within, within)
            elif spec.measure == "recall":
                scores[spec.name] = _safe_divide(rel_within, total_rel)
            elif tie_aware:  # whole buckets: the expected sum is fixed, so is the denominator
                scores[spec.name] = _safe_divide(cum_bucket_sums[:, radius], rel_within)
            else:
                _, ap_sum = ranking.top(within)
                scores[spec.name] = _safe_divide(ap_sum, rel_within)
            continue
        k = n_db if spec.cutoff == "all" else min(spec.value, n_db)
        if not tie_aware:
            hits_k, ap_sum = ranking.top(np.full(n_chunk, k))
            if spec.measure == "precision":
                scores[spec.name] = hits_k / k
            elif spec.measure == "recall":
                scores[spec.name] = _safe_divide(hits_k, total_rel)
            else:
                denominator = hits_k if convention == "retrieved" else np.minimum(total_rel, k)
                scores[spec.name] = _safe_divide(ap_sum, denominator)
            continue
        # Tie-aware top-k: bucket b holds position k; m of its items make the cut.
        bucket = np.argmax(cum_all >= k, axis=1)
        n_b = cum_all[rows, bucket] - hist_all[rows, bucket]
        rel_b = cum_rel[rows, bucket] - hist_rel[rows, bucket]
        n, r = hist_all[rows, bucket], hist_rel[rows, bucket]
        m = k - n_b
        if spec.measure in ("precision", "recall"):
            expected_hits = rel_b + _safe_divide(m * r, n)
            scores[spec.name] = (
                expected_hits / k
                if spec.measure == "precision"
                else _safe_divide(expected_hits, total_rel)
            )
            continue
        before_sum = cum_bucket_sums[rows, bucket] - bucket_sums[rows, bucket]
        if convention == "min_r_k":
            partial = _bucket_ap_sums(n_b, rel_b, n, r, m, harmonic)
            scores[spec.name] = _safe_divide(before_sum + partial, np.minimum(total_rel, k))
            continue
        # X (relevant among the m that make the cut) is fixed when the whole bucket makes it
        # or the bucket is all relevant / all irrelevant; then E[AP] = E[sum] / (R_b + X).
        fixed = (m == n) | (r == 0) | (r == n)
        partial = _bucket_ap_sums(n_b, rel_b, n, r, m, harmonic)
        values = _safe_divide(before_sum + partial, rel_b + _safe_divide(m * r, n))
        for q in np.flatnonzero(~fixed):
            values[q] = _tie_aware_retrieved_ap(
                before_sum[q], n_b[q], rel_b[q], n[q], r[q], m[q], harmonic
            )
        scores[spec.name] = values
    return scores


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _check_options(convention: str, tie_aware: bool) -> None:
    if convention not in CONVENTIONS:
        raise HashlabValueError(
            f"unknown mAP convention {convention!r}; expected one of {CONVENTIONS}"
        )
    if not isinstance(tie_aware, bool | np.bool_):
        raise HashlabValueError(f"tie_aware must be True or False, got {tie_aware!r}")


def _run(
    distance_chunks,
    relevance: _Relevance,
    n_query: int,
    n_db: int,
    n_bits: int,
    specs: Sequence[MetricSpec],
    convention: str,
    tie_aware: bool,
    chunk_size: int,
) -> dict[str, np.ndarray]:
    """Per-query scores for all queries, chunk by chunk."""
    if n_query == 0 or n_db == 0:
        raise HashlabValueError(
            f"need at least one query and one database item, got {n_query} "
            f"queries and {n_db} database items"
        )
    harmonic = _harmonic_numbers(n_db) if tie_aware else None
    per_query = {spec.name: np.empty(n_query) for spec in specs}
    for start in range(0, n_query, chunk_size):
        stop = min(start + chunk_size, n_query)
        distances = distance_chunks(start, stop)
        chunk = _chunk_scores(
            distances,
            relevance.rows(start, stop),
            n_bits,
            specs,
            convention,
            tie_aware,
            harmonic,
        )
        for name, values in chunk.items():
            per_query[name][start:stop] = values
    return per_query


def _default_chunk(n_db: int, chunk_size: int | None) -> int:
    if chunk_size is not None:
        if chunk_size <= 0:
            raise HashlabValueError(f"chunk_size must be positive, got {chunk_size}")
        return chunk_size
    return max(1, _PAIRS_PER_CHUNK // max(n_db, 1))


def _per_query_scores(
    query_codes,
    db_codes,
    query_labels,
    db_labels,
    specs: Sequence[MetricSpec],
    convention: str,
    tie_aware: bool,
    relevance,
    packed: bool,
    n_bits: int | None,
    chunk_size: int | None,
) -> tuple[dict[str, np.ndarray], int]:
    _check_options(convention, tie_aware)
    query_packed, db_packed, n_bits = _packed_codes(query_codes, db_codes, packed, n_bits)
    n_query, n_db = len(query_packed), len(db_packed)
    rel = _Relevance(query_labels, db_labels, relevance, n_query, n_db)

    def distances(start: int, stop: int) -> np.ndarray:
        return hamming_distance_matrix(query_packed[start:stop], db_packed, packed=True)

    chunk = _default_chunk(n_db, chunk_size)
    scores = _run(distances, rel, n_query, n_db, n_bits, specs, convention, tie_aware, chunk)
    return scores, n_bits


def evaluate(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: np.ndarray | None = None,
    db_labels: np.ndarray | None = None,
    metrics: Sequence[str] = ("map@all", "map@r2", "precision@r2", "recall@r2"),
    convention: str = "retrieved",
    tie_aware: bool = False,
    *,
    relevance: np.ndarray | None = None,
    packed: bool = False,
    n_bits: int | None = None,
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Mean over queries of each named metric (see the module docstring for the conventions).

    ``query_codes`` (Q, K) and ``db_codes`` (N, K) are 0/1 codes, or packed bytes with
    ``packed=True`` and ``n_bits=K``. Labels are (Q,)/(N,) class ids or (Q, C)/(N, C)
    multi-hot; alternatively pass ``relevance``, a (Q, N) bool matrix (cross-modal or tag
    relevance), and no labels. ``convention`` is ``"retrieved"`` or ``"min_r_k"`` (map@k
    only); ``tie_aware=True`` gives the expected value over all orders of tied items.
    Raises ValueError for unknown metric names, CodeLengthError for mismatched code lengths.
    """
    if isinstance(metrics, str):
        metrics = [metrics]
    specs = [parse_metric(name) for name in metrics]
    scores, _ = _per_query_scores(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        specs,
        convention,
        tie_aware,
        relevance,
        packed,
        n_bits,
        chunk_size,
    )
    return {spec.name: float(scores[spec.name].mean()) for spec in specs}


def evaluate_distances(
    distances: np.ndarray,
    relevance: np.ndarray,
    n_bits: int,
    metrics: Sequence[str] = ("map@all", "map@r2", "precision@r2", "recall@r2"),
    convention: str = "retrieved",
    tie_aware: bool = False,
    per_query: bool = False,
) -> dict[str, float] | dict[str, np.ndarray]:
    """Like :func:`evaluate`, from a precomputed (Q, N) Hamming distance matrix with values in
    0..n_bits and a (Q, N) bool relevance matrix (e.g. distances from an index search).

    ``per_query=True`` returns the (Q,) per-query scores instead of their means.
    """
    _check_options(convention, tie_aware)
    if isinstance(metrics, str):
        metrics = [metrics]
    specs = [parse_metric(name) for name in metrics]
    distances = np.asarray(distances)
    if distances.ndim != 2 or not np.issubdtype(distances.dtype, np.integer):
        raise HashlabValueError(
            f"distances must be a 2-D integer array, got {distances.dtype} {distances.shape}"
        )
    if distances.size and (distances.min() < 0 or distances.max() > n_bits):
        raise HashlabValueError(f"Hamming distances must lie in 0..{n_bits} for {n_bits}-bit codes")
    n_query, n_db = distances.shape
    rel = _Relevance(None, None, relevance, n_query, n_db)
    scores = _run(
        lambda start, stop: distances[start:stop].astype(np.int64, copy=False),
        rel,
        n_query,
        n_db,
        n_bits,
        specs,
        convention,
        tie_aware,
        _default_chunk(n_db, None),
    )
    if per_query:
        return scores
    return {spec.name: float(scores[spec.name].mean()) for spec in specs}


def pr_curve(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: np.ndarray | None = None,
    db_labels: np.ndarray | None = None,
    *,
    relevance: np.ndarray | None = None,
    packed: bool = False,
    n_bits: int | None = None,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of the set within Hamming radius r, for r = 0..K.

    Returns ``(precision, recall)``, each of shape (K + 1,): the mean over all queries of
    precision@r<r> and recall@r<r> (an empty set has precision 0, a query with no relevant
    item has recall 0; so recall at r = K is 1 when every query has a relevant item).
    """
    if packed and n_bits is None:
        raise HashlabValueError("packed=True needs n_bits (the code length in bits)")
    width = n_bits if n_bits is not None else validate_codes(query_codes).shape[1]
    specs = [
        parse_metric(f"{measure}@r{r}")
        for r in range(width + 1)
        for measure in ("precision", "recall")
    ]
    scores, width = _per_query_scores(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        specs,
        "retrieved",
        False,
        relevance,
        packed,
        n_bits,
        chunk_size,
    )
    precision = np.array([scores[f"precision@r{r}"].mean() for r in range(width + 1)])
    recall = np.array([scores[f"recall@r{r}"].mean() for r in range(width + 1)])
    return precision, recall


def precision_at_k_curve(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: np.ndarray | None = None,
    db_labels: np.ndarray | None = None,
    ks: Sequence[int] = (1, 10, 50, 100, 500, 1000),
    tie_aware: bool = False,
    *,
    relevance: np.ndarray | None = None,
    packed: bool = False,
    n_bits: int | None = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """Mean precision@k of the Hamming ranking for each k in ``ks`` (k clipped to N).

    Ties are broken by database order, or averaged over all orders with ``tie_aware=True``.
    """
    ks = [int(k) for k in ks]
    if not ks or min(ks) <= 0:
        raise HashlabValueError(f"ks must be positive integers, got {ks}")
    specs = [parse_metric(f"precision@{k}") for k in dict.fromkeys(ks)]
    scores, _ = _per_query_scores(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        specs,
        "retrieved",
        tie_aware,
        relevance,
        packed,
        n_bits,
        chunk_size,
    )
    return np.array([scores[f"precision@{k}"].mean() for k in ks])
