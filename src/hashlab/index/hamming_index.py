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

Persistence: ``HammingIndex.create(dir, n_bits)`` and ``HammingIndex.open(dir)`` give an
index whose every ``add`` / ``remove`` is committed to disk before it returns (see
:mod:`hashlab.index.storage` for the protocol); ``save(dir)`` writes a compacted copy.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.codes import as_packed
from hashlab.index import storage
from hashlab.index.faiss_backend import FAISS_BACKENDS, FaissEngine
from hashlab.index.filters import Filter, parse_filter
from hashlab.index.multi_index import MultiIndexTables, plan_tables
from hashlab.index.native import load_native, merge_topk
from hashlab.index.scan import knn_scan, range_scan

__all__ = ["HammingIndex", "BACKENDS"]

BACKENDS = ("native", *FAISS_BACKENDS)
#: below this many rows a scan is always cheaper than building tables
MIN_TABLE_ROWS = 2048
#: rows appended after the tables were built are scanned until they exceed this share
TAIL_REBUILD_FRACTION = 0.05
#: a k-NN query may spend this share of a scan probing before it falls back to the scan
KNN_PROBE_BUDGET = 0.25
#: queries tried with MIH before deciding whether the rest of the batch should be scanned
KNN_PILOT_QUERIES = 32

Metadata = dict[str, Any] | None


def _decoded_or_none(text: str) -> Any:
    """Stored metadata as a dict; unreadable JSON reads as no metadata (never an exception)."""
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
        self._tables: MultiIndexTables | None = None
        self._faiss: FaissEngine | None = None
        if backend != "native":
            self._faiss = FaissEngine(backend, self.n_bits, self.backend_params)

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
        cls, path: str | Path, verify: bool = True, backend: str | None = None
    ) -> HammingIndex:
        """Open a saved index; large code files are memory-mapped, not read.

        ``verify`` checks the CRC-32 of every file against the header (reads each file
        once). Raises :class:`~hashlab.index.storage.IndexFormatError` for a truncated,
        corrupted or foreign directory.
        """
        store = storage.IndexStore.open(path, verify=verify)
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

    def save(self, path: str | Path) -> Path:
        """Write a compacted copy (tombstoned rows dropped) to ``path``, atomically.

        The copy is written under a temporary name next to ``path`` and renamed into place.
        Saving onto the index's own directory compacts it and reopens it.
        """
        target = Path(path).resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            tmp.rmdir()
            new_store = storage.IndexStore.create(tmp, self.n_bits, self._backend_record())
            rows = self._live_rows()
            new_store.header["next_id"] = self._next_id
            new_store.append_rows(self._codes[rows], self._ids[rows], None)
            self._copy_metadata(new_store.metadata_connection())
            new_store.close()
            backup = None
            if target.exists():
                backup = target.with_name(f".{target.name}.old")
                shutil.rmtree(backup, ignore_errors=True)
                os.replace(target, backup)
            os.replace(tmp, target)
            storage.fsync_dir(target.parent)
            if backup is not None:
                shutil.rmtree(backup, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if self.path is not None and self.path.resolve() == target:
            reopened = HammingIndex.open(target, verify=False, backend=self.backend)
            self._store.close()
            self.__dict__.update(reopened.__dict__)
        return target

    def _copy_metadata(self, destination) -> None:
        cursor = self._meta.execute(
            "SELECT id, json FROM items WHERE batch < ?", (self._n_batches,)
        )
        with destination:
            while rows := cursor.fetchmany(10000):
                destination.executemany("INSERT INTO items(id, batch, json) VALUES (?, 0, ?)", rows)

    def close(self) -> None:
        """Release the metadata connection (the index stays readable from memory)."""
        if self._store is not None:
            self._store.close()

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
        self._append_in_memory(packed, new_ids)
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
        if metadata is None:
            return None
        if isinstance(metadata, dict) or len(metadata) != n_new:
            raise ValueError(f"metadata must be a sequence of {n_new} dicts (or None entries)")
        texts: list[str | None] = []
        for position, item in enumerate(metadata):
            if item is None:
                texts.append(None)
                continue
            if not isinstance(item, dict):
                raise ValueError(f"metadata[{position}] must be a dict or None, got {item!r}")
            try:
                texts.append(json.dumps(item, allow_nan=False))
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"metadata[{position}] is not JSON-serialisable: {error}"
                ) from None
        return texts

    def _append_in_memory(self, packed: np.ndarray, new_ids: np.ndarray) -> None:
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
        if self._tables is not None:
            self._tables.codes = self._codes  # same rows at the same positions, new buffer
        if self._faiss is not None:
            self._faiss.index = None

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
        if self._faiss is not None:
            self._faiss.index = None
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
                found[item_id] = json.loads(text)
        return [found.get(i) for i in flat]

    # ------------------------------------------------------------------ search ---------
    def _prepare_queries(self, queries: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(as_packed(queries, self.n_bits))

    def _ensure_tables(self) -> MultiIndexTables | None:
        """Multi-index tables over the rows, (re)built when missing or the tail grew."""
        native = load_native()
        if native is None or self._n < MIN_TABLE_ROWS or self.n_bits > 2048:
            return None
        tables = self._tables
        if tables is not None and self._n - tables.n_rows <= TAIL_REBUILD_FRACTION * tables.n_rows:
            return tables
        plan = plan_tables(self.n_bits, self._n, self.n_bytes, self.max_memory_ratio)
        perm = MultiIndexTables.sort_order(native, self._codes, self._n, plan)
        if perm is not None:
            # table 0 is the rows themselves, sorted by key 0 (memory order leaves file order)
            # one fixed-size opaque item per row makes numpy's gather a memcpy per row
            rows_as_items = np.ascontiguousarray(self._codes[: self._n]).view(f"V{self.n_bytes}")
            self._codes = rows_as_items[:, 0][perm].view(np.uint8).reshape(self._n, self.n_bytes)
            self._ids = np.ascontiguousarray(self._ids[: self._n][perm])
            if self._dead is not None:
                dead = np.unpackbits(self._dead, bitorder="little", count=self._n)[perm]
                self._dead = np.packbits(dead, bitorder="little")
            self._mirrors_disk = False
        self._tables = MultiIndexTables(native, self._codes, self._n, self.n_bits, plan)
        return self._tables

    def _faiss_engine(self) -> FaissEngine:
        engine = self._faiss
        if engine.index is None:
            rows = self._live_rows()
            engine.build(self._codes[rows], rows)
        return engine

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
        matches; the answer is still exact over those items.
        """
        q = self._prepare_queries(queries)
        if not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        n_q = q.shape[0]
        allowed = None if filter is None else self.filter_rows(filter)
        if allowed is not None and n_q > 0 and len(allowed) > 0:
            ids, dists = self._filtered_knn(q, k, allowed)
        elif len(self) == 0 or n_q == 0 or allowed is not None:
            dists = np.full((n_q, k), -1, dtype=np.int32)
            ids = np.full((n_q, k), -1, dtype=np.int64)
        elif self._faiss is not None:
            dists, rows = self._faiss_engine().search(q, k)
            ids = np.where(rows >= 0, self._ids[np.clip(rows, 0, None)], -1)
            dists = np.where(rows >= 0, dists, -1)
            dists, ids, _ = merge_topk([(dists, ids, rows)], k)
        else:
            ids, dists = self._native_knn(q, k)
        if with_metadata:
            meta = self.metadata(ids)
            return ids, dists, [meta[i * k : (i + 1) * k] for i in range(n_q)]
        return ids, dists

    def _native_knn(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        tables = self._ensure_tables()
        codes, ids, dead = self._codes, self._ids, self._dead
        if tables is None:
            d, found, _ = knn_scan(codes, (0, self._n), self.n_bits, ids, dead, q, k)
            return found, d
        n_idx = tables.n_rows
        budget = KNN_PROBE_BUDGET * n_idx
        d = np.full((q.shape[0], k), -1, dtype=np.int32)
        found = np.full((q.shape[0], k), -1, dtype=np.int64)
        rows = np.full((q.shape[0], k), -1, dtype=np.int64)
        pilot = min(q.shape[0], KNN_PILOT_QUERIES)
        failed = np.ones(q.shape[0], dtype=bool)
        d[:pilot], found[:pilot], rows[:pilot], failed[:pilot] = tables.knn_search(
            dead, ids, q[:pilot], k, budget
        )
        if pilot < q.shape[0] and failed[:pilot].mean() < 0.5:
            # most pilot queries finished by probing: probe the rest too
            d[pilot:], found[pilot:], rows[pilot:], failed[pilot:] = tables.knn_search(
                dead, ids, q[pilot:], k, budget
            )
        if failed.any():
            where = np.nonzero(failed)[0]
            scanned = knn_scan(codes, (0, n_idx), self.n_bits, ids, dead, q[where], k)
            d[where], found[where], rows[where] = scanned
        if n_idx < self._n:
            tail = knn_scan(codes, (n_idx, self._n), self.n_bits, ids, dead, q, k)
            d, found, rows = merge_topk([(d, found, rows), tail], k)
        return found, d

    def range_search(
        self,
        queries: np.ndarray,
        radius: int,
        with_metadata: bool = False,
        filter: str | Filter | None = None,  # noqa: A002 - the name every engine uses
    ) -> list[tuple[np.ndarray, np.ndarray]] | list[tuple[np.ndarray, np.ndarray, list]]:
        """Every item within ``radius`` (inclusive) of each query.

        Returns one ``(ids, distances)`` per query, sorted by (distance, id); with
        ``with_metadata=True`` each tuple has a third element, the hits' metadata.
        ``filter`` keeps only items whose metadata matches it.
        """
        q = self._prepare_queries(queries)
        if not isinstance(radius, int | np.integer) or radius < 0:
            raise ValueError(f"radius must be a non-negative integer, got {radius!r}")
        radius = int(min(radius, self.n_bits))
        n_q = q.shape[0]
        allowed = None if filter is None else self.filter_rows(filter)
        if allowed is not None and n_q > 0 and len(allowed) > 0:
            lims, rows, dists = range_scan(self._codes[allowed], (0, len(allowed)), None, q, radius)
            rows = allowed[rows]
        elif len(self) == 0 or n_q == 0 or allowed is not None:
            lims = np.zeros(n_q + 1, dtype=np.int64)
            rows = np.zeros(0, dtype=np.int64)
            dists = np.zeros(0, dtype=np.int32)
        elif self._faiss is not None:
            lims, rows, dists = self._faiss_engine().range_search(q, radius)
        else:
            lims, rows, dists = self._native_range(q, radius)
        ids = self._ids[rows] if rows.size else np.zeros(0, dtype=np.int64)
        query_of = np.repeat(np.arange(n_q), np.diff(lims))
        order = np.lexsort((ids, dists, query_of))
        ids, dists = ids[order], dists[order].astype(np.int32)
        results = []
        for i in range(n_q):
            part = slice(lims[i], lims[i + 1])
            if with_metadata:
                results.append((ids[part], dists[part], self.metadata(ids[part])))
            else:
                results.append((ids[part], dists[part]))
        return results

    def _native_range(self, q: np.ndarray, radius: int):
        tables = self._ensure_tables()
        if tables is None or tables.range_cost(radius) >= 0.5 * tables.n_rows:
            return range_scan(self._codes, (0, self._n), self._dead, q, radius)
        parts = [tables.range_search(self._dead, q, radius)]
        if tables.n_rows < self._n:
            parts.append(range_scan(self._codes, (tables.n_rows, self._n), self._dead, q, radius))
        if len(parts) == 1:
            return parts[0]
        (lims_a, rows_a, d_a), (lims_b, rows_b, d_b) = parts
        query_of = np.concatenate(
            [np.repeat(np.arange(q.shape[0]), np.diff(lims_a)),
             np.repeat(np.arange(q.shape[0]), np.diff(lims_b))]
        )  # fmt: skip
        order = np.argsort(query_of, kind="stable")
        lims = lims_a + lims_b
        return lims, np.concatenate([rows_a, rows_b])[order], np.concatenate([d_a, d_b])[order]

    # ------------------------------------------------------------------ filters --------
    def filter_rows(self, filter: str | Filter) -> np.ndarray:  # noqa: A002
        """Sorted live rows whose metadata matches ``filter`` (parsed if a string).

        Items without metadata are judged as ``{}`` (so ``not (x == 1)`` keeps them). The
        metadata is read from the store on every call: exact, and linear in the index size.
        """
        parsed = parse_filter(filter)
        live = self._live_rows()
        if live.size == 0:
            return live
        live_ids = self._ids[live]
        keep = np.full(live.shape, parsed.matches({}), dtype=bool)
        order = np.argsort(live_ids, kind="stable")
        sorted_ids = live_ids[order]
        cursor = self._meta.execute(
            "SELECT id, json FROM items WHERE batch < ?", (self._n_batches,)
        )
        while chunk := cursor.fetchmany(10000):
            chunk_ids = np.fromiter((row[0] for row in chunk), np.int64, len(chunk))
            verdicts = np.fromiter(
                (parsed.matches(_decoded_or_none(row[1])) for row in chunk), bool, len(chunk)
            )
            where = np.searchsorted(sorted_ids, chunk_ids)
            where = np.minimum(where, len(sorted_ids) - 1)
            present = sorted_ids[where] == chunk_ids  # orphan rows of removed items skipped
            keep[order[where[present]]] = verdicts[present]
        return np.sort(live[keep])

    def _filtered_knn(
        self, q: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the allowed rows only (a scan of their codes)."""
        sub_ids = np.ascontiguousarray(self._ids[allowed])
        codes = np.ascontiguousarray(self._codes[allowed])
        dists, ids, _ = knn_scan(codes, (0, len(allowed)), self.n_bits, sub_ids, None, q, k)
        return ids, dists

    # ------------------------------------------------------------------ info -----------
    @property
    def memory_bytes(self) -> int:
        """Bytes of the in-memory index: codes, ids, tombstones and multi-index tables."""
        total = self._codes.nbytes + self._ids.nbytes
        total += 0 if self._dead is None else self._dead.nbytes
        total += 0 if self._tables is None else self._tables.memory_bytes
        if self._faiss is not None and self._faiss.index is not None:
            total += self._faiss.memory_bytes
        return int(total)

    def info(self) -> dict[str, Any]:
        """Size, engine and layout, JSON-able."""
        native = load_native() is not None
        info: dict[str, Any] = {
            "n_items": len(self),
            "n_bits": self.n_bits,
            "n_rows": self._n,
            "n_removed_pending_compaction": self._n_dead,
            "backend": self.backend,
            "engine": ("native C" if native else "numpy") if self.backend == "native" else "faiss",
            "path": None if self.path is None else str(self.path),
            "format_version": storage.FORMAT_VERSION,
            "memory_bytes": self.memory_bytes,
            "raw_bytes": len(self) * (self.n_bytes + 8),
            "next_id": self._next_id,
        }
        if self._tables is not None:
            info["multi_index"] = self._tables.plan.to_dict() | {"rows": self._tables.n_rows}
        elif self.backend == "native":
            plan = plan_tables(self.n_bits, max(self._n, 2), self.n_bytes, self.max_memory_ratio)
            info["multi_index"] = plan.to_dict() | {"rows": 0, "built": False}
        return info

    def __repr__(self) -> str:
        where = f", path={str(self.path)!r}" if self.path else ""
        return f"HammingIndex(n_bits={self.n_bits}, n_items={len(self)}{where})"
