"""The float upper reference (pooled features ranked by cosine): its AP equals the Hamming
metrics' AP on the same ranking, and it costs what its dimension says."""

from __future__ import annotations

import numpy as np

from hashlab.bench.float_reference import float_reference, ranking_scores
from hashlab.data.digits import load_digits_dataset
from hashlab.metrics import evaluate_distances, relevance_matrix


def _digits():
    data = load_digits_dataset()
    return data.features.astype(np.float32), np.asarray(data.labels)


def test_ranking_ap_matches_the_metrics_module_on_the_same_order():
    x, y = _digits()
    q, db = np.arange(60), np.arange(60, 900)
    ours = ranking_scores(x[q], x[db], y[q], y[db], ["map@all", "map@50"])
    # the same ranking as distinct integer "distances" (rank positions) for the library's
    # own AP implementation: equal AP means equal ranking and equal convention
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    order = np.argsort(-(xn[q] @ xn[db].T), axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(len(db))[None, :].repeat(len(q), 0), axis=1)
    reference = evaluate_distances(
        ranks, relevance_matrix(y[q], y[db]), n_bits=len(db), metrics=["map@all", "map@50"]
    )
    for name in ("map@all", "map@50"):
        assert abs(ours[name] - reference[name]) < 1e-9


def test_hand_computed_ap_on_a_tiny_ranking():
    # query [1, 0]; database at angles: relevant (label 0) items at ranks 1 and 3
    query = np.array([[1.0, 0.0]], np.float32)
    db = np.array([[1.0, 0.1], [1.0, 0.5], [1.0, 2.0], [0.0, 1.0]], np.float32)
    labels_db = np.array([0, 1, 0, 1])
    scores = ranking_scores(query, db, np.array([0]), labels_db, ["map@all", "map@2"])
    assert abs(scores["map@all"] - (1 / 1 + 2 / 3) / 2) < 1e-12
    assert abs(scores["map@2"] - 1.0) < 1e-12  # one relevant item in the top 2, at rank 1


def test_reference_leaves_out_radius_metrics_and_reports_costs():
    x, y = _digits()
    out = float_reference(x, y, np.arange(50), np.arange(50, 600), ["map@all", "map@r2"], [32, 12])
    assert set(out["scores"]) == {"map@all"} and out["not_applicable"] == ["map@r2"]
    assert out["costs"]["float"]["bytes_per_item"] == 64 * 4
    assert out["costs"]["codes"]["32"]["bytes_per_item"] == 4
    assert out["costs"]["float"]["seconds_per_query"] > 0
    assert out["costs"]["codes"]["12"]["bytes_per_item"] == 2  # packed into whole bytes
