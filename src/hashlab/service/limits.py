"""Request limits that hold against hostile clients, enforced below the routes.

* **Body size while streaming** (:class:`LimitsMiddleware`): the ``Content-Length`` is
  checked before anything is read, and every chunk that arrives is counted, so a chunked
  body (no length) is cut at the limit with a 413 too, after at most the limit plus one
  chunk was buffered. The limit depends on the request: JSON bodies are small
  (``max_json_bytes``), uploads carry one photo (``max_upload_bytes``), archives for batch
  ingestion get ``max_archive_bytes``.
* **Slow or half-sent requests**: the body must arrive within ``body_timeout_s`` (plus
  one second per ``min_body_rate`` bytes received) with no gap longer than
  ``idle_timeout_s`` (else 408); request heads that stall are closed by
  :func:`guarded_h11_protocol` (uvicorn has a keep-alive timeout but none for a head).
* **Errors never drop the connection or echo the body**: an exception that escapes a route
  becomes a JSON 500 (507 for a full disk) naming the error type, sent by this middleware so
  uvicorn keeps the keep-alive connection; no message quotes more than a few characters of
  what the client sent (:func:`shown`).
* **Decoded pixels** (:class:`DecodeBudget`): the header's declared size is capped per image
  (``max_pixels``) and the pixels being decoded at once are capped in total, so four large
  images at once wait for each other instead of taking the memory of four.
* **JSON** (:func:`parse_json`, :func:`check_json_value`): nesting depth, lone surrogates
  and non-finite numbers are refused with a 400 before anything is stored.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hashlab.service.errors import ServiceError, describe_os_error

__all__ = [
    "DecodeBudget",
    "LimitsMiddleware",
    "RequestLimits",
    "check_json_value",
    "declared_pixels",
    "guarded_h11_protocol",
    "parse_json",
    "shown",
]

logger = logging.getLogger("hashlab.service")

#: room for the multipart boundaries and small form fields around one uploaded file
FORM_OVERHEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class RequestLimits:
    """Every limit a request is held to (see the module docstring)."""

    max_upload_bytes: int = 10 * 1024 * 1024
    max_json_bytes: int = 1024 * 1024
    max_archive_bytes: int = 256 * 1024 * 1024
    body_timeout_s: float = 60.0
    #: a long body gets this much more time per byte (a 256 MB zip over a slow link is not
    #: an attack, one byte every few seconds is)
    min_body_rate: float = 128 * 1024
    idle_timeout_s: float = 15.0
    header_timeout_s: float = 15.0
    max_json_depth: int = 32

    def body_limit(self, method: str, path: str, content_type: str) -> int:
        """The most bytes a request body may have, by route and content type."""
        if method in ("GET", "HEAD", "DELETE", "OPTIONS"):
            return self.max_json_bytes
        if content_type.startswith("application/json"):
            return self.max_json_bytes
        if path.rstrip("/") == "/items/batch":
            return self.max_archive_bytes + FORM_OVERHEAD_BYTES
        return self.max_upload_bytes + FORM_OVERHEAD_BYTES


def shown(value: Any, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages never echo a whole input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------ middleware ----
Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def send_json(send: Send, status: int, detail: str, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_answer(error: BaseException) -> ServiceError:
    """What an exception that escaped a route is answered with (never a bare 500)."""
    if isinstance(error, ServiceError):
        return error
    if isinstance(error, OSError):
        return describe_os_error(error, "serving the request")
    if isinstance(error, RecursionError):
        return ServiceError(400, "the request is nested too deeply to process")
    return ServiceError(
        500, f"internal error ({type(error).__name__}); the server log has the details"
    )


class LimitsMiddleware:
    """ASGI middleware: body size and time limits, and a JSON answer for every error."""

    def __init__(self, app: Any, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope.get("headers", []):
            headers.setdefault(name.lower(), value)
        content_type = headers.get(b"content-type", b"").decode("latin-1").lower()
        limit = self.limits.body_limit(scope["method"], scope["path"], content_type)
        declared = headers.get(b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            # refused before a byte of the body is read; closing drops the rest unread
            message = (
                f"the request body declares {int(declared):,} bytes, more than the limit of "
                f"{limit:,} bytes for this request"
            )
            await send_json(send, 413, message, close=True)
            return

        limits = self.limits
        started = time.monotonic()
        received = 0
        body_done = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # e.g. Starlette listening for a disconnect while streaming a file
                return await receive()
            deadline = started + limits.body_timeout_s + received / limits.min_body_rate
            wait = min(limits.idle_timeout_s, deadline - time.monotonic())
            if wait <= 0:
                raise _timeout(limits)
            try:
                message = await asyncio.wait_for(receive(), wait)
            except TimeoutError:
                raise _timeout(limits) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise ServiceError(
                        413,
                        f"the request body is more than the limit of {limit:,} bytes for this "
                        "request (cut while streaming)",
                        close=True,
                    )
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception as error:  # noqa: BLE001 - every error gets an answer, not a drop
            if response_started:
                raise  # half a response is out: only closing the connection is left
            answer = error_answer(error)
            if answer.status >= 500:
                logger.error("%s %s failed", scope["method"], scope["path"], exc_info=error)
            await send_json(send, answer.status, answer.message, close=answer.close)


def _timeout(limits: RequestLimits) -> ServiceError:
    return ServiceError(
        408,
        f"the request body did not arrive in time (at most {limits.idle_timeout_s:g} s "
        f"between chunks, and {limits.body_timeout_s:g} s plus 1 s per "
        f"{limits.min_body_rate / 1024:g} KB in all)",
        close=True,
    )


# ------------------------------------------------------------------- uvicorn guard ----
def guarded_h11_protocol(header_timeout_s: float) -> type:
    """uvicorn's h11 protocol, plus a deadline for request heads.

    uvicorn closes idle keep-alive connections, but a client that sends half a request
    head (or one byte of it) is held forever. The guard is armed when a connection opens
    and after every response; when it fires with no request in progress, the connection
    is closed (with a 408 when part of a request had arrived). Bodies are the middleware's.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    answer = json.dumps({"detail": "the request head did not arrive in time"}).encode()
    timeout_response = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: " + str(len(answer)).encode() + b"\r\n\r\n" + answer
    )

    class GuardedH11Protocol(H11Protocol):
        _guard: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_guard()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._guard is not None:
                self._guard.cancel()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_guard()

        def _arm_guard(self) -> None:
            if self._guard is not None:
                self._guard.cancel()
            self._guard = self.loop.call_later(header_timeout_s, self._guard_expired)

        def _guard_expired(self) -> None:
            self._guard = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being served; on_response_complete re-arms the guard
            partial, _ = self.conn.trailing_data
            if partial or self.conn.their_state not in (h11.IDLE, h11.DONE):
                self.transport.write(timeout_response)
            self.transport.close()

    GuardedH11Protocol.__name__ = "GuardedH11Protocol"
    return GuardedH11Protocol


# ------------------------------------------------------------------------ pixels ----
def declared_pixels(data: bytes) -> int:
    """Width x height the image header declares (0 when unreadable: the decoder says why)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as probe:  # reads the header only
            width, height = probe.size
    except Exception:  # noqa: BLE001 - any unreadable header is the decoder's to explain
        return 0
    return int(width) * int(height)


class DecodeBudget:
    """A weighted semaphore over decoded pixels: the decodes in flight never exceed it.

    An image holds ``min(pixels, capacity)`` for its decode; a request that cannot get its
    share within ``wait_s`` is a 503 (retry later) rather than a queue without end.
    """

    def __init__(self, capacity_pixels: int, wait_s: float = 30.0) -> None:
        if capacity_pixels < 1:
            raise ValueError(f"the decode budget must be positive, got {capacity_pixels}")
        self.capacity = int(capacity_pixels)
        self.wait_s = float(wait_s)
        self.in_use = 0
        self.peak = 0
        self._condition = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        share = max(1, min(int(pixels), self.capacity))
        deadline = time.monotonic() + self.wait_s
        with self._condition:
            while self.in_use + share > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServiceError(
                        503,
                        "the server is decoding other large images; retry in a few seconds",
                    )
                self._condition.wait(left)
            self.in_use += share
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._condition:
                self.in_use -= share
                self._condition.notify_all()


# ------------------------------------------------------------------------ JSON ----
def parse_json(data: bytes | str, what: str, max_depth: int) -> Any:
    """Parsed JSON, or a 400 saying what is wrong (position only, never the text)."""
    try:
        document = json.loads(data)
    except RecursionError:
        raise ServiceError(400, f"{what} is nested more than {max_depth} levels deep") from None
    except UnicodeDecodeError:
        raise ServiceError(400, f"{what} is not valid UTF-8") from None
    except json.JSONDecodeError as error:
        raise ServiceError(
            400,
            f"{what} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
        ) from None
    except ValueError as error:
        raise ServiceError(400, f"{what} is not valid JSON ({type(error).__name__})") from None
    check_json_value(document, what, max_depth)
    return document


def check_json_value(value: Any, what: str, max_depth: int) -> None:
    """400 unless ``value`` is plain JSON: depth <= max_depth, text encodable as UTF-8.

    Iterative, so a hostile depth cannot exhaust the stack; lone surrogates (``"\\ud800"``,
    which JSON allows and UTF-8 cannot encode) and NaN / infinity are refused, because they
    would be stored and then break every reader that renders the item.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise ServiceError(400, f"{what} is nested more than {max_depth} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise ServiceError(400, f"{what} has a key that is not a string")
                    _check_text(key, what)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item, what)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ServiceError(400, f"{what} holds {item!r}, which JSON cannot represent")
        elif item is not None and not isinstance(item, bool | int):
            raise ServiceError(400, f"{what} holds a {type(item).__name__}, which is not JSON")


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ServiceError(
            400,
            f"{what} holds text that is not valid Unicode (a lone surrogate at position "
            f"{error.start}); send UTF-8 text",
        ) from None
