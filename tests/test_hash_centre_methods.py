"""CSQ, OrthoHash, DPN and GreedyHash: their centres, their losses against values computed
by hand (numpy) on tiny batches, and short real runs that beat ITQ on the same features
(scikit-learn's digits, and pairs of digits with both labels for the multi-label case).
"""

import json

import numpy as np
import pytest
import torch

import hashlab
from hashlab.data.digits import load_digits_dataset
from hashlab.data.splits import make_split
from hashlab.errors import ConfigError, InputError
from hashlab.losses.centres import combine_centres, hadamard_centres, make_centres
from hashlab.losses.greedy import cubic_bit_penalty, greedy_sign
from hashlab.losses.hash_centre import (
    central_similarity_loss,
    orthohash_loss,
    polarization_loss,
)
from hashlab.metrics import evaluate

METHODS = ["csq", "orthohash", "dpn", "greedyhash"]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hamming_matrix(centres):
    return (centres[:, None, :] != centres[None, :, :]).sum(axis=2)


# -- centres ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_classes, n_bits", [(10, 16), (10, 32), (64, 32), (100, 64)])
def test_hadamard_centres_are_at_least_half_the_bits_apart(n_classes, n_bits):
    centres, report = hadamard_centres(n_classes, n_bits, np.random.default_rng(0))
    assert centres.shape == (n_classes, n_bits) and set(np.unique(centres)) == {-1.0, 1.0}
    distances = hamming_matrix(centres)[np.triu_indices(n_classes, 1)]
    assert distances.min() >= n_bits // 2
    assert report["kind"] == "hadamard" and report["min_hamming"] == distances.min()
    assert "fallback" not in report


@pytest.mark.parametrize("n_classes, n_bits, reason", [(65, 32, "classes"), (10, 48, "power")])
def test_bernoulli_fallback_is_reported_with_its_distance(n_classes, n_bits, reason):
    centres, report = hadamard_centres(n_classes, n_bits, np.random.default_rng(0))
    assert report["kind"] == "balanced_bernoulli" and reason in report["fallback"]
    assert (centres == -1).sum(axis=1).tolist() == [n_bits // 2] * n_classes  # K/2 bits each
    distances = hamming_matrix(centres)[np.triu_indices(n_classes, 1)]
    assert report["min_hamming"] == distances.min()
    assert report["mean_hamming"] == pytest.approx(distances.mean())
    again, _ = hadamard_centres(n_classes, n_bits, np.random.default_rng(0))
    np.testing.assert_array_equal(again, centres)  # seeded: the same run, the same centres
    with pytest.raises(ConfigError, match="centres must be one of"):
        make_centres("gaussian", 3, 8, np.random.default_rng(0))


def test_multi_label_centre_is_the_rebinarised_centroid_ties_from_the_tie_bits():
    centres = torch.tensor([[1.0, 1.0, -1.0, -1.0], [1.0, -1.0, 1.0, -1.0], [1.0, 1.0, 1.0, 1.0]])
    ties = torch.tensor([-1.0, 1.0, 1.0, -1.0])
    labels = torch.tensor([[0, 1, 0], [1, 1, 0], [1, 1, 1], [0, 0, 0]])
    out = combine_centres(labels, centres, ties)
    # row 1: sum (2, 0, 0, -2) -> (1, tie 1, tie 1, -1); row 3: no label -> the tie bits
    expected = [[1, -1, 1, -1], [1, 1, 1, -1], [1, 1, 1, -1], [-1, 1, 1, -1]]
    np.testing.assert_array_equal(out.numpy(), expected)


# -- losses against numpy -----------------------------------------------------------------
U = np.array([[0.5, -0.5, 0.9], [-0.2, 0.8, -0.99]])
LABELS = np.array([[1.0, 0.0], [1.0, 1.0]])
CENTRES = np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0]])


def tensor(a):
    return torch.tensor(a, dtype=torch.float64)


def test_central_similarity_loss_by_hand():
    target = np.array([[1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])  # item centres, e.g. combined
    p, t = (U + 1) / 2, (target + 1) / 2
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()
    expected = bce + 0.01 * ((np.abs(U) - 1) ** 2).mean()
    got = central_similarity_loss(tensor(U), tensor(target), quantization_weight=0.01)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_polarization_loss_by_hand():
    # item 0: class 0 only; item 1: both classes (hinge to each target, summed)
    hinge0 = np.maximum(1.0 - U[0] * CENTRES[0], 0).sum()
    hinge1 = sum(np.maximum(1.0 - U[1] * CENTRES[c], 0).sum() for c in (0, 1))
    got = polarization_loss(tensor(U), tensor(LABELS), tensor(CENTRES), margin=1.0)
    assert got.item() == pytest.approx((hinge0 + hinge1) / 2, rel=1e-9)
    assert polarization_loss(tensor(CENTRES * 3), tensor(np.eye(2)), tensor(CENTRES)).item() == 0


def numpy_cosines():
    u = U / np.linalg.norm(U, axis=1, keepdims=True)
    c = CENTRES / np.linalg.norm(CENTRES, axis=1, keepdims=True)
    return u @ c.T


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def margin_logits(cos, labels, margin_type, s=8.0, m=0.2):
    if margin_type == "cos":
        return s * (cos - m * labels)
    return s * np.cos(np.arccos(np.clip(cos, -0.99999, 0.99999)) + m * labels)


@pytest.mark.parametrize("margin_type", ["cos", "arc"])
def test_orthohash_loss_by_hand(margin_type):
    cos = numpy_cosines()
    targets = LABELS / LABELS.sum(axis=1, keepdims=True)
    expected = -(targets * log_softmax(margin_logits(cos, LABELS, margin_type))).sum(1).mean()
    got = orthohash_loss(tensor(U), tensor(LABELS), tensor(CENTRES), 8.0, 0.2, margin_type)
    assert got.item() == pytest.approx(expected, rel=1e-7)
    # single label: plain cross-entropy of the true class (item 0: class 1, item 1: class 0)
    one_hot = np.array([[0.0, 1.0], [1.0, 0.0]])
    log_p = log_softmax(margin_logits(cos, one_hot, margin_type))
    expected = -(log_p[0, 1] + log_p[1, 0]) / 2
    got = orthohash_loss(tensor(U), tensor(one_hot), tensor(CENTRES), 8.0, 0.2, margin_type)
    assert got.item() == pytest.approx(expected, rel=1e-7)


def test_orthohash_bce_variant_by_hand():
    logits = 8.0 * (numpy_cosines() - 0.2 * LABELS)
    bce = np.log1p(np.exp(-logits)) * LABELS + np.log1p(np.exp(logits)) * (1 - LABELS)
    got = orthohash_loss(tensor(U), tensor(LABELS), tensor(CENTRES), multilabel_loss="bce")
    assert got.item() == pytest.approx(bce.mean(), rel=1e-7)


def test_greedy_sign_is_straight_through_and_the_penalty_is_cubic():
    h = tensor(U).requires_grad_(True)
    b = greedy_sign(h)
    np.testing.assert_array_equal(b.detach().numpy(), np.where(U >= 0, 1.0, -1.0))
    weights = tensor(np.arange(6.0).reshape(2, 3))
    (b * weights).sum().backward()
    np.testing.assert_array_equal(h.grad.numpy(), weights.numpy())  # gradient copied through
    expected = (np.abs(np.abs(U) - 1) ** 3).mean()
    assert cubic_bit_penalty(tensor(U)).item() == pytest.approx(expected, rel=1e-9)


# -- real runs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    data = load_digits_dataset()
    x, y = data.features, data.labels
    split = make_split(y, protocol="per-class", seed=0, n_query_per_class=20,
                       n_train_per_class=60)  # fmt: skip
    database = split.database[:1500]

    def score(model):
        return evaluate(model.encode(x[split.query]), model.encode(x[database]),
                        y[split.query], y[database], metrics=["map@all"])["map@all"]  # fmt: skip

    itq = hashlab.create("itq", n_bits=32).fit(x[split.train])
    return {"x": x, "y": y, "split": split, "score": score, "itq": score(itq)}


@pytest.mark.parametrize("method", METHODS)
def test_method_beats_itq_on_digits_and_round_trips(method, digits, tmp_path):
    x, y, split = digits["x"], digits["y"], digits["split"]
    # the small hidden layer without dropout (600 training items; cf. test_deep_methods.py)
    model = hashlab.create(method, n_bits=32, epochs=15, device="cpu", head_hidden=256,
                           dropout=0.0).fit(x[split.train], y[split.train])  # fmt: skip
    score = digits["score"](model)
    print(f"{method} digits map@all {score:.3f} vs ITQ {digits['itq']:.3f}")
    assert score > digits["itq"] + 0.1, (method, score, digits["itq"])
    reopened = hashlab.load(model.save(tmp_path / "model"))
    np.testing.assert_array_equal(reopened.encode(x[split.query]), model.encode(x[split.query]))
    extra = json.loads((tmp_path / "model" / "config.json").read_text())["extra"]
    if method != "greedyhash":
        assert extra["centres"]["n_centres"] == 10 and extra["centres"]["min_hamming"] > 0
        np.testing.assert_array_equal(reopened.centres_, model.centres_)
    if method == "csq":  # 10 classes <= 2 x 32: Hadamard centres, 16 bits apart
        assert extra["centres"]["kind"] == "hadamard" and extra["centres"]["min_hamming"] == 16


def test_multi_label_centre_methods_beat_itq_and_greedyhash_refuses(digits):
    """Multi-label data from real digits: each item is two digit images of different
    classes side by side, labelled with both (relevance: a shared digit). MIRFlickr's
    1,386-d tags would make the same point ten times slower."""
    x, y = digits["x"], digits["y"]
    rng = np.random.default_rng(0)
    first, second = rng.permutation(len(x))[:1800], rng.permutation(len(x))[:1800]
    keep = y[first] != y[second]
    first, second = first[keep], second[keep]
    pairs = np.concatenate([x[first], x[second]], axis=1).astype(np.float32)
    labels = np.zeros((len(pairs), 10), dtype=np.uint8)
    labels[np.arange(len(pairs)), y[first]] = labels[np.arange(len(pairs)), y[second]] = 1
    query, train, database = np.arange(150), np.arange(150, 750), np.arange(150, len(pairs))

    def score(model):
        codes = model.encode(pairs[query]), model.encode(pairs[database])
        return evaluate(*codes, labels[query], labels[database], metrics=["map@all"])["map@all"]

    itq = score(hashlab.create("itq", n_bits=32).fit(pairs[train]))
    for method in ("csq", "orthohash", "dpn"):
        model = hashlab.create(method, n_bits=32, epochs=15, device="cpu", head_hidden=256,
                               dropout=0.0)  # fmt: skip
        result = score(model.fit(pairs[train], labels[train]))
        print(f"{method} digit pairs map@all {result:.3f} vs ITQ {itq:.3f}")
        assert result > itq + 0.05, (method, result, itq)
    with pytest.raises(InputError, match="single-label"):
        hashlab.create("greedyhash", n_bits=32, epochs=1, device="cpu").fit(
            pairs[train], labels[train]
        )


@pytest.mark.parametrize(
    "method, knob",
    [("csq", "quantization_weight"), ("orthohash", "margin"), ("dpn", "margin"),
     ("greedyhash", "alpha")],
)  # fmt: skip
def test_search_space_has_lr_weight_decay_and_the_papers_knob(method, knob):
    from hashlab.bench.tuning import check_space, method_search_space

    space = check_space(method_search_space(method), method)
    assert {"lr", "weight_decay", knob} <= set(space)
