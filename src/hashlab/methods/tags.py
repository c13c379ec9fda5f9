"""What a hashing method needs, declared once as data (cf. scikit-learn's estimator tags).

Every method class sets ``tags: ClassVar[MethodTags] = MethodTags(...)``. The pipeline reads
them to hand a method the inputs it asks for; ``hashlab.list_methods(family=..., ...)``
filters on them, and ``tests/test_registry.py`` builds each method's fixture from them.

* ``family``: ``"shallow"`` (numpy, fits in seconds), ``"deep"`` (a network on the one
  trainer) or ``"cross_modal"`` (image and text sides in one Hamming space);
* ``supervision``: what ``fit`` learns from besides the inputs: ``"none"``, ``"labels"``
  (class ids or multi-hot) or ``"tags"`` (user tags + vocabulary; labels are refused);
* ``inputs``: what each item is for the method: ``"features"`` (vectors, e.g. backbone
  features), ``"feature_maps"`` ((C, 7, 7) region maps), ``"pixels"`` (the images
  themselves) or ``"paired_text"`` (image features with a paired text feature vector);
* ``modalities``: the sides ``encode(x, modality=...)`` accepts;
* ``multi_label``: for ``supervision="labels"``, whether the method learns from multi-hot
  labels (several per item, relevance = sharing one: NUS-WIDE, COCO, MIRFlickr). True by
  default: every pairwise-similarity method does; a method that needs exactly one class
  per item (a softmax over classes, one hash centre per class) sets False and the pipeline
  refuses multi-label data for it, naming the methods that take it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAMILIES", "INPUTS", "MethodTags", "SUPERVISIONS"]

FAMILIES = ("shallow", "deep", "cross_modal")
SUPERVISIONS = ("none", "labels", "tags")
INPUTS = ("features", "feature_maps", "pixels", "paired_text")


@dataclass(frozen=True)
class MethodTags:
    family: str  # "shallow" | "deep" | "cross_modal"
    supervision: str  # "none" | "labels" | "tags"
    inputs: str  # "features" | "feature_maps" | "pixels" | "paired_text"
    modalities: tuple[str, ...] = ("image",)  # ("image", "text") for cross-modal
    multi_label: bool = True  # labels supervision: accepts multi-hot labels

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("family", self.family, FAMILIES),
            ("supervision", self.supervision, SUPERVISIONS),
            ("inputs", self.inputs, INPUTS),
        ):
            if value not in allowed:
                raise ValueError(f"MethodTags.{field} must be one of {allowed}, got {value!r}")
        if not self.modalities or "image" not in self.modalities:
            raise ValueError(f"MethodTags.modalities must include 'image', got {self.modalities}")

    def to_json(self) -> dict[str, object]:
        return {
            "family": self.family,
            "supervision": self.supervision,
            "inputs": self.inputs,
            "modalities": list(self.modalities),
            "multi_label": self.multi_label,
        }
