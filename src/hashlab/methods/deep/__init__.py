"""Deep hashing methods: each module registers one method on import.

``DeepHashMethod`` (``base.py``) is the shared body; see its docstring for how to add one.
"""

from hashlab.methods.deep import adsh, dch, dhn, dnnh, dpsh, dsh, hashnet  # noqa: F401
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod, DeepHashNetwork, HashHead

__all__ = ["DeepHashConfig", "DeepHashMethod", "DeepHashNetwork", "HashHead"]
