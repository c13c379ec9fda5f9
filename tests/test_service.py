"""HTTP search service on real data: 300 scikit-learn digits hashed by ITQ on small_cnn features.

The index is built the way ``hashlab serve`` expects one (``service_deployment.py``: a durable
``HammingIndex.create`` directory with metadata pointing into the image store), and every
query goes over HTTP through FastAPI's TestClient, so uploads are hashed by the app's own
decoding + backbone path.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")  # python-multipart: FastAPI's form parser

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from service_deployment import N_BITS, N_INDEXED, TOKEN, build_deployment, png_bytes  # noqa: E402

import hashlab  # noqa: E402
from hashlab.codes import codes_to_hex, hamming_distance_matrix  # noqa: E402
from hashlab.index import HammingIndex  # noqa: E402
from hashlab.service import build_service, create_app, encode_images  # noqa: E402

MAX_K_FOR_TEST = 1000


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_deployment(tmp_path_factory.mktemp("service"))


@pytest.fixture()
def client(deployment: dict, tmp_path: Path) -> TestClient:
    """A fresh server over a copy of the index, so adds and deletes in one test do not leak."""
    import shutil

    root = deployment["root"]
    shutil.copytree(root / "index", tmp_path / "index")
    service = build_service(
        root / "model",
        tmp_path / "index",
        image_store=root / "images",  # uploads are content-addressed: sharing is harmless
        token=TOKEN,
        max_upload_bytes=200_000,
    )
    with TestClient(create_app(service)) as test_client:
        test_client.service = service
        yield test_client
    service.index.close()


def upload(array: np.ndarray) -> dict:
    return {"image": ("digit.png", png_bytes(array), "image/png")}


def test_health_stats_and_page(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "items": N_INDEXED}
    stats = client.get("/stats").json()
    assert stats["items"] == N_INDEXED and stats["bits"] == N_BITS
    assert stats["model"] == "model" and stats["method"] == "itq"
    assert stats["backbone"] == "small_cnn"
    assert stats["search_latency_ms"]["p50"] is None  # no query yet
    searched = client.post("/search", json={"code": "00000000", "k": 3})
    assert searched.status_code == 200, searched.text
    stats = client.get("/stats").json()
    assert stats["queries"] == 1 and stats["search_latency_ms"]["p99"] >= 0
    page = client.get("/")
    assert page.status_code == 200 and "/search" in page.text and "openstreetmap" in page.text


def test_search_by_upload_finds_the_image_itself_first(
    client: TestClient, deployment: dict
) -> None:
    for item in (0, 17, 250):
        response = client.post("/search", files=upload(deployment["images"][item]), data={"k": 5})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["query_code"] == codes_to_hex(deployment["codes"][item : item + 1])[0]
        first = body["results"][0]
        assert first["distance"] == 0
        # several digits may share the code; the image itself must be among the distance-0 hits
        zero_ids = [hit["id"] for hit in body["results"] if hit["distance"] == 0]
        assert item in zero_ids
        assert len(body["results"]) == 5
        distances = [hit["distance"] for hit in body["results"]]
        assert distances == sorted(distances)
        hit = next(h for h in body["results"] if h["id"] == item)
        assert hit["metadata"]["label"] == int(deployment["labels"][item])
        assert hit["thumbnail_url"] == f"/items/{item}/image?size=160"


def test_search_by_hex_code_matches_brute_force(client: TestClient, deployment: dict) -> None:
    codes = deployment["codes"]
    query = codes[42:43]
    k = 10
    body = client.post("/search", data={"code": codes_to_hex(query)[0], "k": str(k)}).json()
    reference = hamming_distance_matrix(query, codes)[0]
    order = np.lexsort((np.arange(N_INDEXED), reference))[:k]
    assert [h["id"] for h in body["results"]] == order.tolist()
    assert [h["distance"] for h in body["results"]] == reference[order].tolist()


def test_radius_search_returns_exactly_the_ball(client: TestClient, deployment: dict) -> None:
    codes = deployment["codes"]
    query = codes[7:8]
    radius = 6
    body = client.post("/search", json={"code": codes_to_hex(query)[0], "radius": radius}).json()
    reference = hamming_distance_matrix(query, codes)[0]
    expected = set(np.nonzero(reference <= radius)[0].tolist())
    assert {h["id"] for h in body["results"]} == expected
    assert all(h["distance"] <= radius for h in body["results"])
    assert body["radius"] == radius and body["k"] is None
    assert body["matches"] == len(expected) and not body["truncated"]


def test_wide_radius_is_cut_to_the_closest(client: TestClient, deployment: dict) -> None:
    codes = deployment["codes"]
    query_hex = codes_to_hex(codes[7:8])[0]
    reference = np.sort(hamming_distance_matrix(codes[7:8], codes)[0])
    body = client.post("/search", json={"code": query_hex, "radius": N_BITS, "limit": 50}).json()
    assert body["matches"] == N_INDEXED and body["truncated"]
    assert [h["distance"] for h in body["results"]] == reference[:50].tolist()
    assert body["next_offset"] == 50


def test_bad_search_requests_are_4xx(client: TestClient) -> None:
    assert client.post("/search", json={"code": "abc"}).status_code == 400
    assert client.post("/search", json={"code": "zzzzzzzz"}).status_code == 400
    assert client.post("/search", json={"k": 3}).status_code == 400
    assert client.post("/search", json={"code": "00000000", "k": 0}).status_code == 400
    assert client.post("/search", json={"code": "00000000", "radius": -1}).status_code == 400
    not_object = client.post(
        "/search", content=b"[1]", headers={"content-type": "application/json"}
    )
    assert not_object.status_code == 400 and "object" in not_object.json()["detail"]
    response = client.post("/search", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_add_requires_the_token_and_is_durable(client: TestClient, deployment: dict) -> None:
    new_image = deployment["images"][N_INDEXED + 3]
    form = {"metadata": '{"label": 9, "lat": 52.5, "lon": 13.4}'}
    assert client.post("/items", files=upload(new_image), data=form).status_code == 401
    wrong = client.post("/items", files=upload(new_image), data=form, headers={"X-Token": "nope"})
    assert wrong.status_code == 403
    assert client.get("/health").json()["items"] == N_INDEXED

    added = client.post(
        "/items",
        files=upload(new_image),
        data=form,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert added.status_code == 201, added.text
    item = added.json()
    assert item["id"] == N_INDEXED and item["metadata"]["lat"] == 52.5
    assert item["code"] == codes_to_hex(deployment["extra_codes"][3:4])[0]
    assert client.get("/health").json()["items"] == N_INDEXED + 1
    # the service's own upload store holds the upload byte for byte (never the indexed
    # photo folder), and it is served back
    stored = client.service.uploads.root / item["metadata"]["image"]
    assert stored.read_bytes() == png_bytes(new_image)
    assert not stored.resolve().is_relative_to(deployment["root"] / "images")
    served = client.get(item["image_url"])
    assert served.status_code == 200 and served.content == png_bytes(new_image)
    thumb = client.get(item["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    # searching with the same photo finds it at distance 0
    hits = client.post("/search", files=upload(new_image), data={"radius": 0}).json()["results"]
    assert N_INDEXED in [h["id"] for h in hits]
    # durable: a new server over the same directory sees the item
    service = client.service
    reopened = HammingIndex.open(service.index.path)
    assert len(reopened) == N_INDEXED + 1
    assert reopened.metadata([N_INDEXED])[0]["lon"] == 13.4
    reopened.close()

    bad_meta = client.post(
        "/items", files=upload(new_image), data={"metadata": "{"}, headers={"X-Token": TOKEN}
    )
    assert bad_meta.status_code == 400 and "metadata" in bad_meta.json()["detail"]


def test_get_and_delete_items(client: TestClient) -> None:
    item = client.get("/items/3").json()
    assert item["id"] == 3 and item["metadata"]["image"] == "3.png"
    assert client.get("/items/3/image").content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get("/items/99999").status_code == 404
    assert client.delete("/items/3").status_code == 401
    assert client.delete("/items/3", headers={"X-Token": "bad"}).status_code == 403
    deleted = client.delete("/items/3", headers={"X-Token": TOKEN})
    assert deleted.status_code == 200 and deleted.json() == {"id": 3, "removed": True}
    assert client.get("/items/3").status_code == 404
    assert client.delete("/items/3", headers={"X-Token": TOKEN}).status_code == 404
    assert client.get("/health").json()["items"] == N_INDEXED - 1
    code = codes_to_hex(np.zeros((1, N_BITS), np.uint8))[0]
    hits = client.post("/search", json={"code": code, "k": N_INDEXED}).json()["results"]
    assert 3 not in [h["id"] for h in hits] and len(hits) == N_INDEXED - 1


def test_images_outside_the_store_are_never_served(client: TestClient) -> None:
    item = client.get("/items/5").json()
    assert item["metadata"]["image"] == "../secret.txt"
    assert item["image_url"] is None  # the app does not even advertise it
    response = client.get("/items/5/image")
    assert response.status_code == 404 and "not for the web" not in response.text
    assert client.get("/items/5/image?size=64").status_code == 404
    assert client.get("/items/..%2F..%2Fsecret.txt/image").status_code in (400, 404)
    assert client.get("/items/6/image").status_code == 404
    # an absolute path inside the store (as ``hashlab index build`` records) is served
    assert client.get("/items/8/image").content[:4] == b"\x89PNG"


def bomb_png(side: int = 100_000) -> bytes:
    """A PNG whose header declares side x side pixels (10 G for the default) in ~100 bytes.

    Built chunk by chunk, because letting PIL make one would allocate the canvas; the
    service must refuse it from the header alone.
    """
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    pixels = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("name", "payload", "status", "phrase"),
    [
        ("empty", b"", 400, "empty"),
        ("truncated", None, 400, "truncated"),
        ("text", b"hello, this is not a photo\n" * 10, 400, "not an image"),
        ("bomb", "bomb", 400, "pixels"),
        ("oversize", b"\xff" * 300_000, 413, "limit"),
    ],
)
def test_bad_uploads_are_4xx_with_a_message(
    client: TestClient, deployment: dict, name: str, payload: bytes | None, status: int, phrase: str
) -> None:
    if payload is None:
        whole = png_bytes(deployment["images"][0])
        payload = whole[: len(whole) // 2]
    elif payload == "bomb":
        payload = bomb_png()
    files = {"image": (f"{name}.png", payload, "image/png")}
    for path, headers in (("/search", {}), ("/items", {"X-Token": TOKEN})):
        response = client.post(path, files=files, headers=headers)
        assert response.status_code == status, (name, path, response.text)
        assert phrase in response.json()["detail"], response.json()
    assert client.get("/health").json()["items"] == N_INDEXED


def test_concurrent_searches_during_adds_stay_consistent(
    client: TestClient, deployment: dict
) -> None:
    """Searches racing with adds see whole items, true distances and a stable order.

    Random filler codes bring the index just below the size where the index first builds
    its multi-index tables (and re-sorts its rows), so the adds push it over that edge while
    searches run: the moment an unlocked reader could pair re-sorted codes with stale ids.
    """
    from hashlab.index.hamming_index import MIN_TABLE_ROWS

    codes = deployment["codes"]
    n_filler = MIN_TABLE_ROWS - N_INDEXED - 3
    filler = np.random.default_rng(0).integers(0, 2, (n_filler, N_BITS), dtype=np.uint8)
    client.service.index.add(filler, metadata=[{"filler": True}] * n_filler)
    n_before = N_INDEXED + n_filler
    copies = 8
    # every id's code: indexed digits, fillers, then the copies of digits 0..7 added below
    code_of = np.concatenate([codes, filler, codes[:copies]])
    query = codes[11:12]
    query_hex = codes_to_hex(query)[0]
    true_distance = hamming_distance_matrix(query, code_of)[0]
    k = 20
    errors: list[str] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            hits = client.post("/search", json={"code": query_hex, "k": k}).json()["results"]
            ids = [h["id"] for h in hits]
            distances = [h["distance"] for h in hits]
            if len(hits) != k or distances != sorted(distances):
                errors.append(f"short or unsorted result {hits}")
            if any(true_distance[i] != d for i, d in zip(ids, distances, strict=True)):
                errors.append(f"an id paired with another item's distance: {hits}")
            # items present from the start never vanish: a new copy ties at best, and ties
            # go to the smaller (older) id
            worst = distances[-1]
            older = np.nonzero(true_distance[:n_before] < worst)[0]
            if set(older.tolist()) - set(ids):
                errors.append(f"items {sorted(set(older.tolist()) - set(ids))} vanished")
            if any(h["metadata"] is None for h in hits):
                errors.append("a hit without its metadata (half-added item)")

    def adder() -> None:
        for i in range(copies):
            response = client.post(
                "/items",
                files=upload(deployment["images"][i]),
                data={"metadata": f'{{"copy_of": {i}}}'},
                headers={"X-Token": TOKEN},
            )
            if response.status_code != 201:
                errors.append(response.text)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for thread in threads:
        thread.start()
    adder()
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    n_total = n_before + copies
    assert n_total > MIN_TABLE_ROWS
    assert client.get("/health").json()["items"] == n_total
    body = client.post("/search", json={"code": query_hex, "k": MAX_K_FOR_TEST}).json()
    reference = np.lexsort((np.arange(n_total), true_distance))[:MAX_K_FOR_TEST]
    assert [h["id"] for h in body["results"]] == reference.tolist()


def test_encode_images_matches_the_model_on_backbone_features(deployment: dict) -> None:
    model = hashlab.load(deployment["root"] / "model")
    images = [Image.fromarray(a) for a in deployment["images"][:4]]
    assert np.array_equal(encode_images(model, images), deployment["codes"][:4])


def test_uploads_hash_like_the_index_builder(
    client: TestClient, deployment: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service and ``pipeline.encode_images`` through the feature cache (what builds
    indexes from folders) agree."""
    from hashlab import pipeline

    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    model = hashlab.load(deployment["root"] / "model")
    paths = []
    for i in (1, 60, 299):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(png_bytes(deployment["images"][i]))
    from_files = pipeline.encode_images(model, paths, cache_key="service-test")
    for path, expected in zip(paths, from_files, strict=True):
        body = client.post("/search", files={"image": ("x.png", path.read_bytes())}).json()
        assert body["query_code"] == codes_to_hex(expected[None, :])[0]


def test_image_models_get_files(deployment: dict) -> None:
    """A pixel model (``input_kind == "pixels"``) receives readable files with the same pixels."""
    from hashlab.methods.tags import MethodTags

    class FileModel:
        n_bits = 8
        name = "file-model"
        input_kind = "pixels"
        tags = MethodTags(family="deep", supervision="none", inputs="pixels")
        seen: list[np.ndarray] = []

        def encode(self, dataset) -> np.ndarray:
            for path in dataset.image_paths:
                with Image.open(path) as image:
                    self.seen.append(np.asarray(image.convert("RGB")))
            return np.ones((len(dataset.image_paths), 8), dtype=np.uint8)

    model = FileModel()
    images = [Image.fromarray(a) for a in deployment["images"][:2]]
    codes = encode_images(model, images)
    assert codes.shape == (2, 8) and codes.all()
    assert np.array_equal(model.seen[1], deployment["images"][1])


def test_serve_command_answers_over_http(deployment: dict, tmp_path: Path) -> None:
    """``hashlab serve`` under uvicorn, as a user starts it."""
    import shutil
    import socket
    import subprocess
    import sys
    import time

    import httpx

    shutil.copytree(deployment["root"] / "index", tmp_path / "index")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "hashlab", "serve", "--model",
               str(deployment["root"] / "model"), "--index", str(tmp_path / "index"),
               "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "HASHLAB_TOKEN"},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(server.stderr.read().decode()) from None
                time.sleep(0.3)
        assert health.json() == {"status": "ok", "items": N_INDEXED}
        files = {"image": ("d.png", png_bytes(deployment["images"][9]), "image/png")}
        hits = httpx.post(f"http://127.0.0.1:{port}/search", files=files, timeout=30).json()
        assert hits["results"][0]["distance"] == 0
        # no token configured: the server is read-only
        denied = httpx.delete(f"http://127.0.0.1:{port}/items/1", headers={"X-Token": "x"})
        assert denied.status_code == 403 and "HASHLAB_TOKEN" in denied.json()["detail"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_cli_rejects_missing_directories(tmp_path: Path) -> None:
    from hashlab.cli import main

    assert main(["serve", "--model", str(tmp_path / "no"), "--index", str(tmp_path)]) == 2


def test_image_store_defaults_to_the_folder_the_index_was_built_from(
    deployment: dict, tmp_path: Path
) -> None:
    import json
    import shutil

    root = deployment["root"]
    shutil.copytree(root / "index", tmp_path / "index")
    record = {"model": str(root / "model"), "images": str(root / "images")}
    (tmp_path / "index" / "build.json").write_text(json.dumps(record))
    service = build_service(root / "model", tmp_path / "index")
    assert service.image_store == (root / "images").resolve()
    assert service.image_path({"path": str(root / "images" / "8.png")}) is not None
    service.index.close()
    bare = build_service(root / "model", root / "index")
    assert bare.image_store is None and bare.image_path({"image": "8.png"}) is None
    bare.index.close()
