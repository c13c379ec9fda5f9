"""Hashing methods: one file per method, each declaring its tags and registering itself.

The registry (``registry.py``) holds the one list of method modules; ``base.py`` the
protocol every method follows; ``tags.py`` what a method declares it needs.
"""
