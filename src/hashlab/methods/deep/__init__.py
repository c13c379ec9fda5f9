"""Deep hashing methods: each module registers one or more methods on import.

``DeepHashMethod`` (``base.py``) is the shared body of the label-supervised methods; see its
docstring for how to add one. Modules: DSH, DPSH, DHN, HashNet, DCH, DNNH, ADSH (one file
each), EDDH (``eddh.py``), and the tag-supervised IDEA family and WDHT (``idea.py``,
``wdht.py`` on ``tagged.py``).
"""

from hashlab.methods.deep import (  # noqa: F401
    adsh,
    dch,
    dhn,
    dnnh,
    dpsh,
    dsh,
    eddh,
    hashnet,
    idea,
    pc_aegan,
    wdht,
)
from hashlab.methods.deep.base import DeepHashConfig, DeepHashMethod, DeepHashNetwork, HashHead

__all__ = ["DeepHashConfig", "DeepHashMethod", "DeepHashNetwork", "HashHead"]
