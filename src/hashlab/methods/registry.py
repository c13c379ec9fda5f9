"""The method registry: every hashing method registers itself by name in its own file.

``create(name, n_bits=..., **params)`` is the one door to every method, shallow or deep;
``list_methods(family=, supervision=, inputs=)`` filters on the methods' tags
(:class:`~hashlab.methods.tags.MethodTags`) and powers the CLI and ``tests/test_registry.py``.

``METHOD_MODULES`` is the one list of modules that register methods. A new method is one
file plus one line here; a misspelt or missing module is an import error, never a silently
missing method (torch is a hard dependency, so nothing is optional).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from hashlab.errors import ConfigError, HashlabFileNotFoundError, HashlabValueError
from hashlab.errors import UnknownMethodError as UnknownMethodError  # re-exported
from hashlab.methods.tags import FAMILIES, INPUTS, SUPERVISIONS, MethodTags

if TYPE_CHECKING:
    from hashlab.methods.base import HashMethod

__all__ = ["METHOD_MODULES", "UnknownMethodError", "create", "get_method_class", "list_methods",
           "load", "method_tags", "register"]  # fmt: skip

_REGISTRY: dict[str, type[HashMethod]] = {}
T = TypeVar("T", bound="type[HashMethod]")

# Every module that registers methods, imported on first use of the registry (importing
# lazily keeps `import hashlab` cheap: torch is only imported when a method is asked for).
METHOD_MODULES = (
    "hashlab.methods.lsh",
    "hashlab.methods.pcah",
    "hashlab.methods.itq",
    "hashlab.methods.sh",
    "hashlab.methods.sph",
    "hashlab.methods.agh",
    "hashlab.methods.bre",
    "hashlab.methods.itq_cca",
    "hashlab.methods.sdh",
    "hashlab.methods.ksh",
    "hashlab.methods.deep.dsh",
    "hashlab.methods.deep.dpsh",
    "hashlab.methods.deep.dhn",
    "hashlab.methods.deep.hashnet",
    "hashlab.methods.deep.dch",
    "hashlab.methods.deep.dnnh",
    "hashlab.methods.deep.adsh",
    "hashlab.methods.deep.eddh",
    "hashlab.methods.deep.idea",
    "hashlab.methods.deep.wdht",
    "hashlab.methods.deep.pc_aegan",
    "hashlab.methods.deep.dsdh",
    "hashlab.methods.deep.dtsh",
    "hashlab.methods.deep.dfh",
    "hashlab.methods.deep.idhn",
    "hashlab.methods.deep.dph",
    "hashlab.methods.deep.cnnh",
    "hashlab.methods.deep.ddsh",
    "hashlab.methods.deep.csq",
    "hashlab.methods.deep.orthohash",
    "hashlab.methods.deep.dpn",
    "hashlab.methods.deep.greedyhash",
    "hashlab.methods.deep.bgan",
    "hashlab.methods.deep.hashgan_unsup",
    "hashlab.methods.deep.uadh",
    "hashlab.methods.deep.ssdh",
    "hashlab.methods.deep.sadh",
    "hashlab.methods.deep.dbd_mq",
    "hashlab.methods.deep.bihalf",
    "hashlab.methods.deep.greedyhash_unsup",
    "hashlab.methods.deep.deepbit",
    "hashlab.methods.deep.dh",
    "hashlab.methods.deep.uh_bdnn",
    "hashlab.methods.deep.cibhash",
    "hashlab.methods.cross_modal.cmfh",
    "hashlab.methods.cross_modal.seph",
    "hashlab.methods.cross_modal.dcmh",
    "hashlab.methods.cross_modal.lbo_cmh",
    "hashlab.methods.cross_modal.cvh",
    "hashlab.methods.cross_modal.gsph",
    "hashlab.methods.cross_modal.acmr",
    "hashlab.methods.cross_modal.ssah",
    "hashlab.methods.cross_modal.agah",
    "hashlab.methods.cross_modal.ugach",
    "hashlab.methods.cross_modal.sch_gan",
)
_imported = False


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a method available as ``hashlab.create(name, ...)``."""

    def decorator(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"method name {name!r} is already registered")
        tags = getattr(cls, "tags", None)
        if tags is not None and not isinstance(tags, MethodTags):
            raise TypeError(f"{cls.__name__}.tags must be a MethodTags, got {tags!r}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def _import_all() -> None:
    global _imported
    if _imported:
        return
    for module in METHOD_MODULES:
        importlib.import_module(module)  # a missing module is an error, on purpose
    _imported = True


def list_methods(
    family: str | None = None, supervision: str | None = None, inputs: str | None = None
) -> list[str]:
    """Names of the registered methods whose tags match every filter given, sorted."""
    _import_all()
    wanted = {"family": (family, FAMILIES), "supervision": (supervision, SUPERVISIONS),
              "inputs": (inputs, INPUTS)}  # fmt: skip
    for key, (value, allowed) in wanted.items():
        if value is not None and value not in allowed:
            raise HashlabValueError(
                f"{key} must be one of {', '.join(allowed)}, got {value!r}"
            )
    names = []
    for name, cls in _REGISTRY.items():
        tags = getattr(cls, "tags", None)
        if all(value is None or getattr(tags, key, None) == value
               for key, (value, _) in wanted.items()):  # fmt: skip
            names.append(name)
    return sorted(names)


def get_method_class(name: str) -> type[HashMethod]:
    _import_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {known}") from None


def method_tags(name: str) -> MethodTags:
    """The tags of a registered method (what it needs)."""
    tags = getattr(get_method_class(name), "tags", None)
    if tags is None:
        raise ConfigError(f"method {name!r} declares no tags")
    return tags


def create(name: str, n_bits: int = 32, **params: object) -> HashMethod:
    """Make an unfitted hashing method by its registered name."""
    cls = get_method_class(name)
    known = cls.param_names()
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(
            f"{name} has no parameter {', '.join(map(repr, unknown))}; its parameters are: "
            f"{', '.join(sorted(known))}"
        )
    return cls(n_bits=n_bits, **params)


def load(path: str | Path) -> HashMethod:
    """Reopen a model directory written by ``model.save(path)``."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise HashlabFileNotFoundError(
            f"{path} is not a hashlab model directory (no config.json)"
        )
    try:
        config = json.loads(config_file.read_text())
        name = config["method"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise HashlabValueError(
            f"{config_file} is not a valid hashlab model config: {error}"
        ) from None
    return get_method_class(name).load(path)
