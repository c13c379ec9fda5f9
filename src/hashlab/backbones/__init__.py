"""Pretrained feature extractors and the on-disk feature cache."""

from hashlab.backbones.cache import cache_dir, extract_features
from hashlab.backbones.registry import BACKBONES, Backbone, create_backbone

__all__ = ["BACKBONES", "Backbone", "create_backbone", "extract_features", "cache_dir"]
