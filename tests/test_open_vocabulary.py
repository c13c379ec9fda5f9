"""Open-vocabulary text queries: GloVe-mean text side, MIRFlickr image-tag pairs, `hashlab
search --text` with words that were never MIRFlickr tags.

Real data CI has: the first 100 of the 730 MIRFlickr pairs (thumbnails in shared/data), their
EfficientNet-Lite0 features from the region-map cache that tests/test_idea.py fills (the
pooled vector is the mean of the 7 x 7 map, which is what the backbone's pooled output is),
so the suite pays no extra image extraction when both run.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import SHARED_DATA

import hashlab
from hashlab.data.catalog import load_dataset
from hashlab.data.mirflickr_pairs import load_mirflickr_image_pairs
from hashlab.errors import InputError
from hashlab.index import HammingIndex
from hashlab.methods.cross_modal.text import text_to_features
from hashlab.text.open_vocabulary import glove_query_features, word_vectors

MIRFLICKR = SHARED_DATA / "mirflickr25k"
N_IMAGES = 100
# query words chosen outside the 1,386 YAll tags (checked below), with the labels they mean
QUERIES = {
    "seashore coastline tide": ("sea", "water"),
    "daisies orchids blossoms": ("flower", "plant_life"),
    "overcast cumulus": ("clouds", "sky"),
    "canine terrier": ("dog", "animals"),
}


@pytest.fixture(scope="module")
def glove():
    return word_vectors()


@pytest.fixture(scope="module")
def pairs():
    return load_mirflickr_image_pairs(MIRFLICKR)


def test_query_features_are_the_mean_of_known_word_vectors(glove):
    got = glove_query_features("Seashore, coastline and qwzxvy!", glove)
    rows = [glove.words.index(w) for w in ("seashore", "coastline", "and")]  # qwzxvy unknown
    expected = glove.vectors[rows].mean(axis=0)
    np.testing.assert_allclose(got[0], expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(InputError, match="qwzxvy, blorftq"):
        glove_query_features("qwzxvy blorftq", glove)


def test_pairs_text_is_the_mean_glove_vector_of_each_items_tags(pairs, glove):
    assert pairs.name == "mirflickr-pairs" and len(pairs) == 730
    assert pairs.text.shape == (730, 50) and pairs.labels.shape == (730, 24)
    assert pairs.info["text_featurizer"]["kind"] == "glove"
    item = 3
    words = [pairs.tag_vocab[v] for v in np.flatnonzero(pairs.tags[item])]
    known = [glove.vectors[glove.words.index(w)] for w in words if w in glove]
    np.testing.assert_allclose(pairs.text[item], np.mean(known, axis=0), rtol=1e-5, atol=1e-6)
    bow = load_dataset("mirflickr-pairs-bow", MIRFLICKR)  # the papers' text side stays
    assert bow.text.shape == (730, 1386) and bow.info["text_featurizer"]["kind"] == "bow"
    np.testing.assert_array_equal(bow.labels, pairs.labels)


def test_text_query_with_unseen_words_finds_matching_images_through_the_cli(pairs, tmp_path, glove):
    from hashlab.backbones import extract_features

    data = pairs.subset(np.arange(N_IMAGES))
    maps = extract_features(data.image_paths, "efficientnet_lite0", dataset_key="mirflickr100-test",
                            feature_map=True, progress=False)  # fmt: skip
    data = data.with_features(maps.mean(axis=(2, 3)), backbone="efficientnet_lite0")
    vocab = {w.lower() for w in pairs.tag_vocab}
    for query in QUERIES:
        for word in query.split():
            assert word not in vocab and word in glove, word  # never a tag, known to GloVe

    model = hashlab.create("lbo_cmh", n_bits=32, seed=0, epochs=30, device="cpu").fit(data)
    model.save(tmp_path / "model")
    index = HammingIndex(32)
    names = data.class_names
    metadata = [{"image_id": m["image_id"], "labels": [names[c] for c in np.flatnonzero(row)]}
                for m, row in zip(data.metadata, data.labels, strict=True)]  # fmt: skip
    index.add(model.encode(data.features, modality="image"), metadata=metadata)
    index.save(tmp_path / "index")

    def search(text: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "hashlab", "search", str(tmp_path / "index"),
             "--model", str(tmp_path / "model"), "--text", text, "-k", "10", "--json"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    # one query through the CLI end to end (a subprocess costs ~4 s of CPU: the others go
    # through the same library calls, which the CLI is checked to agree with)
    cli_query = next(iter(QUERIES))
    found = search(cli_query)
    assert found.returncode == 0, found.stderr
    cli_hits = json.loads(found.stdout)["results"]
    precision, base = [], []
    for query, wanted in QUERIES.items():
        ids, _, meta = index.search(model.encode(text_to_features(model, query), "text"), 10,
                                    with_metadata=True)  # fmt: skip
        if query == cli_query:
            assert [h["id"] for h in cli_hits] == [int(i) for i in ids[0]]
            assert [h["metadata"] for h in cli_hits] == meta[0]
        precision.append(np.mean([bool(set(m["labels"]) & set(wanted)) for m in meta[0]]))
        columns = [names.index(label) for label in wanted]
        base.append(data.labels[:, columns].any(axis=1).mean())  # a random ranking's p@10
    # better than random on average, and on at least 3 of the 4 queries
    assert np.mean(precision) >= 1.5 * np.mean(base), (precision, base)
    assert sum(p > b for p, b in zip(precision, base, strict=True)) >= 3, (precision, base)

    refused = search("qwzxvy blorftq")
    assert refused.returncode == 2 and "qwzxvy, blorftq" in refused.stderr
    assert "Traceback" not in refused.stderr
