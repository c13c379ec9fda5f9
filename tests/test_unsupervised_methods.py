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


@pytest.mark.parametrize("name", hashlab.list_methods(supervision="none"))
def test_unsupervised_methods_never_read_labels(name, digits):
    data, split = digits
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


DEEP_RUNS = {"bihalf": {"epochs": 30}}


@pytest.mark.parametrize("name", sorted(DEEP_RUNS))
def test_short_real_run_beats_lsh(name, digits, lsh_map):
    score = real_map(name, digits, device="cpu", patience=None, **DEEP_RUNS[name])
    assert score > lsh_map + 0.02, (name, score, lsh_map)
