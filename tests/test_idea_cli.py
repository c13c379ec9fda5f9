"""``hashlab train`` / ``hashlab bench`` with a tag data set (IDEA, WDHT: weak supervision).

Real data: 80 MIRFlickr-25K images listed in a CSV with their user tags and labels (an image
folder + CSV, the layout a user brings). Tag-supervised methods must get the tags, never the
labels; labels only score. Backbone features and region maps are cached after the first run.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import SHARED_DATA

import hashlab
from hashlab.cli import main
from hashlab.data.mirflickr import LABEL_NAMES, load_mirflickr_images
from hashlab.errors import HashlabError
from hashlab.methods.deep.base import DeepHashMethod
from hashlab.pipeline import encode_images

MIRFLICKR = SHARED_DATA / "mirflickr25k"
N_IMAGES = 80


@pytest.fixture(scope="module")
def tagged_csv(tmp_path_factory):
    """(images root, CSV) of the first 80 MIRFlickr images: file, tags, label columns."""
    data = load_mirflickr_images(MIRFLICKR).subset(np.arange(N_IMAGES))
    root = MIRFLICKR / "thumbs"
    path = tmp_path_factory.mktemp("tagged") / "mirflickr80.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "tags", "label"])
        for image, tags, labels in zip(data.image_paths, data.tags, data.labels, strict=True):
            words = [data.tag_vocab[v] for v in np.flatnonzero(tags)]
            names = [LABEL_NAMES[c] for c in np.flatnonzero(labels)]
            writer.writerow([image.rsplit("/", 1)[-1], " ".join(words), ";".join(names)])
    return root, path


def _data_args(tagged_csv, *columns: str) -> list[str]:
    root, path = tagged_csv
    args = ["--dataset", "folder", "--root", str(root), "--csv", str(path)]
    for column in columns:
        args += [f"--{column}-column", column]
    return args


def test_train_idea_from_csv_tags_never_sees_labels(tagged_csv, tmp_path, monkeypatch, capsys):
    seen = []
    original = DeepHashMethod.fit

    def spy(self, x, y=None, validation=None, **supervision):
        seen.append((x, y, validation, supervision))
        return original(self, x, y, validation, **supervision)

    monkeypatch.setattr(DeepHashMethod, "fit", spy)
    out = tmp_path / "idea16"
    code = main(["train", "--method", "idea", *_data_args(tagged_csv, "tags", "label"),
                 "--bits", "16", "--epochs", "3", "--out", str(out)])  # fmt: skip
    assert code == 0
    # the one fit call: a Dataset with the tags and their vocabulary, and no labels at all
    [(train, y, validation, supervision)] = seen
    assert y is None and not supervision and train.labels is None
    assert train.tags.ndim == 2 and train.tags.shape[1] == len(train.tag_vocab)
    # validation is carved from the training items and judged by their tags, not labels
    assert validation.labels is None and validation.tags.shape[1] == train.tags.shape[1]
    saved = json.loads((out / "config.json").read_text())
    assert saved["params"]["embedding"] == "glove"
    assert saved["extra"]["supervision"].startswith("tags only")
    assert saved["extra"]["embedding"].lower().startswith("glove")
    assert 0.0 < saved["extra"]["test_scores"]["map@all"] <= 1.0
    assert "test map@all" in capsys.readouterr().out
    # the saved model encodes image files through the backbone's region maps (Eq. 2-3),
    # as it encodes the cached maps it was trained on
    from hashlab.backbones import extract_features

    model = hashlab.load(out)
    images = sorted((tagged_csv[0]).glob("im*.jpg"))[:4]
    maps = extract_features(images, dataset_key="idea-cli-test", feature_map=True,
                            progress=False)  # fmt: skip
    codes = encode_images(model, images)
    assert codes.shape == (4, 16)
    assert np.array_equal(codes, model.encode(maps))


def test_bench_with_tags_runs_weak_and_unsupervised_methods(tagged_csv, tmp_path, capsys):
    code = main(["bench", *_data_args(tagged_csv, "tags", "label"),
                 "--methods", "idea,wdht,lsh", "--bits", "16", "--param", "idea.epochs=3",
                 "--param", "wdht.epochs=3", "--metrics", "map@all", "--out", str(tmp_path),
                 "--json"])  # fmt: skip
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    rows = {row["method"]: row for row in document["rows"]}
    assert set(rows) == {"idea", "wdht", "lsh"}
    assert all(0.0 < row["map@all"] <= 1.0 for row in rows.values())
    assert "tags" in document["protocol"]["supervision"]


def test_tag_methods_refuse_a_data_set_without_tags(tagged_csv, tmp_path, capsys):
    code = main(["train", "--method", "wdht", *_data_args(tagged_csv, "label"),
                 "--bits", "8", "--epochs", "1", "--out", str(tmp_path / "m")])  # fmt: skip
    assert code == 2
    assert "learns from user tags" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_labels_passed_to_a_tag_method_are_refused():
    model = hashlab.create("wdht", n_bits=8, epochs=1)
    x = np.random.default_rng(0).random((20, 6), dtype=np.float32)
    with pytest.raises(ValueError, match="weakly supervised"):
        model.fit(x, np.arange(20) % 2, tags=np.eye(20, 5))
    # and label-supervised methods reject tag keywords instead of ignoring them
    with pytest.raises(HashlabError, match="unexpected keyword"):
        hashlab.create("dsh", n_bits=8, epochs=1).fit(x, np.arange(20) % 2, tags=np.eye(20, 5))
