"""The large-batch study's pieces: class-wise triplets (no k x k matrix) and the synthetic
stand-in (noise as documented, real queries and validation pairs never trained on)."""

import numpy as np
from conftest import SHARED_DATA

import hashlab
from hashlab.bench.large_batch import load_set
from hashlab.data.dataset import Dataset
from hashlab.methods.cross_modal import lbo_cmh
from hashlab.methods.cross_modal.lbo_cmh import sample_triplets, sample_triplets_by_class


def test_class_wise_triplets_have_the_matrix_samplers_distribution():
    classes = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    similar = classes[:, None] == classes[None, :]
    by_class = sample_triplets_by_class(classes, 4000, np.random.default_rng(0))
    by_matrix = sample_triplets(similar, 4000, np.random.default_rng(1))
    for triplets in (by_class, by_matrix):
        assert np.array_equal(np.bincount(triplets[:, 0]), np.full(10, 4000))
        assert (classes[triplets[:, 1]] == classes[triplets[:, 0]]).all()
        assert (classes[triplets[:, 2]] != classes[triplets[:, 0]]).all()
    # query 0 (class 0, 3 items): positives uniform over items 0..2 (itself included), negatives
    # uniform over the 7 others; both samplers agree with that within sampling noise
    for triplets in (by_class, by_matrix):
        mine = triplets[triplets[:, 0] == 0]
        positives = np.bincount(mine[:, 1], minlength=10)[:3] / len(mine)
        negatives = np.bincount(mine[:, 2], minlength=10)[3:] / len(mine)
        np.testing.assert_allclose(positives, 1 / 3, atol=0.03)
        np.testing.assert_allclose(negatives, 1 / 7, atol=0.02)


def test_lbo_cmh_trains_past_the_matrix_limit_on_class_wise_triplets(monkeypatch):
    monkeypatch.setattr(lbo_cmh, "MATRIX_LIMIT", 50)  # 120 items take the large-set path
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    centres = rng.normal(size=(3, 8))
    data = Dataset(name="toy", features=centres[labels] + 0.3 * rng.normal(size=(120, 8)),
                   text=centres[labels][:, :4] + 0.3 * rng.normal(size=(120, 4)),
                   labels=labels)  # fmt: skip
    model = hashlab.create("lbo_cmh", n_bits=8, epochs=3, batch_size=64, validation_fraction=0.0,
                           device="cpu")  # fmt: skip
    assert model.steps_per_epoch(data.label_matrix()) == int(np.ceil(120 * 4 / 64))
    model.fit(data)
    assert model.extra_config_["training"]["updates_per_network"]["total"] == 3 * 8


def test_synthetic_stand_in_noise_and_splits():
    parts = load_set("synthetic-100k", SHARED_DATA, n_synthetic=3000, noise=0.5)
    fit, val, query = parts["fit"], parts["validation"], parts["query"]
    assert len(fit) == 3000 and parts["database"] is fit and len(query) == 693
    from hashlab.bench.cross_modal import validation_split
    from hashlab.data.wikipedia import load_wikipedia, wikipedia_split

    real = load_wikipedia(SHARED_DATA / "wikipedia" / "wiki_data.mat")
    fit_base, val_base = validation_split(real, wikipedia_split(real), 0)
    picks = fit.info["resampled_from"]
    assert np.isin(picks, fit_base).all()  # copies of the pairs trained on only
    np.testing.assert_array_equal(val.features, real.features[val_base])  # real, noise-free
    np.testing.assert_array_equal(query.features, real.features[real.info["n_train"] :])
    np.testing.assert_array_equal(fit.labels, real.labels[picks])
    for side, values in (("features", real.features), ("text", real.text)):
        scale = values[fit_base].std(axis=0)
        noise = (getattr(fit, side) - values[picks])[:, scale > 0] / scale[scale > 0]
        assert abs(noise.std() - 0.5) < 0.02, side  # sigma x the per-dimension std
        assert abs(noise.mean()) < 0.02, side
