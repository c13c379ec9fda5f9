"""Every deep hashing loss against values worked out by hand (numbers in the comments)."""

import math

import pytest
import torch

from hashlab.losses import (
    asymmetric_inner_product_loss,
    batch_triplet_ranking_loss,
    cauchy_cross_entropy,
    cauchy_distance,
    cauchy_quantization,
    class_balance_weights,
    contrastive_hashing_loss,
    label_similarity,
    log_cosh_quantization_loss,
    pairwise_likelihood_loss,
    sign_quantization_loss,
    squared_distances,
    triplet_ranking_loss,
    weighted_pairwise_cross_entropy,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_label_similarity_shares_at_least_one_label():
    a = t([[1, 0, 1], [0, 1, 0]])
    b = t([[0, 0, 1], [1, 1, 0]])
    assert label_similarity(a, b).tolist() == [[1.0, 1.0], [0.0, 1.0]]


def test_class_balance_weights():
    # 4 pairs, 1 similar, 3 dissimilar: w = 4/1 for the similar, 4/3 for the others
    weights = class_balance_weights(t([[1, 0], [0, 0]]))
    assert torch.allclose(weights, t([[4, 4 / 3], [4 / 3, 4 / 3]]))
    # no similar pair: dissimilar pairs weigh |S|/|S0| = 1
    assert torch.allclose(class_balance_weights(t([[0, 0]])), t([[1, 1]]))


def test_pairwise_likelihood_by_hand():
    # <u, v_1> = 0, <u, v_2> = 2 -> Theta = 0, 1 with alpha 1/2
    # pair 1 (s=0): log(1 + e^0) = log 2 = 0.693147; pair 2 (s=1): log(1 + e) - 1 = 0.313262
    u, v, s = t([[1, -1]]), t([[1, 1], [1, -1]]), t([[0, 1]])
    expected = (math.log(2) + math.log(1 + math.e) - 1) / 2
    assert pairwise_likelihood_loss(u, v, s, alpha=0.5).item() == pytest.approx(expected)
    assert expected == pytest.approx(0.503204, abs=1e-6)


def test_pairwise_likelihood_is_stable_for_large_inner_products():
    u = t([[100.0, 100.0]])
    value = pairwise_likelihood_loss(u, u, t([[0]]), alpha=0.5)  # Theta = 10,000, s = 0
    assert value.item() == pytest.approx(10_000.0)


def test_weighted_pairwise_cross_entropy_by_hand():
    # alpha = 1: Theta = 0, 2; one similar, one dissimilar pair -> both weights 2/1 = 2
    # 2 * log 2 = 1.386294, 2 * (log(1 + e^2) - 2) = 0.253856; mean 0.820075
    u, v, s = t([[1, -1]]), t([[1, 1], [1, -1]]), t([[0, 1]])
    expected = (2 * math.log(2) + 2 * (math.log(1 + math.e**2) - 2)) / 2
    assert weighted_pairwise_cross_entropy(u, v, s, alpha=1.0).item() == pytest.approx(expected)
    assert expected == pytest.approx(0.820075, abs=1e-6)
    ones = torch.ones(1, 2, dtype=torch.float64)
    assert weighted_pairwise_cross_entropy(u, v, s, 1.0, ones).item() == pytest.approx(expected / 2)


def test_cauchy_distance_is_hamming_distance_on_plus_minus_one_codes():
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 2, (20, 16), generator=generator).double() * 2 - 1
    hamming = (codes[:, None, :] != codes[None, :, :]).sum(dim=2).double()
    assert torch.allclose(cauchy_distance(codes, codes), hamming, atol=1e-9)
    # by hand: cos = 0 -> d = 4/2 * 1 = 2; cos = -1 -> d = 4
    d = cauchy_distance(t([[1, 1, 1, 1]]), t([[1, 1, -1, -1], [-1, -1, -1, -1]]))
    assert torch.allclose(d, t([[2, 4]]))


def test_cauchy_cross_entropy_by_hand():
    # d = 2 (similar) and 1 (dissimilar), gamma = 2, unit weights:
    # similar: log(1 + 2/2) = log 2; dissimilar: log(1 + 2/1) = log 3; mean 0.895880
    u = t([[1, 1, 1, 1]])
    v = t([[1, 1, -1, -1], [1, 1, 1, -1]])
    s = t([[1, 0]])
    ones = torch.ones(1, 2, dtype=torch.float64)
    expected = (math.log(2) + math.log(3)) / 2
    value = cauchy_cross_entropy(u, v, s, gamma=2.0, weights=ones, eps=0.0)
    assert value.item() == pytest.approx(expected)
    # the printed form of PC-AEGAN Eq. 15: s log(d/gamma) + log(1 + gamma/d)
    printed = ((1 * math.log(2 / 2) + math.log(1 + 2 / 2)) + math.log(1 + 2 / 1)) / 2
    assert value.item() == pytest.approx(printed)
    # class-balance weights: 1 similar, 1 dissimilar of 2 pairs -> both 2
    default = cauchy_cross_entropy(u, v, s, gamma=2.0, eps=0.0)
    assert default.item() == pytest.approx(2 * expected)


def test_cauchy_cross_entropy_is_finite_for_identical_dissimilar_codes():
    u = t([[1, -1, 1]])
    value = cauchy_cross_entropy(u, u, t([[0]]), gamma=1.0)
    assert math.isfinite(value.item()) and value.item() > 10  # log(1 + 1/1e-5) = 11.51


def test_cauchy_quantization_by_hand():
    # row 1: |u| parallel to 1 -> d = 0 -> 0
    # row 2: |u| = (1, 0), cos = 1/sqrt(2), d = 2/2 (1 - 0.707107) = 0.292893 -> log(1.292893)
    u = t([[0.5, -0.5], [1.0, 0.0]])
    expected = (0.0 + math.log(1 + (1 - 1 / math.sqrt(2)))) / 2
    assert cauchy_quantization(u, gamma=1.0).item() == pytest.approx(expected)
    assert expected == pytest.approx(0.128441, abs=1e-6)


def test_contrastive_hashing_loss_by_hand():
    # d = ||(1,0) - (0,0)||^2 = 1 (similar): 0.5; ||(1,0) - (3,0)||^2 = 4 (dissimilar,
    # margin 4): 0.5 * max(0, 0) = 0 -> pair mean 0.25
    # regulariser: u: |1-1| + |0-1| = 1; v rows: 2 and 2 + 1 = 3 -> mean 2.5
    # total: 0.25 + 0.5 * (1 + 2.5) = 2.0
    u, v, s = t([[1, 0]]), t([[0, 0], [3, 0]]), t([[1, 0]])
    assert contrastive_hashing_loss(u, v, s, margin=4.0, alpha=0.5).item() == pytest.approx(2.0)
    # inside the margin the dissimilar pair is pushed: margin 6 -> 0.5 * (6 - 4) = 1
    value = contrastive_hashing_loss(u, v, s, margin=6.0, alpha=0.0)
    assert value.item() == pytest.approx((0.5 + 1.0) / 2)


def test_squared_distances_match_brute_force():
    generator = torch.Generator().manual_seed(1)
    u, v = torch.randn(5, 7, generator=generator), torch.randn(4, 7, generator=generator)
    brute = ((u[:, None, :] - v[None, :, :]) ** 2).sum(dim=2)
    assert torch.allclose(squared_distances(u, v), brute, atol=1e-5)


def test_triplet_ranking_loss_by_hand():
    # triplet 1: d+ = 1, d- = 0.25 -> max(0, 1 - (0.25 - 1)) = 1.75; triplet 2: d+ = 0,
    # d- = 4 -> 0; mean 0.875
    anchor, positive, negative = t([[0, 0], [0, 0]]), t([[1, 0], [0, 0]]), t([[0, 0.5], [2, 0]])
    assert triplet_ranking_loss(anchor, positive, negative).item() == pytest.approx(0.875)


def test_batch_triplet_ranking_loss_by_hand_and_brute_force():
    # items 0, 1 similar, 2 dissimilar to both. Triplets (0,1,2): 1 - 0.25 + 1 = 1.75;
    # (1,0,2): 1 - 1.25 + 1 = 0.75; item 2 has no positive. Mean 1.25
    u = t([[0, 0], [1, 0], [0, 0.5]])
    s = label_similarity(t([[1, 0], [1, 0], [0, 1]]), t([[1, 0], [1, 0], [0, 1]]))
    assert batch_triplet_ranking_loss(u, s).item() == pytest.approx(1.25)

    generator = torch.Generator().manual_seed(2)
    u = torch.rand(9, 6, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2])
    onehot = torch.nn.functional.one_hot(labels).double()
    triplets = [
        (a, p, n)
        for a in range(9)
        for p in range(9)
        for n in range(9)
        if a != p and labels[a] == labels[p] and labels[a] != labels[n]
    ]
    a, p, n = (torch.tensor(idx) for idx in zip(*triplets, strict=True))
    brute = triplet_ranking_loss(u[a], u[p], u[n], margin=1.0)
    batch = batch_triplet_ranking_loss(u, label_similarity(onehot, onehot), margin=1.0)
    assert batch.item() == pytest.approx(brute.item())


def test_batch_triplet_loss_without_triplets_is_zero_with_gradient():
    u = torch.rand(3, 4, requires_grad=True)
    loss = batch_triplet_ranking_loss(u, torch.ones(3, 3))
    loss.backward()
    assert loss.item() == 0.0 and u.grad is not None


def test_asymmetric_inner_product_loss_by_hand():
    # u.V = (0, 1); K = 2: (0 - 2*0)^2 + (1 - 2*1)^2 = 1
    # gamma * ||v_own - u||^2 = 2 * (0.25 + 0.25) = 1; total 2 / (M=2 * B=1) = 1
    u, codes, s = t([[0.5, -0.5]]), t([[1, 1], [1, -1]]), t([[0, 1]])
    own = t([[1, -1]])
    assert asymmetric_inner_product_loss(u, codes, s, own, gamma=2.0).item() == pytest.approx(1.0)
    assert asymmetric_inner_product_loss(u, codes, s, None).item() == pytest.approx(0.5)


def test_quantization_losses_by_hand():
    # sgn: (1 - 0.5)^2 + (-1 + 2)^2 = 1.25
    assert sign_quantization_loss(t([[0.5, -2.0]])).item() == pytest.approx(1.25)
    # log cosh(|1| - 1) + log cosh(|0| - 1) = 0 + log cosh 1 = 0.433781
    assert log_cosh_quantization_loss(t([[1.0, 0.0]])).item() == pytest.approx(
        math.log(math.cosh(1.0))
    )
    # stable far from +-1: log cosh 99 = 99 - log 2
    assert log_cosh_quantization_loss(t([[100.0]])).item() == pytest.approx(99 - math.log(2))
