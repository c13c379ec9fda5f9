"""HTTP search service: upload a photo (or send a hex code), get its Hamming neighbours.

The service wraps one fitted hashing model (``hashlab.load``) and one durable
:class:`~hashlab.index.HammingIndex` (``HammingIndex.open``). Images are hashed exactly as the
indexed ones were: decoded defensively (:func:`hashlab.data.images.open_image`), passed
through the model's backbone (``config()["extra"]["backbone"]``) to get feature vectors, then
``model.encode``. Search is exact Hamming k-NN or radius search (inclusive radius), results
sorted by (distance, id) as the index defines them.

Safety rules the endpoints keep:

* every bad upload (empty, truncated, not an image, decompression bomb) is a 400 with the
  decoder's one-sentence reason, an oversized body a 413, never a 500;
* writes (``POST /items``, ``DELETE /items/{id}``) need the server's token as
  ``Authorization: Bearer T`` or ``X-Token: T`` (401 when missing, 403 when wrong);
* images are only ever served from inside the image store: the stored relative path is
  resolved and must stay under the store's resolved root;
* one lock serialises every index access, because the index swaps its arrays and rebuilds its
  multi-index tables in place; encoding (the slow part) runs outside the lock.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from hashlab.codes import codes_to_hex, hex_to_codes
from hashlab.data.images import ImageError, open_image
from hashlab.index import HammingIndex

DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
#: uploads are photos, not posters: 40 MP covers every phone camera
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_BACKBONE = "efficientnet_lite0"
MAX_K = 1000
THUMBNAIL_MAX_SIZE = 512
#: latencies kept for the percentiles in /stats
LATENCY_WINDOW = 2000
STATIC_DIR = Path(__file__).parent / "static"
#: written by ``hashlab index build`` next to the index files: {"model": ..., "images": ...}
BUILD_RECORD = "build.json"


class ServiceError(Exception):
    """A request that cannot be served; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def encode_images(model: Any, images: Sequence[Any], backbone: Any | None = None) -> np.ndarray:
    """(N, K) uint8 codes for PIL images, hashed as :mod:`hashlab.index.encode` hashes files.

    Models trained end to end on images expose ``encode_images(paths)``: the images are
    written to temporary PNG files (lossless, so the pixels are the decoded ones) for them.
    Feature models get the backbone features (``backbone`` defaults to the one named in the
    model's config; passing it avoids rebuilding the network per call), then ``encode``.
    """
    if hasattr(model, "encode_images"):
        with tempfile.TemporaryDirectory(prefix="hashlab-upload-") as folder:
            paths = []
            for position, image in enumerate(images):
                path = Path(folder) / f"{position}.png"
                image.save(path, format="PNG")
                paths.append(str(path))
            return np.asarray(model.encode_images(paths), dtype=np.uint8)
    import torch

    if backbone is None:
        backbone = model_backbone(model)
    with torch.inference_mode():
        features = backbone.module(backbone.preprocess(list(images)))
    return np.asarray(model.encode(features.float().numpy()), dtype=np.uint8)


def model_backbone(model: Any) -> Any:
    """The backbone whose features ``model`` was fitted on (EfficientNet-Lite0 by default)."""
    from hashlab.backbones import create_backbone

    extra = model.config().get("extra") or {}
    return create_backbone(extra.get("backbone", DEFAULT_BACKBONE))


def _percentile_ms(samples: Sequence[float], q: float) -> float | None:
    if not samples:
        return None
    return round(float(np.percentile(np.asarray(samples), q)) * 1000.0, 3)


class SearchService:
    """The model, the index, the image store and the lock; the HTTP layer calls these."""

    def __init__(
        self,
        model: Any,
        index: HammingIndex,
        model_name: str,
        image_store: str | Path | None = None,
        token: str | None = None,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        backbone: Any | None = None,
    ) -> None:
        if model.n_bits != index.n_bits:
            raise ValueError(
                f"the model makes {model.n_bits}-bit codes but the index holds "
                f"{index.n_bits}-bit codes"
            )
        self.model = model
        self.index = index
        self.model_name = model_name
        self.image_store = None if image_store is None else Path(image_store).resolve()
        if self.image_store is not None:
            self.image_store.mkdir(parents=True, exist_ok=True)
        self.token = token or None
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_pixels = int(max_pixels)
        self._backbone = backbone
        self._backbone_lock = threading.Lock()
        self.lock = threading.RLock()
        self.search_seconds: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.request_seconds: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.n_queries = 0

    # -- encoding ---------------------------------------------------------------------
    @property
    def backbone(self) -> Any:
        if hasattr(self.model, "encode_images"):
            return None  # image models bring their own network
        with self._backbone_lock:  # built once, lazily: EfficientNet takes seconds to load
            if self._backbone is None:
                self._backbone = model_backbone(self.model)
            return self._backbone

    def decode(self, data: bytes) -> Any:
        """Decoded RGB image, or a 413/400 ``ServiceError`` saying what is wrong."""
        if len(data) > self.max_upload_bytes:
            raise ServiceError(413, self._too_large_message(len(data)))
        try:
            return open_image(data, max_pixels=self.max_pixels)
        except ImageError as error:
            raise ServiceError(400, str(error)) from None

    def _too_large_message(self, n_bytes: int) -> str:
        return (
            f"the upload is {n_bytes:,} bytes, more than the limit of "
            f"{self.max_upload_bytes:,} bytes"
        )

    def encode_upload(self, data: bytes) -> np.ndarray:
        """(1, K) code of one uploaded image."""
        image = self.decode(data)
        return encode_images(self.model, [image], self.backbone)

    def parse_code(self, text: str) -> np.ndarray:
        try:
            return hex_to_codes(str(text), self.index.n_bits)
        except ValueError as error:
            raise ServiceError(400, str(error)) from None

    # -- reads ------------------------------------------------------------------------
    def search(self, code: np.ndarray, k: int | None, radius: int | None) -> tuple[list[dict], int]:
        """Hits for one (1, K) code and how many matched in all.

        k-NN when ``radius`` is None, else radius search; a radius ball holding more than
        ``MAX_K`` items is cut to its ``MAX_K`` closest, so a wide radius cannot make a
        response (and a metadata read) the size of the whole index.
        """
        with self.lock:
            # timed inside the lock: /stats reports the index's own cost, while the request
            # latency beside it includes waiting for the lock, decoding and encoding
            started = time.perf_counter()
            if radius is None:
                ids, dists = self.index.search(code, int(k or 10))
                ids, dists = ids[0], dists[0]
                keep = ids >= 0  # k-NN pads with -1 when the index holds fewer than k items
                ids, dists = ids[keep], dists[keep]
                total = len(ids)
            else:
                ids, dists = self.index.range_search(code, int(radius))[0]
                total = len(ids)
                ids, dists = ids[:MAX_K], dists[:MAX_K]
            metas = self.index.metadata(ids)
            self.search_seconds.append(time.perf_counter() - started)
        self.n_queries += 1
        hits = [
            self.describe(int(i), meta, int(d))
            for i, d, meta in zip(ids, dists, metas, strict=True)
        ]
        return hits, total

    def describe(self, item_id: int, meta: dict | None, distance: int | None = None) -> dict:
        has_image = self.image_path(meta) is not None
        entry: dict[str, Any] = {"id": item_id, "metadata": meta}
        if distance is not None:
            entry["distance"] = distance
        entry["image_url"] = f"/items/{item_id}/image" if has_image else None
        entry["thumbnail_url"] = f"/items/{item_id}/image?size=160" if has_image else None
        return entry

    def contains(self, item_id: int) -> bool:
        with self.lock:
            return item_id in self.index

    def get_item(self, item_id: int) -> dict:
        if item_id < 0 or not self.contains(item_id):
            raise ServiceError(404, f"no item with id {item_id}")
        with self.lock:
            meta = self.index.metadata([item_id])[0]
        return self.describe(item_id, meta)

    def image_path(self, meta: dict | None) -> Path | None:
        """The item's image file, only if it resolves to a file inside the image store.

        ``image`` (what ``POST /items`` records) is relative to the store; ``path`` (what
        ``hashlab index build`` records) is absolute or relative to the working directory
        of the build, so it is tried both there and under the store.
        """
        if self.image_store is None or not isinstance(meta, dict):
            return None
        for key in ("image", "path"):
            recorded = meta.get(key)
            if not isinstance(recorded, str) or not recorded or "\x00" in recorded:
                continue
            candidates = [self.image_store / recorded]
            if key == "path":
                candidates.append(Path.cwd() / recorded)
            for candidate in candidates:
                # resolve() follows ".." and symlinks: the check sees the real target
                path = candidate.resolve()
                if path.is_relative_to(self.image_store) and path.is_file():
                    return path
        return None

    def item_image(self, item_id: int) -> Path:
        item = self.get_item(item_id)
        path = self.image_path(item["metadata"])
        if path is None:
            raise ServiceError(404, f"item {item_id} has no image in the image store")
        return path

    def thumbnail(self, item_id: int, size: int) -> bytes:
        path = self.item_image(item_id)
        try:
            image = open_image(path, max_pixels=self.max_pixels)
        except ImageError as error:
            raise ServiceError(422, str(error)) from None
        size = max(16, min(int(size), THUMBNAIL_MAX_SIZE))
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def stats(self) -> dict:
        with self.lock:
            n_items = len(self.index)
        extra = self.model.config().get("extra") or {}
        return {
            "items": n_items,
            "bits": self.index.n_bits,
            "model": self.model_name,
            "method": self.model.name,
            "backbone": extra.get("backbone", DEFAULT_BACKBONE),
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
            "writes_enabled": self.token is not None,
        }

    # -- writes -----------------------------------------------------------------------
    def check_token(self, authorization: str | None, x_token: str | None) -> None:
        if self.token is None:
            raise ServiceError(403, "writes are disabled: start the server with --token")
        given = x_token
        if given is None and authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer":
                given = value.strip()
        if not given:
            raise ServiceError(401, "a token is required: send 'Authorization: Bearer TOKEN'")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            raise ServiceError(403, "the token is wrong")

    def add_item(self, data: bytes, metadata: dict | None) -> dict:
        """Hash an uploaded image, store it, and add it to the index durably."""
        if self.image_store is None:
            raise ServiceError(409, "this server has no image store (--image-store)")
        image = self.decode(data)
        code = encode_images(self.model, [image], self.backbone)
        meta = dict(metadata or {})
        meta["image"] = self._store_image(data)
        with self.lock:
            try:
                new_id = int(self.index.add(code, metadata=[meta])[0])
            except ValueError as error:  # e.g. metadata that is not JSON (NaN)
                raise ServiceError(400, str(error)) from None
        return {**self.describe(new_id, meta), "code": codes_to_hex(code)[0]}

    def _store_image(self, data: bytes) -> str:
        """Write the upload under its SHA-256 (same photo twice = one file); relative path."""
        from PIL import Image

        with Image.open(io.BytesIO(data)) as probe:  # already decoded once: header only
            suffix = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp"}.get(
                probe.format or "", ".img"
            )
        digest = hashlib.sha256(data).hexdigest()
        relative = f"{digest[:2]}/{digest}{suffix}"
        target = self.image_store / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # write-then-rename: a crash never leaves a half-written image behind a live id
            handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".part")
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        return relative

    def remove_item(self, item_id: int) -> dict:
        with self.lock:
            try:
                self.index.remove([item_id])
            except KeyError:
                raise ServiceError(404, f"no item with id {item_id}") from None
        # the image file stays: it is content-addressed and may belong to another item
        return {"id": item_id, "removed": True}


def _int_field(value: Any, name: str, low: int, high: int | None = None) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ServiceError(400, f"{name} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ServiceError(400, f"{name} must be {bound}, got {number}")
    return number


def create_app(service: SearchService) -> FastAPI:
    """The FastAPI application over ``service``."""
    app = FastAPI(title="hashlab search", version="1")
    app.state.service = service

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status)

    async def read_body_fields(request: Request) -> tuple[dict[str, Any], bytes | None]:
        """Form or JSON fields, plus the uploaded ``image`` bytes (None when absent)."""
        declared = request.headers.get("content-length")
        # the whole body may carry a little form overhead on top of the image itself
        if declared and declared.isdigit() and int(declared) > service.max_upload_bytes + 65536:
            raise ServiceError(413, service._too_large_message(int(declared)))
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            try:
                document = json.loads(await request.body())
            except ValueError as error:
                raise ServiceError(400, f"the JSON body cannot be parsed: {error}") from None
            if not isinstance(document, dict):
                raise ServiceError(400, "the JSON body must be an object")
            return document, None
        if not content_type.startswith(("multipart/form-data", "application/x-www-form")):
            raise ServiceError(415, "send multipart/form-data (with an image) or JSON")
        form = await request.form()
        fields: dict[str, Any] = {}
        image: bytes | None = None
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                if key == "image":
                    # read one byte past the limit: enough to know it is too large
                    image = await value.read(service.max_upload_bytes + 1)
                    if len(image) > service.max_upload_bytes:
                        raise ServiceError(413, service._too_large_message(len(image)))
            else:
                fields[key] = value
        return fields, image

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "items": service.stats()["items"]}

    @app.get("/stats")
    def stats() -> dict:
        return service.stats()

    @app.post("/search")
    async def search(request: Request) -> dict:
        started = time.perf_counter()
        fields, image = await read_body_fields(request)
        radius = fields.get("radius")
        radius = None if radius in (None, "") else _int_field(radius, "radius", 0)
        k_text = fields.get("k")
        k = 10 if k_text in (None, "") else _int_field(k_text, "k", 1, MAX_K)
        code_text = fields.get("code")
        if image is not None:
            code = await run_in_threadpool(service.encode_upload, image)
        elif code_text not in (None, ""):
            code = service.parse_code(code_text)
        else:
            raise ServiceError(400, "send an image file (field 'image') or a hex 'code'")
        hits, total = await run_in_threadpool(service.search, code, k, radius)
        elapsed = time.perf_counter() - started
        service.request_seconds.append(elapsed)
        return {
            "query_code": codes_to_hex(code)[0],
            "k": None if radius is not None else k,
            "radius": radius,
            "results": hits,
            "matches": total,
            "truncated": total > len(hits),
            "latency_ms": round(elapsed * 1000.0, 3),
        }

    @app.post("/items", status_code=201)
    async def add_item(request: Request) -> dict:
        service.check_token(request.headers.get("authorization"), request.headers.get("x-token"))
        fields, image = await read_body_fields(request)
        if image is None:
            raise ServiceError(400, "send the photo as the multipart file field 'image'")
        metadata = None
        text = fields.get("metadata")
        if text not in (None, ""):
            try:
                metadata = json.loads(text)
            except ValueError as error:
                raise ServiceError(400, f"metadata is not valid JSON: {error}") from None
            if not isinstance(metadata, dict):
                raise ServiceError(400, "metadata must be a JSON object")
        return await run_in_threadpool(service.add_item, image, metadata)

    @app.delete("/items/{item_id}")
    def delete_item(item_id: int, request: Request) -> dict:
        service.check_token(request.headers.get("authorization"), request.headers.get("x-token"))
        return service.remove_item(item_id)

    @app.get("/items/{item_id}")
    def get_item(item_id: int) -> dict:
        return service.get_item(item_id)

    @app.get("/items/{item_id}/image")
    def item_image(item_id: int, size: int | None = None) -> Response:
        if size is not None:
            return Response(service.thumbnail(item_id, size), media_type="image/png")
        return FileResponse(service.item_image(item_id))

    @app.get("/", response_class=HTMLResponse)
    def home() -> HTMLResponse:
        return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"))

    return app


def build_service(
    model_dir: str | Path,
    index_dir: str | Path,
    image_store: str | Path | None = None,
    token: str | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
) -> SearchService:
    """Reopen a saved model and a durable index directory as a :class:`SearchService`."""
    import hashlab

    model_path = Path(model_dir)
    if not model_path.is_dir():
        raise FileNotFoundError(f"model directory {model_path} does not exist")
    if not Path(index_dir).is_dir():
        raise FileNotFoundError(f"index directory {index_dir} does not exist")
    model = hashlab.load(model_path)
    index = HammingIndex.open(index_dir)
    if image_store is None:
        image_store = _built_from_folder(Path(index_dir))
    return SearchService(
        model,
        index,
        model_name=model_path.resolve().name,
        image_store=image_store,
        token=token,
        max_upload_bytes=max_upload_bytes,
    )


def _built_from_folder(index_dir: Path) -> Path | None:
    """The image folder ``hashlab index build`` recorded in the index (``build.json``)."""
    record = index_dir / BUILD_RECORD
    try:
        folder = json.loads(record.read_text()).get("images")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(folder) if isinstance(folder, str) and Path(folder).is_dir() else None
