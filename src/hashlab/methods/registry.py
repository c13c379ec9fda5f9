"""The method registry: every hashing method registers itself by name in its own file.

``create(name, n_bits=..., **params)`` is the one door to every method, shallow or deep;
``list_methods()`` powers the CLI and a test that runs every registered method.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from hashlab.methods.base import HashMethod

_REGISTRY: dict[str, type[HashMethod]] = {}
T = TypeVar("T", bound="type[HashMethod]")

# Modules that register methods when imported. Importing lazily keeps `import hashlab`
# cheap (torch is only imported when a deep method is asked for).
_METHOD_MODULES = (
    "hashlab.methods.lsh",
    "hashlab.methods.pcah",
    "hashlab.methods.itq",
    "hashlab.methods.sh",
    "hashlab.methods.sph",
    "hashlab.methods.agh",
    "hashlab.methods.itq_cca",
    "hashlab.methods.sdh",
    "hashlab.methods.ksh",
    "hashlab.methods.bre",
    "hashlab.methods.deep",
    "hashlab.methods.cross_modal",
)


class UnknownMethodError(KeyError):
    """Raised for a method name that nobody registered."""

    def __str__(self) -> str:  # KeyError quotes its message; users want a plain sentence
        return str(self.args[0])


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a method available as ``hashlab.create(name, ...)``."""

    def decorator(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method name {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def _import_all() -> None:
    for module in _METHOD_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            # A method module not written yet (or an optional dependency missing) must not
            # hide the methods that are there.
            if error.name not in (module, *_optional_dependencies()):
                raise


def _optional_dependencies() -> tuple[str, ...]:
    return ("torch", "torchvision")


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    _import_all()
    return sorted(_REGISTRY)


def get_method_class(name: str) -> type[HashMethod]:
    _import_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {known}") from None


def create(name: str, n_bits: int = 32, **params: object) -> HashMethod:
    """Make an unfitted hashing method by its registered name."""
    return get_method_class(name)(n_bits=n_bits, **params)


def load(path: str | Path) -> HashMethod:
    """Reopen a model directory written by ``model.save(path)``."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not a hashlab model directory (no config.json)")
    try:
        config = json.loads(config_file.read_text())
        name = config["method"]
    except (json.JSONDecodeError, KeyError) as error:
        raise ValueError(f"{config_file} is not a valid hashlab model config: {error}") from None
    return get_method_class(name).load(path)
