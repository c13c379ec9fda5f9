"""Milvus as an engine: packed codes in a ``BINARY_VECTOR`` collection, searched with ``HAMMING``.

One code path for an embedded milvus-lite file (``uri="photos.db"``, pymilvus 2.4 with
milvus-lite 2.4.12: 3.x refuses binary vectors) and a Milvus server or cluster
(``uri="http://host:19530"``, ``token=...``).

Collection layout (one collection per index, named by ``collection``)::

    row   INT64 primary key   the engine row number (HammingIndex maps rows <-> ids)
    key   INT64               the tie key (HammingIndex passes its ids)
    code  BINARY_VECTOR       dim = 8 * ceil(n_bits / 8); padding bits are zero on both
                              sides, so Hamming distances are those of the n_bits
    meta  JSON                the item's metadata, so a search can be filtered in Milvus

The description records ``n_bits``; opening a collection with another code length or another
schema is a :class:`MilvusSchemaError`, never a silent mix.

What Milvus does differently from hashlab, and how this module bridges it (each checked
against a brute-force scan in ``tests/test_milvus.py``):

* **Radius.** Milvus's HAMMING range search keeps ``range_filter <= d < radius`` (its radius
  is strict, ``range_filter`` an inclusive lower bound that must be below ``radius``);
  hashlab's radius is inclusive, so ``radius + 1`` is sent.
* **Ties.** Milvus breaks distance ties in no fixed order (seen here: every query of a
  tie-heavy set came back in another order than by row). k-NN asks for ``k + 1`` hits; when
  the (k+1)-th is as close as the k-th, every row at that distance is fetched with a range
  search of the one-distance band ``[d, d + 1)`` and the smallest tie keys are kept.
* **Limits.** ``topK <= 16,384`` and ``nq <= 16,384``: queries go in batches, and a range or
  band search that comes back full is split (by distance, then by row range) until no part
  is full, so a result is never silently truncated.
* **Filters.** hashlab's filter text is parsed by :func:`hashlab.index.filters.parse_filter`
  (a syntax error is a :class:`~hashlab.index.filters.FilterError` before Milvus is called;
  Milvus itself answers some malformed expressions with an empty result instead of an error)
  and translated by :func:`milvus_expression` into a Milvus expression over the ``meta``
  JSON field, which ``HammingIndex`` fills with each item's metadata (at add, replay and
  refresh). ``HammingIndex`` pushes a filter down when :meth:`MilvusEngine.can_filter`
  says the translation is exact; otherwise (a negation that must also keep items without the
  field or with another type) it evaluates the filter over its own metadata store and passes
  the matching rows, and ``HammingIndex.explain(..., filter=...)`` says which road was taken.

Readers: an index opened ``mode="r"`` marks its engine ``read_only``: the writer writes the
collection, the reader's engine only counts the rows it follows (searches are limited to
``row < n``, so rows the writer added since the reader's last refresh stay hidden) and never
inserts or deletes (two processes inserting the same rows would duplicate them).

Reopening: ``HammingIndex`` rebuilds an engine by replaying its adds and removes. When the
collection already holds a row being replayed, a sample of the replayed rows is compared
with Milvus's copy (code, tie key and metadata); if they agree nothing is written,
otherwise the range is upserted (the hashlab index is the source of truth). Rows Milvus
holds beyond the replayed ones (an add torn by a crash) are hidden from searches and
overwritten by the next add.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import numpy as np

from hashlab.errors import ConfigError, HashlabValueError
from hashlab.index.engines import RangeResult, register_engine
from hashlab.index.filters import And, Compare, Filter, In, Like, Not, Or, parse_filter

__all__ = [
    "check_uri",
    "MilvusEngine",
    "MilvusConnectionError",
    "MilvusSchemaError",
    "MILVUS_MAX_TOPK",
]

#: Milvus refuses a topK above this, and more query vectors than this in one request
MILVUS_MAX_TOPK = 16384
MILVUS_MAX_NQ = 16384
#: hits asked for in one request (nq * limit), so one gRPC answer stays far below 64 MB
MAX_HITS_PER_REQUEST = 1 << 20
INDEX_TYPES = ("BIN_FLAT", "BIN_IVF_FLAT")
SCHEMA_VERSION = 1
_DESCRIPTION = re.compile(r"^hashlab codes v(\d+) n_bits=(\d+)$")
_COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_FIELDS = ("row", "key", "code", "meta")
#: replayed rows compared with Milvus's copy when a collection is reopened
VERIFY_SAMPLE = 64


class MilvusConnectionError(HashlabValueError):
    """The Milvus URI cannot be opened: no server answers there, or the file cannot be used."""


class MilvusSchemaError(HashlabValueError):
    """The named collection exists with another code length or another schema."""


def _import_pymilvus() -> Any:
    try:
        with warnings.catch_warnings():
            # pymilvus 2.4 imports pkg_resources, which warns on every setuptools >= 81
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            import pymilvus
    except ImportError:
        raise ConfigError(
            "the milvus engine needs pymilvus 2.4 and milvus-lite 2.4: pip install -e '.[milvus]'"
        ) from None
    # pymilvus logs every failed RPC at ERROR before raising; the raised error says it once
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    return pymilvus


def check_uri(uri: Any) -> tuple[str, bool]:
    """(uri to pass to pymilvus, whether it is a local milvus-lite file)."""
    if not isinstance(uri, str | Path) or not str(uri).strip():
        raise ConfigError(
            "the milvus engine needs uri='file.db' (embedded milvus-lite) or "
            f"uri='http://host:19530' (a Milvus server), got {uri!r}"
        )
    text = str(uri).strip()
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https", "tcp", "grpc", "unix"):
        if parsed.scheme != "unix" and not parsed.hostname:
            raise ConfigError(f"Milvus server URI {text!r} has no host; expected http://host:19530")
        try:
            parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            raise ConfigError(f"Milvus server URI {text!r} has a bad port") from None
        return text, False
    if "://" in text:
        raise ConfigError(
            f"Milvus URI {text!r} has an unknown scheme; expected a local file ending in .db "
            "or http(s)://host:port"
        )
    path = Path(text).expanduser()
    if path.suffix != ".db":
        raise ConfigError(
            f"Milvus URI {text!r} is neither a milvus-lite file ending in .db "
            "nor a server address http(s)://host:port"
        )
    if not path.parent.is_dir():
        raise ConfigError(f"Milvus URI {text!r}: directory {str(path.parent)!r} does not exist")
    if path.exists() and not path.is_file():
        raise ConfigError(f"Milvus URI {text!r} names a directory, expected a .db file")
    return str(path.resolve()), True


@register_engine("milvus")
class MilvusEngine:
    """Codes in a Milvus collection; exact k-NN / range search with ``BIN_FLAT``."""

    name: ClassVar[str]
    exact: ClassVar[bool] = True
    has_range: ClassVar[bool] = True
    #: add() takes ``metadata`` and knn()/range() take ``filter``: filters run inside Milvus
    filters_metadata: ClassVar[bool] = True

    def __init__(
        self,
        n_bits: int,
        uri: str | Path | None = None,
        collection: str = "hashlab",
        token: str = "",
        index_type: str = "BIN_FLAT",
        nlist: int = 1024,
        nprobe: int = 16,
        timeout: float = 5.0,
        insert_batch: int = 20000,
        flush_rows: int = 200000,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigError(
                f"unknown milvus engine parameter(s) {sorted(unknown)}; expected uri, "
                "collection, token, index_type, nlist, nprobe, timeout, insert_batch, flush_rows"
            )
        if not isinstance(n_bits, int | np.integer) or n_bits < 1:
            raise ConfigError(f"n_bits must be a positive integer, got {n_bits!r}")
        if index_type not in INDEX_TYPES:
            raise ConfigError(f"unknown Milvus index_type {index_type!r}; expected {INDEX_TYPES}")
        if not isinstance(collection, str) or not _COLLECTION_NAME.match(collection):
            raise ConfigError(
                f"Milvus collection name {collection!r} is not valid; expected letters, digits "
                "and '_', starting with a letter or '_' (at most 255 characters)"
            )
        for label, value in (("nlist", nlist), ("nprobe", nprobe), ("insert_batch", insert_batch)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"milvus {label} must be a positive integer, got {value!r}")
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(
                f"milvus timeout must be a positive number of seconds, got {timeout!r}"
            )
        self.n_bits = int(n_bits)
        self.n_bytes = (self.n_bits + 7) // 8
        self.uri, self.local = check_uri(uri)
        if self.local and index_type != "BIN_FLAT":
            raise ConfigError(
                f"milvus-lite (the local file {str(uri)!r}) only has BIN_FLAT; {index_type} "
                "needs a Milvus server (uri='http://host:19530')"
            )
        self.collection = collection
        self.index_type = index_type
        self.exact = index_type == "BIN_FLAT"  # type: ignore[misc] - per instance here
        self.nlist, self.nprobe = int(nlist), int(nprobe)
        self.timeout = float(timeout)
        self.insert_batch = int(insert_batch)
        self.flush_rows = int(flush_rows)
        self.params = {
            "uri": str(uri),
            "collection": collection,
            "index_type": index_type,
            "nlist": self.nlist,
            "nprobe": self.nprobe,
        }
        self._n = 0  # rows added (or replayed) through this engine
        self._unflushed = 0
        #: a reader's engine (set by HammingIndex for mode="r"): the index's writer writes the
        #: collection; this one only counts the rows it follows and never writes
        self.read_only = False
        self._pymilvus = _import_pymilvus()
        # a token is never a stored parameter (index headers are plain JSON): MILVUS_TOKEN
        self._client = self._connect(token or os.environ.get("MILVUS_TOKEN", ""))
        # rows the collection already held when opened: adds below this are replays
        self._stored_end = self._open_collection()

    # ------------------------------------------------------------------ connection ----
    def _connect(self, token: str) -> Any:
        from pymilvus import MilvusClient

        where = f"milvus-lite file {self.uri!r}" if self.local else f"Milvus server {self.uri!r}"
        try:
            return MilvusClient(uri=self.uri, token=token or "", timeout=self.timeout)
        except self._pymilvus.MilvusException as error:
            reason = getattr(error, "message", None) or str(error)
            if "illegal connection params" in reason.lower() or "timeout" in reason.lower():
                reason = f"no answer within {self.timeout:g} s"
            raise MilvusConnectionError(f"cannot open the {where}: {reason}") from None
        except Exception as error:  # grpc / milvus-lite start-up failures have no common base
            reason = getattr(error, "message", None) or str(error)
            if self.local:  # seen: the file is locked by a process that has it open
                reason += " (milvus-lite lets one process open a file; use a server URI)"
            raise MilvusConnectionError(f"cannot open the {where}: {reason}") from None

    def close(self) -> None:
        """Flush what is not yet flushed and drop the connection."""
        if self._client is None:
            return
        try:
            if self._unflushed:
                self._client.flush(self.collection)
                self._unflushed = 0
        finally:
            self._client.close()
            self._client = None

    def __del__(self) -> None:  # a dropped engine should not leave rows unflushed
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown; nothing left to tell
            pass

    def drop(self) -> None:
        """Delete the collection and everything in it."""
        self._client.drop_collection(self.collection)
        self._n = self._stored_end = 0

    # ------------------------------------------------------------------ schema --------
    def _description(self) -> str:
        return f"hashlab codes v{SCHEMA_VERSION} n_bits={self.n_bits}"

    def _where(self) -> str:
        return f"Milvus collection {self.collection!r} at {self.uri}"

    def _open_collection(self) -> int:
        client = self._client
        if not client.has_collection(self.collection):
            self._create_collection()
            return 0
        described = client.describe_collection(self.collection)
        fields = {f["name"]: f for f in described.get("fields", [])}
        match = _DESCRIPTION.match(described.get("description") or "")
        if set(fields) != set(_FIELDS) or match is None:
            raise MilvusSchemaError(
                f"{self._where()} is not a hashlab code collection (fields "
                f"{sorted(fields)}); name another collection"
            )
        stored_bits = int(match.group(2))
        dim = int(fields["code"].get("params", {}).get("dim", -1))
        if stored_bits != self.n_bits or dim != 8 * self.n_bytes:
            raise MilvusSchemaError(
                f"{self._where()} holds {stored_bits}-bit codes, this index has {self.n_bits}-bit "
                "codes; name another collection or drop that one"
            )
        if int(match.group(1)) != SCHEMA_VERSION:
            raise MilvusSchemaError(
                f"{self._where()} has hashlab schema v{match.group(1)}, this hashlab reads "
                f"v{SCHEMA_VERSION}"
            )
        indexes = client.list_indexes(self.collection, field_name="code")
        if indexes:
            stored_type = client.describe_index(self.collection, indexes[0]).get("index_type")
            if stored_type and stored_type != self.index_type:
                raise MilvusSchemaError(
                    f"{self._where()} is indexed with {stored_type}, asked for {self.index_type}"
                )
        client.load_collection(self.collection)
        return self._max_row() + 1

    def _create_collection(self) -> None:
        from pymilvus import DataType

        client = self._client
        schema = client.create_schema(
            auto_id=False, enable_dynamic_field=False, description=self._description()
        )
        schema.add_field("row", DataType.INT64, is_primary=True)
        schema.add_field("key", DataType.INT64)
        schema.add_field("code", DataType.BINARY_VECTOR, dim=8 * self.n_bytes)
        schema.add_field("meta", DataType.JSON)
        index_params = client.prepare_index_params()
        extra = {"nlist": self.nlist} if self.index_type == "BIN_IVF_FLAT" else {}
        index_params.add_index(
            field_name="code", index_type=self.index_type, metric_type="HAMMING", params=extra
        )
        # Strong consistency: a search sees every add and remove that returned before it
        client.create_collection(
            self.collection, schema=schema, index_params=index_params, consistency_level="Strong"
        )

    def _count(self, expr: str = "") -> int:
        result = self._client.query(self.collection, filter=expr, output_fields=["count(*)"])
        return int(result[0]["count(*)"])

    def _max_row(self) -> int:
        """Largest row number Milvus holds (-1 if none): a bisection on counts."""
        if self._count("row >= 0") == 0:
            return -1
        hi = 1
        while self._count(f"row >= {hi}"):
            hi *= 2
        lo = hi // 2  # rows >= lo exist, none >= hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._count(f"row >= {mid}"):
                lo = mid
            else:
                hi = mid
        return lo

    # ------------------------------------------------------------------ writes --------
    def add(
        self,
        codes: np.ndarray,
        keys: np.ndarray | None = None,
        metadata: Sequence[dict[str, Any] | str | None] | None = None,
    ) -> None:
        """Append packed codes as rows n..n+M-1, with tie keys and metadata (dicts or JSON)."""
        codes = np.ascontiguousarray(codes, dtype=np.uint8)
        if codes.ndim != 2 or codes.shape[1] != self.n_bytes:
            raise HashlabValueError(
                f"codes must be packed (M, {self.n_bytes}) uint8, got shape {codes.shape}"
            )
        m = len(codes)
        start = self._n
        keys = np.arange(start, start + m) if keys is None else np.asarray(keys, dtype=np.int64)
        if keys.shape != (m,):
            raise HashlabValueError(f"{m} codes need {m} tie keys, got shape {keys.shape}")
        if metadata is not None and len(metadata) != m:
            raise HashlabValueError(f"{m} codes need {m} metadata entries, got {len(metadata)}")
        if self.read_only:  # the writer put these rows there (two writers would duplicate them)
            self._n = start + m
            return
        metas = [_meta_dict(metadata[i] if metadata is not None else None) for i in range(m)]
        if m == 0:
            return
        replayed = min(m, max(0, self._stored_end - start))
        if replayed and not self._replay_matches(
            codes[:replayed], keys[:replayed], metas[:replayed], start
        ):
            self._write(codes[:replayed], keys[:replayed], metas[:replayed], start, upsert=True)
        if replayed < m:
            self._write(codes[replayed:], keys[replayed:], metas[replayed:], start + replayed)
        self._n = start + m
        if self._n >= self._stored_end:
            self._stored_end = 0  # nothing beyond our rows is left to hide
        if self._unflushed >= self.flush_rows:
            self.flush()

    def _write(
        self,
        codes: np.ndarray,
        keys: np.ndarray,
        metas: list[dict],
        first_row: int,
        upsert: bool = False,
    ) -> None:
        from pymilvus import Collection

        # column-wise through the ORM: pymilvus packs columns ~3x faster than row dicts
        collection = Collection(self.collection, using=self._client._using)
        write = collection.upsert if upsert else collection.insert
        for lo in range(0, len(codes), self.insert_batch):
            hi = min(lo + self.insert_batch, len(codes))
            columns = [
                list(range(first_row + lo, first_row + hi)),
                keys[lo:hi].tolist(),
                [code.tobytes() for code in codes[lo:hi]],
                metas[lo:hi],
            ]
            write(columns)
        self._unflushed += len(codes)

    def _replay_matches(
        self, codes: np.ndarray, keys: np.ndarray, metas: list[dict], first_row: int
    ) -> bool:
        """Whether Milvus's copy of a sample of these rows holds the same codes, keys, metadata.

        The metadata is compared too: filters are evaluated by Milvus on its copy, and a
        collection written before metadata was pushed to it holds ``{}`` everywhere.
        """
        m = len(codes)
        rng = np.random.default_rng(first_row)
        sample = np.unique(np.r_[0, m - 1, rng.integers(0, m, size=min(m, VERIFY_SAMPLE))])
        rows = (first_row + sample).tolist()
        found = self._client.query(
            self.collection, filter=f"row in {rows}", output_fields=["row", "key", "code", "meta"]
        )
        for hit in found:  # rows missing there were removed before: nothing to compare
            i = int(hit["row"]) - first_row
            stored = hit["code"]
            stored = stored[0] if isinstance(stored, list) else stored
            if int(hit["key"]) != int(keys[i]) or bytes(stored) != codes[i].tobytes():
                return False
            if _meta_dict(hit.get("meta")) != metas[i]:
                return False
        return True

    def flush(self) -> None:
        """Seal what was inserted into Milvus segments on disk."""
        if self._unflushed:
            self._client.flush(self.collection)
            self._unflushed = 0

    def remove(self, rows: np.ndarray) -> None:
        if self.read_only:  # the writer deleted them
            return
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        for lo in range(0, len(rows), self.insert_batch):
            self._client.delete(self.collection, ids=rows[lo : lo + self.insert_batch].tolist())

    # ------------------------------------------------------------------ search --------
    def can_filter(self, filter: str | Filter) -> bool:  # noqa: A002
        """Whether Milvus can evaluate ``filter`` exactly as :meth:`Filter.matches` does."""
        return milvus_expression(parse_filter(filter)) is not None

    def filter_expression(self, filter: str | Filter) -> str | None:  # noqa: A002
        """The Milvus boolean expression ``filter`` is sent as (None: no exact form)."""
        return milvus_expression(parse_filter(filter))

    def _expression(self, allowed: np.ndarray | None, filter: str | Filter | None) -> str:  # noqa: A002
        parts = []
        if filter is not None:
            parsed = parse_filter(filter)
            rendered = milvus_expression(parsed)
            if rendered is None:  # no exact Milvus form: match the metadata here instead
                matching = self._matching_rows(parsed)
                allowed = matching if allowed is None else np.intersect1d(allowed, matching)
            else:
                parts.append(rendered)
        if allowed is not None:
            # Milvus parses a long list slowly (~4 s per 100k rows here): name the shorter side
            allowed = np.asarray(allowed, dtype=np.int64)
            if 2 * len(allowed) > self._n:
                others = np.setdiff1d(np.arange(self._n, dtype=np.int64), allowed)
                parts.append(f"row not in {others.tolist()}" if len(others) else "row >= 0")
            else:
                parts.append(f"row in {allowed.tolist()}")
        if self._stored_end > self._n or self.read_only:
            # rows of a torn add, or (a reader) rows the writer added since our last look
            parts.append(f"row < {self._n}")
        return " and ".join(f"({p})" for p in parts)

    def _matching_rows(self, parsed: Filter) -> np.ndarray:
        """Rows whose metadata matches, read from Milvus in row ranges (the slow, exact road)."""
        matching = []
        for lo in range(0, self._n, MILVUS_MAX_TOPK):
            hi = min(lo + MILVUS_MAX_TOPK, self._n)
            found = self._client.query(
                self.collection, filter=f"row >= {lo} and row < {hi}", output_fields=["row", "meta"]
            )
            matching += [int(h["row"]) for h in found if parsed.matches(h["meta"])]
        return np.array(sorted(matching), dtype=np.int64)

    def _search(
        self, queries: np.ndarray, limit: int, expr: str, band: tuple[int, int] | None = None
    ) -> list[list[tuple[int, int, int]]]:
        """Per query, (distance, key, row) hits: top ``limit``, or within ``band`` = [lo, hi)."""
        params: dict[str, Any] = {}
        if self.index_type == "BIN_IVF_FLAT":
            params["nprobe"] = self.nprobe
        if band is not None:
            lo, hi = band
            params["radius"] = hi  # Milvus keeps lo <= d < hi; lo = 0 needs no lower bound
            if lo > 0:
                params["range_filter"] = lo
        out: list[list[tuple[int, int, int]]] = []
        per_request = max(1, min(MILVUS_MAX_NQ, MAX_HITS_PER_REQUEST // limit))
        for q0 in range(0, len(queries), per_request):
            batch = [q.tobytes() for q in queries[q0 : q0 + per_request]]
            result = self._client.search(
                self.collection,
                data=batch,
                filter=expr,
                limit=limit,
                output_fields=["key"],
                search_params={"metric_type": "HAMMING", "params": params},
                anns_field="code",
            )
            for hits in result:
                out.append(
                    [(int(h["distance"]), int(h["entity"]["key"]), int(h["id"])) for h in hits]
                )
        return out

    def _within(
        self, query: np.ndarray, lo: int, hi: int, expr: str, rows: tuple[int, int]
    ) -> list:
        """Every hit with lo <= d < hi among rows [rows[0], rows[1]), however many there are."""
        row_expr = f"row >= {rows[0]} and row < {rows[1]}"
        full = f"({expr}) and ({row_expr})" if expr else row_expr
        hits = self._search(query[None], MILVUS_MAX_TOPK, full, band=(lo, hi))[0]
        if len(hits) < MILVUS_MAX_TOPK:
            return hits
        if hi - lo > 1:  # too many: split the distances first
            mid = (lo + hi) // 2
            return self._within(query, lo, mid, expr, rows) + self._within(
                query, mid, hi, expr, rows
            )
        mid = (rows[0] + rows[1]) // 2  # one distance holds too many rows: split the rows
        return self._within(query, lo, hi, expr, (rows[0], mid)) + self._within(
            query, lo, hi, expr, (mid, rows[1])
        )

    def _prepare(self, queries: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        if queries.ndim != 2 or queries.shape[1] != self.n_bytes:
            raise HashlabValueError(
                f"queries must be packed (Q, {self.n_bytes}) uint8, got shape {queries.shape}"
            )
        return queries

    def knn(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        filter: str | Filter | None = None,  # noqa: A002 - the name every engine uses
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = self._prepare(queries)
        nq = len(queries)
        out_d = np.full((nq, k), -1, dtype=np.int32)
        out_rows = np.full((nq, k), -1, dtype=np.int64)
        expr = self._expression(allowed, filter)
        if nq == 0 or k < 1 or self._n == 0 or (allowed is not None and len(allowed) == 0):
            return out_d, out_rows
        limit = min(k + 1, MILVUS_MAX_TOPK)
        answers: dict[int, list[tuple[int, int, int]]] = {}
        # queries whose last distance may hold more rows than Milvus returned (ties at the
        # k-th distance, or k beyond topK): keep what is surely closer, then take whole
        # one-distance bands until k are there; one request per band for all such queries
        pending: dict[int, tuple[list[tuple[int, int, int]], int]] = {}
        for i, hits in enumerate(self._search(queries, limit, expr)):
            hits.sort()
            if len(hits) == limit and hits[-1][0] == hits[min(k, limit) - 1][0]:
                edge = hits[-1][0]
                pending[i] = ([h for h in hits if h[0] < edge], edge)
            else:
                answers[i] = hits
        while pending:
            by_distance: dict[int, list[int]] = {}
            for i, (_, d) in pending.items():
                by_distance.setdefault(d, []).append(i)
            for d, group in by_distance.items():
                bands = self._search(queries[group], MILVUS_MAX_TOPK, expr, band=(d, d + 1))
                for i, band in zip(group, bands, strict=True):
                    if len(band) == MILVUS_MAX_TOPK:  # full: maybe truncated, fetch in parts
                        band = self._within(queries[i], d, d + 1, expr, (0, self._n))
                    hits = pending[i][0] + sorted(band)
                    if len(hits) >= k or d >= self.n_bits:
                        answers[i] = hits
                        del pending[i]
                    else:
                        pending[i] = (hits, d + 1)
        for i, hits in answers.items():
            hits = hits[:k]
            out_d[i, : len(hits)] = [h[0] for h in hits]
            out_rows[i, : len(hits)] = [h[2] for h in hits]
        return out_d, out_rows

    def range(
        self,
        queries: np.ndarray,
        radius: int,
        allowed: np.ndarray | None = None,
        filter: str | Filter | None = None,  # noqa: A002
    ) -> RangeResult:
        queries = self._prepare(queries)
        nq = len(queries)
        if not isinstance(radius, int | np.integer) or radius < 0:
            raise HashlabValueError(f"radius must be a non-negative integer, got {radius!r}")
        expr = self._expression(allowed, filter)
        if nq == 0 or self._n == 0 or (allowed is not None and len(allowed) == 0):
            return RangeResult.empty(nq)
        hi = int(min(radius, self.n_bits)) + 1  # hashlab's d <= radius is Milvus's d < radius + 1
        per_query = self._search(queries, MILVUS_MAX_TOPK, expr, band=(0, hi))
        counts = np.zeros(nq, dtype=np.int64)
        rows_parts, dist_parts = [], []
        for i, hits in enumerate(per_query):
            if len(hits) == MILVUS_MAX_TOPK:  # full: maybe truncated, collect it in parts
                hits = self._within(queries[i], 0, hi, expr, (0, self._n))
            hits.sort()
            counts[i] = len(hits)
            rows_parts.append(np.array([h[2] for h in hits], dtype=np.int64))
            dist_parts.append(np.array([h[0] for h in hits], dtype=np.int32))
        offsets = np.zeros(nq + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        rows = np.concatenate(rows_parts) if rows_parts else np.zeros(0, dtype=np.int64)
        dists = np.concatenate(dist_parts) if dist_parts else np.zeros(0, dtype=np.int32)
        return RangeResult(offsets, rows, dists)

    # ------------------------------------------------------------------ reporting -----
    def memory_bytes(self) -> int:
        """Nothing in this process: the codes live in the Milvus server (or milvus-lite)."""
        return 0

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "params": self.params,
            "exact_knn": self.exact,
            "rows": self._n,
            "milvus_live_rows": self._count("row >= 0") if self._client is not None else None,
        }


# Milvus (2.4 / milvus-lite 2.4.12) and hashlab's filter semantics agree on ==, <, <=, >, >=,
# like, homogeneous `in` and and/or (comparisons across types are false in both). They differ
# where the tests found: Milvus's `!=` and `not in` are true for a missing key or a value of
# another type (hashlab: false), an `in` list mixing types is an assertion failure there, and
# `not (...)` is "unsupported expr proto node". So != and `not in` are rewritten through
# ordered comparisons (which are type-strict in Milvus), `in` lists are split by type, and a
# filter that keeps a `not` after pushing it through and/or has no exact Milvus form.
_KIND_GUARD = {
    "number": "({f} < 0 or {f} >= 0)",
    "str": '{f} >= ""',
    "bool": "({f} == true or {f} == false)",
}


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "str" if isinstance(value, str) else "number"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _field(path: tuple[str, ...]) -> str:
    return "meta" + "".join(f"[{_literal(key)}]" for key in path)


def _not_equal(f: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"{f} == {_literal(not value)}"
    return f"({f} < {_literal(value)} or {f} > {_literal(value)})"


def milvus_expression(node: Filter, negated: bool = False) -> str | None:
    """The Milvus boolean expression selecting exactly what ``node.matches`` accepts, or None."""
    if isinstance(node, Not):
        return milvus_expression(node.operand, not negated)
    if isinstance(node, And | Or):
        parts = [milvus_expression(part, negated) for part in node.operands]
        if any(part is None for part in parts):
            return None
        joiner = " and " if isinstance(node, And) != negated else " or "
        return joiner.join(f"({part})" for part in parts)
    if negated:  # "missing, another type, or not this": Milvus has no operator for it
        return None
    if isinstance(node, Compare):
        f = _field(node.path)
        if node.op == "!=":
            return _not_equal(f, node.value)
        return f"{f} {node.op} {_literal(node.value)}"
    if isinstance(node, Like):
        return node.to_milvus(json_field="meta")
    if isinstance(node, In):
        f = _field(node.path)
        by_kind: dict[str, list[Any]] = {}
        for value in node.values:
            by_kind.setdefault(_kind_of(value), []).append(value)
        if not node.negated:
            if not by_kind:
                return "row < 0"  # x in [] matches nothing
            parts = []
            for values in by_kind.values():
                same_type = len({type(v) for v in values}) == 1 and not isinstance(values[0], bool)
                if same_type:
                    parts.append(f"{f} in [{', '.join(_literal(v) for v in values)}]")
                else:
                    parts += [f"{f} == {_literal(v)}" for v in values]
            return " or ".join(f"({p})" for p in parts)
        # present, of a comparable kind, and equal to none of the values of that kind
        parts = []
        for kind, guard in _KIND_GUARD.items():
            clause = [guard.format(f=f)] + [_not_equal(f, v) for v in by_kind.get(kind, [])]
            parts.append(" and ".join(f"({c})" for c in clause))
        return " or ".join(f"({p})" for p in parts)
    return None


def _meta_dict(value: dict[str, Any] | str | None) -> dict[str, Any]:
    """Metadata as the JSON object Milvus stores (HammingIndex keeps it as JSON text)."""
    if value is None:
        return {}
    if isinstance(value, str | bytes):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise HashlabValueError(f"metadata must be a JSON object, got {type(value).__name__}")
    return value
