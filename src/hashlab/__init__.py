"""hashlab: learning to hash images and searching them in Hamming space."""

__version__ = "0.1.0"

from hashlab.methods.registry import create, list_methods, load  # noqa: E402

__all__ = ["create", "list_methods", "load", "__version__"]
