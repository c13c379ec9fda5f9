"""``SearchService``: the model, the index, the photo folders and the lock the routes call.

Reads: k-NN or radius search (inclusive radius) over a code made from an uploaded image, a
hex code or a text query (cross-modal models), with an optional metadata filter
(:mod:`hashlab.index.filters`, the syntax shared with the Milvus engine) and paging by
``offset``. Results are sorted by (distance, id), so page boundaries are stable.

Writes: metadata is validated before anything is written (a refused add changes nothing),
the photo goes to the service's own :class:`~hashlab.service.store.UploadStore` (never the
indexed photo folder), and photo + index add happen under one lock, the photo removed again
if the add fails. A full disk is a 507 with the reason.

Several worker processes over one index (``shared_writes=True``, ``hashlab serve
--workers N``): the service's index is a reader that catches up with the directory before
every request (cheap: a ``stat`` of the header; read only when it changed), and each write
opens the index as its writer for that one write (the exclusive lock, waited for at most
``write_wait_s``; a lock still busy then is a 503 with ``Retry-After``), so writes made
through any worker are seen by every worker and each acknowledged one is committed.

Rendering never fails a whole answer: an item whose stored metadata cannot be read or shown
(written before validation existed, or damaged) comes back with ``metadata: null`` and an
``error`` saying why.
"""

from __future__ import annotations

import io
import json
import os
import random
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.backbones import DEFAULT_BACKBONE
from hashlab.codes import codes_to_hex, hex_to_codes
from hashlab.data.images import ImageError, open_image
from hashlab.service.errors import ServiceError, describe_os_error
from hashlab.service.limits import DecodeBudget, RequestLimits, check_json_value, declared_pixels
from hashlab.service.store import UploadStore, image_suffix

__all__ = ["SearchService", "MAX_K", "MAX_WINDOW", "INT64_MAX"]

#: uploads are photos, not posters; an RGB canvas this size is 75 MB decoded
DEFAULT_MAX_PIXELS = 25_000_000
#: pixels decoded at once across all requests (two images at the cap)
DEFAULT_DECODE_BUDGET = 2 * DEFAULT_MAX_PIXELS
MAX_K = 1000
#: offset + page size may reach this far down a ranking
MAX_WINDOW = 10_000
THUMBNAIL_MAX_SIZE = 512
LATENCY_WINDOW = 2000
INT64_MAX = 2**63 - 1
MAX_METADATA_DEPTH = 32  # as the index's own limit
MAX_METADATA_BYTES = 64 * 1024
#: a write waits this long for the index's writer lock before answering 503 (shared writes)
WRITE_WAIT_S = 5.0
#: seconds a client is told to wait (Retry-After) when the writer lock stayed busy
RETRY_AFTER_S = 1


def _percentile_ms(samples: Sequence[float], q: float) -> float | None:
    if not samples:
        return None
    return round(float(np.percentile(np.asarray(samples), q)) * 1000.0, 3)


def _pipeline() -> Any:
    """The module with ``encode_images`` and ``model_backbone`` (imported late: no cycle)."""
    from hashlab.service import app

    return app


def model_modalities(model: Any) -> tuple[str, ...]:
    """The sides a model encodes: its tags when it declares them, else its attributes."""
    tags = getattr(type(model), "tags", None) or getattr(model, "tags", None)
    modalities = getattr(tags, "modalities", None)
    if modalities is None:
        modalities = getattr(model, "modalities", ("image",))
    return tuple(modalities)


def _index_storage() -> Any:
    """The index's storage module when it validates metadata itself (else None)."""
    try:
        from hashlab.index import storage
    except ImportError:  # pragma: no cover
        return None
    return storage if hasattr(storage, "encode_metadata") else None


def validate_metadata(metadata: Any, what: str = "metadata") -> dict:
    """A copy of ``metadata`` that the index can store and every reader can render.

    A JSON object, at most ``MAX_METADATA_DEPTH`` levels deep, text encodable as UTF-8 (no
    lone surrogates), finite numbers, at most ``MAX_METADATA_BYTES`` once serialised.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ServiceError(400, f"{what} must be a JSON object, got a {type(metadata).__name__}")
    check_json_value(metadata, what, MAX_METADATA_DEPTH)
    size = len(json.dumps(metadata, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ServiceError(
            400, f"{what} is {size:,} bytes as JSON, more than the limit of {MAX_METADATA_BYTES:,}"
        )
    storage = _index_storage()
    if storage is not None:  # the index's own rules, so a write it would refuse is a 400 here
        try:
            storage.encode_metadata(metadata, what)
        except ValueError as error:
            raise ServiceError(400, str(error)[:500]) from None
    return json.loads(json.dumps(metadata))  # a deep copy: later changes never reach the index


def renderable(meta: Any) -> str | None:
    """None when ``meta`` can be sent as JSON, else why not (one sentence)."""
    if meta is None:
        return None
    try:
        validate_metadata(meta, "the stored metadata")
    except ServiceError as error:
        return error.message
    return None


class SearchService:
    """The model, the index, the photo folders and the lock; the HTTP layer calls these."""

    def __init__(
        self,
        model: Any,
        index: Any,
        model_name: str,
        image_store: str | Path | None = None,
        token: str | None = None,
        max_upload_bytes: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        backbone: Any | None = None,
        upload_store: str | Path | None = None,
        limits: RequestLimits | None = None,
        decode_budget_pixels: int | None = None,
        ingest_root: str | Path | None = None,
        shared_writes: bool = False,
        write_wait_s: float = WRITE_WAIT_S,
    ) -> None:
        if model.n_bits != index.n_bits:
            raise ValueError(
                f"the model makes {model.n_bits}-bit codes but the index holds "
                f"{index.n_bits}-bit codes"
            )
        self.model = model
        self.index = index
        self.model_name = model_name
        #: the folder the index was built from: photos are served from it, never written
        self.image_store = None if image_store is None else Path(image_store).resolve()
        if upload_store is None and getattr(index, "path", None) is not None:
            upload_store = Path(index.path).parent / f"{Path(index.path).name}.uploads"
        self.uploads = None if upload_store is None else UploadStore(upload_store)
        self.token = token or None
        limits = limits or RequestLimits()
        if max_upload_bytes is not None:
            limits = RequestLimits(**{**limits.__dict__, "max_upload_bytes": int(max_upload_bytes)})
        self.limits = limits
        self.max_upload_bytes = limits.max_upload_bytes
        self.max_pixels = int(max_pixels)
        self.decode_budget = DecodeBudget(decode_budget_pixels or 2 * self.max_pixels)
        self.ingest_root = None if ingest_root is None else Path(ingest_root).resolve()
        self._backbone = backbone
        self._backbone_lock = threading.Lock()
        self.lock = threading.RLock()
        self.search_seconds: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.request_seconds: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.n_queries = 0
        self._refreshed = float("-inf")
        #: worker mode: the index is a reader and every write takes the writer lock briefly
        self.shared_writes = bool(shared_writes)
        self.write_wait_s = float(write_wait_s)
        self._header_seen: tuple[int, int, int] | None = None
        if self.shared_writes and not getattr(index, "read_only", False):
            raise ValueError("shared_writes needs the index opened as a reader (mode='r')")
        self.jobs: dict[str, Any] = {}
        if self.token is not None and self.uploads is not None and self.uploads.root.is_dir():
            self._recover_uploads()

    def configure(
        self,
        upload_store: str | Path | None = None,
        ingest_root: str | Path | None = None,
        limits: RequestLimits | None = None,
        max_pixels: int | None = None,
    ) -> SearchService:
        """Change where uploads go, the ingest root, the limits (before serving)."""
        if upload_store is not None:
            self.uploads = UploadStore(upload_store)
            if self.token is not None and self.uploads.root.is_dir():
                self._recover_uploads()
        if ingest_root is not None:
            self.ingest_root = Path(ingest_root).resolve()
        if limits is not None:
            self.limits = limits
            self.max_upload_bytes = limits.max_upload_bytes
        if max_pixels is not None:
            self.max_pixels = int(max_pixels)
            self.decode_budget = DecodeBudget(2 * self.max_pixels)
        return self

    # -- encoding ---------------------------------------------------------------------
    @property
    def backbone(self) -> Any:
        if getattr(self.model, "input_kind", None) == "pixels":
            return None  # pixel models (fine-tuned, generative) bring their own network
        with self._backbone_lock:  # built once, lazily: EfficientNet takes seconds to load
            if self._backbone is None:
                self._backbone = _pipeline().model_backbone(self.model)
            return self._backbone

    def decode(self, data: bytes, what: str = "upload") -> Any:
        """Decoded RGB image, or a 413/400/503 ``ServiceError`` saying what is wrong.

        The header's declared size is checked before any pixel is decoded (``open_image``),
        and the decode holds its share of the pixel budget, so concurrent large images are
        decoded one after the other instead of all at once.
        """
        if len(data) > self.max_upload_bytes:
            raise ServiceError(413, self._too_large_message(len(data), what))
        pixels = declared_pixels(data)
        if pixels > self.max_pixels:
            raise ServiceError(
                400,
                f"the {what} declares {pixels:,} pixels, more than the limit of "
                f"{self.max_pixels:,} (a decompression bomb or an oversized image)",
            )
        with self.decode_budget.hold(pixels):
            try:
                return open_image(data, max_pixels=self.max_pixels)
            except ImageError as error:
                raise ServiceError(400, str(error)) from None

    def _too_large_message(self, n_bytes: int, what: str = "upload") -> str:
        return (
            f"the {what} is {n_bytes:,} bytes, more than the limit of "
            f"{self.max_upload_bytes:,} bytes"
        )

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        return _pipeline().encode_images(self.model, list(images), self.backbone)

    def encode_upload(self, data: bytes) -> np.ndarray:
        """(1, K) code of one uploaded image."""
        return self.encode_images([self.decode(data)])

    @property
    def text_search(self) -> bool:
        return "text" in model_modalities(self.model)

    def encode_text(self, text: str) -> np.ndarray:
        """(1, K) code of a text query, for models with a text side (cross-modal)."""
        if not self.text_search:
            raise ServiceError(
                400,
                f"text search needs a model with a text side (a cross-modal method such as "
                f"lbo_cmh, dcmh, seph or cmfh); this server's model "
                f"{self.model_name!r} ({self.model.name}) hashes images only",
            )
        from hashlab.methods.cross_modal.text import TextFeaturizerError, text_to_features

        try:
            features = text_to_features(self.model, text)
        except (TextFeaturizerError, ValueError) as error:
            # the CLI's hint (--text-features FILE) means nothing to an HTTP client
            message = str(error).replace("pass --text-features FILE.npy", "send a hex code")
            raise ServiceError(400, message[:500]) from None
        return np.asarray(self.model.encode(features, modality="text"), dtype=np.uint8)

    def parse_code(self, text: str) -> np.ndarray:
        try:
            return hex_to_codes(str(text), self.index.n_bits)
        except ValueError as error:
            raise ServiceError(400, str(error)[:300]) from None

    # -- reads ------------------------------------------------------------------------
    def follow_writer(self) -> None:
        """A reader catches up with the index's writer.

        Called with the lock held. ``refresh`` reads only what was committed since the last
        look; the writer's own server is always current and skips it. A read-only server
        looks at most once a second; a worker of several (``shared_writes``) looks before
        every request, so a write acknowledged by any worker is seen by the next request to
        any other, and only when the header's ``stat`` changed (one system call otherwise).
        """
        refresh = getattr(self.index, "refresh", None)
        if refresh is None or not getattr(self.index, "read_only", self.token is None):
            return
        if self.shared_writes:
            stamp = self._header_stamp()
            if stamp is not None and stamp == self._header_seen:
                return
            refresh()  # the stamp was taken first: a commit after it is seen next time
            self._header_seen = stamp
            return
        now = time.monotonic()
        if now - self._refreshed < 1.0:
            return
        self._refreshed = now
        refresh()

    def _header_stamp(self) -> tuple[int, int, int] | None:
        """(inode, mtime, size) of the index header: a commit replaces the file."""
        from hashlab.index.storage import HEADER

        try:
            found = os.stat(Path(self.index.path) / HEADER)
        except (OSError, TypeError):
            return None
        return found.st_ino, found.st_mtime_ns, found.st_size

    @contextmanager
    def writable_index(self) -> Iterator[Any]:
        """The index to write to: the service's own, or (shared writes) the writer for one write.

        With ``shared_writes`` the directory's writer lock is taken for the duration of the
        ``with`` block (waiting at most ``write_wait_s``, then a 503 with ``Retry-After``),
        and the service's reader catches up after it. Called with ``self.lock`` held.
        """
        if not self.shared_writes:
            yield self.index
            return
        from hashlab.index import HammingIndex
        from hashlab.index.storage import IndexLockedError

        deadline = time.monotonic() + self.write_wait_s
        pause = 0.005
        while True:
            try:
                # verify=False: the reader checked the files; the writer's recovery still
                # drops what a killed writer left uncommitted
                writer = HammingIndex.open(self.index.path, mode="w", verify=False)
                break
            except IndexLockedError as error:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServiceError(
                        503,
                        f"the index is busy with another write (writer lock held by "
                        f"{'pid ' + str(error.pid) if error.pid else 'another process'} for "
                        f"more than {self.write_wait_s:g} s); nothing was changed, retry",
                        headers={"Retry-After": str(RETRY_AFTER_S)},
                    ) from None
                # jittered: workers waiting together do not retry in step
                time.sleep(min(left, pause * (0.5 + random.random())))
                pause = min(2 * pause, 0.1)
        try:
            yield writer
        finally:
            writer.close()
            self.follow_writer()

    def _recover_uploads(self) -> None:
        """Remove what crashed writers left in the upload store (under the writer lock)."""
        if self.uploads is None:
            return
        try:
            with self.lock, self.writable_index() as index:
                # no add of another worker is between its photo and its commit while we hold it
                self.uploads.recover(lambda relative: self._is_referenced(relative, index))
        except ServiceError:  # the lock stayed busy: the next worker start recovers
            pass

    def search(
        self,
        code: np.ndarray,
        k: int | None,
        radius: int | None,
        offset: int = 0,
        limit: int | None = None,
        filter: str | None = None,  # noqa: A002 - the name the index uses
    ) -> tuple[list[dict], int | None]:
        """One page of hits for a (1, K) code, and how many matched in all.

        k-NN when ``radius`` is None (ranks ``offset`` .. ``offset + k - 1``), else the
        radius ball, ``limit`` hits from ``offset`` on. The count is the size of the ball, or
        for k-NN the items the ranking can reach (live items; None with a filter, when
        the ranking goes past this page: counting would read every item's metadata).
        """
        extra: dict[str, Any] = {} if filter is None else {"filter": filter}
        with self.lock:
            self.follow_writer()
            # timed inside the lock: /stats reports the index's own cost, while the request
            # latency beside it includes waiting for the lock, decoding and encoding
            started = time.perf_counter()
            if radius is None:
                page = int(k or 10)
                ids, dists = self.index.search(code, offset + page, **extra)
                ids, dists = ids[0], dists[0]
                keep = ids >= 0  # k-NN pads with -1 when fewer items can be ranked
                ids, dists = ids[keep], dists[keep]
                reachable = len(ids)
                total = reachable if reachable < offset + page else None
                ids, dists = ids[offset:], dists[offset:]
            else:
                page = int(limit or MAX_K)
                ids, dists = self.index.range_search(code, int(radius), **extra)[0][:2]
                total = len(ids)
                ids, dists = ids[offset : offset + page], dists[offset : offset + page]
            metas, errors = self._read_metadata(ids)
            self.search_seconds.append(time.perf_counter() - started)
            if total is None:  # the ranking goes on past this page
                total = len(self.index) if filter is None else None
        self.n_queries += 1
        hits = [
            self.describe(int(i), meta, int(d), error)
            for i, d, meta, error in zip(ids, dists, metas, errors, strict=True)
        ]
        return hits, total

    def _read_metadata(self, ids: Sequence[int] | np.ndarray) -> tuple[list, list]:
        """Metadata per id and, per id, why it cannot be shown (None when it can).

        One unreadable record never fails the batch: on an error the ids are read one by one
        and only the bad ones are marked.
        """
        ids = [int(i) for i in ids]
        try:
            metas = list(self.index.metadata(ids))
        except Exception:  # noqa: BLE001 - a damaged record; find which below
            metas = []
            for item_id in ids:
                try:
                    metas.append(self.index.metadata([item_id])[0])
                except Exception as error:  # noqa: BLE001
                    metas.append(_Unreadable(f"{type(error).__name__}"))
        out, errors = [], []
        storage = _index_storage()
        marker = getattr(storage, "METADATA_ERROR_KEY", None)
        for meta in metas:
            if marker is not None and isinstance(meta, dict) and marker in meta:
                out.append(None)  # the index marked it: stored before validation, or damaged
                errors.append(str(meta[marker]))
                continue
            if isinstance(meta, _Unreadable):
                out.append(None)
                errors.append(f"the stored metadata cannot be read ({meta.reason})")
                continue
            reason = renderable(meta)
            out.append(None if reason else meta)
            errors.append(reason)
        return out, errors

    def describe(
        self, item_id: int, meta: dict | None, distance: int | None = None, error: str | None = None
    ) -> dict:
        has_image = self.image_path(meta) is not None
        entry: dict[str, Any] = {"id": item_id, "metadata": meta}
        if distance is not None:
            entry["distance"] = distance
        entry["image_url"] = f"/items/{item_id}/image" if has_image else None
        entry["thumbnail_url"] = f"/items/{item_id}/image?size=160" if has_image else None
        if error is not None:
            entry["error"] = error
        return entry

    def contains(self, item_id: int) -> bool:
        with self.lock:
            self.follow_writer()
            return item_id in self.index

    def get_item(self, item_id: int) -> dict:
        if not 0 <= item_id <= INT64_MAX or not self.contains(item_id):
            raise ServiceError(404, f"no item with id {item_id}")
        with self.lock:
            metas, errors = self._read_metadata([item_id])
        return self.describe(item_id, metas[0], error=errors[0])

    def image_roots(self) -> list[Path]:
        roots = [] if self.uploads is None else [self.uploads.root]
        if self.image_store is not None:
            roots.append(self.image_store)
        return roots

    def image_path(self, meta: dict | None) -> Path | None:
        """The item's image file, only if it resolves to a file inside a photo folder.

        ``image`` (what ``POST /items`` records) is relative to the upload store (older
        deployments: to the image store); ``path`` (what ``hashlab index build`` records)
        is absolute, or relative to the image store or the working directory.
        """
        if not isinstance(meta, dict):
            return None
        roots = self.image_roots()
        for key in ("image", "path"):
            recorded = meta.get(key)
            if not isinstance(recorded, str) or not recorded or "\x00" in recorded:
                continue
            candidates = [root / recorded for root in roots]
            if key == "path":
                candidates.append(Path.cwd() / recorded)
            for candidate in candidates:
                try:
                    # resolve() follows ".." and symlinks: the check sees the real target
                    path = candidate.resolve()
                except (OSError, RuntimeError, ValueError):
                    continue
                if any(path.is_relative_to(root) for root in roots) and path.is_file():
                    return path
        return None

    def item_image(self, item_id: int) -> Path:
        item = self.get_item(item_id)
        path = self.image_path(item["metadata"])
        if path is None:
            raise ServiceError(404, f"item {item_id} has no image in the photo folders")
        return path

    def thumbnail(self, item_id: int, size: int) -> bytes:
        path = self.item_image(item_id)
        try:
            data = path.read_bytes()
        except OSError as error:
            raise describe_os_error(error, "reading the photo") from None
        pixels = declared_pixels(data)
        with self.decode_budget.hold(pixels):
            try:
                image = open_image(data, max_pixels=self.max_pixels)
            except ImageError as error:
                raise ServiceError(422, str(error)) from None
            size = max(16, min(int(size), THUMBNAIL_MAX_SIZE))
            image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def stats(self) -> dict:
        with self.lock:
            self.follow_writer()
            n_items = len(self.index)
        extra = self.model.config().get("extra") or {}
        return {
            "items": n_items,
            "bits": self.index.n_bits,
            "model": self.model_name,
            "method": self.model.name,
            "backbone": extra.get("backbone", DEFAULT_BACKBONE),
            "modalities": list(model_modalities(self.model)),
            "text_search": self.text_search,
            "queries": self.n_queries,
            "search_latency_ms": {
                "p50": _percentile_ms(self.search_seconds, 50),
                "p99": _percentile_ms(self.search_seconds, 99),
            },
            "request_latency_ms": {
                "p50": _percentile_ms(self.request_seconds, 50),
                "p99": _percentile_ms(self.request_seconds, 99),
            },
            "image_store": None if self.image_store is None else str(self.image_store),
            "upload_store": None if self.uploads is None else str(self.uploads.root),
            "writes_enabled": self.token is not None,
            "worker_pid": os.getpid(),
            "shared_writes": self.shared_writes,
            "batch_ingest": {
                "zip": self.token is not None,
                "folder_root": None if self.ingest_root is None else str(self.ingest_root),
            },
            "limits": {
                "max_upload_bytes": self.max_upload_bytes,
                "max_archive_bytes": self.limits.max_archive_bytes,
                "max_pixels": self.max_pixels,
                "max_k": MAX_K,
                "max_window": MAX_WINDOW,
            },
        }

    # -- writes -----------------------------------------------------------------------
    def check_token(self, authorization: str | None, x_token: str | None) -> None:
        import hmac

        if self.token is None:
            raise ServiceError(
                403,
                "writes are disabled: start the server with a token (HASHLAB_TOKEN or "
                "--token-file)",
            )
        given = x_token
        if given is None and authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                given = value.strip()
        if not given:
            raise ServiceError(401, "a token is required: send 'Authorization: Bearer TOKEN'")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise ServiceError(403, "the token is wrong")

    def _require_uploads(self) -> UploadStore:
        if self.uploads is None:
            raise ServiceError(409, "this server has no upload store (--upload-store)")
        return self.uploads

    def add_item(self, data: bytes, metadata: Any) -> dict:
        """Hash an uploaded image, store it, and add it to the index durably."""
        meta = validate_metadata(metadata)  # before anything is decoded or written
        self._require_uploads()
        image = self.decode(data)
        code = self.encode_images([image])
        [new_id] = self.add_encoded(code, [data], [meta])
        return {**self.describe(new_id, meta), "code": codes_to_hex(code)[0]}

    def add_encoded(self, codes: np.ndarray, photos: list[bytes], metas: list[dict]) -> list[int]:
        """Store the photos and add their codes in one index commit; all or nothing.

        ``metas`` are updated in place with the stored photo's ``image`` path.
        """
        uploads = self._require_uploads()
        stored = []
        with self.lock, self.writable_index() as index:
            try:
                for data, meta in zip(photos, metas, strict=True):
                    stored.append(uploads.put(data, image_suffix(data)))
                    meta["image"] = stored[-1].relative
                new_ids = index.add(codes, metadata=metas)
            except BaseException as error:
                for item in stored:
                    uploads.discard(item)  # only photos this add created; others stay
                if isinstance(error, PermissionError):  # the index was opened read-only
                    raise ServiceError(409, f"this server cannot write: {error}") from None
                if isinstance(error, OSError):
                    raise describe_os_error(error, "adding the item") from None
                if isinstance(error, ValueError):  # the index refused the metadata or code
                    raise ServiceError(400, str(error)[:500]) from None
                raise
            for item in stored:
                uploads.commit(item)
        return [int(i) for i in new_ids]

    def _is_referenced(self, relative: str, index: Any = None) -> bool | None:
        """Whether a committed item records photo ``relative`` (None: cannot tell)."""
        filter_rows = getattr(self.index if index is None else index, "filter_rows", None)
        if filter_rows is None:
            return None
        try:
            escaped = relative.replace("\\", "\\\\").replace("'", "\\'")
            return len(filter_rows(f"image == '{escaped}'")) > 0
        except Exception:  # noqa: BLE001 - keep the photo when in doubt
            return None

    def remove_item(self, item_id: int) -> dict:
        if not 0 <= item_id <= INT64_MAX:
            raise ServiceError(404, f"no item with id {item_id}")
        with self.lock, self.writable_index() as index:
            try:
                index.remove([item_id])
            except KeyError:
                raise ServiceError(404, f"no item with id {item_id}") from None
            except PermissionError as error:
                raise ServiceError(409, f"this server cannot write: {error}") from None
            except OSError as error:
                raise describe_os_error(error, "removing the item") from None
        # the photo stays: it is content-addressed and may belong to another item
        return {"id": item_id, "removed": True}


class _Unreadable:
    def __init__(self, reason: str) -> None:
        self.reason = reason
