"""A corpus of hostile HTTP requests for ``hashlab serve``, kept as data, and the raw client.

Each entry is sent over a plain TCP socket to a real uvicorn server on 127.0.0.1
(``tests/test_service_hostile.py``), byte for byte as written here: no HTTP library tidies
the framing. Fields:

* ``name``: what the request tries;
* ``head``: request line and headers (``{token}`` is replaced by the server's write token,
  ``{nested}`` and friends by the bodies below, ``{length}`` by the body's length);
* ``body``: the body, or a ``stream`` spec ``{"chunk": bytes, "count": n}`` sent lazily as
  HTTP/1.1 chunks (the client stops as soon as the server answers), after an optional
  ``prefix`` (``file_part:NAME``: the head of a multipart file field, so the parser accepts
  the stream as one endless file); ``"png:bomb"`` /
  ``"png:declared"`` are multipart uploads of PNGs made in the test (see ``bodies``);
* ``expect``: the statuses that are right; every answer must be JSON with a ``detail``
  sentence, never a 500, and short (the body is never echoed);
* ``half``: send only this many bytes of the head and wait (a half-sent request);
* ``keepalive``: send ``GET /health`` on the same connection afterwards; it must answer;
* ``parser``: refused by uvicorn's HTTP parser itself (a plain-text 400, not JSON);
* ``rss``: the server's resident memory is measured before and after.

Every entry must leave the index directory byte-identical.
"""

from __future__ import annotations

import json
import socket
import struct
import time
import zlib

MB = 1024 * 1024
BOUNDARY = "hostileboundary"


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height (1-bit greyscale), made by hand.

    PIL would allocate the canvas to write one; the server must refuse it from the header.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    # a few rows of real data, then the stream ends: decoding would need the whole canvas
    pixels = zlib.compress(row * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(
        b"IEND", b""
    )


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]]) -> bytes:
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode("utf-8", "surrogatepass")
            + b"\r\n"
        )
    for name, (filename, data, kind) in files.items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def bodies(small_png: bytes) -> dict[str, bytes]:
    """The bodies named in the corpus; ``small_png`` is a real photo the model can hash."""
    nested = "[" * 900 + "]" * 900
    return {
        "nested": json.dumps({"code": "00000000"})[:-1].encode() + b', "x": ' + nested.encode()
        + b"}",
        "deep_dict": ('{"a":' * 900 + "1" + "}" * 900).encode(),
        "bad_json_5mb": b'{"code": "' + b"A" * (5 * MB // 10) + b'"',  # 0.5 MB, unterminated
        "bomb": multipart({}, {"image": ("bomb.png", png_declaring(100_000, 100_000),
                                         "image/png")}),  # fmt: skip
        # just under the 40 MP: refused by the decoded-size cap, not PIL's own limit
        "declared": multipart({}, {"image": ("big.png", png_declaring(7_280, 5_450),
                                             "image/png")}),  # fmt: skip
        "surrogate_meta": multipart(
            {"metadata": '{"title": "\\ud800"}'}, {"image": ("a.png", small_png, "image/png")}
        ),
        "nested_meta": multipart(
            {"metadata": '{"a": ' + "[" * 900 + "]" * 900 + "}"},
            {"image": ("a.png", small_png, "image/png")},
        ),
        "nan_meta": multipart(
            {"metadata": '{"x": NaN}'}, {"image": ("a.png", small_png, "image/png")}
        ),
        "list_meta": multipart(
            {"metadata": "[1, 2]"}, {"image": ("a.png", small_png, "image/png")}
        ),
        "text_as_image": multipart({}, {"image": ("a.png", b"not a photo\n" * 50, "image/png")}),
        "k_and_radius": json.dumps({"code": "00000000", "k": 3, "radius": 2}).encode(),
        "huge_k": json.dumps({"code": "00000000", "k": 10**30}).encode(),
        "bad_filter": json.dumps({"code": "00000000", "filter": "site == == 'x'"}).encode(),
        "deep_filter": json.dumps({"code": "00000000", "filter": "(" * 5000 + "x == 1"
                                   + ")" * 5000}).encode(),  # fmt: skip
        "k_list": json.dumps({"code": "00000000", "k": [1, 2]}).encode(),
        "code_object": json.dumps({"code": {"a": 1}}).encode(),
        "latin1": b'{"code": "\xff\xfe"}',
        "many_fields": ("&".join(f"f{i}=1" for i in range(5000))).encode(),
        "not_zip": multipart({}, {"archive": ("a.zip", b"PK\x03\x04 not really", "app/zip")}),
        "folder_escape": json.dumps({"folder": "../../etc"}).encode(),
        "folder_absolute": json.dumps({"folder": "/etc"}).encode(),
    }


JSON = "Content-Type: application/json"
FORM = f"Content-Type: multipart/form-data; boundary={BOUNDARY}"
AUTH = "Authorization: Bearer {token}"

CORPUS: list[dict] = [
    # --- size: declared, chunked, lazily streamed -------------------------------------
    {"name": "declared 200 MB to /search", "expect": [413],
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: {200 * MB}\r\n\r\n",
     "body": b""},
    {"name": "chunked 200 MB JSON to /search, sent lazily", "expect": [413], "rss": True,
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nTransfer-Encoding: chunked\r\n\r\n",
     "stream": {"chunk": b" " * MB, "count": 200}},
    {"name": "chunked 200 MB upload to /items, sent lazily", "expect": [413], "rss": True,
     "head": f"POST /items HTTP/1.1\r\nHost: x\r\n{FORM}\r\n{AUTH}\r\n"
             "Transfer-Encoding: chunked\r\n\r\n",
     "stream": {"prefix": "file_part:image", "chunk": b"\x00" * MB, "count": 200}},
    {"name": "chunked 200 MB zip to /items/batch, sent lazily", "expect": [413], "rss": True,
     "head": f"POST /items/batch HTTP/1.1\r\nHost: x\r\n{FORM}\r\n{AUTH}\r\n"
             "Transfer-Encoding: chunked\r\n\r\n",
     "stream": {"prefix": "file_part:archive", "chunk": b"\x00" * MB, "count": 200}},
    {"name": "0.5 MB of broken JSON is not echoed", "expect": [400], "keepalive": True,
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "bad_json_5mb"},
    # --- pixels ------------------------------------------------------------------------
    {"name": "PNG declaring 10 gigapixels", "expect": [400], "keepalive": True,
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{FORM}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "bomb"},
    {"name": "PNG declaring 39.7 megapixels (above the decoded-size cap)", "expect": [400],
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{FORM}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "declared"},
    {"name": "text sent as an image", "expect": [400],
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{FORM}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "text_as_image"},
    # --- JSON: depth, surrogates, types ------------------------------------------------
    {"name": "JSON body nested 900 deep (list)", "expect": [400], "keepalive": True,
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "nested"},
    {"name": "JSON body nested 900 deep (dict)", "expect": [400],
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "deep_dict"},
    {"name": "metadata with a lone surrogate", "expect": [400],
     "head": f"POST /items HTTP/1.1\r\nHost: x\r\n{FORM}\r\n{AUTH}\r\n"
             "Content-Length: {length}\r\n\r\n",
     "body": "surrogate_meta"},
    {"name": "metadata nested 900 deep", "expect": [400],
     "head": f"POST /items HTTP/1.1\r\nHost: x\r\n{FORM}\r\n{AUTH}\r\n"
             "Content-Length: {length}\r\n\r\n",
     "body": "nested_meta"},
    {"name": "metadata with NaN", "expect": [400],
     "head": f"POST /items HTTP/1.1\r\nHost: x\r\n{FORM}\r\n{AUTH}\r\n"
             "Content-Length: {length}\r\n\r\n",
     "body": "nan_meta"},
    {"name": "metadata that is a list", "expect": [400],
     "head": f"POST /items HTTP/1.1\r\nHost: x\r\n{FORM}\r\n{AUTH}\r\n"
             "Content-Length: {length}\r\n\r\n",
     "body": "list_meta"},
    {"name": "JSON that is not UTF-8", "expect": [400],
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "latin1"},
    {"name": "k is a list", "expect": [400],
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "k_list"},
    {"name": "code is an object", "expect": [400],
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "code_object"},
    {"name": "k together with radius", "expect": [400],
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "k_and_radius"},
    {"name": "k = 10**30", "expect": [400],
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "huge_k"},
    {"name": "filter syntax error", "expect": [400], "phrase": "column",
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "bad_filter"},
    {"name": "filter nested 5000 deep", "expect": [400],
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "deep_filter"},
    {"name": "5000 form fields", "expect": [400],
     "head": "POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
             "\r\nContent-Length: {length}\r\n\r\n",
     "body": "many_fields"},
    # --- ids and paths -----------------------------------------------------------------
    {"name": "id beyond int64", "expect": [400], "keepalive": True,
     "head": "GET /items/99999999999999999999 HTTP/1.1\r\nHost: x\r\n\r\n", "body": b""},
    {"name": "negative id", "expect": [400],
     "head": "GET /items/-1 HTTP/1.1\r\nHost: x\r\n\r\n", "body": b""},
    {"name": "delete an id beyond int64", "expect": [400],
     "head": f"DELETE /items/99999999999999999999 HTTP/1.1\r\nHost: x\r\n{AUTH}\r\n\r\n",
     "body": b""},
    {"name": "image of an id beyond int64", "expect": [400],
     "head": "GET /items/18446744073709551616/image?size=64 HTTP/1.1\r\nHost: x\r\n\r\n",
     "body": b""},
    {"name": "path traversal in the id", "expect": [400, 404],
     "head": "GET /items/..%2F..%2Fetc%2Fpasswd/image HTTP/1.1\r\nHost: x\r\n\r\n", "body": b""},
    {"name": "thumbnail size that is not a number", "expect": [400],
     "head": "GET /items/1/image?size=zz HTTP/1.1\r\nHost: x\r\n\r\n", "body": b""},
    {"name": "unknown job", "expect": [404],
     "head": "GET /jobs/..%2F..%2Fetc HTTP/1.1\r\nHost: x\r\n\r\n", "body": b""},
    # --- content types and auth --------------------------------------------------------
    {"name": "text/plain body", "expect": [415],
     "head": "POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
             "Content-Length: 5\r\n\r\n", "body": b"hello"},
    {"name": "no content type", "expect": [415],
     "head": "POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n", "body": b"{}"},
    {"name": "multipart without a boundary", "expect": [400],
     "head": "POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data\r\n"
             "Content-Length: 4\r\n\r\n", "body": b"abcd"},
    {"name": "add without a token", "expect": [401],
     "head": f"POST /items HTTP/1.1\r\nHost: x\r\n{FORM}\r\nContent-Length: {{length}}\r\n\r\n",
     "body": "list_meta"},
    {"name": "add with a wrong token", "expect": [403],
     "head": f"POST /items HTTP/1.1\r\nHost: x\r\n{FORM}\r\nX-Token: nope\r\n"
             "Content-Length: {length}\r\n\r\n",
     "body": "list_meta"},
    # --- batch ingestion ---------------------------------------------------------------
    {"name": "a file that is not a zip", "expect": [400],
     "head": f"POST /items/batch HTTP/1.1\r\nHost: x\r\n{FORM}\r\n{AUTH}\r\n"
             "Content-Length: {length}\r\n\r\n",
     "body": "not_zip"},
    {"name": "folder outside the ingest root (..)", "expect": [403],
     "head": f"POST /items/batch HTTP/1.1\r\nHost: x\r\n{JSON}\r\n{AUTH}\r\n"
             "Content-Length: {length}\r\n\r\n",
     "body": "folder_escape"},
    {"name": "folder outside the ingest root (absolute)", "expect": [403],
     "head": f"POST /items/batch HTTP/1.1\r\nHost: x\r\n{JSON}\r\n{AUTH}\r\n"
             "Content-Length: {length}\r\n\r\n",
     "body": "folder_absolute"},
    # --- time: half-sent and slow ------------------------------------------------------
    {"name": "half-sent request head", "expect": [408], "half": 20,
     "head": "POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n", "body": b""},
    {"name": "body promised, never sent", "expect": [408],
     "head": f"POST /search HTTP/1.1\r\nHost: x\r\n{JSON}\r\nContent-Length: 1000\r\n\r\n",
     "body": b'{"code": '},
    # --- framing the HTTP parser refuses -----------------------------------------------
    {"name": "garbage request line", "expect": [400], "parser": True,
     "head": "\x16\x03\x01 not http at all\r\n\r\n", "body": b""},
    {"name": "two content lengths", "expect": [400], "parser": True,
     "head": "POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
     "body": b"{}"},
]


# ------------------------------------------------------------------------ raw client ----
def read_response(sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response (Content-Length framed)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a response head ({buffer[:80]!r})")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            break
        rest += data
    return status, headers, rest[:length]


def send_case(
    port: int, case: dict, body: bytes, token: str, timeout: float = 60.0
) -> dict[str, object]:
    """Send one corpus entry; returns status, headers, body, bytes sent, and the socket."""
    head = case["head"].replace("{token}", token).replace("{length}", str(len(body)))
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    deadline = time.monotonic() + timeout
    sent = 0
    raw = head.encode("latin-1")
    if "half" in case:
        sock.sendall(raw[: case["half"]])
    else:
        sock.sendall(raw)
        sent += len(raw)
        if "stream" in case:
            spec = case["stream"]
            prefix = spec.get("prefix")
            if prefix:
                name = prefix.split(":", 1)[1]
                part = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
                        f'filename="x.bin"\r\nContent-Type: application/octet-stream\r\n\r\n')
                sock.sendall(f"{len(part):x}\r\n{part}\r\n".encode())
            frame = f"{len(spec['chunk']):x}\r\n".encode() + spec["chunk"] + b"\r\n"
            sock.setblocking(False)
            for _ in range(spec["count"]):  # bounded: at most count chunks
                if _answered(sock):
                    break
                try:
                    view = memoryview(frame)
                    while view and time.monotonic() < deadline:
                        try:
                            n = sock.send(view)
                            view = view[n:]
                            sent += n
                        except BlockingIOError:
                            if _answered(sock, wait=0.05):
                                break
                    if view:
                        break
                except (BrokenPipeError, ConnectionResetError):
                    break
            else:
                try:
                    sock.sendall(b"0\r\n\r\n")
                except OSError:
                    pass
            sock.setblocking(True)
        elif body:
            try:
                sock.sendall(body)
                sent += len(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
    status, headers, reply = read_response(sock, deadline)
    return {"status": status, "headers": headers, "body": reply, "sent": sent, "socket": sock}


def _answered(sock: socket.socket, wait: float = 0.0) -> bool:
    import select

    readable, _, _ = select.select([sock], [], [], wait)
    return bool(readable)
