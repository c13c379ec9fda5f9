"""Bad writes through the service change nothing; bad stored items never break reads.

Issue 15.4: metadata nested 900 deep or holding a lone surrogate used to answer 500 *after*
committing the item, and from then on every read that returned it answered 500. Issue 15.3:
a full disk was a bare 500. Each is reproduced against the digits deployment
(``service_deployment.py``) over FastAPI's TestClient, with the index directory hashed before
and after; the full disk is a real 2 MB tmpfs when the test may mount one (root), and an
injected ENOSPC from the index otherwise as well.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient  # noqa: E402
from service_deployment import N_INDEXED, TOKEN, build_deployment, png_bytes  # noqa: E402

from hashlab.codes import codes_to_hex  # noqa: E402
from hashlab.index import HammingIndex  # noqa: E402
from hashlab.service import build_service, create_app  # noqa: E402

AUTH = {"X-Token": TOKEN}


def tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file; SQLite's shared-memory index (``-shm``) is a cache, not data."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith("-shm")
    }


def store_files(service) -> list[Path]:
    root = service.uploads.root
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_deployment(tmp_path_factory.mktemp("writes"))


def serve(deployment: dict, index_dir: Path) -> TestClient:
    service = build_service(
        deployment["root"] / "model", index_dir, image_store=deployment["root"] / "images",
        token=TOKEN, max_upload_bytes=200_000,
    )  # fmt: skip
    client = TestClient(create_app(service))
    client.service = service
    return client


@pytest.fixture()
def client(deployment: dict, tmp_path: Path) -> Iterator[TestClient]:
    shutil.copytree(deployment["root"] / "index", tmp_path / "index")
    with serve(deployment, tmp_path / "index") as test_client:
        yield test_client
    test_client.service.index.close()


def upload(deployment: dict, item: int = N_INDEXED + 1) -> dict:
    return {"image": ("p.png", png_bytes(deployment["images"][item]), "image/png")}


@pytest.mark.parametrize(
    ("name", "metadata", "phrase"),
    [
        ("nested 900 deep", '{"a": ' + "[" * 900 + "]" * 900 + "}", "deep"),
        ("dict nested 900 deep", '{"a":' * 900 + "1" + "}" * 900, "deep"),
        ("lone surrogate", '{"title": "\\ud800"}', "surrogate"),
        ("lone surrogate in a key", '{"\\udfff": 1}', "surrogate"),
        ("NaN", '{"x": NaN}', "NaN"),
        ("not an object", "[1, 2, 3]", "object"),
        ("too large", json.dumps({"blob": "x" * 70_000}), "bytes"),
        ("not JSON", "{'single': 'quotes'}", "JSON"),
    ],
)
def test_rejected_metadata_changes_nothing(
    client: TestClient, deployment: dict, name: str, metadata: str, phrase: str
) -> None:
    index_dir = client.service.index.path
    before = tree_digest(index_dir)
    response = client.post(
        "/items", files=upload(deployment), data={"metadata": metadata}, headers=AUTH
    )
    assert response.status_code == 400, (name, response.text[:300])
    assert phrase.lower() in response.json()["detail"].lower(), response.json()
    assert len(response.content) < 1200  # the reason, not the metadata echoed back
    assert client.get("/health").json()["items"] == N_INDEXED
    assert tree_digest(index_dir) == before
    assert store_files(client.service) == []  # the photo was never stored
    # and everything still reads: a search over all items, every item's page
    code = codes_to_hex(deployment["codes"][:1])[0]
    hits = client.post("/search", json={"code": code, "k": N_INDEXED}).json()["results"]
    assert len(hits) == N_INDEXED


def test_items_stored_before_validation_are_marked_not_fatal(
    deployment: dict, tmp_path: Path
) -> None:
    """Records the old service let through (a lone surrogate, 900 levels, broken JSON)."""
    index_dir = tmp_path / "index"
    shutil.copytree(deployment["root"] / "index", index_dir)
    [database] = [p for p in index_dir.glob("metadata*.sqlite")]
    bad = {
        3: '{"title": "\\ud800", "image": "3.png"}',
        4: '{"a": ' + "[" * 900 + "]" * 900 + "}",
        7: '{"unterminated": ',
    }
    with sqlite3.connect(database) as connection:
        for item_id, text in bad.items():
            connection.execute("UPDATE items SET json = ? WHERE id = ?", (text, item_id))
    with serve(deployment, index_dir) as client:
        for item_id in bad:
            response = client.get(f"/items/{item_id}")
            assert response.status_code == 200, response.text[:300]
            item = response.json()
            assert item["metadata"] is None and "cannot" in item["error"], item
        # an anonymous search that returns all of them answers, with the bad ones marked
        code = codes_to_hex(deployment["codes"][3:4])[0]
        response = client.post("/search", json={"code": code, "k": N_INDEXED})
        assert response.status_code == 200, response.text[:300]
        hits = {hit["id"]: hit for hit in response.json()["results"]}
        assert len(hits) == N_INDEXED
        assert {i for i, hit in hits.items() if "error" in hit} == set(bad)
        assert hits[10]["metadata"]["label"] == int(deployment["labels"][10])
        csv_text = client.post(
            "/search", json={"code": code, "k": N_INDEXED, "format": "csv"}
        ).text
        assert csv_text.count("\n") == N_INDEXED + 1
    client.service.index.close()


def test_disk_full_in_the_index_is_a_507_and_leaves_no_photo(
    client: TestClient, deployment: dict
) -> None:
    service = client.service
    before = tree_digest(service.index.path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    original = service.index.add
    service.index.add = full
    try:
        response = client.post("/items", files=upload(deployment), headers=AUTH)
    finally:
        service.index.add = original
    assert response.status_code == 507, response.text
    assert "disk is full" in response.json()["detail"]
    assert store_files(service) == []  # the photo written before the add was removed again
    assert tree_digest(service.index.path) == before
    again = client.post("/items", files=upload(deployment), headers=AUTH)
    assert again.status_code == 201 and again.json()["id"] == N_INDEXED


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.mark.skipif(not _can_mount(), reason="mounting a tmpfs needs root")
def test_a_real_full_disk_is_a_507_and_the_next_add_works(
    deployment: dict, tmp_path: Path
) -> None:
    """The index and the upload store on a 2 MB tmpfs, filled to the last byte."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        shutil.copytree(deployment["root"] / "index", mount / "index")
        with serve(deployment, mount / "index") as client:
            service = client.service
            before = tree_digest(mount / "index")
            filler = mount / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:
                for _ in range(2048):  # bounded: 2 MB of tmpfs is 512 blocks of 4 KB
                    os.write(fd, b"\0" * 4096)
            except OSError as error:
                assert error.errno == errno.ENOSPC
            finally:
                os.close(fd)
            statuses = []
            for attempt in range(3):
                response = client.post(
                    "/items", files=upload(deployment, N_INDEXED + attempt), headers=AUTH
                )
                statuses.append(response.status_code)
                assert response.status_code == 507, response.text
                assert "full" in response.json()["detail"]
            assert tree_digest(mount / "index") == before
            assert [p for p in store_files(service) if not p.name.endswith(".part")] == []
            filler.unlink()
            added = client.post("/items", files=upload(deployment), headers=AUTH)
            assert added.status_code == 201, added.text
            assert client.get(f"/items/{added.json()['id']}").status_code == 200
        service.index.close()
        reopened = HammingIndex.open(mount / "index")
        try:
            assert len(reopened) == N_INDEXED + 1
        finally:
            reopened.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_an_unexpected_error_is_a_json_500_and_keeps_the_connection(
    deployment: dict, tmp_path: Path
) -> None:
    """A bug in a route answers 500 naming the error type, and keep-alive survives it."""
    import uvicorn
    from hostile_requests import read_response

    from hashlab.service.limits import guarded_h11_protocol

    shutil.copytree(deployment["root"] / "index", tmp_path / "index")
    service = build_service(deployment["root"] / "model", tmp_path / "index")
    app = create_app(service)

    @app.get("/boom")
    def boom() -> dict:
        raise RuntimeError("a bug")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="critical", lifespan="off", http=guarded_h11_protocol(5.0)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.05)
    try:
        connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        for path in ("/boom", "/items/99999999999999999999", "/health"):
            connection.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status, headers, body = read_response(connection, time.monotonic() + 10)
            if path == "/boom":
                assert status == 500 and "RuntimeError" in json.loads(body)["detail"]
                assert "a bug" not in body.decode()  # internals stay in the server log
            elif path == "/health":
                assert status == 200
            else:
                assert status == 400 and "int64" in json.loads(body)["detail"]
        connection.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        service.index.close()


def test_a_read_only_server_follows_the_writer(deployment: dict, tmp_path: Path) -> None:
    """A server without a token never writes, and sees another writer's commits."""
    import numpy as np

    shutil.copytree(deployment["root"] / "index", tmp_path / "index")
    before = tree_digest(tmp_path / "index")
    service = build_service(deployment["root"] / "model", tmp_path / "index")
    with TestClient(create_app(service)) as client:
        assert client.get("/health").json()["items"] == N_INDEXED
        refused = client.post("/items", files=upload(deployment), headers=AUTH)
        assert refused.status_code == 403 and "HASHLAB_TOKEN" in refused.json()["detail"]
        after = tree_digest(tmp_path / "index")
        # SQLite's reader may create an empty write-ahead log (no data; H2 is told)
        empty = hashlib.sha256(b"").hexdigest()
        after = {k: v for k, v in after.items() if not (k.endswith("-wal") and v == empty)}
        assert after == before
        writer = HammingIndex.open(tmp_path / "index", mode="w")
        try:
            code = np.zeros((1, writer.n_bits), dtype=np.uint8)
            writer.add(code, metadata=[{"site": "late"}])
        finally:
            writer.close()
        for _ in range(40):  # bounded: the reader looks again at most once a second
            if client.get("/health").json()["items"] == N_INDEXED + 1:
                break
            time.sleep(0.1)
        assert client.get("/health").json()["items"] == N_INDEXED + 1
        hits = client.post(
            "/search", json={"code": "00000000", "k": 1, "filter": "site == 'late'"}
        ).json()["results"]
        assert [h["id"] for h in hits] == [N_INDEXED]
    service.index.close()


CRASHING_WRITER = """
import os, signal, sys
from pathlib import Path
from hashlab.service import build_service

model, index, photo, point = sys.argv[1:5]
service = build_service(model, index, token="t")

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if point == "before-commit":      # the photo is in the store, the index add never happens
    service.index.add = die
elif point == "after-commit":     # the index committed the item; the store's marker stays
    service.uploads.commit = die
elif point == "mid-write":        # killed while the photo's temporary file is written
    os.fsync = die
service.add_item(Path(photo).read_bytes(), {"site": point})
"""


@pytest.mark.parametrize(
    ("point", "committed"), [("before-commit", False), ("after-commit", True), ("mid-write", False)]
)
def test_a_writer_killed_mid_add_leaves_no_orphan_photo(
    deployment: dict, tmp_path: Path, point: str, committed: bool
) -> None:
    """SIGKILL at each step of an add; the next writer keeps exactly the committed photos."""
    import sys

    shutil.copytree(deployment["root"] / "index", tmp_path / "index")
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(deployment["images"][N_INDEXED + 4]))
    child = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(deployment["root"] / "model"),
         str(tmp_path / "index"), str(photo), point],
        capture_output=True, timeout=300,
    )  # fmt: skip
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    uploads = tmp_path / "index.uploads"
    left = sorted(p.relative_to(uploads) for p in uploads.rglob("*") if p.is_file())
    assert left, "the killed writer left nothing to recover: the kill came too early"
    with serve(deployment, tmp_path / "index") as client:  # the next writer recovers
        service = client.service
        n_items = client.get("/health").json()["items"]
        assert n_items == N_INDEXED + committed
        remaining = [p for p in store_files(service)]
        if committed:
            item = client.get(f"/items/{N_INDEXED}").json()
            assert item["metadata"]["site"] == point
            assert remaining == [service.uploads.root / item["metadata"]["image"]]
            assert client.get(item["image_url"]).content == photo.read_bytes()
        else:
            assert remaining == [], remaining  # orphan photo, marker and .part all gone
    service.index.close()
