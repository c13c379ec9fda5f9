"""Pretrained feature extractors, the on-disk feature cache, and images -> features."""

from hashlab.backbones.cache import cache_dir, extract_features
from hashlab.backbones.features import dataset_features, image_features
from hashlab.backbones.registry import BACKBONES, DEFAULT_BACKBONE, Backbone, create_backbone

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "Backbone", "cache_dir", "create_backbone",
           "dataset_features", "extract_features", "image_features"]  # fmt: skip
