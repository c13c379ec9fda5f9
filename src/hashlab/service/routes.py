"""The HTTP routes of ``hashlab serve`` (FastAPI) over a :class:`SearchService`.

Every answer that is not a success is JSON ``{"detail": "one sentence"}`` with a 4xx, or a
5xx that names the reason (507: disk full; 503: busy); no message repeats more than a few
characters of the request. Limits on size and time are enforced below the routes by
:class:`~hashlab.service.limits.LimitsMiddleware`.

``POST /search`` fields (form or JSON): one query (``image`` file, hex ``code`` or ``text``),
``k`` (nearest, default 10) or ``radius`` (inclusive; not both), ``offset`` and, for radius
search, ``limit`` (paging), ``filter`` (metadata expression, e.g. ``site == 'A12' and date >=
'2024-01-01'``), ``format=csv`` for a CSV file instead of JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from hashlab.codes import codes_to_hex
from hashlab.service import ingest
from hashlab.service.errors import ServiceError
from hashlab.service.limits import LimitsMiddleware, parse_json, shown
from hashlab.service.search import INT64_MAX, MAX_K, MAX_WINDOW, SearchService

__all__ = ["create_app", "parse_item_id"]

STATIC_DIR = Path(__file__).parent / "static"
MAX_FORM_FIELDS = 32
MAX_FIELD_BYTES = 256 * 1024
#: CSV cells starting with these are formulas in spreadsheets: prefixed with a quote
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def int_field(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ServiceError(400, f"{name} must be an integer, got {shown(value)}")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ServiceError(400, f"{name} must be an integer, got {shown(value)}") from None
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ServiceError(400, f"{name} must be {bound}, got {shown(number)}")
    return number


def parse_item_id(text: str) -> int:
    """An item id from a URL: a non-negative int64 (400 otherwise, never an overflow)."""
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise ServiceError(400, f"an item id is a non-negative integer, got {shown(text)}")
    if len(text) > 19 or int(text) > INT64_MAX:
        raise ServiceError(400, f"item ids are at most {INT64_MAX} (int64), got {shown(text)}")
    return int(text)


def _text_field(fields: dict, name: str, max_length: int) -> str | None:
    value = fields.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ServiceError(400, f"{name} must be a string, got a {type(value).__name__}")
    if len(value) > max_length:
        raise ServiceError(400, f"{name} is {len(value):,} characters, more than {max_length:,}")
    return value


def csv_cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def results_csv(hits: list[dict]) -> str:
    """One row per hit: rank, id, distance, image URL, error, then every metadata field."""
    keys: list[str] = []
    for hit in hits:
        for key in hit.get("metadata") or {}:
            if key not in keys:
                keys.append(key)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["rank", "id", "distance", "image_url", "error", *keys])
    for rank, hit in enumerate(hits, 1):
        meta = hit.get("metadata") or {}
        writer.writerow(
            [rank, hit["id"], hit.get("distance", ""), csv_cell(hit.get("image_url")),
             csv_cell(hit.get("error")), *(csv_cell(meta.get(key)) for key in keys)]
        )  # fmt: skip
    return buffer.getvalue()


class WorkerHeaderMiddleware:
    """Every answer names the process that gave it (``X-Hashlab-Worker: pid``).

    With ``hashlab serve --workers N`` this tells a client (and the tests) which worker
    answered; it is the pid only, nothing about the request.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_pid(message: Any) -> None:
            if message["type"] == "http.response.start":
                pid = (b"x-hashlab-worker", str(os.getpid()).encode())  # after any fork
                message = {**message, "headers": [*message.get("headers", []), pid]}
            await send(message)

        await self.app(scope, receive, send_with_pid)


def create_app(service: SearchService) -> FastAPI:
    """The FastAPI application over ``service``."""
    app = FastAPI(title="hashlab search", version="2")
    app.state.service = service
    app.add_middleware(LimitsMiddleware, limits=service.limits)
    app.add_middleware(WorkerHeaderMiddleware)  # outermost: limit answers carry it too

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        headers = dict(getattr(error, "headers", None) or {})
        if error.close:
            headers["connection"] = "close"
        return JSONResponse(
            {"detail": error.message}, status_code=error.status, headers=headers or None
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer quotes the input back; say where and what, not the value
        first = (error.errors() or [{}])[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return JSONResponse(
            {"detail": f"bad request: {where or 'input'}: {first.get('msg', 'invalid')}"},
            status_code=400,
        )

    async def read_fields(
        request: Request, file_fields: dict[str, int]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Form or JSON fields, plus the uploaded files named in ``file_fields``.

        ``file_fields`` maps a field name to its byte limit; a file named ``archive`` is
        spooled to a temporary file (its path is returned), others are read into memory.
        """
        content_type = request.headers.get("content-type", "").lower()
        if content_type.startswith("application/json"):
            depth = service.limits.max_json_depth
            document = parse_json(await request.body(), "the JSON body", depth)
            if not isinstance(document, dict):
                raise ServiceError(400, "the JSON body must be an object")
            return document, {}
        if not content_type.startswith(("multipart/form-data", "application/x-www-form")):
            raise ServiceError(
                415, "send multipart/form-data (with a file) or JSON (Content-Type header)"
            )
        if content_type.startswith("multipart/") and "boundary=" not in content_type:
            raise ServiceError(400, "a multipart/form-data body needs a boundary parameter")
        fields: dict[str, Any] = {}
        files: dict[str, Any] = {}
        async with request.form(
            max_files=max(1, len(file_fields)),
            max_fields=MAX_FORM_FIELDS,
            max_part_size=MAX_FIELD_BYTES,
        ) as form:
            for key, value in form.multi_items():
                if not hasattr(value, "read"):
                    fields[key] = value
                    continue
                if key not in file_fields:
                    continue
                limit = file_fields[key]
                if key == "archive":
                    files[key] = await ingest.spool_archive(service, value, limit)
                else:
                    # one byte past the limit is enough to know it is too large
                    data = await value.read(limit + 1)
                    if len(data) > limit:
                        raise ServiceError(413, service._too_large_message(len(data)))
                    files[key] = data
        return fields, files

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "items": service.stats()["items"]}

    @app.get("/stats")
    def stats() -> dict:
        return service.stats()

    @app.post("/search")
    async def search(request: Request) -> Any:
        started = time.perf_counter()
        fields, files = await read_fields(request, {"image": service.max_upload_bytes})
        image = files.get("image")
        given = {
            name
            for name, present in (
                ("radius", fields.get("radius") not in (None, "")),
                ("k", fields.get("k") not in (None, "")),
            )
            if present
        }
        if given == {"radius", "k"}:
            raise ServiceError(400, "send either k (nearest) or radius, not both")
        radius = int_field(fields["radius"], "radius", 0) if "radius" in given else None
        k = int_field(fields["k"], "k", 1, MAX_K) if "k" in given else 10
        offset_text = fields.get("offset")
        offset = 0 if offset_text in (None, "") else int_field(offset_text, "offset", 0)
        limit_text = fields.get("limit")
        if limit_text not in (None, "") and radius is None:
            raise ServiceError(400, "limit pages a radius search; k-NN pages with k and offset")
        limit = MAX_K if limit_text in (None, "") else int_field(limit_text, "limit", 1, MAX_K)
        page = k if radius is None else limit
        if offset + page > MAX_WINDOW:
            raise ServiceError(
                400, f"offset + page size may reach rank {MAX_WINDOW:,}, got {offset + page:,}"
            )
        filter_text = _text_field(fields, "filter", 8192)
        if filter_text is not None:
            from hashlab.index.filters import FilterError, parse_filter

            try:
                parse_filter(filter_text)
            except FilterError as error:
                raise ServiceError(400, str(error)) from None
        output = (_text_field(fields, "format", 10) or "json").lower()
        if output not in ("json", "csv"):
            raise ServiceError(400, f"format must be json or csv, got {shown(output)}")
        code_text = _text_field(fields, "code", 4096)
        text = _text_field(fields, "text", 2000)
        queries = [name for name, value in (("image", image), ("code", code_text),
                                            ("text", text)) if value is not None]  # fmt: skip
        if len(queries) > 1:
            raise ServiceError(400, f"send one query (image, code or text), got {queries}")
        if image is not None:
            code = await run_in_threadpool(service.encode_upload, image)
        elif code_text is not None:
            code = service.parse_code(code_text)
        elif text is not None:
            code = await run_in_threadpool(service.encode_text, text)
        else:
            raise ServiceError(400, "send an image file (field 'image'), a hex 'code' or 'text'")
        hits, total = await run_in_threadpool(
            service.search, code, k, radius, offset, limit, filter_text
        )
        elapsed = time.perf_counter() - started
        service.request_seconds.append(elapsed)
        if output == "csv":
            return Response(
                results_csv(hits),
                media_type="text/csv; charset=utf-8",
                headers={"content-disposition": 'attachment; filename="hashlab-results.csv"'},
            )
        more = len(hits) == page and (total is None or offset + page < total)
        return {
            "query_code": codes_to_hex(code)[0],
            "k": None if radius is not None else k,
            "radius": radius,
            "filter": filter_text,
            "offset": offset,
            "limit": None if radius is None else limit,
            "results": hits,
            "matches": total,
            "truncated": radius is not None and total is not None and offset + len(hits) < total,
            "next_offset": offset + page if more and offset + page < MAX_WINDOW else None,
            "latency_ms": round(elapsed * 1000.0, 3),
        }

    def authorise(request: Request) -> None:
        service.check_token(request.headers.get("authorization"), request.headers.get("x-token"))

    @app.post("/items", status_code=201)
    async def add_item(request: Request) -> dict:
        authorise(request)
        fields, files = await read_fields(request, {"image": service.max_upload_bytes})
        image = files.get("image")
        if image is None:
            raise ServiceError(400, "send the photo as the multipart file field 'image'")
        text = fields.get("metadata")
        metadata = None
        if text not in (None, ""):
            metadata = parse_json(
                text if isinstance(text, str) else json.dumps(text), "metadata", 64
            )
        return await run_in_threadpool(service.add_item, image, metadata)

    @app.post("/items/batch", status_code=202)
    async def add_batch(request: Request) -> dict:
        authorise(request)
        fields, files = await read_fields(request, {"archive": service.limits.max_archive_bytes})
        return await run_in_threadpool(ingest.start_job, service, fields, files.get("archive"))

    @app.get("/jobs/{job_id}")
    def job_status(job_id: str) -> dict:
        status = ingest.job_status(service, job_id)  # this worker's, or any worker's file
        if status is None:
            raise ServiceError(404, f"no batch job {shown(job_id)}")
        return status

    @app.delete("/items/{item_id}")
    def delete_item(item_id: str, request: Request) -> dict:
        authorise(request)
        return service.remove_item(parse_item_id(item_id))

    @app.get("/items/{item_id}")
    def get_item(item_id: str) -> dict:
        return service.get_item(parse_item_id(item_id))

    @app.get("/items/{item_id}/image")
    def item_image(item_id: str, size: str | None = None) -> Response:
        number = parse_item_id(item_id)
        if size is not None:
            pixels = int_field(size, "size", 1, 100_000)
            return Response(service.thumbnail(number, pixels), media_type="image/png")
        return FileResponse(service.item_image(number))

    @app.get("/", response_class=HTMLResponse)
    def home() -> HTMLResponse:
        return HTMLResponse((STATIC_DIR / "index.html").read_text(encoding="utf-8"))

    return app
