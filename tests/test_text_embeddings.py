"""Tag word vectors (hashlab.text): GloVe offline, word2vec on tag lists, local files, OOV."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA

from hashlab.text import (
    WordVectors,
    average_tag_embeddings,
    load_glove_6b_50d,
    load_word2vec_file,
    tag_embedding_matrix,
    tag_lists_from_matrix,
    train_word2vec,
)

MIRFLICKR = f"{SHARED_DATA}/mirflickr25k/mirflickr1k_tags_labels.npz"


def test_glove_covers_the_mirflickr_vocabulary_as_documented():
    glove = load_glove_6b_50d()
    assert len(glove) == 400_000 and glove.dim == 50
    vocab = [str(w) for w in np.load(MIRFLICKR)["tag_vocab_yall"]]
    matrix, n_missing = tag_embedding_matrix(vocab, glove)
    assert matrix.shape == (1386, 50)
    assert n_missing == 230  # the data README: GloVe covers 1,156 of the 1,386 tags
    assert np.count_nonzero(~matrix.any(axis=1)) == n_missing
    # related words are closer than unrelated ones (the vectors are real, not noise)
    sky, clouds, dog = (glove.lookup(w) for w in ("sky", "clouds", "dog"))

    def cos(a, b):
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    assert cos(sky, clouds) > cos(sky, dog) + 0.2


def test_lookup_falls_back_to_lower_case_and_reports_oov():
    vectors = WordVectors("toy", ["sky", "sea"], np.eye(2))
    assert np.array_equal(vectors.lookup("SKY"), [1, 0])
    assert vectors.lookup("qqqzzz") is None
    matrix, n_missing = tag_embedding_matrix(["Sea", "qqqzzz", "sky"], vectors)
    assert n_missing == 1
    assert np.array_equal(matrix, [[0, 1], [0, 0], [1, 0]])


def test_average_leaves_oov_tags_out_and_zeroes_images_without_known_tags():
    tag_vectors = np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 4.0]])  # tag 1 is OOV
    tags = np.array([[1, 1, 1], [0, 1, 0], [1, 0, 0]])
    means, n_without = average_tag_embeddings(tags, tag_vectors)
    assert np.allclose(means, [[1.0, 2.0], [0.0, 0.0], [2.0, 0.0]])  # (2,0)+(0,4) over 2
    assert n_without == 1
    with pytest.raises(ValueError, match="do not match"):
        average_tag_embeddings(tags[:, :2], tag_vectors)


def test_word2vec_on_tag_lists_is_deterministic_and_learns_co_occurrence():
    rng = np.random.default_rng(0)
    groups = [["sea", "beach", "sand", "waves"], ["city", "street", "car", "night"]]
    lists = [list(rng.choice(groups[i % 2], size=3, replace=False)) for i in range(1000)]
    first = train_word2vec(lists, dim=16, epochs=30, seed=3)
    second = train_word2vec(lists, dim=16, epochs=30, seed=3)
    assert np.array_equal(first.vectors, second.vectors)
    assert first.dim == 16 and set(first.words) == set(groups[0] + groups[1])

    def cos(a, b):
        u, v = first.lookup(a), first.lookup(b)
        return u @ v / np.linalg.norm(u) / np.linalg.norm(v)

    # a tiny vocabulary shares one common direction, so compare, not threshold, cosines
    assert cos("sea", "beach") > cos("sea", "street") + 0.05
    assert cos("car", "night") > cos("car", "sand") + 0.05
    with pytest.raises(ValueError, match="non-empty"):
        train_word2vec([[], []])


@pytest.mark.parametrize("binary", [False, True])
def test_local_word2vec_file_round_trip(tmp_path, binary):
    from gensim.models import KeyedVectors

    keyed = KeyedVectors(vector_size=3)
    keyed.add_vectors(["sky", "sea"], np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
    path = tmp_path / ("vectors.bin" if binary else "vectors.txt")
    keyed.save_word2vec_format(str(path), binary=binary)
    loaded = load_word2vec_file(path)
    assert loaded.words == ["sky", "sea"]
    assert np.allclose(loaded.lookup("sea"), [4, 5, 6])
    with pytest.raises(FileNotFoundError):
        load_word2vec_file(tmp_path / "absent.bin")
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01not vectors")
    with pytest.raises(ValueError, match="not a readable word2vec file"):
        load_word2vec_file(tmp_path / "junk.bin")


def test_tag_lists_from_matrix():
    assert tag_lists_from_matrix(np.array([[1, 0, 1], [0, 0, 0]]), ["a", "b", "c"]) == [
        ["a", "c"],
        [],
    ]
