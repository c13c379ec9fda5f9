"""Text side of weak supervision: word vectors for user tags (see ``embeddings``)."""

from hashlab.text.embeddings import (
    WordVectors,
    average_tag_embeddings,
    load_glove_6b_50d,
    load_word2vec_file,
    load_word_vectors,
    tag_embedding_matrix,
    tag_lists_from_matrix,
    train_word2vec,
)

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
