"""The one root of hashlab's user errors, ``HashlabError``.

Every error hashlab raises for something the *user* got wrong (a bad path, an unknown name, a
value out of range, inputs a method cannot take) derives from :class:`HashlabError`, so the
CLI can turn exactly those into one line and exit code 2 while a real bug still shows its
traceback. Each concrete error also keeps the builtin base callers used to catch
(``ValueError``, ``KeyError``, ``FileNotFoundError``, ``RuntimeError``), so
``except ValueError`` written before this module existed keeps working.

This module imports nothing from hashlab: every package may raise these.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "HashlabError",
    "HashlabFileNotFoundError",
    "HashlabKeyError",
    "HashlabRuntimeError",
    "HashlabValueError",
    "IndexFormatError",
    "InputError",
    "NotFittedError",
    "UnknownMethodError",
]


class HashlabError(Exception):
    """Root of every user-facing hashlab error (the message is one sentence for the user)."""


class HashlabValueError(HashlabError, ValueError):
    """A value the user gave that hashlab cannot use."""


class HashlabKeyError(HashlabError, KeyError):
    """An unknown name; printed as a plain sentence (``KeyError`` would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class HashlabFileNotFoundError(HashlabError, FileNotFoundError):
    """A path the user named does not exist."""


class HashlabRuntimeError(HashlabError, RuntimeError):
    """An operation called in the wrong state."""


class ConfigError(HashlabValueError):
    """A method / engine parameter that does not exist or is out of range."""


class DataError(HashlabValueError):
    """A data path or file that cannot be used, explained in one sentence."""


class InputError(HashlabValueError):
    """Inputs a method cannot take: wrong shape, NaN, or the wrong kind of supervision."""


class IndexFormatError(HashlabValueError):
    """An index directory that is not a valid hashlab index (or of an unknown version)."""


class UnknownMethodError(HashlabKeyError):
    """A method name that nobody registered."""


class NotFittedError(HashlabRuntimeError):
    """``encode`` / ``save`` called before ``fit``."""
