"""Deep hashing methods, one module per method (the registry imports them by name).

``DeepHashMethod`` (``base.py``) is the shared body of the deep methods; see its docstring for
how to add one. Tag-supervised methods (IDEA, WDHT) share ``tagged.py``.
"""
