"""``HammingIndex``: exact top-k and radius search over binary codes, with ids and metadata.

Engines, chosen per query batch by a cost model:

* multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012 / TPAMI 2014) for radius queries
  whose probes touch fewer rows than a scan, and for k-NN by growing the probe radius
  (:mod:`hashlab.index.multi_index`);
* an exact linear scan (XOR + popcount on 64-bit words, all cores, top-k by partial
  selection) for everything else (:mod:`hashlab.index.scan`);
* faiss's binary indexes when asked for (``backend="faiss-flat" | "faiss-multihash" |
  "faiss-hnsw"``), for comparison.

Semantics: distances are Hamming distances; results are sorted by distance, ties by id
(deterministic); radii are inclusive (``distance <= radius``; faiss's are strict). Ids are
non-negative int64, unique among live items. ``search`` pads with id -1 and distance -1 when
the index holds fewer than ``k`` items.

Persistence (see :mod:`hashlab.index.storage` for the protocol): ``HammingIndex.create(dir,
n_bits)`` and ``HammingIndex.open(dir, mode="w")`` give the directory's one writer (an
exclusive lock; a second writer gets ``IndexLockedError`` naming the holder's pid), whose
every ``add`` / ``remove`` is durable before it returns; a full disk raises
``IndexFullError`` (an ``OSError`` with errno ENOSPC) and keeps the last committed state.
``HammingIndex.open(dir)`` (``mode="r"``, the default) is a reader: it never writes into the
directory, and :meth:`HammingIndex.refresh` catches up with a live writer's commits.
``save(dir)`` writes a compacted copy; onto the index's own directory it compacts in place,
crash-safe at every step. Metadata is validated before anything is written (a rejected
``add`` changes nothing); stored metadata that cannot be shown comes back as
``{"_hashlab_error": reason}`` instead of breaking a search.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.codes import as_packed
from hashlab.index import storage
from hashlab.index.engines import Engine, RangeResult, create_engine, list_engines
from hashlab.index.engines.native import MIN_TABLE_ROWS
from hashlab.index.filters import Filter, parse_filter

__all__ = ["HammingIndex", "BACKENDS", "MIN_TABLE_ROWS", "IdRangeResult"]

#: engine names ``backend=`` accepts (see :mod:`hashlab.index.engines`)
BACKENDS = tuple(list_engines())

Metadata = dict[str, Any] | None


def _metadata_object(text: str | None) -> dict[str, Any] | None:
    """Stored metadata text as the object an engine stores (what does not parse: none)."""
    value = None if text is None else _loads_or_none(text)
    return value if isinstance(value, dict) else None


def _loads_or_none(text: str) -> Any:
    """Stored metadata for a filter to judge; what does not parse matches as no metadata."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None


class HammingIndex:
    """Exact Hamming-space search over (N, K) binary codes with ids and metadata."""

    def __init__(
        self,
        n_bits: int,
        backend: str = "native",
        backend_params: dict[str, Any] | None = None,
        max_memory_ratio: float | None = 1.2,
    ) -> None:
        if not isinstance(n_bits, int | np.integer) or n_bits < 1:
            raise ValueError(f"n_bits must be a positive integer, got {n_bits!r}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        if backend != "native" and backend.startswith("faiss") and int(n_bits) % 8:
            raise ValueError(f"faiss binary indexes need a multiple of 8 bits, got {n_bits}")
        self.n_bits = int(n_bits)
        self.n_bytes = (self.n_bits + 7) // 8
        self.backend = backend
        self.backend_params = dict(backend_params or {})
        self.max_memory_ratio = max_memory_ratio
        self._codes = np.zeros((0, self.n_bytes), dtype=np.uint8)
        self._ids = np.zeros(0, dtype=np.int64)
        self._dead: np.ndarray | None = None  # bit-packed tombstones (little bit order)
        self._n = 0
        self._n_dead = 0
        self._next_id = 0
        self._store: storage.IndexStore | None = None
        self._mirrors_disk = False  # memory rows are the file rows (so a remap can grow them)
        self._meta = storage.open_metadata(":memory:")
        self._n_batches = 0
        self._engine: Engine = self._new_engine()

    # ------------------------------------------------------------------ persistence ----
    @classmethod
    def create(cls, path: str | Path, n_bits: int, **kwargs: Any) -> HammingIndex:
        """A new, empty index stored at ``path``; every add/remove is committed there."""
        index = cls(n_bits, **kwargs)
        index._attach(storage.IndexStore.create(path, index.n_bits, index._backend_record()))
        index._mirrors_disk = True
        return index

    @classmethod
    def open(
        cls,
        path: str | Path,
        mode: str = "r",
        verify: bool = True,
        backend: str | None = None,
    ) -> HammingIndex:
        """Open a saved index; large code files are memory-mapped, not read.

        ``mode="r"`` (default) reads and never writes into the directory, also beside a
        live writer; ``mode="w"`` takes the writer lock (``IndexLockedError`` if another
        process holds it) and first drops what a killed writer left uncommitted.
        ``verify`` checks the CRC-32 of every file against the header (reads each file
        once). Raises :class:`~hashlab.index.storage.IndexFormatError` for a truncated,
        corrupted or foreign directory.
        """
        for attempt in range(20):
            store = storage.IndexStore.open(path, mode=mode, verify=verify)
            try:
                return cls._from_store(store, backend)
            except (FileNotFoundError, storage.IndexFormatError, sqlite3.OperationalError):
                store.close()
                # a reader can race a compaction that deletes the files its header named
                # between the store's checks and reading the arrays: retry on the new header
                if mode != "r" or attempt == 19 or not storage.header_changed(path, store.header):
                    raise
            except BaseException:
                store.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    @classmethod
    def _from_store(cls, store: storage.IndexStore, backend: str | None = None) -> HammingIndex:
        """An index holding what ``store``'s header commits, attached to it."""
        path = store.path
        record = store.header.get("backend") or {}
        index = cls(
            store.header["n_bits"],
            backend=backend or record.get("name", "native"),
            backend_params=record.get("params"),
            max_memory_ratio=record.get("max_memory_ratio", 1.2),
        )
        codes, ids, removed, _ = store.read_arrays()
        if codes.shape[1] != index.n_bytes:
            raise storage.IndexFormatError(f"{path}: code width disagrees with the header")
        index._codes, index._ids, index._n = codes, ids, len(ids)
        alive = storage.alive_mask(ids, removed)
        if alive is not None:
            index._dead = np.packbits(~alive, bitorder="little")
            index._n_dead = int((~alive).sum())
            live_ids = ids[alive]
        else:
            live_ids = ids
        if len(np.unique(live_ids)) != len(live_ids):
            raise storage.IndexFormatError(f"{path} is corrupted: live ids are not unique")
        index._next_id = store.header["next_id"]
        index._n_batches = store.header["n_batches"]
        index._attach(store)
        index._mirrors_disk = True
        index._reset_engine()
        return index

    def _attach(self, store: storage.IndexStore) -> None:
        self._meta.close()
        self._store = store
        self._meta = store.metadata_connection()

    def _backend_record(self) -> dict[str, Any]:
        return {
            "name": self.backend,
            "params": self.backend_params,
            "max_memory_ratio": self.max_memory_ratio,
        }

    @property
    def path(self) -> Path | None:
        return None if self._store is None else self._store.path

    @property
    def read_only(self) -> bool:
        """Whether this index was opened as a reader (adds and removes are refused)."""
        return self._store is not None and not self._store.writable

    def save(self, path: str | Path) -> Path:
        """Write a compacted copy (tombstoned rows dropped) to ``path``; crash-safe.

        * onto the index's own directory: compacts in place (a new generation of files, then
          the header naming them, then the old files go) and keeps the index usable;
        * onto another index's directory: replaces its contents the same way, under its
          writer lock (``IndexLockedError`` if it is in use);
        * onto a new or empty directory: built under a hidden temporary name beside it and
          renamed into place.

        A kill at any moment leaves either the old or the new contents, never neither.
        """
        target = Path(path).resolve()
        rows = self._live_rows()
        codes, ids = self._codes[rows], self._ids[rows]
        meta_rows = self._live_metadata_rows(ids)
        record = self._backend_record()
        if self._store is not None and self._store.path.resolve() == target:
            self._store.replace_contents(codes, ids, meta_rows, self._next_id, record)
            reloaded = HammingIndex._from_store(self._store, self.backend)
            self.__dict__.pop("_filter_cache", None)
            self.__dict__.update(reloaded.__dict__)
            return target
        if (target / storage.HEADER).exists():
            other = storage.IndexStore.open(target, mode="w", verify=False)
            try:
                other.replace_contents(codes, ids, meta_rows, self._next_id, record, self.n_bits)
            finally:
                other.close()
            return target
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise FileExistsError(f"{target} already exists and is not an empty directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            new_store = storage.IndexStore.create(tmp, self.n_bits, record)
            try:
                new_store.replace_contents(codes, ids, meta_rows, self._next_id)
            finally:
                new_store.close()
            os.rename(tmp, target)  # atomic; replaces an empty directory
            storage.fsync_dir(target.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def _live_metadata_rows(self, live_ids: np.ndarray) -> list[tuple[int, str]]:
        """(id, json) of the committed metadata of live items (orphans of removals dropped)."""
        wanted = set(live_ids.tolist())
        cursor = self._meta.execute(
            "SELECT id, json FROM items WHERE batch < ? ORDER BY id", (self._n_batches,)
        )
        rows: list[tuple[int, str]] = []
        while chunk := cursor.fetchmany(10000):
            rows.extend(row for row in chunk if row[0] in wanted)
        return rows

    def close(self) -> None:
        """Release the metadata connection and the writer lock (memory stays readable)."""
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> HammingIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def refresh(self) -> bool:
        """Catch up with the commits of the index's writer (a reader's call); True if changed.

        Only what was appended since the last look is read (its CRC continued from the
        known prefix); a compaction or any prefix change reloads the whole index. The
        writer itself is always current, so this returns False there.
        """
        store = self._store
        if store is None or store.writable:
            return False
        state, previous = store.poll()
        if state == "same":
            return False
        if state == "replaced":
            fresh = storage.IndexStore.open(store.path, mode="r", verify=True)
            try:
                reloaded = HammingIndex._from_store(fresh, self.backend)
            except BaseException:
                fresh.close()
                raise
            store.close()
            self.__dict__.pop("_filter_cache", None)
            self.__dict__.update(reloaded.__dict__)
            return True
        header = store.header
        old_rows = previous["n_rows"]
        codes, ids = store.read_rows(old_rows, header["n_rows"])
        records = store.read_removals(previous["n_removed_records"], header["n_removed_records"])
        self._append_in_memory(codes, ids, batch_bound=header["n_batches"])
        if len(records):
            # an old row carrying a newly removed id dies (its row is below every new record's
            # row count); a new row dies when a new record came after it
            hit = self._rows_of_ids(np.unique(records[:, 0]))
            dead = [hit[hit < old_rows]]
            alive = storage.alive_mask(ids, records, first_row=old_rows)
            if alive is not None:
                dead.append(old_rows + np.nonzero(~alive)[0])
            dead_rows = np.unique(np.concatenate(dead))
            dead_rows = dead_rows[self._live_mask_of(dead_rows)]
            self._mark_dead(dead_rows)
        self._next_id = header["next_id"]
        self._n_batches = header["n_batches"]
        return True

    def _mark_dead(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        if self._dead is None:
            self._dead = np.zeros((max(self._n, 1) + 7) // 8, dtype=np.uint8)
        np.bitwise_or.at(self._dead, rows >> 3, (1 << (rows & 7)).astype(np.uint8))
        self._n_dead += len(rows)
        self._engine.remove(rows)

    # ------------------------------------------------------------------ contents -------
    def __len__(self) -> int:
        return self._n - self._n_dead

    def __contains__(self, item_id: object) -> bool:
        """Whether ``item_id`` is live (added and not removed): ``5 in index``."""
        if isinstance(item_id, bool) or not isinstance(item_id, (int, np.integer)):
            return False  # True == 1 in Python; an id is never a flag
        return len(self._rows_of_ids(np.asarray([item_id], dtype=np.int64))) == 1

    def _live_rows(self) -> np.ndarray:
        rows = np.arange(self._n, dtype=np.int64)
        if self._dead is None or self._n_dead == 0:
            return rows
        dead = np.unpackbits(self._dead, bitorder="little", count=self._n).astype(bool)
        return rows[~dead]

    def _live_mask_of(self, rows: np.ndarray) -> np.ndarray:
        if self._dead is None:
            return np.ones(rows.shape, dtype=bool)
        return ((self._dead[rows >> 3] >> (rows & 7).astype(np.uint8)) & 1) == 0

    def _rows_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """Live rows whose id is in ``ids``."""
        ids_view = self._ids[: self._n]
        rows = np.nonzero(np.isin(ids_view, ids))[0]
        return rows[self._live_mask_of(rows)]

    def add(
        self,
        codes: np.ndarray,
        ids: Sequence[int] | np.ndarray | None = None,
        metadata: Sequence[Metadata] | None = None,
    ) -> np.ndarray:
        """Add codes ((N, K) 0/1 bits or (N, ceil(K/8)) packed uint8); return their ids.

        ``ids`` default to consecutive integers after the largest id ever added. An id that
        is already live, or repeated within the batch, is rejected (nothing is added).
        ``metadata`` is one JSON-able dict (or None) per code.
        """
        packed = as_packed(codes, self.n_bits)
        n_new = packed.shape[0]
        new_ids = self._check_new_ids(ids, n_new)
        texts = self._encode_metadata(metadata, n_new)
        if self._store is not None:
            self._store.append_rows(packed, new_ids, texts)
        elif texts is not None:
            rows = [(int(i), self._n_batches, t) for i, t in zip(new_ids, texts, strict=True)]
            with self._meta:
                self._meta.executemany(
                    "INSERT OR REPLACE INTO items(id, batch, json) VALUES (?, ?, ?)",
                    [row for row in rows if row[2] is not None],
                )
        self._n_batches += 1
        self._append_in_memory(packed, new_ids, texts)
        if n_new:
            self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        return new_ids

    def _check_new_ids(self, ids: Any, n_new: int) -> np.ndarray:
        if ids is None:
            return np.arange(self._next_id, self._next_id + n_new, dtype=np.int64)
        array = np.asarray(ids)
        if array.shape != (n_new,):
            raise ValueError(f"got {array.size} ids for {n_new} codes (ids must be 1-D)")
        if n_new == 0:
            return array.astype(np.int64)
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"ids must be integers, got dtype {array.dtype}")
        array = array.astype(np.int64)
        if array.min() < 0:
            raise ValueError(f"ids must be non-negative, got {int(array.min())}")
        unique = np.unique(array)
        if len(unique) != n_new:
            repeated = unique[np.bincount(np.searchsorted(unique, array)) > 1][:5]
            raise ValueError(f"duplicate ids within the batch: {repeated.tolist()}")
        if self._n and array.min() < self._next_id:
            taken = self._ids[self._rows_of_ids(array)]
            if taken.size:
                raise ValueError(f"ids already in the index: {np.sort(taken)[:5].tolist()}")
        return array

    @staticmethod
    def _encode_metadata(metadata: Any, n_new: int) -> list[str | None] | None:
        """Validate every item before anything is written (a bad one rejects the batch)."""
        if metadata is None:
            return None
        if isinstance(metadata, dict | str | bytes) or len(metadata) != n_new:
            raise storage.MetadataError(
                f"metadata must be a sequence of {n_new} dicts (or None entries)"
            )
        return [
            None if item is None else storage.encode_metadata(item, f"metadata[{position}]")
            for position, item in enumerate(metadata)
        ]

    def _append_in_memory(
        self,
        packed: np.ndarray,
        new_ids: np.ndarray,
        texts: Sequence[str | None] | None = None,
        batch_bound: int | None = None,
    ) -> None:
        """Append rows in memory and to the engine (with their metadata when it filters).

        ``texts``: the rows' metadata as JSON text; when None and the engine filters
        metadata itself, it is read from the store (commits before ``batch_bound``).
        """
        n_new = len(new_ids)
        if n_new == 0:
            return
        total = self._n + n_new
        if self._mirrors_disk and self._store is not None and isinstance(self._codes, np.memmap):
            # the files already hold the rows: map the longer files instead of copying
            codes, ids, _, _ = self._store.read_arrays()
            self._codes, self._ids = codes, ids
        else:
            if total > self._codes.shape[0] or isinstance(self._codes, np.memmap):
                # grow by 1/8: amortised appends without doubling memory (target <= 1.2x)
                capacity = max(total, self._codes.shape[0] + self._codes.shape[0] // 8)
                codes = np.empty((capacity, self.n_bytes), dtype=np.uint8)
                codes[: self._n] = self._codes[: self._n]
                ids = np.empty(capacity, dtype=np.int64)
                ids[: self._n] = self._ids[: self._n]
                self._codes, self._ids = codes, ids
            self._codes[self._n : total] = packed
            self._ids[self._n : total] = new_ids
        if self._dead is not None:
            grown = np.zeros((total + 7) // 8, dtype=np.uint8)
            grown[: self._dead.shape[0]] = self._dead[: grown.shape[0]]
            self._dead = grown
        self._n = total
        if getattr(self._engine, "filters_metadata", False):
            if texts is None:
                texts = self._metadata_texts(new_ids, batch_bound)
            self._engine.add(packed, new_ids, metadata=[_metadata_object(t) for t in texts])
        else:
            self._engine.add(packed, new_ids)

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove live items by id; returns how many. Unknown ids raise KeyError (no change)."""
        array = np.unique(np.asarray(ids, dtype=np.int64).ravel())
        rows = self._rows_of_ids(array)
        if len(rows) != len(array):
            missing = np.setdiff1d(array, self._ids[rows])[:5]
            raise KeyError(f"ids not in the index: {missing.tolist()}")
        if len(rows) == 0:
            return 0
        if self._store is not None:
            self._store.append_removals(array)
        else:
            with self._meta:
                self._meta.executemany("DELETE FROM items WHERE id = ?", [(int(i),) for i in array])
        if self._dead is None:
            self._dead = np.zeros((max(self._n, 1) + 7) // 8, dtype=np.uint8)
        np.bitwise_or.at(self._dead, rows >> 3, (1 << (rows & 7)).astype(np.uint8))
        self._n_dead += len(rows)
        self._engine.remove(rows)
        return len(rows)

    def metadata(self, ids: Sequence[int] | np.ndarray) -> list[Metadata]:
        """Metadata dict (or None) for each id; -1 (padding) gives None."""
        flat = [int(i) for i in np.asarray(ids, dtype=np.int64).ravel()]
        found: dict[int, Metadata] = {}
        wanted = sorted({i for i in flat if i >= 0})
        for start in range(0, len(wanted), 900):  # SQLite's host parameter limit
            part = wanted[start : start + 900]
            marks = ",".join("?" * len(part))
            query = f"SELECT id, json FROM items WHERE batch < ? AND id IN ({marks})"
            for item_id, text in self._meta.execute(query, (self._n_batches, *part)):
                found[item_id] = storage.decode_metadata(text)
        return [found.get(i) for i in flat]

    def _metadata_texts(self, ids: np.ndarray, batch_bound: int | None = None) -> list[str | None]:
        """Committed metadata JSON text (or None) per id, for engines that filter it."""
        bound = self._n_batches if batch_bound is None else batch_bound
        found: dict[int, str] = {}
        wanted = np.unique(np.asarray(ids, dtype=np.int64)).tolist()
        for start in range(0, len(wanted), 900):  # SQLite's host parameter limit
            part = wanted[start : start + 900]
            marks = ",".join("?" * len(part))
            query = f"SELECT id, json FROM items WHERE batch < ? AND id IN ({marks})"
            found.update(self._meta.execute(query, (bound, *part)))
        return [found.get(int(i)) for i in ids]

    # ------------------------------------------------------------------ search ---------
    def _prepare_queries(self, queries: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(as_packed(queries, self.n_bits))

    # ------------------------------------------------------------------ engine -------
    def _new_engine(self) -> Engine:
        """The engine named by ``backend``; the native one reads our rows without a copy."""
        params = dict(self.backend_params)
        # the engine reads this object's arrays: an index that takes over another's state
        # (save in place, refresh) gets a fresh engine on its next search (_current_engine)
        self._engine_owner = self
        if self.backend == "native":
            params.setdefault("max_memory_ratio", self.max_memory_ratio)
            params["rows_source"] = lambda: (self._codes, self._ids)
            params["reorder"] = self._reorder_rows
        engine = create_engine(self.backend, self.n_bits, **params)
        if hasattr(engine, "read_only") and self.read_only:
            # an engine holding its own copy (Milvus) is written by the index's one writer;
            # a reader's engine follows the rows without writing them a second time
            engine.read_only = True
        return engine

    def _reset_engine(self) -> None:
        """A fresh engine holding every row (after open or a reopen): tombstones included."""
        self._engine = self._new_engine()
        if self._n:
            ids = self._ids[: self._n]
            if getattr(self._engine, "filters_metadata", False):
                metadata = [_metadata_object(t) for t in self._metadata_texts(ids)]
                self._engine.add(self._codes[: self._n], ids, metadata=metadata)
            else:
                self._engine.add(self._codes[: self._n], ids)
            dead = self._dead_rows()
            if dead.size:
                self._engine.remove(dead)

    def _dead_rows(self) -> np.ndarray:
        if self._dead is None or self._n_dead == 0:
            return np.zeros(0, dtype=np.int64)
        flags = np.unpackbits(self._dead, bitorder="little", count=self._n).astype(bool)
        return np.nonzero(flags)[0]

    def _reorder_rows(self, perm: np.ndarray) -> None:
        """Row ``i`` becomes old row ``perm[i]`` (the native engine sorts rows by its key 0).

        The bucket-hash table is then the rows themselves: probes read codes sequentially and
        no permutation is stored. Memory rows stop mirroring the file rows.
        """
        rows_as_items = np.ascontiguousarray(self._codes[: self._n]).view(f"V{self.n_bytes}")
        # one opaque item per row makes numpy's gather a memcpy per row
        self._codes = rows_as_items[:, 0][perm].view(np.uint8).reshape(self._n, self.n_bytes)
        self._ids = np.ascontiguousarray(self._ids[: self._n][perm])
        if self._dead is not None:
            dead = np.unpackbits(self._dead, bitorder="little", count=self._n)[perm]
            self._dead = np.packbits(dead, bitorder="little")
        self._mirrors_disk = False

    def _current_engine(self) -> Engine:
        if self.__dict__.get("_engine_owner") is not self:
            self._reset_engine()
        return self._engine

    def _allowed_rows(self, filter: str | Filter | None) -> np.ndarray | None:  # noqa: A002
        """Rows a filtered search may return, numbered after any reorder the engine needs."""
        if filter is None:
            return None
        prepare = getattr(self._current_engine(), "prepare", None)
        if prepare is not None:
            prepare()  # a table build reorders rows: row numbers are taken after it
        return self.filter_rows(filter)

    def _filter_plan(
        self,
        filter: str | Filter | None,  # noqa: A002
    ) -> tuple[Filter | None, np.ndarray | None]:
        """(filter the engine evaluates itself, or None; allowed rows when hashlab does).

        An engine that stores metadata (``filters_metadata``: Milvus) gets the filter when
        it can translate it exactly (``can_filter``); otherwise hashlab evaluates it over
        its metadata store and the engine gets the matching rows.
        """
        if filter is None:
            return None, None
        parsed = parse_filter(filter)
        engine = self._current_engine()
        can_filter = getattr(engine, "can_filter", None)
        if getattr(engine, "filters_metadata", False) and can_filter and can_filter(parsed):
            return parsed, None
        return None, self._allowed_rows(parsed)

    @property
    def engine(self) -> Engine:
        """The search engine behind this index (see :mod:`hashlab.index.engines`)."""
        return self._current_engine()

    def search(
        self,
        queries: np.ndarray,
        k: int,
        with_metadata: bool = False,
        filter: str | Filter | None = None,  # noqa: A002 - the name every engine uses
    ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, list[list[Metadata]]]:
        """Exact k nearest codes: ``(ids, distances)``, each (Q, k), sorted by (distance, id).

        With ``with_metadata=True`` a third element holds each hit's metadata. ``filter``
        (see :mod:`hashlab.index.filters`) restricts the result to items whose metadata
        matches; the answer is still exact over those items. Approximate engines
        (``faiss-hnsw``, the k-NN of ``faiss-hash`` / ``faiss-multihash``) say so in
        ``info()["engine"]["exact_knn"]``.
        """
        q = self._prepare_queries(queries)
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        n_q = q.shape[0]
        pushed, allowed = self._filter_plan(filter)
        if len(self) == 0 or n_q == 0 or (allowed is not None and len(allowed) == 0):
            dists = np.full((n_q, k), -1, dtype=np.int32)
            ids = np.full((n_q, k), -1, dtype=np.int64)
        else:
            extra = {} if pushed is None else {"filter": pushed}
            dists, rows = self._current_engine().knn(q, k, allowed, **extra)
            ids = np.where(rows >= 0, self._ids[np.clip(rows, 0, None)], -1)
        if with_metadata:
            meta = self.metadata(ids)
            return ids, dists, [meta[i * k : (i + 1) * k] for i in range(n_q)]
        return ids, dists

    def range_search(
        self,
        queries: np.ndarray,
        radius: int,
        with_metadata: bool = False,
        filter: str | Filter | None = None,  # noqa: A002 - the name every engine uses
    ) -> IdRangeResult | list[tuple[np.ndarray, np.ndarray, list]]:
        """Every item within ``radius`` (inclusive) of each query.

        Returns one ``(ids, distances)`` per query, sorted by (distance, id): an
        :class:`IdRangeResult`, flat arrays with a lazy per-query view (``result[i]``);
        with ``with_metadata=True`` a list whose tuples have a third element, the hits'
        metadata. ``filter`` keeps only items whose metadata matches it.
        """
        q = self._prepare_queries(queries)
        if not isinstance(radius, int | np.integer) or radius < 0:
            raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
        radius = int(min(radius, self.n_bits))
        n_q = q.shape[0]
        pushed, allowed = self._filter_plan(filter)
        if len(self) == 0 or n_q == 0 or (allowed is not None and len(allowed) == 0):
            found = RangeResult.empty(n_q)
        else:
            extra = {} if pushed is None else {"filter": pushed}
            found = self._current_engine().range(q, radius, allowed, **extra)
        ids = self._ids[found.rows] if found.rows.size else np.zeros(0, dtype=np.int64)
        result = IdRangeResult(found.offsets, ids, found.distances)
        if with_metadata:
            meta = self.metadata(ids)
            off = found.offsets
            return [(*result[i], meta[off[i] : off[i + 1]]) for i in range(n_q)]
        return result

    def explain(
        self,
        queries: np.ndarray,
        radius: int | None = None,
        k: int | None = None,
        filter: str | Filter | None = None,  # noqa: A002
    ) -> dict[str, Any]:
        """The plan a batch of queries would get and why (native engine: every plan's cost).

        With ``filter``, ``"filter"`` says who evaluates it: ``pushed_down`` (the engine,
        e.g. Milvus with ``expression``) or hashlab over its metadata store, with the reason.
        """
        q = self._prepare_queries(queries)
        engine = self._current_engine()
        if hasattr(engine, "explain"):
            plan = dict(engine.explain(q, radius=radius, k=k))
        else:
            plan = {"plan": self.backend, "reason": f"the {self.backend} engine has one plan"}
        if filter is not None:
            pushed, _ = self._filter_plan(filter)
            if pushed is not None:
                plan["filter"] = {
                    "pushed_down": True,
                    "expression": engine.filter_expression(pushed),
                    "reason": f"the {self.backend} engine evaluates the filter itself",
                }
            else:
                why = (
                    "the filter has no exact form in the engine's expression language (a "
                    "negation that must also keep items without the field or with another "
                    "type); hashlab evaluates it over the metadata store and passes the "
                    "matching rows"
                    if getattr(engine, "filters_metadata", False)
                    else f"hashlab evaluates it over the metadata store; the {self.backend} "
                    "engine searches the matching rows"
                )
                plan["filter"] = {"pushed_down": False, "expression": None, "reason": why}
        return plan

    # ------------------------------------------------------------------ filters --------
    def filter_rows(self, filter: str | Filter) -> np.ndarray:  # noqa: A002
        """Sorted live rows whose metadata matches ``filter`` (parsed if a string).

        Items without metadata are judged as ``{}`` (so ``not (x == 1)`` keeps them). The
        matching ids are computed from the metadata store (exact, linear in the index size)
        and remembered until the index changes, so paging through one filtered query reads
        the metadata once.
        """
        parsed = parse_filter(filter)
        key = (parsed.to_milvus(), self._n, self._n_dead, self._n_batches)
        cache = self.__dict__.setdefault("_filter_cache", {})
        matching = cache.get(key)
        if matching is None:
            matching = self._matching_ids(parsed)
            if len(cache) >= 16:
                cache.pop(next(iter(cache)))
            cache[key] = matching
        rows = np.nonzero(np.isin(self._ids[: self._n], matching, assume_unique=False))[0]
        return rows[self._live_mask_of(rows)]

    def _matching_ids(self, parsed: Filter) -> np.ndarray:
        """Sorted ids of the live items whose metadata matches ``parsed``."""
        live_ids = np.sort(self._ids[self._live_rows()])
        if live_ids.size == 0:
            return live_ids
        keep = np.full(live_ids.shape, parsed.matches({}), dtype=bool)
        cursor = self._meta.execute(
            "SELECT id, json FROM items WHERE batch < ?", (self._n_batches,)
        )
        while chunk := cursor.fetchmany(10000):
            chunk_ids = np.fromiter((row[0] for row in chunk), np.int64, len(chunk))
            verdicts = np.fromiter(
                (parsed.matches(_loads_or_none(row[1])) for row in chunk), bool, len(chunk)
            )
            where = np.minimum(np.searchsorted(live_ids, chunk_ids), len(live_ids) - 1)
            present = live_ids[where] == chunk_ids  # orphan rows of removed items skipped
            keep[where[present]] = verdicts[present]
        return live_ids[keep]

    # ------------------------------------------------------------------ info -----------
    @property
    def memory_bytes(self) -> int:
        """Bytes of the in-memory index: codes, ids, tombstones and the engine's own."""
        total = self._codes.nbytes + self._ids.nbytes
        total += 0 if self._dead is None else self._dead.nbytes
        return int(total + self._current_engine().memory_bytes())

    def info(self) -> dict[str, Any]:
        """Size, engine (its layout, bytes per item of every plan, the last plan), JSON-able."""
        return {
            "n_items": len(self),
            "n_bits": self.n_bits,
            "n_rows": self._n,
            "n_removed_pending_compaction": self._n_dead,
            "backend": self.backend,
            "path": None if self.path is None else str(self.path),
            "format_version": storage.FORMAT_VERSION,
            "memory_bytes": self.memory_bytes,
            "raw_bytes": len(self) * (self.n_bytes + 8),
            "next_id": self._next_id,
            "engine": self._current_engine().info(),
        }

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"HammingIndex(n_bits={self.n_bits}, n_items={len(self)}{where})"


class IdRangeResult(RangeResult):
    """:class:`~hashlab.index.engines.RangeResult` whose ``rows`` are item ids.

    ``result[i]`` is ``(ids, distances)`` of query ``i``; ``result.ids`` the flat ids.
    """

    @property
    def ids(self) -> np.ndarray:
        return self.rows
