"""The one protocol every hashing method follows (scikit-learn style).

``__init__`` takes parameters only (``get_params`` reads them back from the constructor's
signature, or a deep method's config dataclass); ``fit(train, validation=None)`` learns from
a :class:`~hashlab.data.Dataset` and returns ``self`` (``fit(x, y)`` on arrays is a thin
convenience that wraps them in one); learned state lives in attributes ending in ``_``;
``encode(x, modality="image")`` returns (N, K) uint8 0/1 codes; ``save(dir)`` writes
``config.json`` + weights and ``hashlab.load(dir)`` reopens it. What a method needs is its
``tags`` (:class:`~hashlab.methods.tags.MethodTags`), read by the pipeline.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hashlab._version import __version__
from hashlab.data.dataset import Dataset
from hashlab.errors import ConfigError, InputError, NotFittedError
from hashlab.methods.tags import MethodTags

__all__ = ["HashMethod", "ShallowMethod", "NotFittedError", "check_features", "atomic_directory"]


def check_features(x: Any, name: str = "features") -> np.ndarray:
    """Validate a feature matrix: 2-D, numeric, finite. Returns float64."""
    array = np.asarray(x)
    if array.ndim != 2:
        raise InputError(f"{name} must be a 2-D (N, D) array, got shape {array.shape}")
    if array.shape[0] == 0:
        raise InputError(f"{name} is empty")
    if not np.issubdtype(array.dtype, np.number):
        raise InputError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise InputError(f"{name} contain NaN or infinite values in {bad} rows")
    return array


class atomic_directory:
    """Write a directory under a temporary name and move it into place on success.

    Nothing half-written is left behind if writing fails: either the old directory stays or
    the new one is complete.
    """

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", dir=self.target.parent))
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        backup = None
        if self.target.exists():
            backup = self.target.with_name(f".{self.target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(self.target, backup)
        os.replace(self.tmp, self.target)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)


class HashMethod(ABC):
    """Base class of all hashing methods."""

    name: ClassVar[str] = "base"
    #: what the method needs (family, supervision, inputs); every registered class sets it
    tags: ClassVar[MethodTags | None] = None
    #: bit lengths the method cannot produce are rejected in __init__
    max_bits: ClassVar[int | None] = None

    def __init__(self, n_bits: int = 32, seed: int = 0) -> None:
        if not isinstance(n_bits, int | np.integer) or isinstance(n_bits, bool) or n_bits < 1:
            raise ConfigError(f"n_bits must be a positive integer, got {n_bits!r}")
        if self.max_bits is not None and n_bits > self.max_bits:
            raise ConfigError(f"{self.name} can produce at most {self.max_bits} bits, got {n_bits}")
        self.n_bits = int(n_bits)
        self.seed = int(seed)

    # -- protocol -----------------------------------------------------------------------
    @abstractmethod
    def fit(self, train: Any, y: Any = None, validation: Any = None) -> HashMethod:
        """Learn the hash function from a training Dataset (or arrays); return ``self``."""

    @abstractmethod
    def encode(self, x: Any, modality: str = "image") -> np.ndarray:
        """(N, K) uint8 0/1 codes for the inputs (a Dataset or an array)."""

    @property
    def input_kind(self) -> str:
        """What each item is for this model (``tags.inputs``; a fine-tuned deep model: pixels)."""
        return self.tags.inputs if self.tags is not None else "features"

    @classmethod
    def param_names(cls) -> list[str]:
        """The constructor's parameters, read from its signature."""
        signature = inspect.signature(cls.__init__)
        return [p.name for p in list(signature.parameters.values())[1:]
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]  # fmt: skip

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, JSON-able (what ``config.json`` records)."""
        return {name: getattr(self, name) for name in self.param_names()}

    @property
    def is_fitted(self) -> bool:
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet: call fit() first")

    def _check_labels(self, y: Any, n: int) -> np.ndarray:
        if y is None:
            raise InputError(f"{self.name} is supervised: fit() needs labels")
        labels = np.asarray(y)
        if labels.ndim not in (1, 2) or labels.shape[0] != n:
            raise InputError(
                f"got labels of shape {labels.shape} for {n} training items; expected (N,) "
                "class ids or (N, C) multi-hot"
            )
        return labels

    def _check_modality(self, modality: str) -> None:
        modalities = self.tags.modalities if self.tags is not None else ("image",)
        if modality not in modalities:
            raise InputError(
                f"{self.name} encodes {' and '.join(modalities)} only, not modality {modality!r}"
            )

    # -- persistence --------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "tags": None if self.tags is None else self.tags.to_json(),
            "hashlab_version": __version__,
            "params": self.get_params(),
            "extra": getattr(self, "extra_config_", {}),
        }

    def state(self) -> dict[str, np.ndarray]:
        """Learned arrays (attributes ending in ``_``)."""
        return {
            k: np.asarray(v)
            for k, v in vars(self).items()
            if k.endswith("_") and not k.startswith("_") and isinstance(v, np.ndarray | float | int)
        }

    def save(self, path: str | Path) -> Path:
        self._check_fitted()
        with atomic_directory(path) as tmp:
            (tmp / "config.json").write_text(json.dumps(self.config(), indent=2))
            np.savez(tmp / "weights.npz", **self.state())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> HashMethod:
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        model = cls(**config["params"])
        with np.load(path / "weights.npz") as weights:
            for key in weights.files:
                value = weights[key]
                setattr(model, key, value if value.ndim else value.item())
        model.extra_config_ = config.get("extra", {})
        return model

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


class ShallowMethod(HashMethod):
    """A method that fits in numpy on feature vectors.

    Subclasses implement ``_fit(x, y)`` and ``_project(x) -> real values``; codes are
    ``project > 0``. Optional mean-centring is shared because almost every method needs it.
    Shallow methods do no model selection: a validation Dataset given to ``fit`` is more
    training data (appended after ``train``, the paper's training set).
    """

    def fit(self, train: Any, y: Any = None, validation: Any = None) -> ShallowMethod:
        parts = [train] if validation is None else [train, validation]
        if isinstance(train, Dataset):
            if y is not None:
                raise InputError(f"{self.name}.fit(dataset): the labels belong in the Dataset")
            for part in parts:
                if part.features is None:
                    raise InputError(
                        f"{self.name} hashes feature vectors and {part.name} has none: get "
                        "them with hashlab.pipeline.method_inputs (backbone features)"
                    )
            x = np.concatenate([np.asarray(p.features) for p in parts])
            supervised = self.tags is not None and self.tags.supervision == "labels"
            if supervised and any(p.labels is None for p in parts):
                raise InputError(f"{self.name} is supervised: the training Dataset needs labels")
            y = np.concatenate([np.asarray(p.labels) for p in parts]) if supervised else None
        elif validation is not None:
            raise InputError(f"{self.name}.fit(x, y): pass validation only with a Dataset")
        else:
            x = train
        features = check_features(x, "training features")
        supervised = self.tags is not None and self.tags.supervision == "labels"
        labels = self._check_labels(y, len(features)) if supervised else None
        self._fit(features, labels)
        return self

    def encode(self, x: Any, modality: str = "image") -> np.ndarray:
        self._check_fitted()
        self._check_modality(modality)
        if isinstance(x, Dataset):
            if x.features is None:
                raise InputError(f"{self.name} hashes feature vectors and {x.name} has none")
            x = x.features
        features = check_features(x)
        if hasattr(self, "mean_") and features.shape[1] != self.mean_.shape[0]:
            raise InputError(
                f"features have {features.shape[1]} dimensions, the model was fitted on "
                f"{self.mean_.shape[0]}"
            )
        return (self._project(features) > 0).astype(np.uint8)

    @abstractmethod
    def _fit(self, x: np.ndarray, y: np.ndarray | None) -> None:
        """Learn the attributes ending in ``_``."""

    @abstractmethod
    def _project(self, x: np.ndarray) -> np.ndarray:
        """Real-valued projections whose signs are the bits."""
