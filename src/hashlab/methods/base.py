"""The one protocol every hashing method follows (scikit-learn style).

``__init__`` takes parameters only; ``fit(x, y=None)`` learns and returns ``self``; learned
state lives in attributes ending in ``_``; ``encode(x)`` returns (N, K) uint8 0/1 codes;
``save(dir)`` writes ``config.json`` + weights and ``hashlab.load(dir)`` reopens it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hashlab import __version__

__all__ = ["HashMethod", "ShallowMethod", "NotFittedError", "check_features", "atomic_directory"]


class NotFittedError(RuntimeError):
    """Raised when ``encode`` is called before ``fit``."""


def check_features(x: Any, name: str = "features") -> np.ndarray:
    """Validate a feature matrix: 2-D, numeric, finite. Returns float64."""
    array = np.asarray(x)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) array, got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise ValueError(f"{name} contain NaN or infinite values in {bad} rows")
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
    #: whether ``fit`` uses labels
    supervised: ClassVar[bool] = False
    #: bit lengths the method cannot produce are rejected in __init__
    max_bits: ClassVar[int | None] = None

    def __init__(self, n_bits: int = 32, seed: int = 0) -> None:
        if not isinstance(n_bits, int | np.integer) or n_bits < 1:
            raise ValueError(f"n_bits must be a positive integer, got {n_bits!r}")
        if self.max_bits is not None and n_bits > self.max_bits:
            raise ValueError(f"{self.name} can produce at most {self.max_bits} bits, got {n_bits}")
        self.n_bits = int(n_bits)
        self.seed = int(seed)

    # -- protocol -----------------------------------------------------------------------
    @abstractmethod
    def fit(self, x: Any, y: Any = None) -> HashMethod:
        """Learn the hash function from training data; return ``self``."""

    @abstractmethod
    def encode(self, x: Any) -> np.ndarray:
        """(N, K) uint8 0/1 codes for the inputs."""

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters, JSON-able (what ``config.json`` records)."""
        return {"n_bits": self.n_bits, "seed": self.seed}

    @property
    def is_fitted(self) -> bool:
        return any(k.endswith("_") and not k.startswith("_") for k in vars(self))

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet: call fit() first")

    def _check_labels(self, y: Any, n: int) -> np.ndarray:
        if y is None:
            raise ValueError(f"{self.name} is supervised: fit() needs labels")
        labels = np.asarray(y)
        if labels.shape[0] != n:
            raise ValueError(f"got {labels.shape[0]} labels for {n} training items")
        return labels

    # -- persistence --------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {
            "method": self.name,
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
    """

    def fit(self, x: Any, y: Any = None) -> ShallowMethod:
        features = check_features(x, "training features")
        labels = self._check_labels(y, len(features)) if self.supervised else None
        self._fit(features, labels)
        return self

    def encode(self, x: Any) -> np.ndarray:
        self._check_fitted()
        features = check_features(x)
        if hasattr(self, "mean_") and features.shape[1] != self.mean_.shape[0]:
            raise ValueError(
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
