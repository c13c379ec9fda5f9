"""hashlab: learning to hash images and searching them in Hamming space.

``hashlab.create(name, n_bits=...)``, ``hashlab.load(dir)`` and
``hashlab.list_methods(family=, supervision=, inputs=)`` are the doors to every method; they
are imported on first use, so ``import hashlab`` stays cheap and no module below this one
has to import the package root (the version lives in ``hashlab._version``).
"""

from __future__ import annotations

from typing import Any

from hashlab._version import __version__

__all__ = ["create", "list_methods", "load", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("create", "list_methods", "load", "get_method_class"):
        from hashlab.methods import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'hashlab' has no attribute {name!r}")
