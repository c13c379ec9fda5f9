"""Every deep method learns on real data, round-trips through save/load, and encodes images.

"Learns" means: beats ITQ (unsupervised, the field's standard shallow baseline) at 32 bits on
the same split. The data are CIFAR-10 EfficientNet-Lite0 features when their on-disk cache is
complete (never extracted here), else scikit-learn's digits (64 pixel values, real
handwriting), which CI always has. The head gets a hidden layer on both: raw pixels are far
from linearly separable, and the papers' hash layer sits on fine-tuned fc7 features anyway; on
600 CIFAR-10 training items a linear head on frozen features leaves DHN (inner-product
likelihood, 90% dissimilar pairs) at ITQ's level, which says more about the head than the loss.
"""

import json

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

import hashlab
from hashlab.data.digits import load_digits_dataset
from hashlab.data.splits import make_split
from hashlab.methods.base import NotFittedError
from hashlab.metrics import evaluate
from hashlab.pipeline import encode_images

DEEP_METHODS = ["adsh", "dch", "dhn", "dnnh", "dpsh", "dsh", "hashnet"]
# few epochs: each fit takes about a second on two cores
FAST = {
    "adsh": {"epochs": 6, "n_samples": 300},
    "dnnh": {"epochs": 12},
}


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny networks gain nothing from threads, and on a busy 2-core machine they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cifar_features_if_cached():
    """CIFAR-10 (features, labels) when the full feature cache exists, else None."""
    from hashlab.backbones.cache import cache_dir

    # cheap check first: without a finished CIFAR-10 feature cache, do not even list the images
    if not list(
        (cache_dir() / "features").glob("cifar10-efficientnet_lite0-224px-*/manifest.json")
    ):
        return None
    try:
        from hashlab.backbones.cache import feature_cache_path
        from hashlab.data.cifar10 import load_cifar10

        data = load_cifar10(f"{SHARED_DATA}/cifar10_jpg.tar.gz")
        folder = feature_cache_path("cifar10", "efficientnet_lite0", 224, data.image_paths)
    except Exception:  # no data or no unpacked copy: CI uses digits
        return None
    if not (folder / "manifest.json").is_file():
        return None
    from hashlab.backbones import extract_features

    return extract_features(data.image_paths, dataset_key="cifar10", progress=False), data.labels


@pytest.fixture(scope="module")
def benchmark_data():
    cifar = cifar_features_if_cached()
    if cifar is not None:
        features, labels = cifar
        name = "cifar10"
    else:
        digits = load_digits_dataset()
        features, labels = digits.features, digits.labels
        name = "digits"
    # the hidden layer this test was written for, without the default's dropout 0.5 (which
    # is chosen for 5,000-item CIFAR-10 tables; 600 training items here)
    extra = {"head_hidden": 256, "dropout": 0.0}
    split = make_split(labels, protocol="per-class", seed=0, n_query_per_class=20,
                       n_train_per_class=60)  # fmt: skip
    database = split.database[:1500]
    itq = hashlab.create("itq", n_bits=32).fit(features[split.train])
    itq_scores = evaluate(
        itq.encode(features[split.query]),
        itq.encode(features[database]),
        labels[split.query],
        labels[database],
        metrics=["map@all"],
    )
    return {
        "name": name, "x": features, "y": labels, "split": split, "database": database,
        "extra": extra, "itq_map": itq_scores["map@all"],
    }  # fmt: skip


@pytest.mark.parametrize("method", DEEP_METHODS)
def test_method_beats_itq_at_32_bits_on_real_data(method, benchmark_data):
    data = benchmark_data
    x, y, split, database = data["x"], data["y"], data["split"], data["database"]
    params = {"epochs": 20, "device": "cpu", **data["extra"], **FAST.get(method, {})}
    model = hashlab.create(method, n_bits=32, **params).fit(x[split.train], y[split.train])
    codes = model.encode(x[split.query])
    assert codes.shape == (len(split.query), 32) and codes.dtype == np.uint8
    score = evaluate(codes, model.encode(x[database]), y[split.query], y[database],
                     metrics=["map@all"])["map@all"]  # fmt: skip
    print(f"{method} {data['name']} map@all {score:.3f} vs ITQ {data['itq_map']:.3f}")
    assert score > data["itq_map"] + 0.05, (method, data["name"], score, data["itq_map"])


@pytest.mark.parametrize("method", DEEP_METHODS)
def test_save_load_round_trip_gives_identical_codes(method, benchmark_data, tmp_path):
    data = benchmark_data
    x, y, split = data["x"], data["y"], data["split"]
    model = hashlab.create(method, n_bits=16, epochs=2, device="cpu", **data["extra"])
    model.fit(x[split.train], y[split.train])
    model.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["method"] == method and config["params"]["n_bits"] == 16
    assert config["extra"]["backbone"] == "efficientnet_lite0"
    assert config["extra"]["mode"] == "frozen"
    assert (tmp_path / "model" / config["weights_file"]).is_file()
    assert "device" not in config["params"]  # runtime options are not hyper-parameters
    reopened = hashlab.load(tmp_path / "model")
    assert type(reopened) is type(model) and reopened.get_params() == model.get_params()
    np.testing.assert_array_equal(reopened.encode(x[split.query]), model.encode(x[split.query]))
    if method == "adsh":  # the asymmetric database codes are saved with the weights
        np.testing.assert_array_equal(reopened.database_codes_, model.database_codes_)
        n_trained = model.extra_config_["training"]["n_train"]
        assert model.database_codes_.shape == (n_trained, 16)


def test_both_weight_formats_load(benchmark_data, tmp_path, monkeypatch):
    """weights.safetensors when the package is there, else weights.pt; either reloads."""
    import builtins

    data = benchmark_data
    x, y = data["x"][:300], data["y"][:300]
    model = hashlab.create("dch", n_bits=8, epochs=1, device="cpu").fit(x, y)
    real_import = builtins.__import__

    def without_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ModuleNotFoundError(name=name)
        return real_import(name, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "__import__", without_safetensors)
        model.save(tmp_path / "pt")
    assert (tmp_path / "pt" / "weights.pt").is_file()
    np.testing.assert_array_equal(hashlab.load(tmp_path / "pt").encode(x), model.encode(x))
    try:
        import safetensors  # noqa: F401
    except ModuleNotFoundError:
        return  # the .safetensors branch needs the optional package
    model.save(tmp_path / "st")
    assert (tmp_path / "st" / "weights.safetensors").is_file()
    np.testing.assert_array_equal(hashlab.load(tmp_path / "st").encode(x), model.encode(x))


def test_hashnet_beta_continuation():
    model = hashlab.create("hashnet", n_bits=16)
    assert [round(model.beta(e), 4) for e in (0, 3, 48)] == [1.0, 2.0, 7.0]


def test_user_errors():
    with pytest.raises(ValueError, match="no parameter 'gama'"):
        hashlab.create("dch", n_bits=16, gama=3)
    with pytest.raises(NotFittedError):
        hashlab.create("dsh", n_bits=16).encode(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="pass a hashlab Dataset"):
        hashlab.create("dch", n_bits=16, mode="finetune").fit(np.zeros((10, 4)), np.arange(10))
    with pytest.raises(ValueError, match="mode"):
        hashlab.create("dch", n_bits=16, mode="partly")
    model = hashlab.create("dch", n_bits=8, epochs=1, device="cpu")
    model.fit(np.random.default_rng(0).normal(size=(40, 6)), np.arange(40) % 2)
    with pytest.raises(ValueError, match="fitted on 6"):
        model.encode(np.zeros((3, 5)))


@pytest.fixture
def small_digit_images(tmp_path, monkeypatch):
    """240 digits as 32x32 RGB images, the feature cache in a temporary folder."""
    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    digits = load_digits_dataset()
    keep = np.flatnonzero(digits.labels < 4)[:240]
    return digits.subset(keep)


def test_frozen_mode_on_a_dataset_and_encode_images(small_digit_images):
    """Features come from the recorded backbone; encode_images reproduces encode()."""
    from PIL import Image

    data = small_digit_images
    data = data.__class__(name="digits-images", images=data.images, labels=data.labels)
    model = hashlab.create("dch", n_bits=16, epochs=3, device="cpu", backbone="small_cnn")
    model.fit(data)
    assert model.extra_config_["backbone"] == "small_cnn"
    from_dataset = model.encode(data)
    from_images = encode_images(model, [Image.fromarray(img) for img in data.images[:20]])
    np.testing.assert_array_equal(from_images, from_dataset[:20])


def test_finetune_mode_trains_the_backbone_end_to_end(small_digit_images, tmp_path):
    from PIL import Image

    data = small_digit_images
    model = hashlab.create("dch", n_bits=16, epochs=2, batch_size=32, device="cpu",
                           mode="finetune", backbone="small_cnn")  # fmt: skip
    from hashlab.backbones import create_backbone

    pretrained = create_backbone("small_cnn").module.state_dict()
    model.fit(data)
    tuned = model.network_.backbone.state_dict()
    assert any(not torch.equal(pretrained[k], tuned[k]) for k in pretrained)
    codes = model.encode(data)
    assert codes.shape == (240, 16)
    np.testing.assert_array_equal(
        encode_images(model, [Image.fromarray(img) for img in data.images[:10]]), codes[:10]
    )
    model.save(tmp_path / "tuned")
    np.testing.assert_array_equal(hashlab.load(tmp_path / "tuned").encode(data), codes)


def test_cli_train_then_encode_a_folder_of_images(tmp_path, monkeypatch, capsys):
    """hashlab train on an image folder, then hashlab encode: the codes match the model's."""
    from PIL import Image

    from hashlab.cli import main

    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    digits = load_digits_dataset()
    for digit in range(3):
        (tmp_path / "images" / str(digit)).mkdir(parents=True)
        for i in np.flatnonzero(digits.labels == digit)[:30]:
            Image.fromarray(digits.images[i]).save(tmp_path / "images" / str(digit) / f"{i}.png")
    model_dir = tmp_path / "model"
    code = main(["train", "--method", "dch", "--dataset", "folder", "--root",
                 str(tmp_path / "images"), "--bits", "16", "--epochs", "3", "--backbone",
                 "small_cnn", "--device", "cpu", "--out", str(model_dir)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "test map@all" in printed and "validation" in printed
    config = json.loads((model_dir / "config.json").read_text())
    assert config["extra"]["backbone"] == "small_cnn"
    assert "per-class" in config["extra"]["protocol"]
    assert (tmp_path / "model.ckpt" / "last.pt").is_file()

    codes_file = tmp_path / "codes.npy"
    assert main(["encode", str(model_dir), "--images", str(tmp_path / "images"),
                 "--out", str(codes_file)]) == 0  # fmt: skip
    codes = np.load(codes_file)
    paths = codes_file.with_suffix(".paths.txt").read_text().split()
    assert codes.shape == (90, 16) and len(paths) == 90
    model = hashlab.load(model_dir)
    np.testing.assert_array_equal(codes[:5], encode_images(model, paths[:5]))

    assert main(["encode", str(model_dir), "--images", str(tmp_path / "nowhere"),
                 "--out", str(codes_file)]) == 2  # fmt: skip
    assert "is not a folder" in capsys.readouterr().err


def test_multi_label_training_on_mirflickr_tags():
    """Multi-hot labels (MIRFlickr-25K, 24 labels; relevance = a shared label) with the
    1,386-d user-tag vectors as features: DCH still beats ITQ."""
    from hashlab.data.mirflickr import load_mirflickr

    data = load_mirflickr(f"{SHARED_DATA}/mirflickr25k")
    x, y = data.tags.astype(np.float32), data.labels
    split = make_split(y, protocol="random", seed=0, n_query=200, n_train=1000)
    database = split.database[:3000]

    def score(model):
        return evaluate(model.encode(x[split.query]), model.encode(x[database]),
                        y[split.query], y[database], metrics=["map@all"])["map@all"]  # fmt: skip

    itq = hashlab.create("itq", n_bits=32).fit(x[split.train])
    dch = hashlab.create("dch", n_bits=32, epochs=8, device="cpu").fit(
        x[split.train], y[split.train]
    )
    # uniform 10% on multi-label data (no classes to stratify on)
    assert dch.extra_config_["training"]["n_validation"] == len(split.train) // 10
    assert score(dch) > score(itq) + 0.02
