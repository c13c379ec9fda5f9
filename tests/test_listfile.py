"""List files (``hashlab.data.listfile``): the format, the overlap report, the ``listfile``
split, the named sets' metrics, ``hashlab train`` on list files, and the multi-label contract
(``MethodTags.multi_label``) that the pipeline enforces.

Every list file and image here is written by the test: small PNGs whose colour follows
their labels (label 0 -> red, 1 -> green, 2 -> blue), so a hash of their features can find
images that share a label.
"""

import json

import numpy as np
import pytest
from PIL import Image

from hashlab.data.catalog import dataset_metric, default_protocol, load_dataset
from hashlab.data.dataset import DataError, Dataset
from hashlab.data.listfile import (
    LIST_SETS,
    ListOverlapWarning,
    load_list_file,
    load_list_split,
    read_list_file,
)
from hashlab.data.splits import make_split

N_LABELS = 3


def _labels(rng: np.random.Generator, n: int, n_labels: int = N_LABELS) -> np.ndarray:
    """Multi-hot rows with one or two labels among the first three."""
    rows = np.zeros((n, n_labels), dtype=np.uint8)
    for row in rows:
        row[rng.choice(N_LABELS, size=rng.integers(1, 3), replace=False)] = 1
    return rows


def _write_image(path, labels: np.ndarray, rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = np.asarray(labels[:N_LABELS], dtype=np.float64) * 200 + 20
    pixels = colour + rng.normal(0, 20, size=(32, 32, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)


def _line(path: str, labels: np.ndarray) -> str:
    return path + " " + " ".join(str(int(v)) for v in labels) + "\n"


def _write_lists(folder, image_root, sizes, n_labels=N_LABELS, seed=0, train_in_db=True,
                 query_in_db=0, prefix="images/"):  # fmt: skip
    """train.txt / test.txt / database.txt with real images; returns {role: [paths]}.

    The training items are the first database items (train ⊂ database) unless
    ``train_in_db`` is False; ``query_in_db`` queries are listed in the database too.
    """
    rng = np.random.default_rng(seed)
    names = {}
    counter = 0
    for role in ("train", "query", "database"):
        names[role] = [f"{prefix}{role}_{i:03d}.png" for i in range(sizes[role])]
        counter += sizes[role]
    labels = {p: _labels(rng, 1, n_labels)[0] for role in names for p in names[role]}
    for path, row in labels.items():
        _write_image(image_root / path, row, rng)
    database = list(names["database"])
    if train_in_db:
        database = names["train"] + database
    database += names["query"][:query_in_db]
    files = {"train": "train.txt", "query": "test.txt", "database": "database.txt"}
    listed = {"train": names["train"], "query": names["query"], "database": database}
    folder.mkdir(parents=True, exist_ok=True)
    for role, file_name in files.items():
        (folder / file_name).write_text("".join(_line("./" + p, labels[p]) for p in listed[role]))
    return listed, labels


# -- the format --------------------------------------------------------------------------
def test_one_list_file_multi_hot_and_single_label(tmp_path):
    rng = np.random.default_rng(1)
    for name, row in [("a.png", [1, 1, 0]), ("b.png", [0, 0, 1]), ("c.png", [0, 1, 0])]:
        _write_image(tmp_path / "img" / name, np.asarray(row), rng)
    (tmp_path / "multi.txt").write_text("./img/a.png 1 1 0\nimg/b.png 0 0 1\n\n./img/c.png 0 1 0\n")
    data = load_list_file(tmp_path / "multi.txt", tmp_path)
    assert data.image_paths == [str(tmp_path / "img" / n) for n in ("a.png", "b.png", "c.png")]
    assert data.labels.dtype == np.uint8
    np.testing.assert_array_equal(data.labels, [[1, 1, 0], [0, 0, 1], [0, 1, 0]])
    assert data.multilabel and data.info["n_classes"] == 3

    # one label per line: class ids (one-hot rows read back as ids), as load_image_csv does
    (tmp_path / "single.txt").write_text("img/a.png 0 1 0\nimg/b.png 0 0 1\nimg/c.png 1 0 0\n")
    single = load_list_file(tmp_path / "single.txt", tmp_path)
    assert not single.multilabel
    np.testing.assert_array_equal(single.labels, [1, 2, 0])

    # a prefix that public copies carry (./data/coco/...) is stripped on request
    (tmp_path / "prefixed.txt").write_text("./data/coco/img/a.png 1 1 0\n")
    prefixed = read_list_file(tmp_path / "prefixed.txt", strip_prefix="./data/coco/")
    assert prefixed[0].path == "img/a.png"
    with pytest.raises(DataError, match=r"prefixed.txt:1: image path '\.\./x.png' is not"):
        (tmp_path / "prefixed.txt").write_text("../x.png 1 0 0\n")
        load_list_file(tmp_path / "prefixed.txt", tmp_path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.png 1 0 0\nb.png 0 1\n", r"bad.txt:2: 2 labels, expected 3 \(as on line 1\)"),
        ("a.png 1 0 0\n\nb.png 0 2 0\n", r"bad.txt:3: label value '2' is not 0 or 1"),
        ("a.png 1 0 0\nb.png 0 1 -1\n", r"bad.txt:2: label value '-1' is not 0 or 1"),
        ("a.png 1 0 0\nb.png\n", r"bad.txt:2: 'b.png' has no label vector"),
        ("\n\n", r"bad.txt lists no images"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, message):
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(DataError, match=message):
        read_list_file(tmp_path / "bad.txt")


def test_a_named_set_checks_its_label_count(tmp_path):
    _write_lists(tmp_path, tmp_path, {"train": 4, "query": 2, "database": 4})
    with pytest.raises(DataError, match=r"train.txt:1: 3 labels, expected 21 \(for this data"):
        load_list_split(tmp_path, "nuswide21")


def test_a_missing_image_names_the_list_file_line_and_image(tmp_path):
    listed, _ = _write_lists(tmp_path, tmp_path, {"train": 4, "query": 3, "database": 5})
    gone = listed["database"][6]  # the 3rd database-only image: line 7 of database.txt
    (tmp_path / gone).unlink()
    with pytest.raises(DataError) as error:
        load_list_split(tmp_path)
    assert str(error.value) == (f"{tmp_path / 'database.txt'}:7: image '{gone}' not found "
                                f"under {tmp_path}")  # fmt: skip
    (tmp_path / listed["query"][0]).unlink()
    with pytest.raises(DataError, match=r"test.txt:1: .* \(2 of 12 listed images are missing\)"):
        load_list_split(tmp_path)


def test_the_same_image_with_other_labels_in_two_lists_is_an_error(tmp_path):
    listed, labels = _write_lists(tmp_path, tmp_path, {"train": 3, "query": 2, "database": 3})
    path = listed["train"][1]
    other = 1 - labels[path]
    lines = (tmp_path / "database.txt").read_text().splitlines(keepends=True)
    lines[1] = _line("./" + path, other)
    (tmp_path / "database.txt").write_text("".join(lines))
    with pytest.raises(DataError, match=rf"database.txt:2: '{path}' has other labels than in "
                       rf".*train.txt:2"):  # fmt: skip
        load_list_split(tmp_path)


# -- three lists, overlaps, the lists split -------------------------------------------------
def test_lists_follow_the_convention_without_a_warning(tmp_path, recwarn):
    listed, labels = _write_lists(tmp_path, tmp_path, {"train": 6, "query": 4, "database": 8})
    data = load_list_split(tmp_path)
    assert not [w for w in recwarn if issubclass(w.category, ListOverlapWarning)]
    assert len(data) == 18  # the 6 training images are database items too: one item each
    roles = data.info["list_split"]
    for role in ("train", "query", "database"):
        paths = [data.image_paths[i] for i in roles[role]]
        assert paths == [str(tmp_path / p) for p in listed[role]]
    overlaps = data.info["overlaps"]
    assert overlaps["train&database"]["count"] == 6  # train ⊂ database, recorded
    assert overlaps["query&database"]["count"] == overlaps["query&train"]["count"] == 0
    assert data.info["metric"] == "map@all"

    split = make_split(data, "listfile", seed=3, validation_fraction=0.34)
    assert split.train_in_database and split.info["removed_query_overlap"] == {}
    assert sorted(split.query) == sorted(roles["query"])
    assert sorted(split.database) == sorted(roles["database"])
    assert sorted(np.concatenate([split.train, split.validation])) == sorted(roles["train"])
    assert len(split.validation) == 2  # carved from the listed training items
    assert not np.isin(split.validation_database, split.validation).any()
    assert "listfile (seed 3, fixed by the list files)" in split.describe()
    # the same lists and seed: the same split; the parts come out permuted, not in list order
    again = make_split(data, "listfile", seed=3, validation_fraction=0.34)
    np.testing.assert_array_equal(again.database, split.database)
    np.testing.assert_array_equal(data.label_matrix()[roles["train"][0]],
                                  labels[listed["train"][0]])  # fmt: skip


def test_a_deliberate_overlap_is_reported_and_kept_out_of_the_split(tmp_path):
    listed, _ = _write_lists(tmp_path, tmp_path, {"train": 6, "query": 5, "database": 8},
                             query_in_db=2)  # fmt: skip
    with (tmp_path / "train.txt").open("a") as handle:  # one query also a training image
        handle.write((tmp_path / "test.txt").read_text().splitlines(keepends=True)[4])
    with pytest.warns(ListOverlapWarning) as caught:
        data = load_list_split(tmp_path)
    message = str(caught[0].message)
    assert "2 images are in both test.txt and database.txt" in message
    assert "1 images are in both test.txt and train.txt" in message
    overlaps = data.info["overlaps"]
    assert overlaps["query&database"] == {"count": 2, "examples": listed["query"][:2]}
    assert overlaps["query&train"] == {"count": 1, "examples": [listed["query"][4]]}
    # the one query in train.txt is in no database: train is now only partly in it
    assert overlaps["train&database"]["count"] == 6

    split = make_split(data, "listfile", seed=0)
    assert split.info["removed_query_overlap"] == {"train": 1, "database": 2}
    assert not np.isin(split.database, split.query).any()
    assert not np.isin(split.train_all, split.query).any()
    assert "1 train and 2 database items that are also queries removed" in split.describe()


def test_disjoint_lists_give_training_items_outside_the_database(tmp_path):
    _write_lists(tmp_path, tmp_path, {"train": 5, "query": 3, "database": 6}, train_in_db=False)
    data = load_list_split(tmp_path)
    assert data.info["overlaps"]["train&database"]["count"] == 0
    split = make_split(data, "listfile")
    assert not split.train_in_database
    assert "training items not in the database" in split.describe()


def test_repeated_lines_are_one_item_and_reported(tmp_path):
    _write_lists(tmp_path, tmp_path, {"train": 4, "query": 3, "database": 4})
    text = (tmp_path / "test.txt").read_text()
    (tmp_path / "test.txt").write_text(text + text.splitlines(keepends=True)[0])
    with pytest.warns(ListOverlapWarning, match="test.txt lists 1 images twice"):
        data = load_list_split(tmp_path)
    assert len(data.info["list_split"]["query"]) == 3
    assert data.info["overlaps"]["query repeats"]["examples"][0]["lines"] == [1, 4]


def test_protocol_lists_needs_list_files():
    data = Dataset(name="plain", features=np.zeros((10, 2)), labels=np.arange(10) % 2)
    with pytest.raises(DataError, match="protocol 'listfile' uses a data set's own list files"):
        make_split(data, "listfile")


def test_each_named_set_has_its_metric_and_list_names(tmp_path):
    assert {n: dataset_metric(n) for n in ("nuswide21", "coco", "imagenet100", "listfile")} == {
        "nuswide21": "map@5000", "coco": "map@5000", "imagenet100": "map@1000",
        "listfile": "map@all",
    }  # fmt: skip
    assert dataset_metric("cifar10") == "map@all"
    assert {n: s.n_classes for n, s in LIST_SETS.items()} == {
        "listfile": None, "nuswide21": 21, "coco": 80, "imagenet100": 100}  # fmt: skip
    assert default_protocol("coco") == "listfile" and default_protocol("cifar10") == "dch"
    # ImageNet-100: one class per image, images under a folder apart from the lists
    listed, _ = _write_lists(tmp_path / "lists", tmp_path / "images",
                             {"train": 3, "query": 2, "database": 3}, n_labels=100)  # fmt: skip
    for file_name in ("train.txt", "test.txt", "database.txt"):  # keep one label per line
        path = tmp_path / "lists" / file_name
        lines = [line.split()[0] + " " + " ".join(["1"] + ["0"] * 99) for line in
                 path.read_text().splitlines()]  # fmt: skip
        path.write_text("\n".join(lines) + "\n")
    (tmp_path / "lists" / "test.txt").rename(tmp_path / "lists" / "query.txt")
    data = load_dataset("imagenet100", tmp_path / "lists", image_root=tmp_path / "images")
    assert data.info["metric"] == "map@1000" and data.info["list_set"] == "ImageNet-100"
    assert data.labels.ndim == 1 and data.info["list_files"]["query"].endswith("query.txt")
    with pytest.raises(DataError, match="--image-root is for list-file data sets"):
        load_dataset("cifar10", tmp_path, image_root=tmp_path)


# -- hashlab train on list files -------------------------------------------------------------
def test_cli_train_on_nuswide_style_lists(tmp_path, monkeypatch, capsys):
    """``hashlab train --dataset nuswide21``: the lists' own split, the set's metric, and
    ITQ on the small CNN's features finds images that share a label above chance."""
    from hashlab.cli import main

    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    _write_lists(tmp_path / "lists", tmp_path / "nus", {"train": 40, "query": 20,
                 "database": 60}, n_labels=21)  # fmt: skip
    model_dir = tmp_path / "model"
    code = main(["train", "--method", "itq", "--dataset", "nuswide21", "--root",
                 str(tmp_path / "lists"), "--image-root", str(tmp_path / "nus"), "--bits", "16",
                 "--backbone", "small_cnn", "--out", str(model_dir)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "listfile (seed 0, fixed by the list files): 20 queries" in printed
    assert "100 database (training items in the database)" in printed
    config = json.loads((model_dir / "config.json").read_text())
    scores = config["extra"]["test_scores"]
    assert set(scores) >= {"map@all", "map@r2", "map@5000"}
    assert "map@5000" in printed

    # chance: the mean over queries of the share of database items relevant to each
    data = load_list_split(tmp_path / "lists", "nuswide21", image_root=tmp_path / "nus")
    y = data.label_matrix()
    roles = data.info["list_split"]
    relevant = (y[roles["query"]] @ y[roles["database"]].T) > 0
    assert scores["map@5000"] > relevant.mean() + 0.05


def test_cli_listfile_errors_are_one_line(tmp_path, capsys):
    from hashlab.cli import main

    listed, _ = _write_lists(tmp_path, tmp_path, {"train": 3, "query": 2, "database": 3})
    (tmp_path / listed["query"][1]).unlink()
    code = main(["train", "--method", "itq", "--dataset", "listfile", "--root", str(tmp_path),
                 "--out", str(tmp_path / "m")])  # fmt: skip
    assert code == 2
    assert f"test.txt:2: image '{listed['query'][1]}' not found" in capsys.readouterr().err


# -- the multi-label contract ----------------------------------------------------------------
def _one_label_method():
    """SDH with its tags saying it takes one label per item (no registered method does)."""
    from hashlab.methods.sdh import SupervisedDiscreteHashing as SDH
    from hashlab.methods.tags import MethodTags

    class OneLabelSDH(SDH):
        tags = MethodTags(family="shallow", supervision="labels", inputs="features",
                          multi_label=False)  # fmt: skip

    OneLabelSDH.name = "one_label_sdh"
    return OneLabelSDH(n_bits=16, seed=0)


def test_a_one_label_method_refuses_multi_hot_labels():
    import hashlab
    from hashlab import pipeline
    from hashlab.data.digits import load_digits_dataset
    from hashlab.errors import InputError
    from hashlab.methods.registry import method_tags

    digits = load_digits_dataset()
    ids = np.asarray(digits.labels)
    multi = np.stack([ids == d for d in range(10)] + [ids % 2 == 0], axis=1).astype(np.uint8)
    data = Dataset(name="digits-parity", features=digits.features, labels=multi)
    split = make_split(data, "random", seed=0, n_query=100, n_train=500)
    model = _one_label_method()
    with pytest.raises(InputError) as error:
        pipeline.method_inputs(model, data)
    message = str(error.value)
    several = int((multi.sum(axis=1) != 1).sum())  # the even digits: digit and parity
    assert message.startswith(f"one_label_sdh assumes one label per item, but {several} of "
                              "the 1797 items of digits-parity have several labels")  # fmt: skip
    assert "multi-label data: " in message and "sdh" in message.split("multi-label data: ")[1]
    with pytest.raises(InputError, match="one_label_sdh assumes one label per item"):
        pipeline.fit_on_split(model, data, split, inputs=data)

    # one-hot rows, or class ids, are single-label: fitted as before
    one_hot = Dataset(name="digits-one-hot", features=digits.features, labels=multi[:, :10])
    fitted, _ = pipeline.fit_on_split(_one_label_method(), one_hot, split, inputs=one_hot)
    assert fitted.encode(digits.features[:5]).shape == (5, 16)
    # the label-supervised methods that predate the tag all take multi-label data (decided
    # from their code: shared-label similarity, or regression / CCA on the multi-hot matrix)
    older = ("sdh", "ksh", "itq_cca", "dsh", "dpsh", "dhn", "hashnet", "dch", "dnnh", "adsh",
             "eddh", "pc_aegan")  # fmt: skip
    assert all(method_tags(n).multi_label for n in older)
    assert hashlab.create("sdh").tags.to_json()["multi_label"] is True
