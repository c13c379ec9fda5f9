"""The compiled kernel (``hashlab.index._hamming``) and typed wrappers around it.

The extension is built at install time (``setup.py``: ``pip install -e .``) with runtime CPU
dispatch (plain C / POPCNT / AVX2 / AVX-512 VPOPCNTDQ, chosen at import; ``HASHLAB_CPU``
caps the level) and OpenMP threads inside each call, with the GIL released. Without it
(no compiler at install time, or ``HASHLAB_NO_NATIVE=1``) :func:`load_native` returns
``None`` after one warning, and the engines use the numpy scans of
:mod:`hashlab.index.scan`, measured about ``NUMPY_SLOWDOWN`` times slower.
"""

from __future__ import annotations

import os
import shutil
import threading
import warnings
from types import ModuleType
from typing import Any

import numpy as np

__all__ = [
    "load_native",
    "native_available",
    "n_threads",
    "compiler_available",
    "NUMPY_SLOWDOWN",
    "Kernels",
]

#: numpy scan time / compiled scan time, 64-bit top-10 over 200k codes, 50 queries, on the
#: README's 2-core machine (``python benchmarks/search.py --fallback-ratio`` printed 132x)
NUMPY_SLOWDOWN = 130

_lock = threading.Lock()
_state: dict[str, Any] = {"tried": False, "kernels": None}


def n_threads() -> int:
    """Threads per call (``HASHLAB_THREADS``, default: the cores this process may use)."""
    configured = os.environ.get("HASHLAB_THREADS")
    if configured:
        return max(1, int(configured))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def compiler_available() -> bool:
    """Whether a C compiler is on PATH (then the extension must have been built)."""
    return any(shutil.which(name) for name in (os.environ.get("CC") or "cc", "gcc", "clang"))


def _import_extension() -> ModuleType | None:
    try:
        from hashlab.index import _hamming
    except ImportError:
        return None
    return _hamming


def load_native() -> Kernels | None:
    """The compiled kernels, or ``None`` (after one warning) when they are not installed."""
    if os.environ.get("HASHLAB_NO_NATIVE") == "1":
        return None
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            module = _import_extension()
            if module is None:
                warnings.warn(
                    "hashlab's compiled Hamming kernel (hashlab.index._hamming) is not built: "
                    f"searching with numpy, about {NUMPY_SLOWDOWN}x slower. Reinstall with a C "
                    "compiler present: pip install -e .",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                _state["kernels"] = Kernels(module)
        return _state["kernels"]


def native_available() -> bool:
    return load_native() is not None


#: below this many row distances a call runs on one thread: starting and joining a team
#: costs more than it saves, and on a loaded machine a descheduled team member can hold the
#: closing barrier for a whole time slice (milliseconds)
SERIAL_WORK = 2_000_000


def _threads_for(work: float, n_parts: int | None = None) -> int:
    threads = n_threads()
    if work < SERIAL_WORK:
        return 1
    return max(1, min(threads, n_parts)) if n_parts is not None else threads


def _c(array: np.ndarray, dtype: Any) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=dtype)


class Kernels:
    """Typed calls into the extension; every array is made C-contiguous of the right type."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    @property
    def cpu_level(self) -> str:
        return self.module.cpu_level()

    def set_cpu_level(self, name: str) -> str:
        """Use at most this level (plain, popcnt, avx2, avx512, best); returns the one used."""
        return self.module.set_cpu_level(name)

    def knn_scan(self, codes, keys, skip, queries, row_range, n_bits, k):
        """Top-k (distances (Q, k) int32, rows (Q, k) int64) by (distance, key); -1 padded."""
        queries = _c(queries, np.uint8)
        nq, nb = queries.shape
        out_d = np.empty((nq, k), dtype=np.int32)
        out_r = np.empty((nq, k), dtype=np.int64)
        if nq:
            self.module.knn_scan(
                _c(codes, np.uint8), _c(keys, np.int64), skip, queries, row_range[0],
                row_range[1], nb, n_bits, k, out_d, out_r,
                _threads_for(nq * (row_range[1] - row_range[0])),
            )  # fmt: skip
        return out_d, out_r

    def range_scan(self, codes, keys, skip, queries, row_range, n_bits, radius):
        """(offsets, rows, distances), per query sorted by (distance, key)."""
        queries = _c(queries, np.uint8)
        nq, nb = queries.shape
        out = self.module.range_scan(
            _c(codes, np.uint8), _c(keys, np.int64), skip, queries, row_range[0], row_range[1],
            nb, n_bits, radius,
            _threads_for(nq * (row_range[1] - row_range[0]), (nq + 7) // 8),
        )  # fmt: skip
        return _flat(out)

    def mih_range(self, codes, keys, skip, queries, n_rows, n_bits, radius, tables, work=None):
        """Radius search through hash tables; ``work``: the planner's estimate (scan rows)."""
        queries = _c(queries, np.uint8)
        work = 64 * SERIAL_WORK if work is None else work
        out = self.module.mih_range(
            _c(codes, np.uint8), _c(keys, np.int64), skip, queries, n_rows, queries.shape[1],
            n_bits, radius, tables, _threads_for(work, len(queries) // 16),
        )  # fmt: skip
        return _flat(out)

    def mih_knn(self, codes, keys, skip, queries, n_rows, n_bits, k, budget, tables):
        """Top-k by growing the probe radius; ``failed[q]`` marks queries left to a scan."""
        queries = _c(queries, np.uint8)
        nq = queries.shape[0]
        out_d = np.full((nq, k), -1, dtype=np.int32)
        out_r = np.full((nq, k), -1, dtype=np.int64)
        failed = np.zeros(nq, dtype=np.uint8)
        if nq:
            self.module.mih_knn(
                _c(codes, np.uint8), _c(keys, np.int64), skip, queries, n_rows,
                queries.shape[1], n_bits, k, float(budget), tables, out_d, out_r, failed,
                _threads_for(64 * SERIAL_WORK, nq // 16),
            )  # fmt: skip
        return out_d, out_r, failed.astype(bool)

    def gather_keys(self, codes: np.ndarray, n_rows: int, positions: np.ndarray) -> np.ndarray:
        keys = np.empty(n_rows, dtype=np.uint32)
        positions = _c(positions, np.int32)
        self.module.gather_keys(
            _c(codes, np.uint8), n_rows, codes.shape[1], positions, len(positions), keys,
            n_threads(),
        )  # fmt: skip
        return keys

    def counting_sort(self, keys: np.ndarray, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
        """Stable (offsets (n_buckets + 1,), permutation) of rows grouped by key."""
        offsets = np.empty(n_buckets + 1, dtype=np.uint32)
        perm = np.empty(keys.shape[0], dtype=np.uint32)
        self.module.counting_sort(_c(keys, np.uint32), keys.shape[0], n_buckets, offsets, perm)
        return offsets, perm


def _flat(out: tuple[bytearray, bytearray, bytearray]):
    offsets, rows, distances = out
    return (
        np.frombuffer(offsets, dtype=np.int64),
        np.frombuffer(rows, dtype=np.int64),
        np.frombuffer(distances, dtype=np.int32),
    )
