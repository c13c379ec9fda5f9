"""The hostile HTTP corpus (``hostile_requests.py``) against a real ``hashlab serve`` process.

The server is started as a user starts it (a subprocess on 127.0.0.1, token from
``$HASHLAB_TOKEN``, 1 MB uploads, 2 s request timeouts), and every request is written to a
raw socket. Each must get a 4xx (or a 5xx with a reason) as JSON without the body echoed,
the server must stay up and answer ``/health``, keep-alive connections must survive errors,
the lazily sent 200 MB bodies must be cut early without the server's memory growing by
anything like their size, and the index directory must be byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from hostile_requests import CORPUS, MB, bodies, send_case  # noqa: E402
from service_deployment import build_deployment, png_bytes  # noqa: E402

TOKEN = "hostile-test-token"
#: the server may grow by this much while a 200 MB body is refused (it buffers ~1 MB)
RSS_GROWTH_LIMIT = 80 * MB


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder``; SQLite's shared-memory index is not data."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.endswith("-shm")
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("hostile")
    deployment = build_deployment(root)
    (root / "ingest").mkdir()
    port = free_port()
    env = {**os.environ, "HASHLAB_TOKEN": TOKEN}
    command = [sys.executable, "-m", "hashlab", "serve", "--model", str(root / "model"),
               "--index", str(root / "index"), "--image-store", str(root / "images"),
               "--port", str(port), "--max-upload-mb", "1", "--max-archive-mb", "4",
               "--request-timeout", "2", "--ingest-root", str(root / "ingest")]  # fmt: skip
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300  # torch import + model load on a busy machine
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((root / "server.log").read_text()) from None
                time.sleep(0.3)
        yield {"port": port, "process": process, "root": root, "deployment": deployment}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_the_hostile_corpus_gets_reasons_and_leaves_the_index_untouched(server: dict) -> None:
    port, pid, root = server["port"], server["process"].pid, server["root"]
    png = png_bytes(server["deployment"]["images"][0])
    named = bodies(png)
    # warm up the backbone (the first image query builds it) so RSS compares like with like
    httpx.post(f"http://127.0.0.1:{port}/search", files={"image": ("a.png", png)}, timeout=120)
    before = tree_digest(root / "index")
    n_items = httpx.get(f"http://127.0.0.1:{port}/health").json()["items"]
    failures = []
    for case in CORPUS:
        body = named[case["body"]] if isinstance(case.get("body"), str) else case.get("body", b"")
        rss_before = rss_bytes(pid)
        started = time.monotonic()
        try:
            answer = send_case(port, case, body, TOKEN, timeout=30)
        except Exception as error:  # noqa: BLE001 - collected and reported together
            failures.append(f"{case['name']}: no answer ({error!r})")
            continue
        elapsed = time.monotonic() - started
        sock = answer["socket"]
        status, reply = answer["status"], answer["body"]
        if status not in case["expect"]:
            failures.append(f"{case['name']}: {status} {reply[:200]!r}, expected {case['expect']}")
        if len(reply) > 2048:
            failures.append(f"{case['name']}: a {len(reply):,}-byte answer (an echo?)")
        if not case.get("parser"):
            try:
                detail = json.loads(reply)["detail"]
                assert isinstance(detail, str) and detail
            except Exception:  # noqa: BLE001
                failures.append(f"{case['name']}: the answer is not JSON with a detail")
                detail = ""
            if case.get("phrase") and case["phrase"] not in detail:
                failures.append(f"{case['name']}: {detail!r} does not say {case['phrase']!r}")
        if "stream" in case:
            # cut early: far less than the 200 MB was accepted before the answer
            if answer["sent"] > 40 * MB:
                failures.append(f"{case['name']}: {answer['sent']:,} bytes sent before the 413")
        if case.get("rss"):
            growth = rss_bytes(pid) - rss_before
            if growth > RSS_GROWTH_LIMIT:
                failures.append(f"{case['name']}: server RSS grew by {growth / MB:.0f} MB")
        if case.get("keepalive"):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                from hostile_requests import read_response

                again, _, _ = read_response(sock, time.monotonic() + 10)
                if again != 200:
                    failures.append(f"{case['name']}: /health on the same connection: {again}")
            except Exception as error:  # noqa: BLE001
                failures.append(f"{case['name']}: the connection was dropped ({error!r})")
        sock.close()
        if elapsed > 45:
            failures.append(f"{case['name']}: took {elapsed:.1f} s")
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        if health.status_code != 200 or health.json()["items"] != n_items:
            failures.append(f"{case['name']}: health after it: {health.text}")
    assert server["process"].poll() is None, "the server died"
    assert not failures, "\n".join(failures)
    assert tree_digest(root / "index") == before
    # nothing half-written in the upload store either: no temporary or pending files left
    uploads = root / "index.uploads"
    leftovers = [p for p in uploads.rglob("*") if p.is_file()] if uploads.exists() else []
    assert leftovers == [], leftovers


def test_four_large_images_at_once_stay_within_the_decode_budget(server: dict) -> None:
    """Concurrent large decodes wait for each other: memory grows by about one, not four."""
    import concurrent.futures

    import numpy as np

    port, pid = server["port"], server["process"].pid
    # 4.8 MP of noise: a real image under the cap, ~0.9 MB as a PNG (the upload limit is 1 MB)
    rng = np.random.default_rng(0)
    side = 2200
    array = np.zeros((side, side), dtype=np.uint8)
    array[::7, ::5] = rng.integers(0, 255, array[::7, ::5].shape, dtype=np.uint8)
    png = png_bytes(array)
    assert len(png) < MB
    url = f"http://127.0.0.1:{port}/search"
    rss_before = rss_bytes(pid)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(
                lambda _: httpx.post(url, files={"image": ("big.png", png)}, timeout=120),
                range(4),
            )
        )
    assert [a.status_code for a in answers] == [200] * 4, [a.text[:200] for a in answers]
    growth = rss_bytes(pid) - rss_before
    # one 4.8 MP decode (grey -> RGB, resize) costs well under 100 MB; four at once would not
    assert growth < 200 * MB, f"RSS grew by {growth / MB:.0f} MB"


def test_a_slow_body_gets_a_408_and_the_server_goes_on(server: dict) -> None:
    port = server["port"]
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{"
    )
    started = time.monotonic()
    from hostile_requests import read_response

    status, headers, body = read_response(sock, time.monotonic() + 30)
    assert status == 408 and "in time" in json.loads(body)["detail"]
    assert time.monotonic() - started < 10
    assert headers.get("connection") == "close"
    sock.close()
    assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200


def test_an_idle_half_open_connection_is_closed(server: dict) -> None:
    sock = socket.create_connection(("127.0.0.1", server["port"]), timeout=30)
    sock.sendall(b"GET /hea")
    started = time.monotonic()
    data = b""
    while True:  # bounded by the socket timeout
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    assert time.monotonic() - started < 10
    assert data.startswith(b"HTTP/1.1 408")
    sock.close()


def test_a_second_writing_server_on_the_same_index_is_refused(server: dict) -> None:
    """Issue 15.2: two ``serve`` processes with a token on one directory both took writes.

    The second now stops at start with one line naming the first one's pid, and the first
    keeps serving; a read-only server (no token) may run beside it.
    """
    root, pid = server["root"], server["process"].pid
    command = [sys.executable, "-m", "hashlab", "serve", "--model", str(root / "model"),
               "--index", str(root / "index"), "--port", str(free_port())]  # fmt: skip
    env = {**os.environ, "HASHLAB_TOKEN": TOKEN}
    second = subprocess.run(command, env=env, capture_output=True, timeout=180)
    assert second.returncode == 2, second.stderr.decode()[-2000:]
    message = second.stderr.decode().strip().splitlines()[-1]
    assert f"pid {pid}" in message and "Traceback" not in second.stderr.decode(), message
    assert httpx.get(f"http://127.0.0.1:{server['port']}/health").status_code == 200
