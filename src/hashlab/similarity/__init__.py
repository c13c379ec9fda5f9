"""Pairwise similarity targets built from labels and pretrained features (EDDH's S^)."""

from hashlab.similarity.semantic_visual import (
    SemanticVisualSimilarity,
    SimilarityThresholds,
    continuous_similarity,
    label_matrix,
    sample_pairs,
)
from hashlab.similarity.split_normal import SplitNormal, fit_split_normal

__all__ = [
    "SemanticVisualSimilarity",
    "SimilarityThresholds",
    "SplitNormal",
    "continuous_similarity",
    "fit_split_normal",
    "label_matrix",
    "sample_pairs",
]
