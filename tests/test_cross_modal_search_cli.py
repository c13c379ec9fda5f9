"""`hashlab search --text / --text-features`: text queries against an image index."""

import subprocess
import sys

import numpy as np
from conftest import SHARED_DATA

import hashlab
from hashlab.data.wikipedia import load_wikipedia
from hashlab.index import HammingIndex


def test_text_features_query_an_image_index_and_raw_text_is_refused_for_lda(tmp_path):
    data = load_wikipedia(SHARED_DATA / "wikipedia" / "wiki_data.mat")
    n = data.info["n_train"]
    model = hashlab.create("cmfh", n_bits=32).fit(data.features[:n], data.text[:n], data.labels[:n])
    model.save(tmp_path / "model")
    index = HammingIndex(32)
    image_codes = model.encode(data.features[:n], modality="image")
    index.add(image_codes)
    index.save(tmp_path / "index")
    query = data.text[n : n + 1]
    np.save(tmp_path / "query.npy", query)

    def search(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "hashlab", "search", str(tmp_path / "index"),
             "--model", str(tmp_path / "model"), "-k", "5", "--json", *extra],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    found = search("--text-features", str(tmp_path / "query.npy"))
    assert found.returncode == 0, found.stderr
    expected_ids, _ = index.search(model.encode(query, modality="text"), 5)
    for item in expected_ids[0]:
        assert str(int(item)) in found.stdout

    refused = search("--text", "river boat")
    assert refused.returncode == 2
    assert "--text-features" in refused.stderr and "Traceback" not in refused.stderr
