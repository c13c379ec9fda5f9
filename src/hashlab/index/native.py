"""The native Hamming engine: C kernels compiled on first use and called through ctypes.

``hamming_kernels.c`` (next to this file) is compiled once per machine with the system C
compiler (``cc``/``gcc``, ``-O3 -march=native``) into ``$HASHLAB_CACHE/native/`` under a
name that hashes the source, the compiler and the CPU flags, so a changed kernel or another
CPU gets its own build. The build goes to a temporary name and is renamed into place, so
concurrent first uses are safe. Without a compiler (or with ``HASHLAB_NO_NATIVE=1``)
:func:`load_native` returns ``None`` and :mod:`hashlab.index.scan` uses numpy instead.

ctypes releases the GIL for the duration of a foreign call, so the wrappers here split the
queries across a thread pool and every core scans at once.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["load_native", "native_available", "n_threads", "NativeKernels"]

_SOURCE = Path(__file__).with_name("hamming_kernels.c")
_lock = threading.Lock()
_loaded: NativeKernels | None = None
_tried = False


def n_threads() -> int:
    """Threads used for a batch of queries (``HASHLAB_THREADS``, default: all cores)."""
    configured = os.environ.get("HASHLAB_THREADS")
    if configured:
        return max(1, int(configured))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _cache_root() -> Path:
    return Path(os.environ.get("HASHLAB_CACHE", Path.home() / ".cache" / "hashlab")) / "native"


def _cpu_fingerprint() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    except OSError:
        flags = ""
    return platform.machine() + flags


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(handle)
    flags = ["-O3", "-fPIC", "-shared", "-std=c99"]
    # -march=native is what makes POPCNT a single instruction; some compilers refuse it
    for arch in (["-march=native"], []):
        command = [compiler, *flags, *arch, "-o", tmp_name, str(_SOURCE)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode == 0:
            os.replace(tmp_name, target)
            return
    Path(tmp_name).unlink(missing_ok=True)
    raise OSError(f"compiling {_SOURCE.name} failed: {result.stderr.strip()[:500]}")


def load_native() -> NativeKernels | None:
    """The compiled kernels, building them on first use; ``None`` when that is impossible."""
    global _loaded, _tried
    if os.environ.get("HASHLAB_NO_NATIVE") == "1":
        return None
    with _lock:
        if _tried:
            return _loaded
        _tried = True
        compiler = _compiler()
        if compiler is None or not _SOURCE.is_file():
            warnings.warn(
                "no C compiler found: hashlab.index falls back to numpy scans (slower)",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        digest = hashlib.sha1()
        digest.update(_SOURCE.read_bytes())
        digest.update(compiler.encode())
        digest.update(_cpu_fingerprint().encode())
        target = _cache_root() / f"hamming-{digest.hexdigest()[:16]}.so"
        try:
            if not target.is_file():
                _build(compiler, target)
            _loaded = NativeKernels(ctypes.CDLL(str(target)))
        except OSError as error:
            warnings.warn(
                f"native Hamming kernels unavailable ({error}); using numpy scans",
                RuntimeWarning,
                stacklevel=2,
            )
            _loaded = None
        return _loaded


def native_available() -> bool:
    return load_native() is not None


_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_I32 = ctypes.c_int
_U8P = ctypes.POINTER(ctypes.c_uint8)


def _ptr(array: np.ndarray | None) -> int | None:
    return None if array is None else array.ctypes.data


def _splits(total: int, parts: int) -> list[tuple[int, int]]:
    parts = max(1, min(parts, total))
    bounds = np.linspace(0, total, parts + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


class NativeKernels:
    """Typed wrappers around the shared library; every array must be C-contiguous."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        lib.hl_knn_scan.argtypes = [_P, _I64, _I64, _I32, _I32, _P, _P, _P, _I64, _I32, _P, _P, _P]
        lib.hl_knn_scan.restype = _I32
        lib.hl_range_scan.argtypes = [_P, _I64, _I64, _I32, _P, _P, _I64, _I32, _P, _P, _P]
        lib.hl_range_scan.restype = _I32
        lib.hl_mih_range.argtypes = [_P, _I32, _I32, _I32, _P, _I32, _P, _P, _P, _P, _I64, _I32]
        lib.hl_mih_range.argtypes += [_P, _P, _P]
        lib.hl_mih_range.restype = _I32
        lib.hl_mih_knn.argtypes = [_P, _I64, _I32, _I32, _I32, _P, _I32, _P, _P, _P, _P, _P]
        lib.hl_mih_knn.argtypes += [_I64, _I32, ctypes.c_double, _P, _P, _P, _P]
        lib.hl_mih_knn.restype = _I32
        lib.hl_extract_keys.argtypes = [_P, _I64, _I32, _I32, _I32, _P]
        lib.hl_extract_keys.restype = None
        lib.hl_counting_sort.argtypes = [_P, _I64, _I64, _P, _P]
        lib.hl_counting_sort.restype = _I32
        lib.hl_free.argtypes = [_P]
        lib.hl_free.restype = None
        self._pool = ThreadPoolExecutor(max_workers=n_threads(), thread_name_prefix="hashlab")

    # -- helpers ------------------------------------------------------------------------
    def _parallel(self, function, parts: list[tuple[int, ...]]) -> list:
        if len(parts) <= 1:
            return [function(*part) for part in parts]
        if len(parts) == 1:
            return [function(*parts[0])]
        return list(self._pool.map(lambda part: function(*part), parts))

    def _take_hits(self, nq: int, call) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run a kernel that returns malloc'd (lims, rows, dists); copy out and free."""
        lims = np.zeros(nq + 1, dtype=np.int64)
        rows_ptr = ctypes.c_void_p()
        dist_ptr = ctypes.c_void_p()
        status = call(lims.ctypes.data, ctypes.byref(rows_ptr), ctypes.byref(dist_ptr))
        try:
            if status != 0:
                raise MemoryError("out of memory in a native Hamming range search")
            total = int(lims[-1])
            rows = np.ctypeslib.as_array(
                ctypes.cast(rows_ptr, ctypes.POINTER(ctypes.c_int64)), shape=(max(total, 1),)
            )[:total].copy()
            dists = np.ctypeslib.as_array(
                ctypes.cast(dist_ptr, ctypes.POINTER(ctypes.c_int32)), shape=(max(total, 1),)
            )[:total].copy()
        finally:
            self.lib.hl_free(rows_ptr)
            self.lib.hl_free(dist_ptr)
        return lims, rows, dists

    # -- scans --------------------------------------------------------------------------
    def knn_scan(
        self,
        codes: np.ndarray,
        row_range: tuple[int, int],
        n_bits: int,
        ids: np.ndarray,
        dead: np.ndarray | None,
        queries: np.ndarray,
        k: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Top-k (distances, ids, rows), each (Q, k); missing slots hold -1."""
        nq, nb = queries.shape
        r0, r1 = row_range

        def run(q0: int, q1: int, a: int, b: int):
            out_d = np.empty((q1 - q0, k), dtype=np.int32)
            out_id = np.empty((q1 - q0, k), dtype=np.int64)
            out_row = np.empty((q1 - q0, k), dtype=np.int64)
            if q1 > q0:
                status = self.lib.hl_knn_scan(
                    _ptr(codes), a, b, nb, n_bits, _ptr(ids), _ptr(dead),
                    queries[q0].ctypes.data, q1 - q0, k,
                    out_d.ctypes.data, out_id.ctypes.data, out_row.ctypes.data,
                )  # fmt: skip
                if status != 0:
                    raise MemoryError("out of memory in the native top-k scan")
            return out_d, out_id, out_row

        if nq >= 2 * n_threads() or r1 - r0 < 65536:
            parts = [(q0, q1, r0, r1) for q0, q1 in _splits(nq, n_threads())]
            results = self._parallel(run, parts)
            if not results:
                return run(0, 0, r0, r1)
            return tuple(np.concatenate(column) for column in zip(*results, strict=True))
        # few queries: split the rows instead and merge the partial top-k lists
        parts = [(0, nq, r0 + a, r0 + b) for a, b in _splits(r1 - r0, n_threads())]
        return merge_topk(self._parallel(run, parts), k)

    def range_scan(
        self,
        codes: np.ndarray,
        row_range: tuple[int, int],
        dead: np.ndarray | None,
        queries: np.ndarray,
        radius: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lims, rows, distances) of every row within ``radius`` (unsorted per query)."""
        nq, nb = queries.shape
        r0, r1 = row_range

        def run(q0: int, q1: int):
            return self._take_hits(
                q1 - q0,
                lambda lims, rows, dists: self.lib.hl_range_scan(
                    _ptr(codes), r0, r1, nb, _ptr(dead), queries[q0].ctypes.data, q1 - q0,
                    radius, lims, rows, dists,
                ),
            )  # fmt: skip

        return concat_hits(self._parallel(run, _splits(nq, n_threads())), nq)

    # -- multi-index hashing -----------------------------------------------------------
    def extract_keys(self, codes: np.ndarray, n_rows: int, bit_offset: int, key_bits: int):
        keys = np.empty(n_rows, dtype=np.uint32)
        self.lib.hl_extract_keys(_ptr(codes), n_rows, codes.shape[1], bit_offset, key_bits,
                                 keys.ctypes.data)  # fmt: skip
        return keys

    def counting_sort(self, keys: np.ndarray, n_buckets: int) -> tuple[np.ndarray, np.ndarray]:
        """Stable (offsets, permutation) of rows grouped by key."""
        offsets = np.empty(n_buckets + 1, dtype=np.uint32)
        perm = np.empty(keys.shape[0], dtype=np.uint32)
        status = self.lib.hl_counting_sort(_ptr(keys), keys.shape[0], n_buckets,
                                           offsets.ctypes.data, perm.ctypes.data)  # fmt: skip
        if status != 0:
            raise MemoryError("out of memory while sorting multi-index keys")
        return offsets, perm

    def mih_range(self, tables, dead: np.ndarray | None, queries: np.ndarray, radius: int):
        nq, nb = queries.shape

        def run(q0: int, q1: int):
            return self._take_hits(
                q1 - q0,
                lambda lims, rows, dists: self.lib.hl_mih_range(
                    _ptr(tables.codes), nb, tables.n_bits, tables.n_tables,
                    tables.key_offsets.ctypes.data, tables.key_bits,
                    tables.perm_addresses.ctypes.data, tables.dir_addresses.ctypes.data,
                    _ptr(dead), queries[q0].ctypes.data, q1 - q0, radius, lims, rows, dists,
                ),
            )  # fmt: skip

        return concat_hits(self._parallel(run, _splits(nq, n_threads())), nq)

    def mih_knn(self, tables, dead, ids, queries, k: int, work_budget: float):
        """Top-k by growing the probe radius; ``failed[q]`` marks queries left to a scan."""
        nq, nb = queries.shape
        out_d = np.full((nq, k), -1, dtype=np.int32)
        out_id = np.full((nq, k), -1, dtype=np.int64)
        out_row = np.full((nq, k), -1, dtype=np.int64)
        failed = np.zeros(nq, dtype=np.uint8)

        def run(q0: int, q1: int) -> None:
            status = self.lib.hl_mih_knn(
                _ptr(tables.codes), tables.n_rows, nb, tables.n_bits, tables.n_tables,
                tables.key_offsets.ctypes.data, tables.key_bits,
                tables.perm_addresses.ctypes.data, tables.dir_addresses.ctypes.data,
                _ptr(dead), _ptr(ids), queries[q0].ctypes.data, q1 - q0, k, work_budget,
                out_d[q0].ctypes.data, out_id[q0].ctypes.data, out_row[q0].ctypes.data,
                failed[q0:].ctypes.data,
            )  # fmt: skip
            if status != 0:
                raise MemoryError("out of memory in the multi-index k-NN search")

        self._parallel(run, _splits(nq, n_threads()))
        return out_d, out_id, out_row, failed.astype(bool)


def concat_hits(parts: list, nq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Join per-thread (lims, rows, dists) results that cover consecutive query slices."""
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(nq + 1, dtype=np.int64), empty, empty.astype(np.int32)
    if len(parts) == 1:
        return parts[0]
    counts = np.concatenate([np.diff(lims) for lims, _, _ in parts])
    lims = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(counts, out=lims[1:])
    rows = np.concatenate([r for _, r, _ in parts])
    dists = np.concatenate([d for _, _, d in parts])
    return lims, rows, dists


def merge_topk(partials: list, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge several (distances, ids, rows) top-k lists of the same queries by (d, id)."""
    dists = np.concatenate([p[0] for p in partials], axis=1)
    ids = np.concatenate([p[1] for p in partials], axis=1)
    rows = np.concatenate([p[2] for p in partials], axis=1)
    # empty slots (-1) sort last: give them a distance beyond any real one
    sort_d = np.where(dists < 0, np.iinfo(np.int32).max, dists).astype(np.int64)
    order = np.lexsort((ids, sort_d), axis=1)[:, :k]
    return (
        np.take_along_axis(dists, order, axis=1),
        np.take_along_axis(ids, order, axis=1),
        np.take_along_axis(rows, order, axis=1),
    )
