"""Every registered shallow hashing method: protocol, persistence, input checks, and retrieval
quality on real data (scikit-learn's handwritten digits), plus hand-checkable pieces of the
individual algorithms.

Quality protocol: 300 random digits are queries, the other 1,497 are both the training set
and the database; mAP over the whole ranking (`map@all`, ties broken by database order).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.datasets import load_digits
from threadpoolctl import threadpool_limits

import hashlab
from hashlab.data.dataset import as_multihot
from hashlab.methods.base import NotFittedError, ShallowMethod
from hashlab.methods.registry import get_method_class
from hashlab.metrics import evaluate

SHALLOW_METHODS = [
    name
    for name in hashlab.list_methods()
    # only the package's own methods: other test modules may register test doubles
    if issubclass(get_method_class(name), ShallowMethod)
    and get_method_class(name).__module__.startswith("hashlab.methods.")
]
SUPERVISED = ["itq_cca", "sdh", "ksh"]
UNSUPERVISED_BASELINES = ["lsh", "pcah", "itq", "sh"]
N_BITS = 32
# Smaller-than-default settings only where a default would cost seconds on a 2-core CI box:
# KSH's gradient refinement (paper: up to 500 steps per bit) and BRE's all-pairs coordinate
# descent (cost grows with n_train^2 * n_anchors).
FAST_PARAMS: dict[str, dict[str, object]] = {
    "ksh": {"max_iter": 30, "n_labelled": 500},
    "bre": {"n_train": 250, "n_anchors": 32, "n_sweeps": 1},
}


def make(name: str, n_bits: int = N_BITS, **params: object) -> ShallowMethod:
    return hashlab.create(name, n_bits=n_bits, **{**FAST_PARAMS.get(name, {}), **params})


@pytest.fixture(scope="module", autouse=True)
def single_threaded_blas():
    """These matrices are small: BLAS threads only add overhead, and on a busy 2-core machine
    spinning threads made the fits 5-10x slower in wall time (threadpoolctl ships with
    scikit-learn)."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def digits() -> dict[str, np.ndarray]:
    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    query, database = order[:300], order[300:]
    features = data.data.astype(np.float64)
    return {
        "query_x": features[query],
        "query_y": data.target[query],
        "db_x": features[database],
        "db_y": data.target[database],
    }


@pytest.fixture(scope="module")
def fitted(digits) -> dict[str, ShallowMethod]:
    """Each method fitted once on the digits database at 32 bits."""
    return {name: make(name).fit(digits["db_x"], digits["db_y"]) for name in SHALLOW_METHODS}


@pytest.fixture(scope="module")
def map_scores(digits, fitted) -> dict[str, float]:
    scores = {}
    for name, model in fitted.items():
        result = evaluate(
            model.encode(digits["query_x"]),
            model.encode(digits["db_x"]),
            digits["query_y"],
            digits["db_y"],
            metrics=["map@all"],
        )
        scores[name] = result["map@all"]
    return scores


def test_all_shallow_baselines_are_registered():
    expected = {"lsh", "pcah", "itq", "sh", "sph", "agh", "itq_cca", "sdh", "ksh", "bre"}
    assert expected <= set(SHALLOW_METHODS)
    for name in SUPERVISED:
        assert get_method_class(name).tags.supervision == "labels"
    for name in expected - set(SUPERVISED):
        assert get_method_class(name).tags.supervision == "none"


# -- protocol and persistence ----------------------------------------------------------------


@pytest.mark.parametrize("name", SHALLOW_METHODS)
def test_codes_are_uint8_bits_and_survive_save_load(name, digits, fitted, tmp_path):
    model = fitted[name]
    codes = model.encode(digits["query_x"])
    assert codes.shape == (300, N_BITS)
    assert codes.dtype == np.uint8
    assert set(np.unique(codes)) <= {0, 1}
    # no bit is constant on the database: a dead bit would mean a broken projection
    db_codes = model.encode(digits["db_x"])
    assert (db_codes.min(axis=0) == 0).all() and (db_codes.max(axis=0) == 1).all()

    model.save(tmp_path / name)
    config = json.loads((tmp_path / name / "config.json").read_text())
    assert config["method"] == name
    assert config["params"] == model.get_params()
    reloaded = hashlab.load(tmp_path / name)
    assert type(reloaded) is type(model)
    assert reloaded.get_params() == model.get_params()
    np.testing.assert_array_equal(reloaded.encode(digits["query_x"]), codes)


@pytest.mark.parametrize("name", SHALLOW_METHODS)
def test_get_params_recreates_the_same_method(name):
    model = make(name, n_bits=16, seed=3)
    clone = type(model)(**model.get_params())
    assert clone.get_params() == model.get_params()
    assert model.get_params()["n_bits"] == 16 and model.get_params()["seed"] == 3


@pytest.mark.parametrize("name", SHALLOW_METHODS)
def test_encode_before_fit_raises(name, digits):
    with pytest.raises(NotFittedError, match="fit"):
        make(name).encode(digits["query_x"])


@pytest.mark.parametrize("name", SHALLOW_METHODS)
def test_wrong_feature_dimension_raises(name, digits, fitted):
    with pytest.raises(ValueError, match="63 dimensions.*fitted on 64"):
        fitted[name].encode(digits["query_x"][:, :63])


@pytest.mark.parametrize("name", SHALLOW_METHODS)
def test_nan_features_raise(name, digits, fitted):
    broken = digits["query_x"][:20].copy()
    broken[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted[name].encode(broken)
    with pytest.raises(ValueError, match="NaN"):
        make(name, n_bits=8).fit(broken, np.arange(20) % 2)


@pytest.mark.parametrize("name", SUPERVISED)
def test_supervised_methods_need_labels(name, digits):
    with pytest.raises(ValueError, match="labels"):
        make(name).fit(digits["db_x"])


@pytest.mark.parametrize("name", ["itq_cca", "sdh"])
def test_multi_hot_labels_give_the_same_codes_as_class_ids(name, digits):
    params = {"n_anchors": 200} if name == "sdh" else {}
    by_ids = make(name, n_bits=16, **params).fit(digits["db_x"], digits["db_y"])
    by_multihot = make(name, n_bits=16, **params).fit(digits["db_x"], as_multihot(digits["db_y"]))
    np.testing.assert_array_equal(
        by_ids.encode(digits["query_x"]), by_multihot.encode(digits["query_x"])
    )


@pytest.mark.parametrize("name", ["pcah", "itq"])
def test_more_bits_than_dimensions_is_a_clear_error(name, digits):
    with pytest.raises(ValueError, match="at most 64 bits"):
        make(name, n_bits=65).fit(digits["db_x"])


# -- retrieval quality on real data ----------------------------------------------------------


def test_every_method_beats_random_codes(digits, map_scores):
    rng = np.random.default_rng(0)
    random_query = rng.integers(0, 2, size=(300, N_BITS), dtype=np.uint8)
    random_db = rng.integers(0, 2, size=(len(digits["db_y"]), N_BITS), dtype=np.uint8)
    random_map = evaluate(
        random_query, random_db, digits["query_y"], digits["db_y"], metrics=["map@all"]
    )["map@all"]
    assert random_map < 0.13  # ten balanced classes: chance is about 0.1
    losers = {name: score for name, score in map_scores.items() if score < random_map + 0.1}
    assert not losers, f"no better than random codes ({random_map:.3f}): {losers}"


def test_supervised_methods_beat_unsupervised_ones(map_scores):
    best_unsupervised = max(map_scores[name] for name in UNSUPERVISED_BASELINES)
    for name in SUPERVISED:
        assert map_scores[name] > best_unsupervised + 0.05, map_scores


def test_itq_beats_pca_hashing(map_scores):
    # the point of the ITQ paper: rotating PCA codes fixes PCA's unbalanced bit variances
    assert map_scores["itq"] > map_scores["pcah"] + 0.1, map_scores


# -- pieces of individual algorithms, checked by hand --------------------------------------


def test_itq_rotation_is_orthogonal_and_reduces_quantization_loss(digits):
    from hashlab.methods.itq import learn_itq_rotation

    centred = digits["db_x"] - digits["db_x"].mean(axis=0)
    v = centred @ np.linalg.svd(centred, full_matrices=False)[2][:16].T
    v /= np.abs(v).mean()  # the loss compares v with +-1, so put v on that scale

    def loss(rotation: np.ndarray) -> float:
        projected = v @ rotation
        return float(((np.where(projected >= 0, 1.0, -1.0) - projected) ** 2).sum())

    losses = [loss(learn_itq_rotation(v, n, np.random.default_rng(0))) for n in (0, 1, 5, 50)]
    rotation = learn_itq_rotation(v, 50, np.random.default_rng(0))
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(16), atol=1e-10)
    assert all(a >= b - 1e-9 for a, b in zip(losses, losses[1:], strict=False)), losses
    assert losses[-1] < 0.95 * losses[0]


def test_spectral_hashing_picks_the_lowest_frequency_modes():
    # uniform box 4 x 1.5: frequencies k / width are 1/4, 2/4, 3/4, ... on the long axis and
    # 1/1.5, 2/1.5, ... on the short one, so the 4 smallest are (long, k=1), (long, k=2),
    # (short, k=1), (long, k=3).
    rng = np.random.default_rng(0)
    box = rng.uniform(0, 1, size=(20000, 2)) * [4.0, 1.5]
    model = make("sh", n_bits=4).fit(box)
    np.testing.assert_array_equal(model.mode_dims_, [0, 0, 1, 0])
    np.testing.assert_allclose(
        model.omegas_, np.pi * np.array([1 / 4, 2 / 4, 1 / 1.5, 3 / 4]), rtol=1e-2
    )
    # the k=1 eigenfunction of the long axis splits the box at its middle
    codes = model.encode(np.array([[1.0, 0.75], [3.0, 0.75]]))
    assert codes[0, 0] != codes[1, 0]


def test_spherical_hashing_bits_are_balanced_and_pairwise_independent(digits):
    model = make("sph", n_bits=16).fit(digits["db_x"])
    codes = model.encode(digits["db_x"]).astype(np.float64)
    np.testing.assert_allclose(codes.mean(axis=0), 0.5, atol=0.03)
    both = (codes.T @ codes / len(codes))[~np.eye(16, dtype=bool)]
    # the paper's stopping rule: mean and spread of |o_ij - n/4| within 10% / 15% of n/4
    assert np.abs(both - 0.25).mean() <= 0.1 * 0.25 + 0.01


def test_anchor_graph_rows_are_normalised_over_the_nearest_anchors():
    from hashlab.methods.agh import anchor_graph_rows

    anchors = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    z = anchor_graph_rows(np.array([[0.25, 0.0]]), anchors, n_nearest=2, bandwidth=1.0)
    # exp(-0.0625) : exp(-0.5625) over the two nearest anchors, nothing on the far one
    weights = np.exp([-0.0625, -0.5625])
    np.testing.assert_allclose(z, [[*weights / weights.sum(), 0.0]])


def test_ksh_similarity_operator_matches_the_dense_label_matrix():
    from hashlab.methods.ksh import _similarity_operator

    rng = np.random.default_rng(0)
    single = as_multihot(rng.integers(0, 4, size=30), 4).astype(np.float64)
    multi = (rng.random((30, 5)) < 0.3).astype(np.float64)
    v = rng.standard_normal((30, 3))
    for labels in (single, multi):
        dense = np.where(labels @ labels.T > 0, 1.0, -1.0)
        np.testing.assert_allclose(_similarity_operator(labels)(v), dense @ v)


def test_bre_coordinate_step_is_the_exact_minimiser():
    """One BRE weight update is at least as good as the best value on a fine grid."""
    from hashlab.methods.bre import BinaryReconstructiveEmbedding

    rng = np.random.default_rng(1)
    n, n_anchors, k = 30, 4, 3
    kernel = rng.standard_normal((n, n_anchors))
    target = rng.random((n, n))
    target = (target + target.T) / 2
    weights = rng.standard_normal((n_anchors, k))
    upper = np.triu_indices(n, 1)

    def objective(w: np.ndarray) -> float:
        signs = np.where(kernel @ w > 0, 1.0, -1.0)
        return float(((target - (k - signs @ signs.T) / 2 / k)[upper] ** 2).sum())

    outputs = kernel @ weights
    signs = np.where(outputs > 0, 1.0, -1.0)
    for p, q in [(0, 0), (1, 2), (2, 3)]:
        own = (1 - np.outer(signs[:, p], signs[:, p])) / 2
        residual = target - ((k - signs @ signs.T) / 2 - own) / k
        coupling = 1 / (2 * k * k) - residual / k
        np.fill_diagonal(coupling, 0.0)
        grid_best = min(
            objective(weights + np.outer(np.eye(n_anchors)[q], np.eye(k)[p]) * step)
            for step in np.linspace(-30, 30, 3001)
        )
        before = objective(weights)
        BinaryReconstructiveEmbedding._update_weight(
            kernel[:, q], outputs, signs, weights, coupling, p, q
        )
        assert objective(weights) <= min(grid_best, before) + 1e-12
        np.testing.assert_array_equal(signs, np.where(kernel @ weights > 0, 1.0, -1.0))


def test_itq_cca_single_class_labels_are_rejected(digits):
    with pytest.raises(ValueError, match="at least 2 classes"):
        make("itq_cca").fit(digits["db_x"], np.zeros(len(digits["db_x"]), dtype=int))
