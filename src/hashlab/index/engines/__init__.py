"""The engine protocol: what every search engine behind ``HammingIndex`` implements.

``HammingIndex`` keeps ids, tombstones, metadata and durability (as faiss's ``IndexIDMap``
wraps an index); an engine only sees packed codes and row numbers. Row ``i`` is the i-th
code added (rows ``n .. n+M-1`` for the M codes of an ``add``); the native engine may ask
its owner to reorder rows once, when it builds its tables (see ``NativeEngine``), and says
so through the ``reorder`` callback it is given, so row numbers stay shared.

Ranking, the same for every engine: ascending Hamming distance, ties broken by ascending
*tie key*. The tie key of a row is the ``keys`` value given with it to :meth:`Engine.add`
(``HammingIndex`` passes its ids, so ties are broken by id), or the row number when no keys
were given. Radii are inclusive (``distance <= radius``); faiss's and Milvus's are strict
and are converted inside their engines.

``allowed`` (filtered search): a sorted int64 array of the rows a search may return; other
rows are skipped as if removed. ``None`` means every live row.

Adding an engine touches one file: a class decorated with ``@register_engine("name")``,
imported lazily through :data:`_LAZY_MODULES` (so that faiss or pymilvus are only imported
when their engine is asked for).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Engine",
    "RangeResult",
    "register_engine",
    "create_engine",
    "list_engines",
    "engine_class",
]


@dataclass(frozen=True)
class RangeResult(Sequence):
    """Flat radius-search output, as faiss's ``RangeSearchResult``: no per-query objects.

    Hits of query ``i`` are ``rows[offsets[i]:offsets[i + 1]]`` (and the same slice of
    ``distances``), sorted by (distance, tie key). ``result[i]`` is a lazy
    ``(rows, distances)`` view of one query; nothing is built per query until asked for.
    """

    offsets: np.ndarray  # (Q + 1,) int64, offsets[0] == 0
    rows: np.ndarray  # (offsets[-1],) int64
    distances: np.ndarray  # (offsets[-1],) int32

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        if not isinstance(i, int | np.integer):
            raise TypeError("RangeResult is indexed by one query number")
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"query {i} out of range for {n} queries")
        part = slice(int(self.offsets[i]), int(self.offsets[i + 1]))
        return self.rows[part], self.distances[part]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(len(self)):
            yield self[i]

    @property
    def counts(self) -> np.ndarray:
        """Hits per query."""
        return np.diff(self.offsets)

    @classmethod
    def empty(cls, n_queries: int) -> RangeResult:
        return cls(
            np.zeros(n_queries + 1, dtype=np.int64),
            np.zeros(0, dtype=np.int64),
            np.zeros(0, dtype=np.int32),
        )


@runtime_checkable
class Engine(Protocol):
    """One search engine over packed codes; see the module docstring for the ranking."""

    name: ClassVar[str]
    #: whether knn results are exact (approximate engines: faiss-hnsw, faiss-hash k-NN)
    exact: ClassVar[bool]

    def __init__(self, n_bits: int, **params: Any) -> None: ...

    def add(self, codes: np.ndarray, keys: np.ndarray | None = None) -> None:
        """Append packed (M, ceil(n_bits/8)) uint8 codes as rows n..n+M-1.

        ``keys``: int64 tie keys, one per code (default: the row numbers).
        """
        ...

    def remove(self, rows: np.ndarray) -> None:
        """Rows (int64) that are never returned again."""
        ...

    def knn(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(distances (Q, k) int32, rows (Q, k) int64), sorted by (distance, tie key).

        Slots beyond the number of live rows hold -1 in both arrays.
        """
        ...

    def range(
        self, queries: np.ndarray, radius: int, allowed: np.ndarray | None = None
    ) -> RangeResult:
        """Every live row within ``radius`` (inclusive) of each query."""
        ...

    def memory_bytes(self) -> int:
        """Bytes the engine holds beyond what its owner holds (codes it copied, tables)."""
        ...

    def info(self) -> dict[str, Any]:
        """JSON-able description: name, parameters, layout, plan."""
        ...


_REGISTRY: dict[str, type] = {}
#: engines living in modules that are imported only when asked for (heavy dependencies)
_LAZY_MODULES: dict[str, str] = {
    "native": "hashlab.index.engines.native",
    "faiss-flat": "hashlab.index.engines.faiss",
    "faiss-hash": "hashlab.index.engines.faiss",
    "faiss-multihash": "hashlab.index.engines.faiss",
    "faiss-hnsw": "hashlab.index.engines.faiss",
    "milvus": "hashlab.index.engines.milvus",
}


def register_engine(name: str) -> Callable[[type], type]:
    """Class decorator: make an engine available to :func:`create_engine` as ``name``."""

    def decorate(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"engine {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def list_engines() -> list[str]:
    """Names :func:`create_engine` accepts (engines whose module is missing included)."""
    return sorted(set(_REGISTRY) | set(_LAZY_MODULES))


def engine_class(name: str) -> type:
    """The class registered as ``name``, importing its module on first use."""
    if name not in _REGISTRY and name in _LAZY_MODULES:
        importlib.import_module(_LAZY_MODULES[name])
    if name not in _REGISTRY:
        raise ValueError(f"unknown engine {name!r}; expected one of {list_engines()}")
    return _REGISTRY[name]


def create_engine(name: str, n_bits: int, **params: Any) -> Engine:
    """A new, empty engine: ``create_engine("native", 64)``."""
    return engine_class(name)(n_bits, **params)
