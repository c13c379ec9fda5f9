"""DSDH, DTSH, DFH, IDHN, DPH, CNNH and DDSH: each loss (and discrete step) against values
worked out by hand on a tiny batch, and a short real run that beats ITQ on the same features.

Real data: scikit-learn's digits (64 pixel values, real handwriting, what CI has), the split
and head of ``tests/test_deep_methods.py`` (60 training items per class, a 256-unit hidden
layer without dropout); IDHN, the multi-label method, also on MIRFlickr-25K (24 labels,
relevance = a shared label) with its 1,386-d user-tag vectors as features. Epochs are few, so
each fit takes a second or two on an idle core.
"""

import math

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

import hashlab
from hashlab.data.digits import load_digits_dataset
from hashlab.data.splits import make_split
from hashlab.losses.discrete import code_regression_loss, similarity_reconstruction_loss
from hashlab.losses.fisher import class_centre_objective, margin_pairwise_likelihood
from hashlab.losses.priority import priority_cross_entropy, priority_quantization_loss
from hashlab.losses.soft_similarity import cosine_label_similarity, soft_pairwise_loss
from hashlab.losses.triplet_likelihood import batch_triplet_likelihood_loss
from hashlab.methods.deep.cnnh import approximate_codes
from hashlab.methods.deep.ddsh import balanced_similarity, update_sampled_codes
from hashlab.methods.deep.dsdh import update_classifier, update_codes
from hashlab.metrics import evaluate

METHODS = ["dsdh", "dtsh", "dfh", "idhn", "dph", "cnnh", "ddsh"]
# a few epochs each (DFH's centres need a few more to pass ITQ by a clear margin)
RUN = {
    "dsdh": {"epochs": 8}, "dtsh": {"epochs": 8}, "dfh": {"epochs": 12}, "idhn": {"epochs": 8},
    "dph": {"epochs": 6}, "cnnh": {"epochs": 6, "stage1_sweeps": 3}, "ddsh": {"epochs": 6},
}  # fmt: skip


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


# -- losses and discrete steps by hand ----------------------------------------------------
def test_code_regression_and_similarity_reconstruction_by_hand():
    # (0.5-1)^2 + 0 + (0-1)^2 + (2-1)^2 = 2.25, over 4 entries
    assert code_regression_loss(t([[0.5, -1], [0, 2]]), t([[1, -1], [1, 1]])).item() == 0.5625
    # K = 2: <u,v1> = 0, <u,v2> = 2; (2*1 - 0)^2 = 4, (2*(-1) - 2)^2 = 16
    u, v, s = t([[1, -1]]), t([[1, 1], [1, -1]]), t([[1, -1]])
    assert similarity_reconstruction_loss(u, v, s).item() == pytest.approx(10.0)
    assert similarity_reconstruction_loss(u, v, s, t([[1, 0.5]])).item() == pytest.approx(6.0)


def test_dsdh_classifier_and_code_steps_by_hand():
    # W step with K = C = 1: W = (B B^T + nu/mu)^-1 B Y^T = 2 / (3 + 1)
    w = update_classifier(t([[1, 1, -1]]), t([[1, 1, 0]]), nu_over_mu=1.0)
    assert w.item() == pytest.approx(0.5)
    # B step, K = 2, W = [1, 2]^T, Y = [1, 0], U = 0. Row 0: p = [1, 0] minus
    # B_1 (w_1 w_0) = [1, -1] * 2 -> [-1, 2] -> [-1, 1]. Row 1 (with the new row 0):
    # p = [2, 0] minus [-1, 1] * 2 -> [4, -2] -> [1, -1]
    codes = update_codes(t([[1, 1], [1, -1]]), t([[1], [2]]), t([[1, 0]]), t([[0, 0], [0, 0]]),
                         eta_over_mu=0.0)  # fmt: skip
    assert codes.tolist() == [[-1, 1], [1, -1]]
    # eta/mu large: B follows sgn(U)
    codes = update_codes(t([[1, 1]]), t([[0.1]]), t([[1, 1]]), t([[-2, 3]]), eta_over_mu=10.0)
    assert codes.tolist() == [[-1, 1]]


def test_dtsh_triplet_likelihood_by_hand():
    # items 0, 1 similar, 2 dissimilar to both; Theta = <u_i,u_j>/2: Theta_01 = 1, Theta_02 =
    # Theta_12 = 0. Triplets (0,1,2), (1,0,2): -log sigma(1 - 0 - 0.5) = log(1 + e^-0.5)
    u = t([[1, 1], [1, 1], [-1, 1]])
    s = t([[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    expected = math.log(1 + math.exp(-0.5))
    assert batch_triplet_likelihood_loss(u, s, margin=0.5).item() == pytest.approx(expected)
    assert expected == pytest.approx(0.474077, abs=1e-6)
    assert batch_triplet_likelihood_loss(u, torch.ones(3, 3), 0.5).item() == 0.0  # no triplet


def test_dfh_margin_likelihood_and_centre_objective_by_hand():
    # Theta = 0 (dissimilar): log(1 + e^{1+0}) = 1.313262; Theta = 1 (similar): log(1 + e^0)
    u, v, s = t([[1, -1]]), t([[1, 1], [1, -1]]), t([[0, 1]])
    expected = (math.log(1 + math.e) + math.log(2)) / 2
    assert margin_pairwise_likelihood(u, v, s, margin=1.0).item() == pytest.approx(expected)
    # V = 0.5 [[1, -1], [1, 1]], one item of class 0 with code [1, -1], K = 2:
    # intra: [0.5, 0.5] - [1, -1] -> (0.25 + 2.25) / 2 = 1.25
    # inter: V^T V = 0.5 I vs 2 (2I - 1) -> [[-1.5, 2], [2, -1.5]] -> 12.5 / 4 = 3.125
    # quantisation: every entry 0.5 from +-1 -> 0.25
    centres = 0.5 * t([[1, -1], [1, 1]])
    value = class_centre_objective(centres, t([[1, 0]]), t([[1, -1]]), 1.0, 1.0)
    assert value.item() == pytest.approx(1.25 + 3.125 + 0.25)


def test_idhn_soft_similarity_by_hand():
    sim = cosine_label_similarity(t([[1, 1, 0]]), t([[1, 0, 0], [0, 0, 1], [1, 1, 0]]))
    assert torch.allclose(sim.double(), t([[1 / math.sqrt(2), 0, 1]]))
    # K = 2, beta = 5: inner products 0, 2, -2 -> Theta = 0, 5, -5
    # soft pair (s = 0.25): 0.1 * 2 * ((0 + 2) / 4 - 0.25)^2 = 0.0125
    # hard s = 1: log(1 + e^5) - 5; hard s = 0: log(1 + e^-5); both 0.006715
    u, v, s = t([[1, -1]]), t([[1, 1], [1, -1], [-1, 1]]), t([[0.25, 1, 0]])
    hard = math.log(1 + math.exp(-5))
    expected = (0.0125 + 2 * hard) / 3
    assert soft_pairwise_loss(u, v, s, beta=5.0, soft_weight=0.1).item() == pytest.approx(expected)


def test_dph_priority_losses_by_hand():
    # Theta = 0.5 * [0, 2]: dissimilar pair q = 1 - sigma(0) = 0.5 -> 0.5^2 log 2 = 0.173287;
    # similar pair q = sigma(1) = 0.731059 -> 0.268941^2 * 0.313262 = 0.022658
    u, v, s = t([[1, -1]]), t([[1, 1], [1, -1]]), t([[0, 1]])
    q = 1 / (1 + math.exp(-1))
    pairs = [0.25 * math.log(2), (1 - q) ** 2 * -math.log(q)]
    ones = torch.ones(1, 2, dtype=torch.float64)
    value = priority_cross_entropy(u, v, s, alpha=0.5, gamma=2.0, weights=ones)
    assert value.item() == pytest.approx(sum(pairs) / 2)
    assert sum(pairs) / 2 == pytest.approx(0.097972, abs=1e-6)
    # default weights: one similar, one dissimilar pair -> both 2
    assert priority_cross_entropy(u, v, s, 0.5, 2.0).item() == pytest.approx(sum(pairs))
    # gamma = 0 is the plain pairwise likelihood: (log 2 + log(1 + e) - 1) / 2
    plain = priority_cross_entropy(u, v, s, 0.5, 0.0, weights=ones).item()
    assert plain == pytest.approx((math.log(2) + math.log(1 + math.e) - 1) / 2)
    # codes [1, 1] (q = 1, loss 0) and [1, 0] (q = 1 / sqrt 2): (1 - q)^2 (-log q) = 0.029731
    q = 1 / math.sqrt(2)
    value = priority_quantization_loss(t([[1, 1], [1, 0]]), gamma=2.0).item()
    assert value == pytest.approx((1 - q) ** 2 * -math.log(q) / 2)


def test_cnnh_stage_one_fits_the_similarity_matrix():
    def objective(h, s):  # ||S - H H^T / q||^2
        return float(((s - h @ h.T / h.shape[1]) ** 2).sum())

    # two classes: S = H H^T / q holds exactly for H = +-c (class 1 the negation of class 0)
    labels = np.repeat(np.arange(2), 5)
    s = np.where(labels[:, None] == labels[None, :], 1.0, -1.0)
    start = np.random.default_rng(0).uniform(-1, 1, (10, 8))  # approximate_codes' first draw
    h = approximate_codes(s, 8, sweeps=3, rng=np.random.default_rng(0))
    assert objective(start, s) > 90 and objective(h, s) < 1e-9
    codes = np.sign(h)
    assert (codes[:5] == codes[0]).all() and (codes[5:] == -codes[0]).all()
    # three classes (no exact fit): still a descent, and the classes separate in Hamming space
    labels = np.repeat(np.arange(3), 4)
    s = np.where(labels[:, None] == labels[None, :], 1.0, -1.0)
    start = np.random.default_rng(0).uniform(-1, 1, (12, 8))
    h = approximate_codes(s, 8, sweeps=5, rng=np.random.default_rng(0))
    assert np.abs(h).max() <= 1.0 + 1e-12
    assert objective(h, s) < 0.4 * objective(start, s)
    codes = np.sign(h)
    hamming = (codes[:, None, :] != codes[None, :, :]).sum(axis=2)
    same = labels[:, None] == labels[None, :]
    assert hamming[same].max() < hamming[~same].min()


def test_ddsh_balanced_similarity_and_discrete_coding():
    # 3 similar pairs, 1 dissimilar: r = 3, dissimilar -> -3
    labels = t([[1, 0], [1, 0], [1, 0], [0, 1]])
    assert balanced_similarity(labels, labels[:1]).flatten().tolist() == [1, 1, 1, -3]
    # Gamma codes already follow two opposite class codes; with r = 1 (each item similar to
    # one of the two sampled items) those fit K S exactly, the optimum of DDSH's objective,
    # which the sampled items' codes must reach from wrong starting codes
    classes = np.array([0, 0, 1, 1, 0, 1])
    onehot = torch.eye(2, dtype=torch.float64)[classes]
    class_codes = t([[1, 1, -1, 1], [-1, -1, 1, -1]])
    omega, gamma = np.array([0, 2]), np.array([1, 3, 4, 5])
    s = balanced_similarity(onehot, onehot[omega])
    start = t([[-1, -1, 1, -1], [1, -1, -1, 1]])

    def objective(b_omega):
        b_gamma = class_codes[classes[gamma]]
        return float(((4 * s[gamma] - b_gamma @ b_omega.T) ** 2).sum()
                     + ((4 * s[omega] - b_omega @ b_omega.T) ** 2).sum())  # fmt: skip

    codes = update_sampled_codes(start, class_codes[classes[gamma]], s[omega], s[gamma], 10)
    assert torch.equal(codes, class_codes[classes[omega]])
    assert objective(codes) == 0.0 < objective(start)


# -- real runs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_benchmark():
    digits = load_digits_dataset()
    x, y = digits.features, digits.labels
    split = make_split(y, protocol="per-class", seed=0, n_query_per_class=20,
                       n_train_per_class=60)  # fmt: skip
    database = split.database[:1500]

    def score(model):
        return evaluate(model.encode(x[split.query]), model.encode(x[database]),
                        y[split.query], y[database], metrics=["map@all"])["map@all"]  # fmt: skip

    itq = hashlab.create("itq", n_bits=32).fit(x[split.train])
    return x, y, split, score, score(itq)


@pytest.mark.parametrize("method", METHODS)
def test_method_beats_itq_on_digits(method, digits_benchmark):
    x, y, split, score, itq_map = digits_benchmark
    params = {"device": "cpu", "head_hidden": 256, "dropout": 0.0, **RUN[method]}
    model = hashlab.create(method, n_bits=32, **params).fit(x[split.train], y[split.train])
    value = score(model)
    print(f"{method} digits map@all {value:.3f} vs ITQ {itq_map:.3f}")
    assert value > itq_map + 0.03, (method, value, itq_map)


def test_idhn_beats_itq_on_multi_label_mirflickr():
    """Graded multi-label similarity is what IDHN is for: MIRFlickr's 24 labels, tag vectors."""
    path = SHARED_DATA / "mirflickr25k"
    if not path.is_dir():
        pytest.skip("MIRFlickr-25K labels are not on this machine")
    from hashlab.data.mirflickr import load_mirflickr

    data = load_mirflickr(path)
    x, y = data.tags.astype(np.float32), data.labels
    split = make_split(y, protocol="random", seed=0, n_query=200, n_train=1000)
    database = split.database[:3000]

    def score(model):
        return evaluate(model.encode(x[split.query]), model.encode(x[database]),
                        y[split.query], y[database], metrics=["map@all"])["map@all"]  # fmt: skip

    itq = hashlab.create("itq", n_bits=32).fit(x[split.train])
    idhn = hashlab.create("idhn", n_bits=32, epochs=8, device="cpu").fit(
        x[split.train], y[split.train]
    )
    idhn_map, itq_map = score(idhn), score(itq)
    print(f"idhn mirflickr map@all {idhn_map:.3f} vs ITQ {itq_map:.3f}")
    assert idhn_map > itq_map + 0.03


@pytest.mark.parametrize("method", METHODS)
def test_multi_hot_labels_are_accepted(method):
    """None of the seven assumes one label per item: multi-hot labels train and encode."""
    rng = np.random.default_rng(0)
    labels = (rng.random((80, 5)) < 0.3).astype(np.uint8)
    labels[labels.sum(axis=1) == 0, 0] = 1
    x = (labels @ rng.normal(size=(5, 16)) + 0.1 * rng.normal(size=(80, 16))).astype(np.float32)
    params = {"epochs": 1, "device": "cpu", "stage1_sweeps": 1, "centre_steps": 5}
    from hashlab.methods.registry import get_method_class

    accepted = set(get_method_class(method).param_names())
    model = hashlab.create(method, n_bits=8, **{k: v for k, v in params.items() if k in accepted})
    codes = model.fit(x, labels).encode(x)
    assert codes.shape == (80, 8) and set(np.unique(codes)) <= {0, 1}


@pytest.mark.parametrize("method", METHODS)
def test_search_space_has_the_papers_knob(method):
    from hashlab.bench.tuning import check_space
    from hashlab.methods.registry import get_method_class

    config = get_method_class(method).Config
    space = check_space(config.search_space(), method)
    assert {"lr", "weight_decay"} < set(space)
    assert set(space) <= set(config.__dataclass_fields__)
