"""Deep unsupervised hashing (issue 19): never reads labels, validates without them, losses
against hand-computed values, and short real runs that beat LSH on the same features.

Real data: sklearn's digits (64 pixel features, 1,797 images); labels score the codes only.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

import hashlab
from hashlab import pipeline
from hashlab.data.dataset import Dataset
from hashlab.data.digits import load_digits_dataset
from hashlab.data.splits import make_split
from hashlab.errors import InputError
from hashlab.methods.registry import get_method_class
from hashlab.metrics import evaluate

torch.set_num_threads(1)

FAST = {"epochs": 2, "batch_size": 32, "device": "cpu", "progress": False, "n_anchors": 40,
        "max_iter": 10, "n_iter": 5, "outer_iterations": 2, "inner_epochs": 1}  # fmt: skip


class LabelsMustNotBeRead(Dataset):
    """A Dataset whose labels raise when read once it is armed (after construction)."""

    @property
    def labels(self) -> np.ndarray | None:
        stored = self.__dict__.get("_labels")
        if stored is not None and self.__dict__.get("_armed"):
            raise AssertionError(f"the labels of {self.name} were read")
        return stored

    @labels.setter
    def labels(self, value: np.ndarray | None) -> None:
        self.__dict__["_labels"] = value


def armed(dataset: Dataset) -> LabelsMustNotBeRead:
    copy = LabelsMustNotBeRead(**{f.name: getattr(dataset, f.name) for f in fields(dataset)})
    copy.__dict__["_armed"] = True
    return copy


def fast_model(name: str, n_bits: int = 8) -> hashlab.methods.base.HashMethod:
    accepted = set(get_method_class(name).param_names())
    return hashlab.create(name, n_bits=n_bits, **{k: v for k, v in FAST.items() if k in accepted})


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, object]:
    data = load_digits_dataset()
    return data, make_split(data, protocol="random", seed=0, n_query=200, n_train=1000)


def test_the_armed_dataset_really_raises(digits):
    data, _ = digits
    with pytest.raises(AssertionError, match="were read"):
        _ = armed(data).labels
    assert replace(armed(data), labels=None).labels is None


@pytest.fixture(scope="module")
def small_digits(digits) -> tuple[Dataset, object]:
    """300 digits (the registry test's size): pixel methods train on these images too."""
    keep = np.sort(np.random.default_rng(0).permutation(len(digits[0]))[:300])
    data = digits[0].subset(keep, name="digits300")
    return data, make_split(data, protocol="random", seed=0, n_query=40, n_train=200)


def library_label_free_methods() -> list[str]:
    """The library's label-free methods (not stand-ins that other test files register)."""
    from hashlab.methods.registry import METHOD_MODULES

    return [n for n in hashlab.list_methods(supervision="none")
            if get_method_class(n).__module__ in METHOD_MODULES]  # fmt: skip


@pytest.mark.parametrize("name", library_label_free_methods())
def test_unsupervised_methods_never_read_labels(name, small_digits):
    data, split = small_digits
    model = fast_model(name)
    if model.tags.inputs == "paired_text":
        wiki = SHARED_DATA / "wikipedia" / "wiki_data.mat"
        if not wiki.is_file():
            pytest.skip("the Wikipedia image-text pairs are not on this machine")
        from hashlab.data.wikipedia import load_wikipedia

        data = load_wikipedia(wiki)
        data = data.subset(np.random.default_rng(0).permutation(len(data))[:300])
        split = make_split(data, protocol="random", seed=0, n_query=30, n_train=150)
    poisoned = armed(data)
    inputs = pipeline.method_inputs(model, poisoned)
    model, record = pipeline.fit_on_split(model, poisoned, split, inputs=inputs)
    codes = model.encode(inputs.subset(split.query))
    assert codes.shape == (len(split.query), 8) and set(np.unique(codes)) <= {0, 1}
    if model.tags.family == "deep":  # the array-free door too: fit(dataset) directly
        direct = fast_model(name).fit(armed(data.subset(split.train)))
        assert direct.encode(armed(data.subset(split.query))).shape == codes.shape
        assert "no labels" in model.extra_config_["training"]["selection"]
        assert "at random" in direct.extra_config_["training"]["validation"]


def test_unsupervised_fit_refuses_labels_and_validates_without_them(digits):
    data, split = digits
    x = data.features[split.train]
    model = hashlab.create("bihalf", n_bits=8, epochs=3, device="cpu", validation_metric="map@all")
    with pytest.raises(InputError, match="unsupervised"):
        model.fit(x, data.labels[split.train])
    model.fit(x)
    training = model.extra_config_["training"]
    # the harness's label metric is replaced: selection is on minus the held-out loss
    assert model.hparams.validation_metric == "heldout_criterion"
    scores = [r["validation_heldout_criterion"] for r in training["history"]]
    assert all(s <= 0 for s in scores) and training["best_score"] == max(scores)
    assert training["n_validation"] == int(0.1 * len(x))


# -- losses, against values computed by hand ------------------------------------------------
def test_paired_cosine_mse_by_hand():
    from hashlab.losses.similarity_preserving import paired_cosine_mse

    codes = torch.tensor([[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, -1.0], [5.0, 5.0]])
    feats = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, -3.0], [1.0, 1.0]])
    # pairs (0, 2) and (1, 3); the odd last item is dropped
    # codes: cos = 1, cos([1,-1],[-1,-1]) = 0; features: cos = 1/sqrt 2, cos = -1
    expected = ((1 - 2**-0.5) ** 2 + (0 - -1) ** 2) / 2
    assert float(paired_cosine_mse(codes, feats)) == pytest.approx(expected, rel=1e-6)


def test_bi_half_forward_and_backward_by_hand():
    from hashlab.losses.similarity_preserving import bi_half

    u = torch.tensor([[0.3, -2.0], [0.1, -1.0], [0.2, 0.5], [-0.4, 0.0]], requires_grad=True)
    b = bi_half(u, gamma=6.0)
    # per column: the two largest are +1 (column 0: 0.3, 0.2; column 1: 0.5, 0.0)
    expected = torch.tensor([[1.0, -1.0], [-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    torch.testing.assert_close(b, expected)
    weights = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
    (b * weights).sum().backward()
    # gradient = incoming + gamma (u - b) / (B K) with B K = 8
    torch.testing.assert_close(u.grad, weights + 6.0 * (u.detach() - expected) / 8)


def test_straight_through_sign_and_cubic_penalty_by_hand():
    from hashlab.losses.similarity_preserving import cubic_sign_penalty, straight_through_sign

    h = torch.tensor([[0.5, -2.0], [1.0, 0.0]], requires_grad=True)
    b = straight_through_sign(h)
    torch.testing.assert_close(b, torch.tensor([[1.0, -1.0], [1.0, 1.0]]))
    (b * torch.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    torch.testing.assert_close(h.grad, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))  # identity
    # | |h| - 1 |^3 = 0.125, 1, 0, 1
    assert float(cubic_sign_penalty(h.detach())) == pytest.approx((0.125 + 1 + 0 + 1) / 4)


def test_deepbit_terms_by_hand():
    from hashlab.losses.bit_statistics import (
        even_distribution,
        threshold_quantization,
        view_invariance,
    )

    f = torch.tensor([[0.9, 0.2], [0.6, 0.4], [0.1, 0.3]])
    # b = [[1, 0], [1, 0], [0, 0]]: squared errors per item 0.05, 0.32, 0.10
    assert float(threshold_quantization(f)) == pytest.approx(0.5 * (0.05 + 0.32 + 0.10) / 3)
    # bit means 1.6/3 and 0.3
    assert float(even_distribution(f)) == pytest.approx(0.5 * ((1.6 / 3 - 0.5) ** 2 + 0.2**2))
    # one view shifted by 0.1 on both bits, weight 2: 2 * (0.01 + 0.01)
    assert float(view_invariance(f, [f + 0.1], [2.0])) == pytest.approx(0.04)


def test_dh_terms_by_hand():
    from hashlab.losses.bit_statistics import centred_variance, orthogonality

    h = torch.tensor([[1.0, 0.0], [-1.0, 2.0], [0.0, 1.0]])
    # centred: [[1, -1], [-1, 1], [0, 0]] -> squared norms 2, 2, 0
    assert float(centred_variance(h)) == pytest.approx(4 / 3)
    w = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    # Gram of the smaller side, diag(1, 4), either way round: (4 - 1)^2
    assert float(orthogonality([w])) == pytest.approx(9.0)
    assert float(orthogonality([w, w.T])) == pytest.approx(18.0)


def test_uh_bdnn_terms_by_hand():
    from hashlab.losses.bit_statistics import code_balance, code_independence
    from hashlab.methods.deep.uh_bdnn import reconstruction_error

    assert float(code_independence(torch.tensor([[1.0, 1.0], [1.0, -1.0]]))) == pytest.approx(0)
    # H^T H / 2 = [[1, 1], [1, 1]]: off-diagonal ones
    assert float(code_independence(torch.ones(2, 2))) == pytest.approx(2.0)
    assert float(code_balance(torch.tensor([[1.0, -1.0], [3.0, 1.0]]))) == pytest.approx(4.0)
    x, x_hat = torch.tensor([[1.0, 2.0], [0.0, 0.0]]), torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    assert float(reconstruction_error(x, x_hat)) == pytest.approx(0.5 * (1 + 2) / 2)


def test_cibhash_terms_by_hand():
    import math

    from hashlab.losses.contrastive_bottleneck import bernoulli_kl, nt_xent, stochastic_binary

    z1 = np.array([[1.0, 0.0], [0.0, 1.0]])
    z2 = np.array([[1.0, 0.0], [1.0, 1.0]])
    z = np.concatenate([z1, z2])
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    tau, total = 0.5, 0.0
    for i, positive in enumerate([2, 3, 0, 1]):
        others = [j for j in range(4) if j != i]
        logits = {j: z[i] @ z[j] / tau for j in others}
        total += -logits[positive] + math.log(sum(math.exp(v) for v in logits.values()))
    got = nt_xent(torch.tensor(z1), torch.tensor(z2), tau)
    assert float(got) == pytest.approx(total / 4, rel=1e-6)
    p, q = torch.tensor([[0.5, 0.9]]), torch.tensor([[0.5, 0.6]])
    expected = 0.9 * math.log(0.9 / 0.6) + 0.1 * math.log(0.1 / 0.4)
    assert float(bernoulli_kl(p, q)) == pytest.approx(expected, rel=1e-5)
    certain = torch.tensor([[1.0, 0.0]], requires_grad=True)
    sample = stochastic_binary(certain)
    torch.testing.assert_close(sample, torch.tensor([[1.0, -1.0]]))
    sample.sum().backward()
    torch.testing.assert_close(certain.grad, torch.ones(1, 2))


def test_uh_bdnn_selects_on_heldout_reconstruction(digits):
    data, split = digits
    model = hashlab.create("uh_bdnn", n_bits=8, epochs=2, device="cpu", head_hidden=32)
    model.fit(data.features[split.train])
    training = model.extra_config_["training"]
    assert training["selection"] == "lowest held-out reconstruction error, no labels"
    assert all(r["validation_heldout_criterion"] < 0 for r in training["history"])


# -- short real runs: beat LSH on the same digits features ---------------------------------
@pytest.fixture(scope="module")
def lsh_map(digits) -> float:
    return real_map("lsh", digits)


def real_map(name: str, digits: tuple, n_bits: int = 16, **params: object) -> float:
    data, split = digits
    model = hashlab.create(name, n_bits=n_bits, seed=0, **params)
    model, _ = pipeline.fit_on_split(model, data, split)
    query, database = pipeline.encode_split(model, data, split)
    labels = np.asarray(data.labels)  # scoring only
    scores = evaluate(query, database, labels[split.query], labels[split.database],
                      metrics=["map@all"])  # fmt: skip
    return float(scores["map@all"])


DEEP_RUNS = {
    name: {"epochs": 15}
    for name in ("bihalf", "greedyhash_unsup", "deepbit", "dh", "uh_bdnn", "cibhash")
}


@pytest.mark.parametrize("name", sorted(DEEP_RUNS))
def test_short_real_run_beats_lsh(name, digits, lsh_map):
    score = real_map(name, digits, device="cpu", patience=None, **DEEP_RUNS[name])
    # measured (16 bits, 15 epochs): LSH 0.32; BiHalf 0.44, GreedyHash 0.45, DeepBit 0.52,
    # DH 0.54, UH-BDNN 0.43, CIBHash 0.61
    assert score > lsh_map + 0.05, (name, score, lsh_map)
