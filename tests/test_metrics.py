"""Tests for hashlab.metrics: hand-computed cases with ties, brute-force references (explicit
enumeration of tie orders, per-query loops), agreement with scikit-learn where the conventions
coincide, and the error paths."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.metrics import average_precision_score

from hashlab.codes import CodeLengthError, pack_bits
from hashlab.metrics import (
    evaluate,
    evaluate_distances,
    parse_metric,
    pr_curve,
    precision_at_k_curve,
    relevance_matrix,
)

# --------------------------------------------------------------------------------------------
# A hand-computed case with ties.
# Query code 000, label 1. Database (in stored order), distance = popcount of the code:
#   i0 100 d=1 label 0 (N)     i1 000 d=0 label 1 (R)     i2 010 d=1 label 1 (R)
#   i3 110 d=2 label 0 (N)     i4 011 d=2 label 1 (R)     i5 111 d=3 label 0 (N)
# Ranking with ties broken by database order: i1 | i0 i2 | i3 i4 | i5 = R N R N R N, R = 3.
# --------------------------------------------------------------------------------------------
HAND_QUERY = np.array([[0, 0, 0]], dtype=np.uint8)
HAND_DB = np.array(
    [[1, 0, 0], [0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=np.uint8
)
HAND_QUERY_LABELS = np.array([1])
HAND_DB_LABELS = np.array([0, 1, 1, 0, 1, 0])

HAND_EXPECTED = {
    # (1/1 + 2/3 + 3/5) / 3 = 34/45
    "map@all": 34 / 45,
    # top 2 = R N: sum P(t)rel(t) = 1; one relevant retrieved -> 1
    "map@2": 1.0,
    # top 3 = R N R: (1 + 2/3) / 2 relevant retrieved = 5/6
    "map@3": 5 / 6,
    # within radius 0: i1 only -> 1; radius 1: R N R -> 5/6; radius 2: R N R N R -> 34/45
    "map@r0": 1.0,
    "map@r1": 5 / 6,
    "map@r2": 34 / 45,
    "precision@r0": 1.0,  # 1 of 1
    "recall@r0": 1 / 3,  # 1 of 3
    "precision@r1": 2 / 3,  # 2 of 3
    "recall@r1": 2 / 3,
    "precision@r2": 3 / 5,  # 3 of 5
    "recall@r2": 1.0,
    "precision@r3": 1 / 2,  # 3 of 6
    "precision@2": 1 / 2,  # R N
    "recall@2": 1 / 3,
    "precision@100": 1 / 2,  # k clipped to N = 6: 3 of 6
}


def test_hand_computed_database_order():
    scores = evaluate(
        HAND_QUERY, HAND_DB, HAND_QUERY_LABELS, HAND_DB_LABELS, metrics=list(HAND_EXPECTED)
    )
    for name, expected in HAND_EXPECTED.items():
        assert scores[name] == pytest.approx(expected, abs=1e-12), name


def test_hand_computed_min_r_k_differs_from_retrieved():
    names = ["map@2", "map@3", "map@all"]
    retrieved = evaluate(HAND_QUERY, HAND_DB, HAND_QUERY_LABELS, HAND_DB_LABELS, names)
    min_r_k = evaluate(
        HAND_QUERY, HAND_DB, HAND_QUERY_LABELS, HAND_DB_LABELS, names, convention="min_r_k"
    )
    # map@2: sum = 1, divided by min(R=3, k=2) = 2 -> 1/2 (retrieved: 1)
    assert min_r_k["map@2"] == pytest.approx(1 / 2)
    # map@3: sum = 5/3, divided by min(3, 3) = 3 -> 5/9 (retrieved: 5/6)
    assert min_r_k["map@3"] == pytest.approx(5 / 9)
    assert retrieved["map@3"] == pytest.approx(5 / 6)
    # map@all: all relevant items are retrieved, R_N = R = min(R, N): conventions coincide
    assert min_r_k["map@all"] == pytest.approx(retrieved["map@all"]) == pytest.approx(34 / 45)


def test_hand_computed_tie_aware():
    names = ["map@all", "map@2", "precision@2", "map@r1", "precision@r1", "recall@r2"]
    scores = evaluate(HAND_QUERY, HAND_DB, HAND_QUERY_LABELS, HAND_DB_LABELS, names, tie_aware=True)
    # Buckets: d0 {R}: contributes 1/1 = 1.
    # d1 {N, R} after 1 item (1 relevant): R at position 2 (hits 2) or 3 -> (2/2 + 2/3)/2 = 5/6.
    # d2 {N, R} after 3 items (2 relevant): R at position 4 or 5 -> (3/4 + 3/5)/2 = 27/40.
    # Tie-aware AP@all = (1 + 5/6 + 27/40) / 3 = 301/360  (database order gave 34/45 = 272/360)
    assert scores["map@all"] == pytest.approx(301 / 360)
    # top 2 = i1 + one of {i0, i2}: R R (AP 1) or R N (AP 1/1 = 1) -> 1
    assert scores["map@2"] == pytest.approx(1.0)
    # expected precision@2 = (1 + 1/2) / 2 = 3/4
    assert scores["precision@2"] == pytest.approx(3 / 4)
    # radius 1 holds whole buckets: (1 + 5/6) / 2 relevant = 11/12 (database order: 5/6)
    assert scores["map@r1"] == pytest.approx(11 / 12)
    # sets do not depend on the order of ties
    assert scores["precision@r1"] == pytest.approx(2 / 3)
    assert scores["recall@r2"] == pytest.approx(1.0)
    min_r_k = evaluate(
        HAND_QUERY, HAND_DB, HAND_QUERY_LABELS, HAND_DB_LABELS, ["map@2"], "min_r_k", True
    )
    # R R: sum 2 / min(3, 2) = 1; R N: sum 1 / 2 = 1/2 -> mean 3/4
    assert min_r_k["map@2"] == pytest.approx(3 / 4)


def test_tie_aware_partial_bucket_hand_computed():
    # Four identical database codes (one bucket, n = 4), two of them relevant (r = 2); k = 2.
    # X = relevant in the top 2 ~ Hypergeometric: P(2) = 1/6, P(1) = 4/6, P(0) = 1/6.
    # retrieved: X=2 -> AP 1; X=1 -> R N (1) or N R (1/2 / 1 = 1/2), mean 3/4; X=0 -> 0.
    #   E = 1/6 + 4/6 * 3/4 = 2/3
    # min_r_k (divide by min(R=2, k=2) = 2): X=2 -> 1; R N -> 1/2; N R -> 1/4; X=0 -> 0.
    #   E = 1/6 + 4/6 * 3/8 = 5/12
    query = np.zeros((1, 8), dtype=np.uint8)
    database = np.zeros((4, 8), dtype=np.uint8)
    labels = np.array([1, 0, 1, 0])  # stored order N R N R
    retrieved = evaluate(query, database, [0], labels, ["map@2"], "retrieved", True)
    min_r_k = evaluate(query, database, [0], labels, ["map@2"], "min_r_k", True)
    assert retrieved["map@2"] == pytest.approx(2 / 3)
    assert min_r_k["map@2"] == pytest.approx(5 / 12)
    # database order: N R -> retrieved 1/2 / 1 = 1/2, min_r_k 1/2 / 2 = 1/4
    assert evaluate(query, database, [0], labels, ["map@2"])["map@2"] == pytest.approx(1 / 2)


# --------------------------------------------------------------------------------------------
# Brute-force references
# --------------------------------------------------------------------------------------------


def _ap_of_list(relevant_in_order: np.ndarray, k: int, convention: str, n_relevant: int):
    top = np.asarray(relevant_in_order[:k], dtype=bool)
    if top.size == 0:
        return 0.0
    hits = np.cumsum(top)
    total = (hits / np.arange(1, len(top) + 1))[top].sum()
    denominator = hits[-1] if convention == "retrieved" else min(n_relevant, k)
    return total / denominator if denominator > 0 else 0.0


def _tie_aware_by_enumeration(distance: np.ndarray, relevant: np.ndarray, k, convention):
    """Mean AP over every order of tied items (feasible for tiny databases only)."""
    buckets = [np.flatnonzero(distance == d) for d in np.unique(distance)]
    values = [
        _ap_of_list(relevant[np.concatenate(orders)], k, convention, relevant.sum())
        for orders in itertools.product(*(itertools.permutations(b) for b in buckets))
    ]
    return float(np.mean(values))


def _random_problem(rng, n_query, n_db, n_bits, n_classes):
    query_codes = rng.integers(0, 2, (n_query, n_bits), dtype=np.uint8)
    db_codes = rng.integers(0, 2, (n_db, n_bits), dtype=np.uint8)
    query_labels = rng.integers(0, n_classes, n_query)
    db_labels = rng.integers(0, n_classes, n_db)
    distances = (query_codes[:, None, :] != db_codes[None, :, :]).sum(axis=2)
    return query_codes, db_codes, query_labels, db_labels, distances


@pytest.mark.parametrize("convention", ["retrieved", "min_r_k"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_at_k_matches_brute_force_with_and_without_ties(seed, convention):
    rng = np.random.default_rng(seed)
    qc, dc, ql, dl, distances = _random_problem(rng, 6, 8, 5, 3)
    relevant = ql[:, None] == dl[None, :]
    for k in (1, 2, 3, 5, 8):
        name = f"map@{k}"
        ordered = evaluate(qc, dc, ql, dl, [name], convention)[name]
        ties = evaluate(qc, dc, ql, dl, [name], convention, tie_aware=True)[name]
        expected_ordered = np.mean(
            [
                _ap_of_list(
                    relevant[q][np.argsort(distances[q], kind="stable")],
                    k,
                    convention,
                    relevant[q].sum(),
                )
                for q in range(len(qc))
            ]
        )
        expected_ties = np.mean(
            [
                _tie_aware_by_enumeration(distances[q], relevant[q], k, convention)
                for q in range(len(qc))
            ]
        )
        assert ordered == pytest.approx(expected_ordered, abs=1e-12)
        assert ties == pytest.approx(expected_ties, abs=1e-12)


def test_radius_metrics_and_precision_at_k_match_brute_force():
    rng = np.random.default_rng(7)
    qc, dc, ql, dl, distances = _random_problem(rng, 20, 300, 12, 4)
    relevant = ql[:, None] == dl[None, :]
    names = [f"{m}@r{r}" for r in range(13) for m in ("map", "precision", "recall")]
    names += [f"{m}@{k}" for k in (1, 7, 50, 300) for m in ("precision", "recall")]
    scores = evaluate(qc, dc, ql, dl, names)
    for r in range(13):
        precisions, recalls, aps = [], [], []
        for q in range(len(qc)):
            within = distances[q] <= r
            n_hits = (within & relevant[q]).sum()
            precisions.append(n_hits / within.sum() if within.sum() else 0.0)
            recalls.append(n_hits / relevant[q].sum() if relevant[q].sum() else 0.0)
            order = np.argsort(distances[q], kind="stable")[: within.sum()]
            aps.append(_ap_of_list(relevant[q][order], len(order), "retrieved", 0))
        assert scores[f"precision@r{r}"] == pytest.approx(np.mean(precisions), abs=1e-12)
        assert scores[f"recall@r{r}"] == pytest.approx(np.mean(recalls), abs=1e-12)
        assert scores[f"map@r{r}"] == pytest.approx(np.mean(aps), abs=1e-12)
    for k in (1, 7, 50, 300):
        order = np.argsort(distances, axis=1, kind="stable")[:, :k]
        top_hits = np.take_along_axis(relevant, order, axis=1).sum(axis=1)
        assert scores[f"precision@{k}"] == pytest.approx(np.mean(top_hits / k))
        assert scores[f"recall@{k}"] == pytest.approx(np.mean(top_hits / relevant.sum(1)))
    curve = precision_at_k_curve(qc, dc, ql, dl, ks=[1, 7, 50, 300])
    np.testing.assert_allclose(curve, [scores[f"precision@{k}"] for k in (1, 7, 50, 300)])


def test_tie_aware_precision_recall_at_k_match_enumeration():
    rng = np.random.default_rng(3)
    qc, dc, ql, dl, distances = _random_problem(rng, 6, 8, 4, 2)
    relevant = ql[:, None] == dl[None, :]
    for k in (1, 3, 6):
        names = [f"precision@{k}", f"recall@{k}"]
        scores = evaluate(qc, dc, ql, dl, names, tie_aware=True)
        precisions, recalls = [], []
        for q in range(len(qc)):
            buckets = [np.flatnonzero(distances[q] == d) for d in np.unique(distances[q])]
            hits = [
                relevant[q][np.concatenate(orders)][:k].sum()
                for orders in itertools.product(*(itertools.permutations(b) for b in buckets))
            ]
            precisions.append(np.mean(hits) / k)
            n_relevant = relevant[q].sum()
            recalls.append(np.mean(hits) / n_relevant if n_relevant else 0.0)
        assert scores[names[0]] == pytest.approx(np.mean(precisions), abs=1e-12)
        assert scores[names[1]] == pytest.approx(np.mean(recalls), abs=1e-12)


# --------------------------------------------------------------------------------------------
# scikit-learn: average_precision_score = sum_n (R_n - R_{n-1}) P_n over score thresholds,
# one threshold per distinct score. With distinct Hamming distances every threshold admits one
# item, which is exactly our AP@all. With ties, sklearn takes the precision at the end of a
# tied block for all its relevant items (e.g. N then a tie {R, R}: sklearn 2/3, true AP
# (1/2 + 2/3)/2 = 7/12 in either order), which is neither the database-order AP nor the
# tie-aware AP. So we compare (a) on distinct distances, (b) with the database order encoded
# in the score (distance + index / (N + 1)), which makes all scores distinct.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_map_all_matches_sklearn_with_distinct_distances(seed):
    rng = np.random.default_rng(seed)
    n_bits = 24
    query = np.zeros((1, n_bits), dtype=np.uint8)
    # one database item per distance 0..K, stored in random order
    db = np.zeros((n_bits + 1, n_bits), dtype=np.uint8)
    for row, distance in enumerate(rng.permutation(n_bits + 1)):
        db[row, rng.choice(n_bits, distance, replace=False)] = 1
    db_labels = rng.integers(0, 3, n_bits + 1)
    db_labels[0] = 0  # the query has at least one relevant item
    distance = db.sum(axis=1, dtype=np.int64)  # (uint8 sums to uint64, whose negation wraps)
    expected = average_precision_score(db_labels == 0, -distance)
    for tie_aware in (False, True):
        score = evaluate(query, db, [0], db_labels, ["map@all"], tie_aware=tie_aware)
        assert score["map@all"] == pytest.approx(expected, abs=1e-12)


def test_map_all_matches_sklearn_with_database_order_scores_on_real_data():
    # Real data: sklearn digits, 16-bit sign-of-random-projection codes (many ties).
    digits = load_digits()
    features = digits.data - digits.data.mean(axis=0)
    projection = np.random.default_rng(0).standard_normal((features.shape[1], 16))
    codes = (features @ projection > 0).astype(np.uint8)
    query_codes, db_codes = codes[:40], codes[40:]
    query_labels, db_labels = digits.target[:40], digits.target[40:]
    distances = (query_codes[:, None, :] != db_codes[None, :, :]).sum(axis=2)
    assert np.bincount(distances[0]).max() > 100  # ties, massively
    tie_break = np.arange(len(db_codes)) / (len(db_codes) + 1)
    expected = np.mean(
        [
            average_precision_score(db_labels == label, -(distances[q] + tie_break))
            for q, label in enumerate(query_labels)
        ]
    )
    scores = evaluate(query_codes, db_codes, query_labels, db_labels, ["map@all"])
    assert scores["map@all"] == pytest.approx(expected, abs=1e-12)
    # and the codes carry real information: far better than chance (~0.1 for 10 classes)
    assert scores["map@all"] > 0.3
    shuffled = evaluate(query_codes, db_codes, query_labels, np.roll(db_labels, 7), ["map@all"])
    assert scores["map@all"] > shuffled["map@all"] + 0.15
    # tie-aware AP differs from the database-order AP on such codes
    tie_aware = evaluate(
        query_codes, db_codes, query_labels, db_labels, ["map@all"], "retrieved", True
    )["map@all"]
    assert tie_aware != pytest.approx(scores["map@all"], abs=1e-6)


# --------------------------------------------------------------------------------------------
# Multi-label relevance, explicit relevance, packed codes, chunking
# --------------------------------------------------------------------------------------------


def test_multi_label_relevance_hand_computed():
    # Query labels {0, 2}. Database (distance from query code 0000 = popcount):
    #   j0 d=1 {1}    (N)     j1 d=2 {0, 1} (R, shares 0)     j2 d=3 {2} (R)
    #   j3 d=0 {}     (N)     j4 d=4 {0, 2} (R)
    # Ranking: j3 j0 j1 j2 j4 = N N R R R, R = 3.
    # AP@all = (1/3 + 2/4 + 3/5) / 3 = (20 + 30 + 36) / 180 = 86/180 = 43/90
    query = np.zeros((1, 4), dtype=np.uint8)
    db = np.array(
        [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=np.uint8
    )
    query_labels = np.array([[1, 0, 1]])
    db_labels = np.array([[0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 1]])
    scores = evaluate(
        query, db, query_labels, db_labels, ["map@all", "precision@r2", "recall@r2", "map@r2"]
    )
    assert scores["map@all"] == pytest.approx(43 / 90)
    assert scores["precision@r2"] == pytest.approx(1 / 3)  # j3 j0 j1: one relevant
    assert scores["recall@r2"] == pytest.approx(1 / 3)
    assert scores["map@r2"] == pytest.approx(1 / 3)  # (1/3) / 1 relevant retrieved
    np.testing.assert_array_equal(relevance_matrix(query_labels, db_labels), [[0, 1, 1, 0, 1]])


def test_explicit_relevance_packed_codes_and_chunks_agree():
    rng = np.random.default_rng(11)
    qc, dc, ql, dl, distances = _random_problem(rng, 37, 500, 20, 5)
    names = ["map@all", "map@100", "map@r3", "precision@r3", "recall@r3", "precision@50"]
    reference = evaluate(qc, dc, ql, dl, names)
    relevance = ql[:, None] == dl[None, :]
    for tie_aware in (False, True):
        base = evaluate(qc, dc, ql, dl, names, tie_aware=tie_aware)
        variants = [
            evaluate(qc, dc, metrics=names, tie_aware=tie_aware, relevance=relevance),
            evaluate(
                pack_bits(qc),
                pack_bits(dc),
                ql,
                dl,
                names,
                tie_aware=tie_aware,
                packed=True,
                n_bits=20,
            ),
            evaluate(qc, dc, ql, dl, names, tie_aware=tie_aware, chunk_size=1),
            evaluate_distances(distances, relevance, 20, names, tie_aware=tie_aware),
        ]
        for variant in variants:
            for name in names:
                assert variant[name] == pytest.approx(base[name], abs=1e-12), name
    assert base["precision@r3"] == reference["precision@r3"]  # sets ignore tie order
    with pytest.raises(ValueError, match="either labels or a relevance"):
        evaluate(qc, dc, ql, dl, names, relevance=relevance)


# --------------------------------------------------------------------------------------------
# PR curve and empty-result conventions
# --------------------------------------------------------------------------------------------


def test_pr_curve_ends_at_full_recall_and_matches_radius_metrics():
    rng = np.random.default_rng(5)
    qc, dc, ql, dl, _ = _random_problem(rng, 15, 400, 10, 4)
    precision, recall = pr_curve(qc, dc, ql, dl)
    assert precision.shape == recall.shape == (11,)
    assert recall[-1] == pytest.approx(1.0)  # radius K holds the whole database
    relevant = ql[:, None] == dl[None, :]
    assert precision[-1] == pytest.approx(relevant.mean())  # ... so precision = relevant share
    assert np.all(np.diff(recall) >= 0)
    scores = evaluate(qc, dc, ql, dl, ["precision@r4", "recall@r4"])
    assert precision[4] == pytest.approx(scores["precision@r4"])
    assert recall[4] == pytest.approx(scores["recall@r4"])
    packed_curve = pr_curve(pack_bits(qc), pack_bits(dc), ql, dl, packed=True, n_bits=10)
    np.testing.assert_allclose(packed_curve[0], precision)


def test_empty_result_conventions():
    # Query 0000 label 0; database codes at distance 3 and 4, none with label 0 except the
    # farthest one. Query 2 has label 9: no relevant item anywhere.
    query = np.zeros((2, 4), dtype=np.uint8)
    db = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=np.uint8)
    scores = evaluate(
        query,
        db,
        [0, 9],
        [1, 0],
        ["map@r2", "precision@r2", "recall@r2", "map@1", "recall@1", "map@all"],
    )
    assert scores["map@r2"] == 0.0  # nothing within radius 2 -> AP 0
    assert scores["precision@r2"] == 0.0  # empty set -> precision 0
    assert scores["recall@r2"] == 0.0
    assert scores["map@1"] == 0.0  # top 1 holds no relevant item -> 0
    assert scores["recall@1"] == 0.0  # query 9 has no relevant item: recall 0 by convention
    # query 0: N R -> AP 1/2; query 9: no relevant item -> 0; mean 1/4
    assert scores["map@all"] == pytest.approx(1 / 4)
    precision, recall = pr_curve(query, db, [0, 9], [1, 0])
    np.testing.assert_allclose(precision, [0, 0, 0, 0, 0.25])  # query 9 precision 0 at r=4
    np.testing.assert_allclose(recall, [0, 0, 0, 0, 0.5])  # query 9 recall 0 by convention


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["map@", "map@foo", "precision@all", "map@0", "ndcg@10", "map@r", "MAP@all", "map@-5"],
)
def test_bad_metric_names_raise_naming_the_metric(name):
    with pytest.raises(ValueError, match="valid forms") as error:
        evaluate(HAND_QUERY, HAND_DB, HAND_QUERY_LABELS, HAND_DB_LABELS, ["map@all", name])
    assert repr(name) in str(error.value)
    assert "\n" not in str(error.value)  # the CLI prints it as one line


def test_parse_metric_forms():
    assert parse_metric("map@all").cutoff == "all"
    assert (parse_metric("map@54000").cutoff, parse_metric("map@54000").value) == ("top", 54000)
    assert (parse_metric("recall@r0").cutoff, parse_metric("recall@r0").value) == ("radius", 0)


def test_mismatched_code_lengths_raise():
    with pytest.raises(CodeLengthError, match="16 bits.*32"):
        evaluate(np.zeros((2, 16), np.uint8), np.zeros((3, 32), np.uint8), [0, 1], [0, 1, 2])
    with pytest.raises(CodeLengthError):
        evaluate(
            np.zeros((2, 2), np.uint8),
            np.zeros((3, 4), np.uint8),
            [0, 1],
            [0, 1, 2],
            packed=True,
            n_bits=16,
        )
    with pytest.raises(CodeLengthError):
        pr_curve(np.zeros((2, 16), np.uint8), np.zeros((3, 8), np.uint8), [0, 1], [0, 1, 2])


def test_bad_arguments_raise_value_errors():
    args = (HAND_QUERY, HAND_DB, HAND_QUERY_LABELS, HAND_DB_LABELS)
    with pytest.raises(ValueError, match="convention"):
        evaluate(*args, convention="min(R,k)")
    with pytest.raises(ValueError, match="labels"):
        evaluate(HAND_QUERY, HAND_DB, HAND_QUERY_LABELS, HAND_DB_LABELS[:3])
    with pytest.raises(ValueError, match="multi-hot"):
        evaluate(HAND_QUERY, HAND_DB, [[3]], HAND_DB_LABELS[:, None] * 2)
    with pytest.raises(ValueError, match="n_bits"):
        evaluate(*args, packed=True)


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def test_plots_write_png_files(tmp_path):
    from hashlab.bench.plots import plot_metric_vs_bits, plot_pr_curves

    rng = np.random.default_rng(0)
    qc, dc, ql, dl, _ = _random_problem(rng, 5, 50, 8, 2)
    curve = pr_curve(qc, dc, ql, dl)
    pr_path = plot_pr_curves({"random": curve}, tmp_path / "pr.png", title="random codes")
    rows = [
        {"method": "lsh", "bits": 16, "map@r2": 0.2},
        {"method": "lsh", "bits": 32, "map@r2": 0.3},
        {"method": "itq", "bits": 16, "map@r2": 0.4},
    ]
    bits_path = plot_metric_vs_bits(rows, "map@r2", tmp_path / "sub" / "map.png")
    for path in (pr_path, bits_path):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="map@all"):
        plot_metric_vs_bits(rows, "map@all", tmp_path / "none.png")


def test_evaluate_distances_rejects_out_of_range_distances():
    distances = np.array([[0, 5]])
    with pytest.raises(ValueError, match="0..4"):
        evaluate_distances(distances, np.array([[True, False]]), 4, ["map@all"])
    per_query = evaluate_distances(
        np.array([[0, 3], [3, 0]]),
        np.array([[False, True], [False, True]]),
        4,
        ["map@all"],
        per_query=True,
    )  # query 0: N R -> 1/2; query 1: R N -> 1
    np.testing.assert_allclose(per_query["map@all"], [0.5, 1.0])
