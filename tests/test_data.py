"""Data loaders and protocol splits on the real data in /work/shared/data (no downloads).

Split sizes are the protocols spec's numbers; leaks between parts must raise; every bad
input must raise one readable ``DataError`` sentence; bad images must never reach PIL's
decoder unchecked.
"""

from __future__ import annotations

import csv
import io
import pickle
import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

from hashlab.backbones import cache
from hashlab.data import (
    DataError,
    Dataset,
    ImageError,
    Split,
    dataset_images,
    load_cifar10,
    load_digits_dataset,
    load_image_csv,
    load_image_folder,
    load_mirflickr,
    load_mirflickr_images,
    load_mirflickr_official,
    make_split,
    open_image,
)
from hashlab.data.mirflickr import load_mat_array

DATA = Path(SHARED_DATA)
MIRFLICKR = DATA / "mirflickr25k"


def assert_one_sentence(error: pytest.ExceptionInfo) -> None:
    message = str(error.value)
    assert message and "\n" not in message, message
    assert not re.search(r"\.\s+[A-Z]", message), f"more than one sentence: {message}"
    assert "Traceback" not in message


@pytest.fixture(scope="module")
def cifar():
    return load_cifar10(DATA / "cifar10_jpg.tar.gz")


@pytest.fixture(scope="module")
def digits():
    return load_digits_dataset()


@pytest.fixture(scope="module")
def mirflickr():
    return load_mirflickr(MIRFLICKR)


# ---------------------------------------------------------------- splits on real labels


def test_dch_split_sizes_and_leaks_on_real_cifar(cifar):
    assert len(cifar) == 60_000
    split = make_split(cifar, protocol="dch", seed=0)
    assert split.sizes() == {"query": 1_000, "train": 4_500, "validation": 500, "database": 59_000}
    labels = cifar.labels
    assert np.bincount(labels[split.query], minlength=10).tolist() == [100] * 10
    assert np.bincount(labels[split.train_all], minlength=10).tolist() == [500] * 10
    assert np.bincount(labels[split.validation], minlength=10).tolist() == [50] * 10
    # DCH / HashNet: database = everything but the queries, so it contains the training set
    assert np.array_equal(np.sort(np.concatenate([split.query, split.database])), np.arange(60_000))
    assert np.isin(split.train_all, split.database).all()
    assert not np.isin(split.query, split.train_all).any()
    # validation queries must not find themselves in the database they are searched against
    assert len(split.validation_database) == 59_000 - 500
    assert not np.isin(split.validation, split.validation_database).any()
    # the database order is shuffled so that tie-breaking by order favours no class
    assert not np.all(np.diff(split.database) > 0)


def test_deephash_split_is_disjoint_and_keeps_54000_in_database(cifar):
    split = make_split(cifar, protocol="deephash", seed=0)
    assert split.sizes() == {"query": 1_000, "train": 4_500, "validation": 500, "database": 54_000}
    parts = [split.query, split.train, split.validation, split.database]
    everything = np.concatenate(parts)
    assert len(np.unique(everything)) == 60_000 == len(everything)
    assert np.bincount(cifar.labels[split.database], minlength=10).tolist() == [5_400] * 10


def test_paper_training_set_without_validation(cifar):
    split = make_split(cifar.labels, protocol="dch", seed=3, n_validation_per_class=0)
    assert split.validation is None
    assert len(split.train) == 5_000 and len(split.train_all) == 5_000


def test_seeds_reproducible_and_different(cifar):
    a = make_split(cifar, "deephash", seed=7)
    b = make_split(cifar, "deephash", seed=7)
    c = make_split(cifar, "deephash", seed=8)
    for part in ("query", "train", "validation", "database"):
        assert np.array_equal(getattr(a, part), getattr(b, part))
    # two independent draws of 100 of 6,000 per class share about 1.7 items per class
    assert len(np.intersect1d(a.query, c.query)) < 100
    assert not np.array_equal(np.sort(a.train), np.sort(c.train))


@pytest.mark.parametrize("protocol", ["dch", "deephash", "per-class"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_never_touches_queries(digits, protocol, seed):
    labels = np.repeat(np.arange(10), 700)  # enough per class for the paper protocols
    source = digits if protocol == "per-class" else labels
    split = make_split(source, protocol=protocol, seed=seed)
    assert split.validation is not None and len(split.validation) > 0
    assert not np.isin(split.validation, split.query).any()
    assert not np.isin(split.validation, split.train).any()


def test_per_class_defaults_on_digits(digits):
    # smallest digits class has 174 items: 10% -> 17 queries, 50% -> 87 train (9 validation)
    split = make_split(digits, protocol="per-class", seed=0)
    assert split.sizes() == {"query": 170, "train": 780, "validation": 90, "database": 1_627}
    assert "170 queries, 780 train + 90 validation" in split.describe()


@pytest.mark.parametrize(
    "parts, message",
    [
        ({"query": [1, 2], "train": [2, 3], "database": [4, 5]}, "query and train"),
        ({"query": [1, 2], "train": [3], "database": [2, 4]}, "query and database"),
        ({"query": [1], "train": [3], "database": [4], "validation": [1]}, "validation and query"),
        ({"query": [1], "train": [3], "database": [4], "validation": [3]}, "validation and train"),
        ({"query": [1, 1], "train": [3], "database": [4]}, "repeat"),
    ],
)
def test_leaking_split_raises(parts, message):
    with pytest.raises(DataError, match=message) as error:
        Split(**parts)
    assert_one_sentence(error)


def test_deephash_train_in_database_raises():
    with pytest.raises(DataError, match="train and database"):
        Split([0], [1], [1, 2], protocol="deephash")
    Split([0], [1], [1, 2], protocol="dch")  # DCH's database contains the training items


def test_multilabel_split_samples_by_count(mirflickr):
    split = make_split(mirflickr, protocol="per-class", seed=0)
    # DCMH's MIRFlickr protocol: 2,000 queries, 10,000 training items, database = the rest
    assert split.sizes() == {
        "query": 2_000, "train": 9_000, "validation": 1_000, "database": 18_015,
    }  # fmt: skip
    small = make_split(mirflickr.labels, protocol="per-class", n_query_per_class=50, n_train=300)
    assert small.sizes()["query"] == 50 and len(small.train_all) == 300
    assert "uniform" in small.describe()


def test_split_save_load_round_trip(tmp_path, digits):
    split = make_split(digits, protocol="per-class", seed=5, n_query_per_class=10)
    split.save(tmp_path / "split.npz")
    again = Split.load(tmp_path / "split.npz")
    assert again.protocol == "per-class" and again.seed == 5
    assert again.info == split.info
    for part in ("query", "train", "validation", "database"):
        assert np.array_equal(getattr(again, part), getattr(split, part))
    subsets = split.subsets(digits)
    assert np.array_equal(subsets["query"].labels, digits.labels[split.query])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"protocol": "dch"}, r"class 0 \(0\) has 178 items but protocol 'dch' needs 600"),
        ({"protocol": "nosuch"}, "unknown split protocol 'nosuch'"),
        ({"protocol": "per-class", "n_query_per_class": -1}, "n_query_per_class must be 0"),
        ({"protocol": "per-class", "n_train_per_class": 10, "n_validation_per_class": 10},
         "no training"),
        ({"protocol": "per-class", "n_query": 10}, "per-class counts"),
        ({"protocol": "random", "n_query": 1_000, "n_train": 1_000}, "only 1797"),
        ({"protocol": "per-class", "n_query_per_class": 100, "n_train_per_class": 74,
          "train_in_database": False}, "no items for the database"),
    ],
)  # fmt: skip
def test_bad_split_requests_raise_one_sentence(digits, kwargs, message):
    if "no items" in message:  # a tiny labelled set where queries + train use every item
        source = np.repeat(np.arange(2), 174)
    else:
        source = digits
    with pytest.raises(DataError, match=message) as error:
        make_split(source, **kwargs)
    assert_one_sentence(error)


def test_paper_protocol_on_multilabel_raises(mirflickr):
    with pytest.raises(DataError, match="single-label") as error:
        make_split(mirflickr, protocol="dch")
    assert_one_sentence(error)


# ---------------------------------------------------------------- MIRFlickr-25K


def test_mirflickr_real_files(mirflickr):
    assert mirflickr.labels.shape == (20_015, 24) and mirflickr.labels.dtype == np.uint8
    assert mirflickr.tags.shape == (20_015, 1_386)
    assert len(mirflickr.tag_vocab) == 1_386 and mirflickr.tag_vocab[:2] == ["explore", "sky"]
    assert mirflickr.class_names[0] == "animals" and mirflickr.class_names[-1] == "water"
    assert set(np.unique(mirflickr.labels)) == {0, 1}
    # the cleaned set keeps only items with at least one label
    assert mirflickr.labels.sum(axis=1).min() >= 1
    assert mirflickr.metadata[0]["image_id"] == 1
    assert mirflickr.image_paths is None  # only 730 of the 20,015 images are here


def test_mirflickr_730_images_align_with_lall_and_yall(mirflickr):
    small = load_mirflickr_images(MIRFLICKR)
    assert len(small) == 730 and small.labels.shape == (730, 24) and small.tags.shape == (730, 1386)
    rows = [m["row_in_20015"] for m in small.metadata]
    assert np.array_equal(small.labels, mirflickr.labels[rows])
    assert np.array_equal(small.tags, mirflickr.tags[rows])
    assert [m["image_id"] for m in small.metadata] == [
        mirflickr.metadata[r]["image_id"] for r in rows
    ]
    # each raw tag that is in the 1,386-word vocabulary is switched on in the bag-of-words
    vocab = {w: i for i, w in enumerate(small.tag_vocab)}
    for item, bag in zip(small.metadata[:50], small.tags[:50], strict=True):
        for word in item["tag_words"]:
            if word in vocab:
                assert bag[vocab[word]] == 1
    first = next(dataset_images(small, [0]))
    assert first.mode == "RGB" and min(first.size) == 256
    assert Path(small.image_paths[0]).name == "im1.jpg"


def test_mirflickr_official_layout_reproduces_lall_and_yall(tmp_path):
    """Rebuild the LIACS zips' layout for ids 1-1000 from the real files and load it back."""
    stored = np.load(MIRFLICKR / "mirflickr1k_tags_labels.npz")
    ids_1000 = stored["image_id_all1000"].tolist()
    tag_words = dict(zip(stored["image_id"].tolist(), stored["tag_words"].tolist(), strict=True))
    images, tags = tmp_path / "mirflickr", tmp_path / "mirflickr" / "meta" / "tags"
    tags.mkdir(parents=True)
    for image_id in ids_1000:
        (images / f"im{image_id}.jpg").symlink_to(MIRFLICKR / "thumbs" / f"im{image_id}.jpg")
        # the 270 images outside the 20,015 set get no tags here, so cleaning drops them
        words = tag_words.get(image_id, "")
        (tags / f"tags{image_id}.txt").write_text("\n".join(words.split(",")) + "\n")
    annotations = tmp_path / "mirflickr25k_annotations_v080"
    annotations.mkdir()
    for column, label in enumerate(stored["label_names"].tolist()):
        members = [
            i for i, row in zip(ids_1000, stored["labels_all1000"], strict=True) if row[column]
        ]
        (annotations / f"{label}.txt").write_text("".join(f"{i}\n" for i in members))

    dataset = load_mirflickr_official(tmp_path, min_tag_count=1)
    assert [m["image_id"] for m in dataset.metadata] == stored["image_id"].tolist()  # the 730
    assert np.array_equal(dataset.labels, stored["labels_lall"])
    column_of = {w: j for j, w in enumerate(dataset.tag_vocab)}
    projected = np.zeros_like(stored["tags_yall"])
    for k, word in enumerate(stored["tag_vocab_yall"].tolist()):
        if word in column_of:
            projected[:, k] = dataset.tags[:, column_of[word]]
    assert np.array_equal(projected, stored["tags_yall"])
    assert dataset.info["n_before_cleaning"] == 1_000

    frequent = load_mirflickr_official(tmp_path, min_tag_count=20)
    counts = {}
    for words in tag_words.values():
        for word in set(words.split(",")) - {""}:
            counts[word] = counts.get(word, 0) + 1
    assert set(frequent.tag_vocab) == {w for w, c in counts.items() if c >= 20}
    assert counts[frequent.tag_vocab[0]] == max(counts.values())  # most frequent first
    with pytest.raises(DataError, match="no annotation files") as error:
        load_mirflickr_official(tmp_path / "mirflickr")
    assert_one_sentence(error)


def test_mirflickr_missing_files_raise(tmp_path):
    with pytest.raises(DataError, match="mirflickr25k-lall.mat") as error:
        load_mirflickr(tmp_path)
    assert_one_sentence(error)
    with pytest.raises(DataError, match="mirflickr1k_tags_labels.npz"):
        load_mirflickr_images(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_mirflickr(tmp_path / "nowhere")
    # the npz without its thumbs/ folder
    (tmp_path / "mirflickr1k_tags_labels.npz").write_bytes(
        (MIRFLICKR / "mirflickr1k_tags_labels.npz").read_bytes()
    )
    (tmp_path / "thumbs").mkdir()
    with pytest.raises(DataError, match="730 of the 730 MIRFlickr images are missing") as error:
        load_mirflickr_images(tmp_path)
    assert_one_sentence(error)


def test_mat_files_v5_and_v73(tmp_path):
    header = (MIRFLICKR / "mirflickr25k-lall.mat").read_bytes()[:20]
    assert header.startswith(b"MATLAB 5.0")  # the shipped files are v5: scipy reads them
    fake = tmp_path / "v73.mat"
    fake.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64".ljust(512, b"\0"))
    with pytest.raises(DataError, match="7.3") as error:
        load_mat_array(fake, "LAll")
    assert_one_sentence(error)
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="junk.mat"):
        load_mat_array(tmp_path / "junk.mat", "LAll")
    with pytest.raises(DataError, match="no variable 'YAll'"):
        load_mat_array(MIRFLICKR / "mirflickr25k-lall.mat", "YAll")


# ---------------------------------------------------------------- digits


def test_digits_features_and_images(digits):
    from sklearn.datasets import load_digits

    reference = load_digits()
    assert digits.features.shape == (1_797, 64) and digits.features.dtype == np.float32
    assert np.array_equal(digits.features, reference.data)
    assert np.bincount(digits.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert digits.images.shape == (1_797, 32, 32, 3) and digits.images.dtype == np.uint8
    # pixel (r, c) of the 8x8 image becomes a 4x4 block; 0 -> white, 16 -> black ink
    pixels = reference.images[0]
    block = digits.images[0, 4:8, 8:12, 0]
    assert (block == round(255 - pixels[1, 2] * 255 / 16)).all()
    assert digits.images[0, 0, 0, 0] == 255 and pixels[0, 0] == 0
    assert (digits.images[..., 0] == digits.images[..., 2]).all()


# ---------------------------------------------------------------- folders and CSV


def write_digit_jpegs(folder: Path, digits, indices) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in indices:
        path = folder / f"digit_{i:04d}.jpg"
        Image.fromarray(digits.images[i]).save(path, quality=95)
        paths.append(path)
    return paths


def test_image_folder(tmp_path, digits):
    zeros = np.flatnonzero(digits.labels == 0)[:3]
    ones = np.flatnonzero(digits.labels == 1)[:2]
    write_digit_jpegs(tmp_path / "zero", digits, zeros)
    write_digit_jpegs(tmp_path / "one", digits, ones)
    (tmp_path / "one" / "notes.txt").write_text("not an image")
    dataset = load_image_folder(tmp_path)
    assert dataset.class_names == ["one", "zero"]  # sorted folder names
    assert dataset.labels.tolist() == [0, 0, 1, 1, 1]
    assert [Path(p).name for p in dataset.image_paths[:2]] == [f"digit_{i:04d}.jpg" for i in ones]
    decoded = list(dataset_images(dataset, [2]))[0]
    error = np.abs(np.asarray(decoded, dtype=int) - digits.images[zeros[0]].astype(int))
    assert error.mean() < 8  # JPEG at quality 95 of the same pixels


def test_image_folder_errors(tmp_path, digits):
    with pytest.raises(DataError, match="does not exist") as error:
        load_image_folder(tmp_path / "missing")
    assert_one_sentence(error)
    write_digit_jpegs(tmp_path / "loose", digits, [0])
    loose = load_image_folder(tmp_path / "loose")  # a flat folder: images without labels
    assert loose.labels is None and len(loose) == 1 and loose.class_names is None
    (tmp_path / "bare").mkdir()
    with pytest.raises(DataError, match="holds no images") as error:
        load_image_folder(tmp_path / "bare")
    assert_one_sentence(error)
    (tmp_path / "classes" / "empty").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images") as error:
        load_image_folder(tmp_path / "classes")
    assert_one_sentence(error)


def copy_cifar_jpegs(cifar, folder: Path, indices) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in indices:
        name = f"{cifar.class_names[cifar.labels[i]]}_{i}.jpg"
        (folder / name).write_bytes(Path(cifar.image_paths[i]).read_bytes())
        names.append(name)
    return names


def test_image_csv_with_labels_tags_and_metadata(tmp_path, cifar):
    indices = [0, 5_000, 10_000, 15_000]  # airplane, automobile, bird, cat (train order)
    names = copy_cifar_jpegs(cifar, tmp_path / "img", indices)
    rows = [
        ["file", "labels", "tags", "latitude", "longitude", "caption", "code"],
        [names[0], "vehicle;sky", "jet blue_sky", "48.8566", "2.3522", "a plane", "007"],
        [names[1], "vehicle", "car;road", "-33.9", "151.2", "a car", "8"],
        [names[2], "animal;sky", "bird", "", "", "", "9"],
        [names[3], "animal", "", "40", "-74", "a cat, indoors", "10"],
    ]
    with open(tmp_path / "items.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    dataset = load_image_csv(
        tmp_path / "img", tmp_path / "items.csv", label_column="labels", tags_column="tags"
    )
    assert len(dataset) == 4
    assert dataset.class_names == ["animal", "sky", "vehicle"]
    assert dataset.labels.tolist() == [[0, 1, 1], [0, 0, 1], [1, 1, 0], [1, 0, 0]]
    assert dataset.tag_vocab == ["bird", "blue_sky", "car", "jet", "road"]
    assert dataset.tags.tolist() == [[0, 1, 0, 1, 0], [0, 0, 1, 0, 1], [1, 0, 0, 0, 0], [0] * 5]
    first, _, third, fourth = dataset.metadata
    assert first == {
        "latitude": 48.8566, "longitude": 2.3522, "caption": "a plane", "code": 7,
    }  # fmt: skip
    assert isinstance(fourth["latitude"], float) and fourth["latitude"] == 40.0
    assert third["latitude"] is None and third["caption"] is None
    assert fourth["caption"] == "a cat, indoors"
    # the images are the same bytes as CIFAR's, so they decode to the same pixels
    for image, i in zip(dataset_images(dataset), indices, strict=True):
        assert np.array_equal(np.asarray(image), np.asarray(open_image(cifar.image_paths[i])))

    # one label per row gives class ids, not multi-hot
    with open(tmp_path / "single.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["file", "class"]] + [[n, n.split("_")[0]] for n in names])
    single = load_image_csv(tmp_path / "img", tmp_path / "single.csv", label_column="class")
    assert single.labels.tolist() == [0, 1, 2, 3]
    assert single.class_names == ["airplane", "automobile", "bird", "cat"]


@pytest.mark.parametrize(
    "content, kwargs, message",
    [
        ("file,label\nmissing.jpg,a\n", {}, r"1 of the 1 files listed .* are missing"),
        ("file,label\na.jpg,x,extra\n", {}, "line 2 .* has 3 fields but the header has 2"),
        ("name,label\na.jpg,x\n", {}, "has no file column 'file'"),
        ("", {}, "is empty"),
        ("file,label\n", {}, "lists no images"),
        ("file,label\na.jpg,x\na.jpg,y\n", {}, r"lists 'a.jpg' twice \(lines 2 and 3\)"),
        ("file\n../outside.jpg\n", {}, "is not inside"),
        ("file,label\n,x\n", {}, "line 2 .* has an empty 'file' cell"),
        ("file,label\na.jpg,x\n", {"label_column": "class"}, "has no label column 'class'"),
        ('file,label\n"a.jpg,x\n', {}, "malformed|fields"),
    ],
)
def test_image_csv_errors(tmp_path, digits, content, kwargs, message):
    write_digit_jpegs(tmp_path / "img", digits, [0])
    (tmp_path / "img" / "digit_0000.jpg").rename(tmp_path / "img" / "a.jpg")
    (tmp_path / "outside.jpg").write_bytes((tmp_path / "img" / "a.jpg").read_bytes())
    (tmp_path / "items.csv").write_text(content)
    with pytest.raises(DataError, match=message) as error:
        load_image_csv(tmp_path / "img", tmp_path / "items.csv", **kwargs)
    assert_one_sentence(error)


def test_image_csv_not_utf8(tmp_path, digits):
    write_digit_jpegs(tmp_path / "img", digits, [0])
    (tmp_path / "items.csv").write_bytes(b"file,caption\ndigit_0000.jpg,caf\xe9\xff\n")
    with pytest.raises(DataError, match="not UTF-8"):
        load_image_csv(tmp_path / "img", tmp_path / "items.csv")
    with pytest.raises(DataError, match="does not exist"):
        load_image_csv(tmp_path / "img", tmp_path / "nope.csv")


# ---------------------------------------------------------------- defensive decoding


def png_with_header(width: int, height: int) -> bytes:
    """A 60-byte PNG that *declares* width x height RGB pixels but carries almost no data."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def encoded(digits, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(digits.images[3]).save(buffer, fmt, **options)
    return buffer.getvalue()


def test_open_image_good_inputs(tmp_path, digits):
    png = encoded(digits, "PNG")
    from_bytes = open_image(png)
    assert from_bytes.mode == "RGB" and np.array_equal(np.asarray(from_bytes), digits.images[3])
    (tmp_path / "d.png").write_bytes(png)
    assert np.array_equal(np.asarray(open_image(tmp_path / "d.png")), digits.images[3])
    assert np.array_equal(np.asarray(open_image(io.BytesIO(png))), digits.images[3])
    # transparent pixels become white, not black
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    assert np.asarray(open_image(buffer.getvalue()))[0, 0].tolist() == [255, 255, 255]
    # EXIF orientation 6 (rotate 90 degrees) is applied: a 6x2 photo is shown 2x6
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (6, 2), (0, 128, 0)).save(buffer, "JPEG", exif=exif)
    assert open_image(buffer.getvalue()).size == (2, 6)


def test_open_image_bad_inputs(tmp_path, digits):
    jpeg = encoded(digits, "JPEG", quality=90)
    png = encoded(digits, "PNG")
    corrupt = bytearray(png)
    start = png.index(b"IDAT") + 10
    corrupt[start : start + 8] = b"\xff" * 8
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("this is not an image")
    cases = {
        "missing": (tmp_path / "missing.jpg", "does not exist"),
        "folder": (tmp_path, "is not a file"),
        "empty file": (tmp_path / "empty.jpg", r"is empty \(0 bytes\)"),
        "empty upload": (b"", r"is empty \(0 bytes\)"),
        "not an image": (tmp_path / "text.jpg", "is not an image format"),
        "truncated jpeg": (jpeg[: len(jpeg) // 2], "truncated or corrupt"),
        "truncated png": (png[: len(png) // 2], "truncated or corrupt"),
        "corrupt png": (bytes(corrupt), "truncated or corrupt"),
    }
    for name, (source, message) in cases.items():
        with pytest.raises(ImageError, match=message) as error:
            open_image(source)
        assert isinstance(error.value, DataError), name
        assert_one_sentence(error)


def test_decompression_bombs_are_refused_before_decoding():
    # 100,000 x 100,000 is over twice PIL's own limit: PIL refuses while reading the header
    assert 100_000**2 > 2 * Image.MAX_IMAGE_PIXELS
    huge = png_with_header(100_000, 100_000)
    assert len(huge) < 100
    with pytest.raises(ImageError, match="decompression bomb") as error:
        open_image(huge)
    assert_one_sentence(error)
    assert "10000000000 pixels" in str(error.value)
    # 9,000 x 8,000 passes PIL's check but not hashlab's 64-megapixel limit; decoding it would
    # allocate 216 MB, so refusing it quickly shows the header check ran first
    assert 9_000 * 8_000 < Image.MAX_IMAGE_PIXELS
    started = time.perf_counter()
    with pytest.raises(ImageError, match="declares 9000 x 8000 pixels") as error:
        open_image(png_with_header(9_000, 8_000))
    assert time.perf_counter() - started < 0.5
    assert "decompression bomb" in str(error.value)
    assert_one_sentence(error)
    # a caller-set limit applies to ordinary images too
    with pytest.raises(ImageError, match="limit of 100"):
        open_image(png_with_header(20, 20), max_pixels=100)


def test_dataset_images_from_arrays_and_paths(tmp_path, digits):
    from_arrays = [np.asarray(img) for img in dataset_images(digits, [0, 1796])]
    assert np.array_equal(from_arrays[1], digits.images[1796])
    with pytest.raises(DataError, match="has no images"):
        next(dataset_images(Dataset(name="bare", features=np.zeros((1, 2)))))


# ---------------------------------------------------------------- feature cache for arrays


def test_features_from_arrays_match_features_from_lossless_files(tmp_path, monkeypatch, digits):
    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    paths = []
    for i in range(12):
        path = tmp_path / f"d{i}.png"
        Image.fromarray(digits.images[i]).save(path)
        paths.append(path)
    options = {"backbone": "small_cnn", "dataset_key": "digits", "chunk_size": 5, "progress": False}
    from_files = cache.extract_features(paths, **options)
    from_arrays = cache.extract_features_from_arrays(digits.images[:12], **options)
    assert from_arrays.shape == (12, 32)
    np.testing.assert_allclose(from_arrays, from_files, rtol=1e-6, atol=1e-6)
    folders = [p.name for p in (tmp_path / "cache" / "features").iterdir()]
    assert len(folders) == 2
    assert sum(name.startswith("digits-small_cnn-32px-arr") for name in folders) == 1

    # a second call reads the cache and never builds the network
    def no_backbone(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr("hashlab.backbones.registry.create_backbone", no_backbone)
    again = cache.extract_features_from_arrays(digits.images[:12], **options)
    assert np.array_equal(again, from_arrays)
    # different pixels are a different cache entry
    assert cache.array_fingerprint(digits.images[:12]) != cache.array_fingerprint(
        digits.images[1:13]
    )


def test_path_cache_key_unchanged():
    # the key the running CIFAR-10 extraction was started with must not move
    paths = [
        "/root/.cache/hashlab/data/cifar10_jpg/train/airplane/0000.jpg",
        "/x/test/truck/0999.jpg",
    ]
    folder = cache.feature_cache_path("cifar10", "efficientnet_lite0", 224, paths)
    assert folder.name == "cifar10-efficientnet_lite0-224px-d603788ff911"


def test_file_features_decode_like_the_service(tmp_path, monkeypatch, digits):
    """Files are decoded by ``open_image``, as uploads to the service are: an EXIF-rotated
    photo gives its upright features, a transparent PNG those of its white composite, and a
    plain RGB JPEG exactly what PIL's ``convert("RGB")`` gave before (caches stay valid)."""
    import torch

    from hashlab.backbones import create_backbone

    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    upright = Image.fromarray(digits.images[7])  # a 7: no rotation maps it onto itself
    upright.save(tmp_path / "upright.png")
    # stored turned a quarter, with the EXIF tag (6) that tells viewers to turn it back
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "rotated.png", exif=exif)
    rgba = np.dstack([digits.images[9], np.full((32, 32), 255, np.uint8)])
    rgba[:, :16, 3] = 0  # left half transparent: its hidden pixels must not count
    rgba[:, :16, :3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    composite = digits.images[9].copy()
    composite[:, :16] = 255
    Image.fromarray(composite).save(tmp_path / "composite.png")
    Image.fromarray(digits.images[11]).save(tmp_path / "plain.jpg", quality=90)
    names = ["upright.png", "rotated.png", "alpha.png", "composite.png", "plain.jpg"]
    features = cache.extract_features(
        [tmp_path / n for n in names], "small_cnn", dataset_key="decode", progress=False
    )
    np.testing.assert_allclose(features[1], features[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(features[2], features[3], rtol=1e-6, atol=1e-6)
    assert not np.allclose(features[0], features[3])  # different images stay different
    backbone = create_backbone("small_cnn")
    with Image.open(tmp_path / "plain.jpg") as image, torch.inference_mode():
        before = backbone.module(backbone.preprocess([image.convert("RGB")])).numpy()
    assert np.array_equal(features[4], before[0])


# ---------------------------------------------------------------- CIFAR-10 pickles


def write_fake_cifar_pickles(folder: Path, per_batch: int = 3) -> np.ndarray:
    """The official python format, tiny: returns the (N, 32, 32, 3) images written."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = []
    for batch in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
        entry = {
            b"batch_label": batch.encode(),
            b"labels": [int(x) for x in rng.integers(0, 10, per_batch)],
            # rows are 1,024 red, then 1,024 green, then 1,024 blue values, row-major
            b"data": images.transpose(0, 3, 1, 2).reshape(per_batch, 3072),
            b"filenames": [f"{batch}_{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / batch, "wb") as handle:
            pickle.dump(entry, handle)
        written.append(images)
    return np.concatenate(written)


def test_cifar10_pickles(tmp_path, monkeypatch):
    written = write_fake_cifar_pickles(tmp_path / "cifar-10-batches-py")

    def no_download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded when the pickles are there")

    monkeypatch.setattr("torchvision.datasets.CIFAR10", no_download)
    for download in (False, True):
        dataset = load_cifar10(tmp_path, download=download)
        assert dataset.images.shape == (18, 32, 32, 3)
        assert np.array_equal(dataset.images, written)
        assert dataset.info["official_split"].tolist() == ["train"] * 15 + ["test"] * 3
        assert dataset.image_paths is None and dataset.class_names[0] == "airplane"


def test_cifar10_errors(tmp_path):
    with pytest.raises(DataError, match="download=True") as error:
        load_cifar10(tmp_path / "nowhere")
    assert_one_sentence(error)
    write_fake_cifar_pickles(tmp_path / "broken")
    (tmp_path / "broken" / "test_batch").unlink()
    with pytest.raises(DataError, match="missing the CIFAR-10 file test_batch"):
        load_cifar10(tmp_path / "broken")
    (tmp_path / "broken" / "test_batch").write_bytes(b"garbage, not a pickle")
    with pytest.raises(DataError, match="is not a CIFAR-10 pickle"):
        load_cifar10(tmp_path / "broken")
