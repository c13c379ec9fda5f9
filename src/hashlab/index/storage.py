"""On-disk format of a Hamming index and its crash-safe write protocol.

An index is a directory::

    header.json       format name + version, code length, committed lengths, CRC-32s
    codes.bin         packed codes, row after row (append-only)
    ids.bin           int64 little-endian id per row (append-only)
    removed.bin       int64 pairs (id, rows at removal) (append-only tombstone log)
    metadata.sqlite   items(id PRIMARY KEY, batch, json) in WAL mode, synchronous=FULL

Commit protocol of one ``add``: append codes and ids past the committed length and fsync,
insert the metadata rows tagged with the batch number and commit, then replace
``header.json`` atomically (temp file + fsync + ``os.replace`` + fsync of the directory).
The header is the commit point. Opening truncates bytes past the committed lengths and
deletes metadata of batches the header never committed, so a process killed at any instant
leaves exactly the batches whose ``add`` returned. The CRC-32s in the header catch a
corrupted or swapped file; sizes shorter than committed are reported as truncation.

Removal appends ``(id, n_rows)`` records: the one alive row carrying ``id`` among the first
``n_rows`` rows dies. Replaying the log in any order gives the same answer, because a row
``r`` with id ``x`` is dead exactly when some record ``(x, t)`` has ``t > r``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from hashlab import __version__

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "IndexFormatError", "IndexStore", "fsync_dir"]

FORMAT_NAME = "hashlab-hamming-index"
FORMAT_VERSION = 1
HEADER = "header.json"
CODES = "codes.bin"
IDS = "ids.bin"
REMOVED = "removed.bin"
METADATA = "metadata.sqlite"
#: committed code bytes above which arrays are memory-mapped instead of read into memory
MMAP_THRESHOLD = 32 << 20
_CRC_CHUNK = 16 << 20


from hashlab.errors import IndexFormatError  # noqa: E402  (one error root, hashlab.errors)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _crc_file(path: Path, length: int) -> int:
    crc = 0
    with open(path, "rb") as handle:
        remaining = length
        while remaining > 0:
            block = handle.read(min(_CRC_CHUNK, remaining))
            if not block:
                break
            crc = zlib.crc32(block, crc)
            remaining -= len(block)
    return crc


def _append(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at the committed offset (dropping any uncommitted tail) and fsync."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)
        handle.truncate()
        handle.flush()
        os.fsync(handle.fileno())


class IndexStore:
    """One index directory opened for reading and appending."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self._meta: sqlite3.Connection | None = None

    # -- header -------------------------------------------------------------------------
    @property
    def n_bytes(self) -> int:
        return (self.header["n_bits"] + 7) // 8

    def write_header(self) -> None:
        tmp = self.path / (HEADER + ".tmp")
        with open(tmp, "w") as handle:
            json.dump(self.header, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path / HEADER)
        fsync_dir(self.path)

    # -- create / open ------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, n_bits: int, backend: dict[str, Any]) -> IndexStore:
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FileExistsError(f"{path} already exists and is not an empty directory")
        path.mkdir(parents=True, exist_ok=True)
        for name in (CODES, IDS, REMOVED):
            (path / name).write_bytes(b"")
        header = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "hashlab_version": __version__,
            "n_bits": int(n_bits),
            "n_rows": 0,
            "n_removed_records": 0,
            "n_batches": 0,
            "next_id": 0,
            "crc32": {CODES: 0, IDS: 0, REMOVED: 0},
            "backend": backend,
        }
        store = cls(path, header)
        store.metadata_connection()
        store.write_header()
        return store

    @classmethod
    def open(cls, path: str | Path, verify: bool = True) -> IndexStore:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"no index directory at {path}")
        header_path = path / HEADER
        if not header_path.is_file():
            raise IndexFormatError(f"{path} is not a hashlab index: {HEADER} is missing")
        try:
            header = json.loads(header_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise IndexFormatError(
                f"{header_path} is corrupted: not valid JSON ({error})"
            ) from None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise IndexFormatError(f"{header_path} is not a hashlab index header")
        if header.get("version") != FORMAT_VERSION:
            raise IndexFormatError(
                f"{path} has index format version {header.get('version')!r}; this hashlab "
                f"reads version {FORMAT_VERSION}"
            )
        required = ("n_bits", "n_rows", "n_removed_records", "n_batches", "next_id", "crc32")
        if any(key not in header for key in required):
            raise IndexFormatError(f"{header_path} is corrupted: missing fields")
        store = cls(path, header)
        store._check_files(verify)
        store._rollback_uncommitted()
        return store

    def _expected_sizes(self) -> dict[str, int]:
        n_rows = self.header["n_rows"]
        return {
            CODES: n_rows * self.n_bytes,
            IDS: n_rows * 8,
            REMOVED: self.header["n_removed_records"] * 16,
        }

    def _check_files(self, verify: bool) -> None:
        for name, expected in self._expected_sizes().items():
            file = self.path / name
            if not file.is_file():
                raise IndexFormatError(f"{self.path} is incomplete: {name} is missing")
            size = file.stat().st_size
            if size < expected:
                raise IndexFormatError(
                    f"{file} is truncated: {size} bytes, the header commits {expected}"
                )
            if verify and _crc_file(file, expected) != self.header["crc32"][name]:
                raise IndexFormatError(f"{file} is corrupted: its CRC-32 does not match the header")

    def _rollback_uncommitted(self) -> None:
        """Drop what a killed writer left past the commit point (when we may write)."""
        for name, expected in self._expected_sizes().items():
            file = self.path / name
            if file.stat().st_size > expected and os.access(file, os.W_OK):
                with open(file, "r+b") as handle:
                    handle.truncate(expected)
                    os.fsync(handle.fileno())
        if (self.path / METADATA).exists():
            try:
                connection = self.metadata_connection()
                with connection:
                    connection.execute(
                        "DELETE FROM items WHERE batch >= ?", (self.header["n_batches"],)
                    )
            except sqlite3.OperationalError as error:
                if "readonly" not in str(error):
                    raise IndexFormatError(
                        f"{self.path / METADATA} cannot be read ({error})"
                    ) from None
                # read-only directory: uncommitted rows are filtered on read (batch column)
            except sqlite3.DatabaseError as error:
                raise IndexFormatError(
                    f"{self.path / METADATA} is corrupted or not SQLite ({error})"
                ) from None

    # -- arrays -------------------------------------------------------------------------
    def read_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """(codes (N, B), ids (N,), removal records (R, 2), memory_mapped)."""
        n_rows = self.header["n_rows"]
        nb = self.n_bytes
        mapped = n_rows * nb >= MMAP_THRESHOLD
        if n_rows == 0:
            codes = np.zeros((0, nb), dtype=np.uint8)
            ids = np.zeros(0, dtype=np.int64)
        elif mapped:
            codes = np.memmap(self.path / CODES, dtype=np.uint8, mode="r", shape=(n_rows, nb))
            ids = np.memmap(self.path / IDS, dtype="<i8", mode="r", shape=(n_rows,))
        else:
            codes = np.fromfile(self.path / CODES, dtype=np.uint8, count=n_rows * nb)
            codes = codes.reshape(n_rows, nb)
            ids = np.fromfile(self.path / IDS, dtype="<i8", count=n_rows).astype(np.int64)
        n_records = self.header["n_removed_records"]
        removed = np.fromfile(self.path / REMOVED, dtype="<i8", count=2 * n_records)
        return codes, ids, removed.reshape(n_records, 2).astype(np.int64), mapped

    # -- appends (each one a commit) ----------------------------------------------------
    def append_rows(self, codes: np.ndarray, ids: np.ndarray, metadata: list | None) -> None:
        header = self.header
        code_bytes = np.ascontiguousarray(codes, dtype=np.uint8).tobytes()
        id_bytes = np.ascontiguousarray(ids, dtype="<i8").tobytes()
        _append(self.path / CODES, header["n_rows"] * self.n_bytes, code_bytes)
        _append(self.path / IDS, header["n_rows"] * 8, id_bytes)
        batch = header["n_batches"]
        if metadata is not None:
            rows = [
                (int(item_id), batch, text)
                for item_id, text in zip(ids.tolist(), metadata, strict=True)
                if text is not None
            ]
            if rows:
                connection = self.metadata_connection()
                with connection:
                    connection.executemany(
                        "INSERT OR REPLACE INTO items(id, batch, json) VALUES (?, ?, ?)", rows
                    )
        header["crc32"][CODES] = zlib.crc32(code_bytes, header["crc32"][CODES])
        header["crc32"][IDS] = zlib.crc32(id_bytes, header["crc32"][IDS])
        header["n_rows"] += len(ids)
        header["n_batches"] = batch + 1
        if len(ids):
            header["next_id"] = max(header["next_id"], int(ids.max()) + 1)
        self.write_header()

    def append_removals(self, ids: np.ndarray) -> None:
        header = self.header
        records = np.empty((len(ids), 2), dtype="<i8")
        records[:, 0] = ids
        records[:, 1] = header["n_rows"]
        data = records.tobytes()
        _append(self.path / REMOVED, header["n_removed_records"] * 16, data)
        header["crc32"][REMOVED] = zlib.crc32(data, header["crc32"][REMOVED])
        header["n_removed_records"] += len(ids)
        self.write_header()
        # after the commit point: a crash here leaves orphan rows that reads never reach
        connection = self.metadata_connection()
        with connection:
            connection.executemany("DELETE FROM items WHERE id = ?", [(int(i),) for i in ids])

    # -- metadata -----------------------------------------------------------------------
    def metadata_connection(self) -> sqlite3.Connection:
        if self._meta is None:
            self._meta = open_metadata(self.path / METADATA)
        return self._meta

    def close(self) -> None:
        if self._meta is not None:
            self._meta.close()
            self._meta = None


def open_metadata(path: str | Path) -> sqlite3.Connection:
    """A metadata store (``":memory:"`` for an index that lives only in memory)."""
    connection = sqlite3.connect(str(path), check_same_thread=False)
    if str(path) != ":memory:":
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, batch INTEGER, json TEXT)"
    )
    connection.commit()
    return connection


def alive_mask(ids: np.ndarray, removed: np.ndarray) -> np.ndarray | None:
    """Replay the tombstone log: boolean alive flag per row, or ``None`` if all alive."""
    if removed.shape[0] == 0:
        return None
    removed_ids = removed[:, 0]
    order = np.argsort(removed_ids, kind="stable")
    unique_ids, starts = np.unique(removed_ids[order], return_index=True)
    latest = np.maximum.reduceat(removed[order, 1], starts)
    candidates = np.nonzero(np.isin(ids, unique_ids))[0]
    where = np.searchsorted(unique_ids, ids[candidates])
    alive = np.ones(ids.shape[0], dtype=bool)
    alive[candidates[latest[where] > candidates]] = False
    return alive
