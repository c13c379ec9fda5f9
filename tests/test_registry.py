"""Every registered method, walked through the one contract on real data of the kind its tags
ask for (cf. timm's tests/test_models.py): a method added later is tested here for free.

Per method: fit through :func:`hashlab.pipeline.fit_on_split` on a tiny real fixture (digits
features, digits as images for pixel methods, MIRFlickr images with their user tags for
tag-supervised methods, Wikipedia image-text pairs for cross-modal ones), codes of the right
shape and dtype, a save/load round trip that gives bit-identical codes, and bad inputs (NaN,
wrong shape, missing supervision) refused with the library's error. Methods get small
settings (few epochs, a tiny CNN) through the parameters they declare, so the file stays fast.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import SHARED_DATA

import hashlab
from hashlab import pipeline
from hashlab.data.dataset import Dataset
from hashlab.data.digits import load_digits_dataset
from hashlab.data.splits import make_split
from hashlab.errors import HashlabError
from hashlab.methods.registry import get_method_class

N_BITS = 8
#: small settings, given to each method only where it declares the parameter
FAST = {
    "epochs": 2, "batch_size": 32, "device": "cpu", "backbone": "small_cnn", "progress": False,
    "n_anchors": 40, "n_labelled": 150, "n_train": 150, "max_iter": 10, "n_iter": 5,
    "code_pretrain_steps": 5, "generator_channels": 4, "discriminator_channels": 4,
    "generated_per_batch": 8, "hash_input_size": 32, "hidden": 32, "embedding": "word2vec",
    "outer_iterations": 2, "inner_epochs": 1, "use_generated": False,
}  # fmt: skip


def fast_model(name: str) -> hashlab.methods.base.HashMethod:
    accepted = set(get_method_class(name).param_names())
    return hashlab.create(name, n_bits=N_BITS, **{k: v for k, v in FAST.items() if k in accepted})


@pytest.fixture(scope="module", autouse=True)
def feature_cache(tmp_path_factory):
    """Features of the fixtures' images go to a cache of this module, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HASHLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def fixtures() -> dict[str, tuple[Dataset, object]]:
    digits = load_digits_dataset()
    keep = np.random.default_rng(0).permutation(len(digits))[:300]
    digits = digits.subset(np.sort(keep), name="digits300")
    digit_split = make_split(digits, protocol="random", seed=0, n_query=40, n_train=200)
    out = {"features": (digits, digit_split), "pixels": (digits, digit_split)}
    mirflickr = SHARED_DATA / "mirflickr25k"
    if (mirflickr / "mirflickr1k_tags_labels.npz").is_file():
        from hashlab.data.mirflickr import load_mirflickr_images

        tagged = load_mirflickr_images(mirflickr).subset(np.arange(120), name="mirflickr120")
        out["tags"] = (tagged, make_split(tagged, protocol="random", seed=0, n_query=20,
                                          n_train=80))  # fmt: skip
    wiki = SHARED_DATA / "wikipedia" / "wiki_data.mat"
    if wiki.is_file():
        from hashlab.data.wikipedia import load_wikipedia

        pairs = load_wikipedia(wiki)
        pairs = pairs.subset(np.random.default_rng(0).permutation(len(pairs))[:300])
        pairs = replace(pairs, name="wiki300")
        out["paired_text"] = (pairs, make_split(pairs, protocol="random", seed=0, n_query=30,
                                                n_train=150))  # fmt: skip
    return out


def fixture_for(name: str, fixtures: dict) -> tuple[Dataset, object]:
    tags = get_method_class(name).tags
    kind = "tags" if tags.supervision == "tags" else tags.inputs
    kind = "features" if kind == "feature_maps" else kind
    if kind not in fixtures:
        pytest.skip(f"the shared data for {name}'s {kind} fixture is not on this machine")
    return fixtures[kind]


def test_every_method_declares_its_tags():
    names = registered_methods()
    assert len(names) >= 28
    for name in names:
        tags = get_method_class(name).tags
        assert tags is not None, name
        assert name in hashlab.list_methods(family=tags.family, supervision=tags.supervision,
                                            inputs=tags.inputs)  # fmt: skip
    assert set(hashlab.list_methods(family="shallow")) >= {"itq", "lsh", "sdh"}
    assert "itq" not in hashlab.list_methods(supervision="labels")
    with pytest.raises(HashlabError, match="family"):
        hashlab.list_methods(family="quantum")


def test_unknown_names_and_parameters_are_user_errors():
    with pytest.raises(HashlabError, match="unknown method 'itqq'"):
        hashlab.create("itqq")
    with pytest.raises(HashlabError, match="no parameter 'bogus'"):
        hashlab.create("itq", bogus=1)
    with pytest.raises(HashlabError, match="no parameter 'bogus'"):
        hashlab.create("dch", bogus=1)
    with pytest.raises(KeyError):  # the builtin base stays catchable
        hashlab.create("itqq")


def registered_methods() -> list[str]:
    """The methods of the registry's module list (not the stand-ins other tests register)."""
    from hashlab.methods.registry import METHOD_MODULES

    return [n for n in hashlab.list_methods() if get_method_class(n).__module__ in METHOD_MODULES]


@pytest.mark.parametrize("name", registered_methods())
def test_fit_encode_save_load_and_bad_inputs(name, fixtures, tmp_path):
    dataset, split = fixture_for(name, fixtures)
    model = fast_model(name)
    inputs = pipeline.method_inputs(model, dataset)
    model, record = pipeline.fit_on_split(model, dataset, split, inputs=inputs)
    assert record.method == name and record.n_train == len(split.train)
    queries = inputs.subset(split.query)
    codes = model.encode(queries)
    assert codes.shape == (len(split.query), N_BITS) and codes.dtype == np.uint8
    assert set(np.unique(codes)) <= {0, 1}
    for modality in model.tags.modalities[1:]:
        other = model.encode(queries, modality=modality)
        assert other.shape == codes.shape and other.dtype == np.uint8

    reopened = hashlab.load(model.save(tmp_path / "model"))
    assert type(reopened) is type(model) and reopened.tags == model.tags
    np.testing.assert_array_equal(reopened.encode(queries), codes)

    # bad inputs are the library's error, never a crash deep inside numpy or torch
    if model.input_kind != "pixels":
        features = np.asarray(queries.features, dtype=np.float32)
        with pytest.raises(HashlabError):
            bad = features.copy()
            bad[0].flat[0] = np.nan
            model.encode(bad)
        with pytest.raises(HashlabError):
            model.encode(features.reshape(len(features), -1)[:, :3])  # wrong dimension
    with pytest.raises(HashlabError):  # nothing to learn from: no supervision
        unsupervised = fast_model(name)
        train = inputs.subset(split.train)
        if unsupervised.tags.supervision == "none":
            train = replace(train, features=np.full_like(np.asarray(train.features), np.nan))
        else:
            train = replace(train, labels=None, tags=None)
        unsupervised.fit(train)


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("hashlab.data", ("hashlab.backbones", "hashlab.methods", "hashlab.index")),
        ("hashlab.index", ("hashlab.backbones", "hashlab.methods", "hashlab.pipeline")),
        ("hashlab.backbones", ("hashlab.methods", "hashlab.index", "hashlab.pipeline")),
        ("hashlab.methods.registry", ("hashlab.cli", "hashlab.service", "hashlab.index")),
    ],
)
def test_no_import_runs_back_up_the_flow(package, forbidden):
    """data -> features -> method -> codes -> index: importing a package (and whatever it
    imports) never pulls in a package above it; a fresh interpreter shows what it loads."""
    import subprocess
    import sys

    code = (f"import sys, {package}; "
            f"print(sorted(m for m in sys.modules if m.startswith({forbidden!r})))")  # fmt: skip
    if package == "hashlab.methods.registry":
        code = code.replace(f"{package};", f"{package}; {package}._import_all();")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout
