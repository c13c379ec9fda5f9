"""The one training loop: determinism, resume, early stopping, best-epoch selection, devices.

Real data: scikit-learn's digits (64 pixel features), small subsets and few epochs.
"""

import numpy as np
import pytest
import torch

import hashlab
from hashlab.data.digits import load_digits_dataset
from hashlab.metrics import evaluate
from hashlab.train import TrainConfig, deterministic_cpu, resolve_device


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny networks gain nothing from threads, and on a busy 2-core machine they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    data = load_digits_dataset()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data.labels))
    train, validation = order[:400], order[400:500]
    return (
        data.features[train],
        data.labels[train],
        data.features[validation],
        data.labels[validation],
    )


def weights_of(model):
    return {k: v.detach().clone() for k, v in model.network_.state_dict().items()}


def fit_dch(digits, **params):
    x, y, *_ = digits
    defaults = {"epochs": 3, "device": "cpu", "head_hidden": 32}
    return hashlab.create("dch", n_bits=16, **{**defaults, **params}).fit(x, y)


def test_same_seed_gives_identical_weights_and_other_seed_does_not(digits):
    first, second = fit_dch(digits), fit_dch(digits)
    other = hashlab.create("dch", n_bits=16, seed=1, epochs=3, device="cpu", head_hidden=32)
    other.fit(*digits[:2])
    for key, value in weights_of(first).items():
        assert torch.equal(value, weights_of(second)[key]), key
    assert not torch.equal(weights_of(first)["head.layers.0.weight"],
                           weights_of(other)["head.layers.0.weight"])  # fmt: skip


def test_resume_continues_from_the_checkpoint_not_from_scratch(digits, tmp_path):
    straight = fit_dch(digits, epochs=4, patience=None, checkpoint_dir=str(tmp_path / "a"))
    interrupted = fit_dch(digits, epochs=2, patience=None, checkpoint_dir=str(tmp_path / "b"))
    assert len(interrupted.extra_config_["training"]["history"]) == 2
    resumed = fit_dch(
        digits, epochs=4, patience=None, checkpoint_dir=str(tmp_path / "b"), resume=True
    )
    training = resumed.extra_config_["training"]
    assert training["resumed_from_epoch"] == 2
    assert [row["epoch"] for row in training["history"]] == [1, 2, 3, 4]
    # the first two epochs are the interrupted run's, carried over, not retrained
    assert training["history"][:2] == interrupted.extra_config_["training"]["history"][:2]
    # and the result is exactly what an uninterrupted run gives (RNG + optimiser restored)
    straight_history = straight.extra_config_["training"]["history"]
    assert [r["loss"] for r in training["history"]] == [r["loss"] for r in straight_history]
    for key, value in weights_of(straight).items():
        assert torch.equal(value, weights_of(resumed)[key]), key


def test_resume_without_checkpoint_starts_fresh_and_wrong_run_is_refused(digits, tmp_path):
    model = fit_dch(digits, epochs=1, checkpoint_dir=str(tmp_path), resume=True)
    assert model.extra_config_["training"]["resumed_from_epoch"] == 0
    x, y, *_ = digits
    other = hashlab.create("dch", n_bits=8, epochs=2, device="cpu", checkpoint_dir=str(tmp_path),
                           resume=True)  # fmt: skip
    with pytest.raises(ValueError, match="different run"):
        other.fit(x, y)


def test_early_stopping_and_best_epoch_restored(digits):
    x, y, x_val, y_val = digits
    # a learning rate too small to change the codes: validation never improves after epoch 1
    model = hashlab.create("dch", n_bits=16, epochs=20, lr=1e-12, patience=2, device="cpu")
    model.fit(x, y, validation=(x_val, y_val))
    training = model.extra_config_["training"]
    assert training["stopped_early"] and len(training["history"]) == 3
    assert training["best_epoch"] == 1

    model = hashlab.create("dch", n_bits=16, epochs=8, patience=None, device="cpu", lr=3e-3)
    model.fit(x, y, validation=(x_val, y_val))
    training = model.extra_config_["training"]
    scores = [row["validation_map@all"] for row in training["history"]]
    assert training["best_score"] == max(scores)
    assert training["best_epoch"] == int(np.argmax(scores)) + 1
    # the network holds the best epoch's weights: re-scoring it gives the best score
    rescored = evaluate(model.encode(x_val), model.encode(x), y_val, y, metrics=["map@all"])
    assert rescored["map@all"] == pytest.approx(training["best_score"])
    assert scores[-1] > scores[0]  # and it did learn


def test_validation_is_carved_from_training_data(digits):
    x, y, *_ = digits
    model = hashlab.create("dch", n_bits=16, epochs=1, device="cpu", validation_fraction=0.2)
    model.fit(x, y)
    training = model.extra_config_["training"]
    # 20% of each class (rounded per class), the rest for training; nothing lost or shared
    assert 75 <= training["n_validation"] <= 85
    assert training["n_validation"] + training["n_train"] == 400
    no_validation = hashlab.create("dch", n_bits=16, epochs=2, device="cpu", validation_fraction=0)
    no_validation.fit(x, y)
    assert no_validation.extra_config_["training"]["best_score"] is None
    assert no_validation.extra_config_["training"]["best_epoch"] == 2  # the last epoch


def test_device_resolution_and_amp_only_on_gpu(digits):
    assert resolve_device("cpu") == torch.device("cpu")
    if torch.cuda.is_available():
        assert resolve_device(None).type == "cuda"
    else:
        assert resolve_device(None) == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    model = fit_dch(digits, epochs=1)
    assert model.extra_config_["training"]["device"] == "cpu"
    assert model.extra_config_["training"]["amp_dtype"] is None


def test_deterministic_mode_is_restored_after_training():
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_cpu(True):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 1}, "batch_size"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"resume": True}, "checkpoint_dir"),
    ],
)
def test_train_config_rejects_bad_values(options, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)
