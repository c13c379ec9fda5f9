"""On-disk format of a Hamming index: one writer, many readers, crash- and full-disk-safe.

An index is a directory::

    header.json         format name + version, code length, committed lengths, CRC-32s,
                        the names of the current data files, a commit token
    codes[.gN].bin      packed codes, row after row (append-only)
    ids[.gN].bin        int64 little-endian id per row (append-only)
    removed[.gN].bin    int64 pairs (id, rows at removal) (append-only tombstone log)
    metadata[.gN].sqlite  items(id PRIMARY KEY, batch, json), WAL mode, synchronous=FULL
    writer.lock         flock()ed by the one writer for its lifetime; holds its pid

**Commit protocol of one add**: append codes and ids past the committed length and fsync;
insert the metadata rows tagged with the batch number and commit (SQLite fsyncs); then
write a new header under a name unique to this process, fsync it, ``os.replace`` it over
``header.json`` and fsync the directory. The header is the commit point, and the in-memory
header advances only once all of that succeeded. A failure at any step (ENOSPC included)
leaves the previous header in force: the bytes past the committed lengths and the metadata
of the uncommitted batch number are dead, overwritten by the next append, and dropped when
a writer opens the directory.

**One writer, many readers**: ``IndexStore.open(path, mode="w")`` takes an exclusive
``flock`` on ``writer.lock`` (a second writer gets :class:`IndexLockedError` naming the
holder's pid) and only then recovers what a killed writer left (truncating tails, deleting
metadata of uncommitted batches, removing temp files and files of an unfinished
compaction). ``mode="r"`` never writes anything into the directory: it reads the committed
prefix of each file (a live writer only ever appends past it), opens SQLite read-only and
ignores metadata of batches its header has not committed. :meth:`IndexStore.poll` re-reads
the header so a reader can follow a live writer.

**Compaction** (:meth:`IndexStore.replace_contents`) writes a complete new generation of
data files beside the old ones, commits a header naming them, then deletes the old files: a
kill between any two steps leaves one complete generation named by ``header.json``.

Removal appends ``(id, n_rows)`` records: the one alive row carrying ``id`` among the first
``n_rows`` rows dies. Replaying the log in any order gives the same answer, because a row
``r`` with id ``x`` is dead exactly when some record ``(x, t)`` has ``t > r``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import secrets
import sqlite3
import urllib.parse
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from hashlab import __version__
from hashlab.errors import HashlabError, IndexFormatError

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "IndexFormatError",
    "IndexFullError",
    "IndexLockedError",
    "IndexReadOnlyError",
    "IndexStore",
    "MetadataError",
    "alive_mask",
    "decode_metadata",
    "encode_metadata",
    "fsync_dir",
    "open_metadata",
]

FORMAT_NAME = "hashlab-hamming-index"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: fixed file names, CRCs keyed by file name
HEADER = "header.json"
LOCK = "writer.lock"
KINDS = ("codes", "ids", "removed", "metadata")
V1_FILES = {
    "codes": "codes.bin",
    "ids": "ids.bin",
    "removed": "removed.bin",
    "metadata": "metadata.sqlite",
}
#: committed code bytes above which arrays are memory-mapped instead of read into memory
MMAP_THRESHOLD = 32 << 20
#: limits on one item's metadata (checked before anything is written)
MAX_METADATA_BYTES = 64 << 10
MAX_METADATA_DEPTH = 32
#: the key of the marker returned for stored metadata that cannot be shown
METADATA_ERROR_KEY = "_hashlab_error"
_CRC_CHUNK = 16 << 20
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_GENERATION_FILE = re.compile(
    r"(codes|ids|removed)(\.g\d+)?\.bin|metadata(\.g\d+)?\.sqlite(-wal|-shm|-journal)?"
)
_TEMP_HEADER = re.compile(re.escape(HEADER) + r"\.\d+\.[0-9a-f]+\.tmp")


# ------------------------------------------------------------------------ errors ---------
class IndexLockedError(HashlabError, OSError):
    """Another process holds the index's writer lock; ``pid`` names it (None if unknown)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "another process"
        message = (
            f"index {path} is locked by a writer ({who}); one writer at a time: stop it, or "
            "open the index read-only (mode='r')"
        )
        super().__init__(errno.EWOULDBLOCK, message)
        self.pid = pid
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


class IndexFullError(HashlabError, OSError):
    """No space left for a write; the index keeps its last committed state (errno ENOSPC)."""

    def __init__(self, path: Path, during: str, code: int = errno.ENOSPC) -> None:
        message = (
            f"no space left on the device holding index {path} while {during}; nothing of "
            "this write was committed (the index keeps its last committed state); free space "
            "and retry"
        )
        super().__init__(code, message)
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


class IndexReadOnlyError(HashlabError, PermissionError):
    """A write on an index opened for reading."""


class MetadataError(HashlabError, ValueError):
    """Metadata that cannot be stored (not JSON, too deep, too large, bad text)."""


def _is_disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, sqlite3.OperationalError):
        return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or (
            "disk is full" in str(error)
        )
    return False


# ------------------------------------------------------------------------ files ----------
def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _crc_file(path: Path, length: int, start: int = 0, crc: int = 0) -> int:
    with open(path, "rb") as handle:
        handle.seek(start)
        remaining = length - start
        while remaining > 0:
            block = handle.read(min(_CRC_CHUNK, remaining))
            if not block:
                break
            crc = zlib.crc32(block, crc)
            remaining -= len(block)
    return crc


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _append(path: Path, offset: int, data: bytes) -> None:
    """Write ``data`` at the committed offset (dropping any uncommitted tail) and fsync."""
    fd = os.open(path, os.O_RDWR)
    try:
        _write_all(fd, data, offset)
        os.ftruncate(fd, offset + len(data))
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _write_all(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


class _WriterLock:
    """An exclusive ``flock`` on ``writer.lock``, held until :meth:`release`."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            os.close(self.fd)
            self.fd = None
            raise IndexLockedError(directory, holder) from None
        try:  # the pid is for people reading errors; failing to write it is no error
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass

    def _holder(self) -> int | None:
        try:
            text = os.pread(self.fd, 32, 0).decode().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None


# ------------------------------------------------------------------------ header ---------
def _header_error(path: Path, what: str) -> IndexFormatError:
    return IndexFormatError(f"{path / HEADER} is corrupted: {what}")


def _count(header: dict, key: str, path: Path) -> int:
    value = header.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _header_error(path, f"{key!r} must be a non-negative integer, got {value!r}")
    return value


def _read_header(path: Path) -> dict[str, Any]:
    """The committed header, validated field by field, in the version-2 layout."""
    header_path = path / HEADER
    if not path.is_dir():
        raise FileNotFoundError(f"no index directory at {path}")
    try:
        raw = header_path.read_bytes()
    except FileNotFoundError:
        raise IndexFormatError(f"{path} is not a hashlab index: {HEADER} is missing") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise IndexFormatError(f"{header_path} is corrupted: not valid JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{header_path} is not a hashlab index header")
    version = header.get("version")
    if version not in READABLE_VERSIONS:
        raise IndexFormatError(
            f"{path} has index format version {version!r}; this hashlab reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    n_bits = _count(header, "n_bits", path)
    if not 1 <= n_bits <= 1 << 16:
        raise _header_error(path, f"'n_bits' must be between 1 and 65536, got {n_bits}")
    for key in ("n_rows", "n_removed_records", "n_batches", "next_id"):
        _count(header, key, path)
    crcs = header.get("crc32")
    if not isinstance(crcs, dict):
        raise _header_error(path, "'crc32' must be an object")
    if version == 1:
        header["files"] = dict(V1_FILES)
        header["crc32"] = {kind: crcs.get(V1_FILES[kind]) for kind in ("codes", "ids", "removed")}
        header.setdefault("generation", 0)
        header.setdefault("commit", "v1")
        crcs = header["crc32"]
    for kind in ("codes", "ids", "removed"):
        value = crcs.get(kind)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 32:
            raise _header_error(path, f"the CRC-32 of {kind} must be 32-bit, got {value!r}")
    files = header.get("files")
    if not isinstance(files, dict) or any(
        not isinstance(files.get(kind), str) or not _FILE_NAME.fullmatch(files[kind])
        for kind in KINDS
    ):
        raise _header_error(path, "'files' must name the codes, ids, removed and metadata files")
    if not isinstance(header.get("backend", {}), dict | type(None)):
        raise _header_error(path, "'backend' must be an object")
    _count(header, "generation", path)
    return header


# ------------------------------------------------------------------------ metadata -------
def _check_value(value: Any, where: str, depth: int) -> Any:
    """A JSON-able copy of ``value`` (numpy scalars become Python numbers), or MetadataError."""
    if depth > MAX_METADATA_DEPTH:
        raise MetadataError(f"{where} is nested deeper than {MAX_METADATA_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as error:
                raise MetadataError(
                    f"{where} is not valid Unicode text (a lone surrogate at character "
                    f"{error.start})"
                ) from None
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            raise MetadataError(f"{where} is {float(value)!r}; JSON has no NaN or infinity")
        return float(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise MetadataError(f"{where} has a key {key!r} that is not a string")
            _check_value(key, f"a key of {where}", depth)
            out[key] = _check_value(item, f"{where}[{key!r}]", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_check_value(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise MetadataError(f"{where} is a {type(value).__name__}, which JSON cannot hold")


def encode_metadata(item: Any, where: str = "metadata") -> str:
    """Validate and normalise one item's metadata dict; its JSON text (what is stored)."""
    if not isinstance(item, dict):
        raise MetadataError(f"{where} must be a dict or None, got {type(item).__name__}")
    text = json.dumps(_check_value(item, where, 1), allow_nan=False, ensure_ascii=False)
    size = len(text.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise MetadataError(
            f"{where} is {size} bytes as JSON; at most {MAX_METADATA_BYTES} bytes per item"
        )
    return text


def decode_metadata(text: Any) -> dict[str, Any]:
    """Stored metadata as a dict; what cannot be shown becomes ``{METADATA_ERROR_KEY: why}``.

    Items written before validation existed (too deep, lone surrogates, not JSON) must never
    break a search: they come back marked, and ``hashlab index check --repair`` fixes them.
    """
    try:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise MetadataError(f"stored metadata is a {type(value).__name__}, not an object")
        encode_metadata(value)
        return value
    except (TypeError, ValueError, RecursionError) as error:
        reason = str(error) if isinstance(error, MetadataError) else "not valid JSON"
        return {METADATA_ERROR_KEY: f"stored metadata cannot be shown: {reason}"}


def open_metadata(path: str | Path, readonly: bool = False) -> sqlite3.Connection:
    """A metadata store (``":memory:"`` for an index that lives only in memory).

    Read-only connections never write into the directory: SQLite's ``mode=ro`` (or
    ``immutable=1`` where the directory itself cannot be written).
    """
    if str(path) == ":memory:":
        connection = sqlite3.connect(":memory:", check_same_thread=False)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, batch INTEGER, json TEXT)"
        )
        return connection
    path = Path(path)
    if not path.is_file():
        raise IndexFormatError(f"{path} is missing: the index has lost its metadata store")
    if readonly:
        # quoted: a directory name with '?', '#' or '%' must not be read as URI syntax
        where = urllib.parse.quote(str(path.resolve()))
        uri = f"file:{where}?mode=ro"
        if not os.access(path.parent, os.W_OK):
            uri = f"file:{where}?immutable=1"
        connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
    else:
        connection = sqlite3.connect(str(path), check_same_thread=False)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        if "items" not in tables:
            raise IndexFormatError(
                f"{path} holds no items table: the metadata store is empty or not an index's"
            )
        if not readonly:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("CREATE INDEX IF NOT EXISTS items_batch ON items(batch)")
            connection.commit()
    except sqlite3.DatabaseError as error:
        connection.close()
        raise IndexFormatError(f"{path} is corrupted or not SQLite ({error})") from None
    except BaseException:
        connection.close()
        raise
    return connection


def _create_metadata(path: Path, rows: Iterable[tuple[int, int, str]]) -> None:
    """A new, complete, fsynced metadata file holding ``rows`` (id, batch, json)."""
    connection = sqlite3.connect(str(path))
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, batch INTEGER, json TEXT)"
        )
        connection.execute("CREATE INDEX items_batch ON items(batch)")
        batch: list[tuple[int, int, str]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == 10000:
                connection.executemany("INSERT INTO items VALUES (?, ?, ?)", batch)
                batch = []
        connection.executemany("INSERT INTO items VALUES (?, ?, ?)", batch)
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------ the store ------
def header_changed(path: str | Path, header: dict[str, Any]) -> bool:
    """Whether the directory's committed header is no longer ``header`` (a writer moved on)."""
    try:
        return _read_header(Path(path))["commit"] != header["commit"]
    except (FileNotFoundError, IndexFormatError):
        return True


class IndexStore:
    """One index directory, opened as its one writer (``mode="w"``) or as a reader."""

    def __init__(
        self, path: Path, header: dict[str, Any], mode: str, lock: _WriterLock | None
    ) -> None:
        self.path = path
        self.header = header
        self.mode = mode
        self._lock = lock
        self._meta: sqlite3.Connection | None = None
        # set after a failed write: metadata of the uncommitted batch may linger
        self._dirty = False
        # set when the disk and this process may disagree on the committed header
        self._broken: str | None = None

    # -- names ---------------------------------------------------------------------------
    @property
    def n_bytes(self) -> int:
        return (self.header["n_bits"] + 7) // 8

    def file(self, kind: str, header: dict[str, Any] | None = None) -> Path:
        return self.path / (header or self.header)["files"][kind]

    @property
    def writable(self) -> bool:
        return self.mode == "w"

    def _require_writer(self) -> None:
        if not self.writable:
            raise IndexReadOnlyError(
                f"index {self.path} is open read-only; open it with mode='w' to change it"
            )
        if self._broken:
            raise IndexReadOnlyError(
                f"index {self.path} takes no more writes in this process ({self._broken}); "
                "close and reopen it"
            )

    # -- header commit ------------------------------------------------------------------
    def _commit(self, header: dict[str, Any], during: str) -> None:
        """Make ``header`` the committed state; ``self.header`` changes only on success."""
        header = dict(header, commit=secrets.token_hex(8), hashlab_version=__version__)
        try:
            self._write_header(header)
        except OSError as error:
            if _is_disk_full(error):
                raise IndexFullError(self.path, during, error.errno) from None
            raise
        self.header = header

    def _write_header(self, header: dict[str, Any]) -> None:
        data = json.dumps(header, indent=2).encode()
        tmp = self.path / f"{HEADER}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        target = self.path / HEADER
        previous = target.read_bytes() if target.exists() else None
        replaced = False
        try:
            _write_new_file(tmp, data)
            os.replace(tmp, target)
            replaced = True
            fsync_dir(self.path)
        except BaseException:
            try:
                tmp.unlink(missing_ok=True)
                if replaced and previous is not None:
                    # the new header is visible but not durable: put the old one back so the
                    # disk and this process agree on the committed state
                    _write_new_file(tmp, previous)
                    os.replace(tmp, target)
            except OSError:
                self._broken = "a header could not be written or restored"
            raise

    # -- create / open ------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, n_bits: int, backend: dict[str, Any]) -> IndexStore:
        """A new, empty index at ``path`` (a new or empty directory), opened as its writer."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"{path} already exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
        lock = _WriterLock(path)
        try:
            leftovers = [p.name for p in path.iterdir() if p.name != LOCK]
            # what a create killed before its header leaves may be redone; nothing else
            if (path / HEADER).exists() or any(
                not _GENERATION_FILE.fullmatch(n) and not _TEMP_HEADER.fullmatch(n)
                for n in leftovers
            ):
                raise FileExistsError(f"{path} already exists and is not an empty directory")
            for name in leftovers:
                (path / name).unlink()
            files = {kind: V1_FILES[kind] for kind in KINDS}
            try:
                for kind in ("codes", "ids", "removed"):
                    _write_new_file(path / files[kind], b"")
                _create_metadata(path / files["metadata"], [])
            except (OSError, sqlite3.DatabaseError) as error:
                if _is_disk_full(error):
                    raise IndexFullError(path, "creating the index") from None
                raise
            header = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "hashlab_version": __version__,
                "n_bits": int(n_bits),
                "n_rows": 0,
                "n_removed_records": 0,
                "n_batches": 0,
                "next_id": 0,
                "crc32": {"codes": 0, "ids": 0, "removed": 0},
                "files": files,
                "generation": 0,
                "backend": backend,
            }
            store = cls(path, {}, "w", lock)
            store._commit(header, "creating the index")
        except BaseException:
            lock.release()
            raise
        store.metadata_connection()
        return store

    @classmethod
    def open(cls, path: str | Path, mode: str = "r", verify: bool = True) -> IndexStore:
        """Open for reading (``"r"``, never writes) or as the one writer (``"w"``, locks)."""
        if mode not in ("r", "w"):
            raise ValueError(f"mode must be 'r' (read) or 'w' (write), got {mode!r}")
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"no index directory at {path}")
        if mode == "w":
            lock = _WriterLock(path)
            try:
                store = cls(path, _read_header(path), "w", lock)
                store._check_files(verify)
                store._recover()
                store.metadata_connection()
            except BaseException:
                lock.release()
                raise
            return store
        # a reader may race a compaction that deletes the files its header names: retry
        for attempt in range(20):
            header = _read_header(path)
            store = cls(path, header, "r", None)
            try:
                store._check_files(verify)
                store.metadata_connection()
            except (FileNotFoundError, IndexFormatError, sqlite3.OperationalError):
                store.close()
                if attempt == 19 or _read_header(path)["commit"] == header["commit"]:
                    raise
                continue
            return store
        raise AssertionError("unreachable")  # pragma: no cover

    def _expected_sizes(self, header: dict[str, Any] | None = None) -> dict[str, int]:
        header = header or self.header
        n_rows = header["n_rows"]
        return {
            "codes": n_rows * ((header["n_bits"] + 7) // 8),
            "ids": n_rows * 8,
            "removed": header["n_removed_records"] * 16,
        }

    def _check_files(self, verify: bool) -> None:
        for kind, expected in self._expected_sizes().items():
            file = self.file(kind)
            if not file.is_file():
                if not self.path.joinpath(HEADER).exists():
                    raise FileNotFoundError(f"no index directory at {self.path}")
                raise IndexFormatError(f"{self.path} is incomplete: {file.name} is missing")
            size = file.stat().st_size
            if size < expected:
                raise IndexFormatError(
                    f"{file} is truncated: {size} bytes, the header commits {expected}"
                )
            if verify and _crc_file(file, expected) != self.header["crc32"][kind]:
                raise IndexFormatError(f"{file} is corrupted: its CRC-32 does not match the header")
        if not self.file("metadata").is_file():
            raise IndexFormatError(
                f"{self.file('metadata')} is missing: the index has lost its metadata store"
            )

    def _recover(self) -> None:
        """Under the writer lock: drop what a killed writer left past the commit point."""
        for kind, expected in self._expected_sizes().items():
            file = self.file(kind)
            if file.stat().st_size > expected:
                fd = os.open(file, os.O_RDWR)
                try:
                    os.ftruncate(fd, expected)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        current = set(self.header["files"].values())
        for entry in self.path.iterdir():
            name = entry.name
            base = re.sub(r"-(wal|shm|journal)$", "", name)
            stale_data = _GENERATION_FILE.fullmatch(name) and base not in current
            if stale_data or _TEMP_HEADER.fullmatch(name):
                entry.unlink(missing_ok=True)  # a killed compaction's or writer's leftovers
        try:
            self._discard_uncommitted_metadata()
        except IndexFullError:
            # readers never see those rows (their batch is uncommitted): on a full disk the
            # writer still opens, and the next append retries the cleanup first
            self._dirty = True

    def _discard_uncommitted_metadata(self) -> None:
        connection = self.metadata_connection()
        try:
            with connection:
                connection.execute(
                    "DELETE FROM items WHERE batch >= ?", (self.header["n_batches"],)
                )
        except sqlite3.DatabaseError as error:
            if _is_disk_full(error):
                raise IndexFullError(self.path, "cleaning up a failed write") from None
            raise IndexFormatError(f"{self.file('metadata')} cannot be written ({error})") from None
        self._dirty = False

    # -- following a writer ------------------------------------------------------------
    def poll(self) -> tuple[str, dict[str, Any]]:
        """Re-read the header: ``("same"|"grown"|"replaced", previous header)``.

        ``"grown"``: the files only grew past what this store had (the prefix CRCs agree);
        ``"replaced"``: anything else (a compaction, or a prefix that changed): reload all.
        """
        previous = self.header
        header = _read_header(self.path)
        if header["commit"] == previous["commit"]:
            return "same", previous
        grown = header["files"] == previous["files"] and all(
            header[key] >= previous[key] for key in ("n_rows", "n_removed_records", "n_batches")
        )
        if grown:
            old = self._expected_sizes(previous)
            new = self._expected_sizes(header)
            for kind in ("codes", "ids", "removed"):
                file = self.file(kind, header)
                try:
                    crc = _crc_file(file, new[kind], old[kind], previous["crc32"][kind])
                except FileNotFoundError:
                    grown = False
                    break
                if file.stat().st_size < new[kind] or crc != header["crc32"][kind]:
                    grown = False
                    break
        if not grown:
            return "replaced", previous
        self.header = header
        return "grown", previous

    # -- arrays -------------------------------------------------------------------------
    def read_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """(codes (N, B), ids (N,), removal records (R, 2), memory_mapped)."""
        n_rows = self.header["n_rows"]
        nb = self.n_bytes
        mapped = n_rows * nb >= MMAP_THRESHOLD
        if mapped:
            codes = np.memmap(self.file("codes"), dtype=np.uint8, mode="r", shape=(n_rows, nb))
            ids = np.memmap(self.file("ids"), dtype="<i8", mode="r", shape=(n_rows,))
        else:
            codes, ids = self.read_rows(0, n_rows)
        return codes, ids, self.read_removals(0, self.header["n_removed_records"]), mapped

    def read_rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        nb = self.n_bytes
        if stop <= start:
            return np.zeros((0, nb), dtype=np.uint8), np.zeros(0, dtype=np.int64)
        with open(self.file("codes"), "rb") as handle:
            handle.seek(start * nb)
            codes = np.fromfile(handle, dtype=np.uint8, count=(stop - start) * nb)
        with open(self.file("ids"), "rb") as handle:
            handle.seek(start * 8)
            ids = np.fromfile(handle, dtype="<i8", count=stop - start).astype(np.int64)
        return codes.reshape(stop - start, nb), ids

    def read_removals(self, start: int, stop: int) -> np.ndarray:
        if stop <= start:
            return np.zeros((0, 2), dtype=np.int64)
        with open(self.file("removed"), "rb") as handle:
            handle.seek(start * 16)
            records = np.fromfile(handle, dtype="<i8", count=2 * (stop - start))
        return records.reshape(stop - start, 2).astype(np.int64)

    # -- appends (each one a commit) ----------------------------------------------------
    def append_rows(
        self, codes: np.ndarray, ids: np.ndarray, metadata: list[str | None] | None
    ) -> None:
        """Commit one batch; on any failure nothing of it is committed (and memory is kept)."""
        self._require_writer()
        header = self.header
        code_bytes = np.ascontiguousarray(codes, dtype=np.uint8).tobytes()
        id_bytes = np.ascontiguousarray(ids, dtype="<i8").tobytes()
        batch = header["n_batches"]
        step = "writing codes"
        try:
            if self._dirty:
                self._discard_uncommitted_metadata()
            _append(self.file("codes"), header["n_rows"] * self.n_bytes, code_bytes)
            step = "writing ids"
            _append(self.file("ids"), header["n_rows"] * 8, id_bytes)
            step = "writing metadata"
            rows = []
            if metadata is not None:
                rows = [
                    (int(item_id), batch, text)
                    for item_id, text in zip(ids.tolist(), metadata, strict=True)
                    if text is not None
                ]
            self._dirty = True  # from here a failure may leave rows of this batch behind
            connection = self.metadata_connection()
            with connection:
                # an orphan row of a removed id must not become the new item's metadata
                connection.executemany(
                    "DELETE FROM items WHERE id = ?", [(int(i),) for i in ids.tolist()]
                )
                connection.executemany(
                    "INSERT OR REPLACE INTO items(id, batch, json) VALUES (?, ?, ?)", rows
                )
            step = "committing the header"
            new = dict(header)
            new["crc32"] = {
                "codes": zlib.crc32(code_bytes, header["crc32"]["codes"]),
                "ids": zlib.crc32(id_bytes, header["crc32"]["ids"]),
                "removed": header["crc32"]["removed"],
            }
            new["n_rows"] = header["n_rows"] + len(ids)
            new["n_batches"] = batch + 1
            if len(ids):
                new["next_id"] = max(header["next_id"], int(ids.max()) + 1)
            self._commit(new, "adding items")
            self._dirty = False
        except IndexFullError:
            raise
        except (OSError, sqlite3.DatabaseError) as error:
            if _is_disk_full(error):
                raise IndexFullError(self.path, step) from None
            raise

    def append_removals(self, ids: np.ndarray) -> None:
        self._require_writer()
        header = self.header
        records = np.empty((len(ids), 2), dtype="<i8")
        records[:, 0] = ids
        records[:, 1] = header["n_rows"]
        data = records.tobytes()
        try:
            _append(self.file("removed"), header["n_removed_records"] * 16, data)
            new = dict(header)
            crc = zlib.crc32(data, header["crc32"]["removed"])
            new["crc32"] = dict(header["crc32"], removed=crc)
            new["n_removed_records"] = header["n_removed_records"] + len(ids)
            self._commit(new, "removing items")
        except IndexFullError:
            raise
        except OSError as error:
            if _is_disk_full(error):
                raise IndexFullError(self.path, "removing items") from None
            raise
        # after the commit point: failing here leaves orphan rows that reads never reach
        try:
            connection = self.metadata_connection()
            with connection:
                connection.executemany("DELETE FROM items WHERE id = ?", [(int(i),) for i in ids])
        except sqlite3.DatabaseError:
            pass

    # -- compaction ---------------------------------------------------------------------
    def replace_contents(
        self,
        codes: np.ndarray,
        ids: np.ndarray,
        metadata_rows: Iterable[tuple[int, str]],
        next_id: int,
        backend: dict[str, Any] | None = None,
        n_bits: int | None = None,
    ) -> None:
        """Swap in a whole new generation of files (compaction, or ``save`` over an index).

        New files first (fsynced), then the header naming them (the commit point), then the
        old files go. A kill anywhere leaves exactly one complete generation in force.
        """
        self._require_writer()
        header = self.header
        generation = header["generation"] + 1
        files = {
            "codes": f"codes.g{generation}.bin",
            "ids": f"ids.g{generation}.bin",
            "removed": f"removed.g{generation}.bin",
            "metadata": f"metadata.g{generation}.sqlite",
        }
        code_bytes = np.ascontiguousarray(codes, dtype=np.uint8).tobytes()
        id_bytes = np.ascontiguousarray(ids, dtype="<i8").tobytes()
        try:
            for name in files.values():
                for suffix in ("", "-wal", "-shm", "-journal"):
                    (self.path / (name + suffix)).unlink(missing_ok=True)
            _write_new_file(self.path / files["codes"], code_bytes)
            _write_new_file(self.path / files["ids"], id_bytes)
            _write_new_file(self.path / files["removed"], b"")
            _create_metadata(
                self.path / files["metadata"],
                ((int(item_id), 0, text) for item_id, text in metadata_rows),
            )
            fsync_dir(self.path)
            new = dict(header)
            new.update(
                files=files,
                generation=generation,
                n_rows=len(ids),
                n_removed_records=0,
                n_batches=1,
                next_id=int(next_id),
                crc32={"codes": zlib.crc32(code_bytes), "ids": zlib.crc32(id_bytes), "removed": 0},
            )
            if backend is not None:
                new["backend"] = backend
            if n_bits is not None:
                new["n_bits"] = int(n_bits)
            old_files = header["files"]
            self._commit(new, "compacting the index")
        except BaseException as error:
            for name in files.values():
                for suffix in ("", "-wal", "-shm", "-journal"):
                    try:
                        (self.path / (name + suffix)).unlink(missing_ok=True)
                    except OSError:
                        pass
            if _is_disk_full(error) and not isinstance(error, IndexFullError):
                raise IndexFullError(self.path, "compacting the index") from None
            raise
        # committed: the old generation is garbage (a kill from here on is cleaned at open)
        if self._meta is not None:
            self._meta.close()
            self._meta = None
        for name in old_files.values():
            if name not in files.values():
                for suffix in ("", "-wal", "-shm", "-journal"):
                    (self.path / (name + suffix)).unlink(missing_ok=True)
        fsync_dir(self.path)
        self.metadata_connection()

    # -- metadata -----------------------------------------------------------------------
    def metadata_connection(self) -> sqlite3.Connection:
        if self._meta is None:
            self._meta = open_metadata(self.file("metadata"), readonly=not self.writable)
        return self._meta

    def reopen_metadata(self) -> sqlite3.Connection:
        """A fresh connection (after a reader saw the files replaced)."""
        if self._meta is not None:
            self._meta.close()
            self._meta = None
        return self.metadata_connection()

    def close(self) -> None:
        if self._meta is not None:
            self._meta.close()
            self._meta = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def alive_mask(ids: np.ndarray, removed: np.ndarray, first_row: int = 0) -> np.ndarray | None:
    """Replay the tombstone log: boolean alive flag per row, or ``None`` if all alive.

    ``ids`` are the ids of rows ``first_row, first_row + 1, ...`` (a refresh replays only new
    rows against the new records).
    """
    if removed.shape[0] == 0:
        return None
    removed_ids = removed[:, 0]
    order = np.argsort(removed_ids, kind="stable")
    unique_ids, starts = np.unique(removed_ids[order], return_index=True)
    latest = np.maximum.reduceat(removed[order, 1], starts)
    candidates = np.nonzero(np.isin(ids, unique_ids))[0]
    where = np.searchsorted(unique_ids, ids[candidates])
    alive = np.ones(ids.shape[0], dtype=bool)
    alive[candidates[latest[where] > candidates + first_row]] = False
    return alive


# ------------------------------------------------------------------------ checking -------
def _replace_bad_text(value: Any) -> Any:
    """``value`` with lone surrogates turned into U+FFFD (pairs are joined, as UTF-16 would)."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_replace_bad_text(k): _replace_bad_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_bad_text(v) for v in value]
    return value


def _metadata_problem(text: Any) -> str | None:
    marker = decode_metadata(text)
    return marker[METADATA_ERROR_KEY] if METADATA_ERROR_KEY in marker else None


def check_index(path: str | Path, repair: bool = False) -> dict[str, Any]:
    """Report (and with ``repair``, fix) what would make an index misbehave.

    Checks the header, the committed length and CRC-32 of every file, bytes past the commit
    point, files left by a killed writer or compaction, and every stored metadata row
    (unreadable or breaking today's limits, or orphaned by a removal). ``repair`` takes the
    writer lock (refused while a writer runs), drops the uncommitted leftovers, rewrites
    metadata whose only fault is bad text (lone surrogates become U+FFFD), removes the
    metadata that cannot be saved that way (the item keeps its code and id) and deletes
    orphan rows. Committed codes and ids are never changed.
    """
    path = Path(path)
    report: dict[str, Any] = {"path": str(path), "problems": [], "repaired": []}
    problems, repaired = report["problems"], report["repaired"]
    try:
        header = _read_header(path)
    except (IndexFormatError, FileNotFoundError) as error:
        problems.append(str(error))
        report["ok"] = False
        return report
    probe = IndexStore(path, header, "r", None)
    sizes = probe._expected_sizes()
    tails = {}
    for kind, expected in sizes.items():
        file = probe.file(kind)
        if file.is_file() and file.stat().st_size > expected:
            tails[file.name] = file.stat().st_size - expected
    current = set(header["files"].values())
    leftovers = sorted(
        entry.name
        for entry in path.iterdir()
        if _TEMP_HEADER.fullmatch(entry.name)
        or (
            _GENERATION_FILE.fullmatch(entry.name)
            and re.sub(r"-(wal|shm|journal)$", "", entry.name) not in current
        )
    )
    try:
        store = IndexStore.open(path, mode="w" if repair else "r", verify=True)
    except (IndexFormatError, FileNotFoundError, IndexLockedError) as error:
        problems.append(str(error))
        report["ok"] = False
        return report
    try:
        for name, extra in tails.items():
            line = f"{name}: {extra} bytes past the commit point (a writer running or killed)"
            (repaired if repair else problems).append(("dropped " if repair else "") + line)
        for name in leftovers:
            line = f"{name}: left by a killed writer or compaction"
            (repaired if repair else problems).append(("removed " if repair else "") + line)
        codes, ids, removed, _ = store.read_arrays()
        alive = alive_mask(ids, removed)
        live_ids = ids if alive is None else ids[alive]
        if len(np.unique(live_ids)) != len(live_ids):
            problems.append("live ids are not unique")
        live = set(live_ids.tolist())
        report["n_items"] = len(live)
        connection = store.metadata_connection()
        bad, orphans, fixed, dropped = [], [], [], []
        rows = connection.execute(
            "SELECT id, json FROM items WHERE batch < ?", (store.header["n_batches"],)
        )
        for item_id, text in rows.fetchall():
            if item_id not in live:
                orphans.append(item_id)
                continue
            reason = _metadata_problem(text)
            if reason is None:
                continue
            bad.append({"id": item_id, "reason": reason})
            if repair:
                try:
                    cleaned = encode_metadata(_replace_bad_text(json.loads(text)))
                    fixed.append((cleaned, item_id))
                except (TypeError, ValueError, RecursionError):
                    dropped.append((item_id,))
        report["bad_metadata"] = bad
        report["orphan_metadata"] = len(orphans)
        if not repair:
            problems.extend(f"item {b['id']}: {b['reason']}" for b in bad)
        else:
            with connection:
                connection.executemany("UPDATE items SET json = ? WHERE id = ?", fixed)
                connection.executemany("DELETE FROM items WHERE id = ?", dropped)
                connection.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in orphans])
            repaired.extend(f"item {i}: bad text replaced by U+FFFD" for _, i in fixed)
            repaired.extend(f"item {i}: metadata removed (cannot be stored)" for (i,) in dropped)
            if orphans:
                repaired.append(f"deleted {len(orphans)} metadata rows of removed items")
    finally:
        store.close()
    report["ok"] = not problems
    return report
