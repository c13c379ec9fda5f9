"""Generative, semi-supervised and discrete unsupervised deep hashing (issue 19): BGAN,
unsupervised HashGAN, UADH (one game loop), SADH, DBD-MQ and SSDH.

Losses and steps against values computed by hand (numpy / arithmetic, not the code under
test), the game loop's gradient routing, SSDH's unknown-label marking, and short real runs on
sklearn's digits that beat LSH on the same features (labels only score the codes; that the
unsupervised methods never read labels is ``tests/test_unsupervised_methods.py``'s
parametrised test, which walks every supervision="none" method, these included).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

import hashlab
from hashlab.data.digits import load_digits_dataset
from hashlab.errors import HashlabError
from hashlab.metrics import evaluate

torch.set_num_threads(1)


# -- losses, by hand ------------------------------------------------------------------------
def test_gan_losses_by_hand():
    from hashlab.losses.generative import gan_discriminator_loss, gan_generator_loss

    real, fake = torch.tensor([0.0, math.log(3.0)]), torch.tensor([0.0, -math.log(3.0)])
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4
    expected_d = (math.log(2) - math.log(0.75)) / 2 + (math.log(2) - math.log(0.75)) / 2
    assert float(gan_discriminator_loss(real, fake)) == pytest.approx(expected_d, rel=1e-6)
    expected_g = (math.log(2) - math.log(0.25)) / 2
    assert float(gan_generator_loss(fake)) == pytest.approx(expected_g, rel=1e-6)


def test_balance_independence_and_reconstruction_by_hand():
    from hashlab.losses.generative import (
        bit_balance_loss,
        bit_independence_loss,
        code_reconstruction_loss,
        feature_reconstruction_loss,
    )

    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    # bit means 0.5 and 0.5 -> (0.25 + 0.25) / 2
    assert float(bit_balance_loss(codes)) == pytest.approx(0.25)
    # B^T B / 4 = [[1, 0], [0, 1]] ... off-diagonal: (1 - 1 + 1 - 1) / 4 = 0 -> loss 0
    assert float(bit_independence_loss(codes)) == pytest.approx(0.0, abs=1e-7)
    correlated = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])  # off-diagonals 1: (1 + 1) / 4
    assert float(bit_independence_loss(correlated)) == pytest.approx(0.5)
    relaxed = torch.tensor([[0.5, -1.0]])
    assert float(code_reconstruction_loss(relaxed, torch.tensor([[1.0, -1.0]]))) == 0.125
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])
    assert float(feature_reconstruction_loss(a, b)) == pytest.approx(2.5)


def test_straight_through_sign():
    from hashlab.losses.generative import sign_straight_through

    u = torch.tensor([-0.3, 0.0, 2.0], requires_grad=True)
    b = sign_straight_through(u)
    assert b.tolist() == [-1.0, 1.0, 1.0]
    (b * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert u.grad.tolist() == [1.0, 2.0, 3.0]  # the identity's gradient


def test_bgan_neighbourhood_loss_by_hand():
    from hashlab.methods.deep.bgan import bgan_neighbourhood_loss

    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    s = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    # pairs: (0,0): (1 - 1)^2, (0,1): (1 - 0)^2, (1,0): 1, (1,1): 0 -> mean 0.5
    assert float(bgan_neighbourhood_loss(codes, s)) == pytest.approx(0.5)


def test_neighbour_graph_and_batch_similarity():
    from hashlab.methods.deep.neighbours import (
        knn_graph,
        neighbour_pair_order,
        neighbour_similarity,
    )

    points = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    neighbours = knn_graph(points, 1)
    assert neighbours.flatten().tolist() == [1, 0, 3, 2]
    s = neighbour_similarity(neighbours, torch.tensor([0, 2, 1]))
    assert s.tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    order = neighbour_pair_order(neighbours.numpy(), np.random.default_rng(0))
    pairs = order.reshape(-1, 2)
    assert all(neighbours[a, 0] == b for a, b in pairs)


def test_graph_embedding_loss_by_hand():
    from hashlab.losses.semi_supervised import graph_embedding_loss, graph_laplacian_loss

    u = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    w = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    # squared distances: d01 = 1, d02 = 4, d12 = 5; neighbours (0,1),(1,0): 2 x 1, over 9 pairs
    assert float(graph_laplacian_loss(u, w)) == pytest.approx(2 / 9)
    # margin 4.5: non-neighbour pairs (0,2),(2,0): 0.5 each; (1,2),(2,1): 0
    assert float(graph_embedding_loss(u, w, 4.5)) == pytest.approx(2 / 9 + 1 / 9)


def test_multi_quantization_loss_and_one_identity_autoencoder():
    from hashlab.losses.multi_quantization import descriptor_variance, multi_quantization_loss
    from hashlab.methods.deep.dbd_mq import KAEHead

    errors = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.5, 2.5]])
    assert float(multi_quantization_loss(errors)) == pytest.approx((1.0 + 0.5 + 2.0) / 3)
    u = torch.tensor([[0.5, -0.2], [-0.5, 0.4]])
    assert float(descriptor_variance(u)) == pytest.approx((0.25 + 0.09) / 2)
    # one autoencoder with E = D = I: the error is ||u - sgn u||^2, the usual quantisation
    head = KAEHead(torch.nn.Identity(), 2, 1)
    with torch.no_grad():
        head.encoders.copy_(torch.eye(2)[None])
        head.decoders.copy_(torch.eye(2)[None])
    _, codes, err = head.quantize(u)
    assert codes[0].tolist() == [[1.0, -1.0], [-1.0, 1.0]]
    assert err[0].tolist() == pytest.approx([0.25 + 0.64, 0.25 + 0.36])


def _dense_centred_graph(z: np.ndarray) -> np.ndarray:
    n = len(z)
    return z @ np.diag(1.0 / z.sum(axis=0)) @ z.T - np.ones((n, n)) / n


def test_sadh_code_step_solves_its_system_and_finds_the_best_codes():
    from hashlab.losses.sadh import _solve, anchor_graph_factor, discrete_code_step

    z = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.0, 1.0], [0.2, 0.8]])
    s = _dense_centred_graph(z)
    factor, signs = anchor_graph_factor(z)
    np.testing.assert_allclose(factor @ np.diag(signs) @ factor.T, s, atol=1e-12)
    rhs = np.random.default_rng(0).standard_normal((6, 2))
    dense = np.linalg.solve(5.0 * np.eye(6) - 2 * s, rhs)
    np.testing.assert_allclose(_solve(rhs, factor, signs, 5.0), dense, atol=1e-10)
    u = np.array([[0.3], [0.1], [-0.2], [-0.1], [-0.4], [0.2]])  # a weak, noisy pull
    lam = 1.0

    def objective(b: np.ndarray) -> float:
        return float(-np.trace(b.T @ s @ b) + lam / 2 * ((b - u) ** 2).sum())

    best = min((np.array(c, dtype=float)[:, None] for c in itertools.product([-1, 1], repeat=6)),
               key=objective)  # fmt: skip
    found = discrete_code_step(u, factor, signs, lam, iterations=100)
    assert objective(found) == pytest.approx(objective(best))
    assert found[:3, 0].tolist() == [1, 1, 1] and found[3:, 0].tolist() == [-1, -1, -1]


# -- the game loop ---------------------------------------------------------------------------
def test_the_game_updates_the_opponent_on_its_loss_only():
    from hashlab.methods.deep.adversarial_hashing import AdversarialGame

    torch.manual_seed(0)
    trainee, adversary = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    game = AdversarialGame(adversary, lr=0.1, betas=(0.5, 0.999))
    x = torch.randn(4, 2)
    before_a = [p.detach().clone() for p in adversary.parameters()]
    before_t = [p.detach().clone() for p in trainee.parameters()]
    loss = game.step(trainee, lambda: adversary(trainee(x)).mean(),
                     lambda: -adversary(trainee(x)).mean())  # fmt: skip
    # step 1 moved the opponent and left the trainee alone (frozen while its graph was built)
    assert any(not torch.equal(a, b) for a, b in zip(before_a, adversary.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(before_t, trainee.parameters(), strict=True))
    assert all(p.grad is None for p in trainee.parameters())
    loss.backward()  # what the Trainer does next: gradients reach the trainee only
    assert all(p.grad is not None for p in trainee.parameters())
    assert all(p.grad is None for p in adversary.parameters())
    assert all(p.requires_grad for p in adversary.parameters())  # unfrozen afterwards


# -- SSDH: which items are labelled ----------------------------------------------------------
def test_ssdh_unknown_labels_and_n_labelled():
    from hashlab.methods.deep.ssdh import known_label_rows

    multihot, known = known_label_rows(np.array([2, -1, 0, -1]))
    assert known.tolist() == [True, False, True, False]
    assert multihot.tolist() == [[0, 0, 1], [0, 0, 0], [1, 0, 0], [0, 0, 0]]
    multihot, known = known_label_rows(np.array([[0, 1], [0, 0], [1, 1]]))
    assert known.tolist() == [True, False, True]
    model = hashlab.create("ssdh", n_bits=8, n_labelled=30, epochs=1, device="cpu")
    x = np.random.default_rng(0).standard_normal((100, 5)).astype(np.float32)
    targets = model.training_targets(x, np.arange(100) % 4, 100)
    assert model.n_labelled_ == 30 and int(targets.any(axis=1).sum()) == 30
    with pytest.raises(HashlabError, match="at least 2 labelled"):
        model.training_targets(x, np.full(100, -1), 100)


# -- short real runs: each beats LSH on the same digits features -----------------------------
@pytest.fixture(scope="module")
def digits():
    data = load_digits_dataset()
    p = np.random.default_rng(0).permutation(len(data))
    x, y = data.features.astype(np.float32), data.labels
    query, database = p[:200], p[200:1000]

    def score(model) -> float:
        codes_q, codes_db = model.encode(x[query]), model.encode(x[database])
        return evaluate(codes_q, codes_db, y[query], y[database], metrics=["map@all"])["map@all"]

    lsh = np.mean([score(hashlab.create("lsh", n_bits=16, seed=s).fit(x[database]))
                   for s in range(3)])  # fmt: skip
    return x[database], y[database], score, float(lsh)


FAST_RUNS = {
    "bgan": {"epochs": 6, "head_hidden": 128, "hidden": 64},
    "hashgan_unsup": {"epochs": 6, "head_hidden": 128, "hidden": 64},
    "uadh": {"epochs": 6, "head_hidden": 128, "hidden": 64},
    "sadh": {"epochs": 6, "head_hidden": 128, "inner_epochs": 3, "n_anchors": 100},
    "dbd_mq": {"epochs": 10, "head_hidden": 256},
    "ssdh": {"epochs": 6, "head_hidden": 128, "n_labelled": 100},
}


@pytest.mark.parametrize("name", sorted(FAST_RUNS))
def test_short_real_run_beats_lsh(name, digits):
    x, y, score, lsh = digits  # LSH: 0.35 map@all at 16 bits (mean of 3 seeds)
    model = hashlab.create(name, n_bits=16, device="cpu", **FAST_RUNS[name])
    if model.tags.supervision == "none":
        model.fit(x)
    else:  # SSDH: 100 of the 800 training labels are kept, the rest are unlabelled items
        model.fit(x, y)
    assert score(model) > lsh + 0.03, (name, score(model), lsh)


def test_an_interrupted_game_resumes_where_it_stopped(tmp_path):
    """The opponent (UADH's D) and its Adam are checkpointed with the run, and rebuilding it
    on resume does not shift the training's random stream: resumed codes are bit-identical."""
    x = load_digits_dataset().features[:300].astype(np.float32)
    settings = {"n_bits": 8, "device": "cpu", "head_hidden": 32, "hidden": 32, "patience": None}
    full = hashlab.create("uadh", epochs=3, **settings).fit(x)
    hashlab.create("uadh", epochs=2, checkpoint_dir=str(tmp_path), **settings).fit(x)
    resumed = hashlab.create("uadh", epochs=3, checkpoint_dir=str(tmp_path), resume=True,
                             **settings).fit(x)  # fmt: skip
    assert resumed.extra_config_["training"]["resumed_from_epoch"] == 2
    np.testing.assert_array_equal(resumed.encode(x), full.encode(x))
