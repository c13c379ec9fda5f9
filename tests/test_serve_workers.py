"""``hashlab serve --workers N``: several processes over one index directory.

A real ``hashlab serve --workers 2`` with a token, on the service tests' deployment (300
digits hashed by ITQ on small_cnn features): concurrent clients add photos through whichever
worker accepts them; every acknowledged item must then be found by every worker (each answer
names its worker in ``X-Hashlab-Worker``). A worker SIGKILLed while the clients write loses
nothing that was acknowledged, the supervisor replaces it, and ``hashlab index check`` finds
the directory sound. A writer lock held elsewhere makes a write wait, then answer 503 with
``Retry-After`` (nothing written); a milvus-lite index is refused with more than one worker.
A batch ingest job runs in one worker, yet every worker answers ``GET /jobs/ID`` (its status
file), and all of them give the same final report.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_deployment import N_INDEXED, TOKEN, build_deployment, png_bytes

from hashlab.index import HammingIndex

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_deployment(tmp_path_factory.mktemp("workers"))


@pytest.fixture(scope="module")
def server(deployment: dict) -> Iterator[dict]:
    root = deployment["root"]
    port = free_port()
    env = {**os.environ, "HASHLAB_TOKEN": TOKEN, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "hashlab", "serve", "--workers", "2", "--model",
               str(root / "model"), "--index", str(root / "index"), "--port", str(port),
               "--write-wait", "20"]  # fmt: skip
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # two workers import torch on a busy machine
        seen: set[str] = set()
        while len(seen) < 2:  # both workers answer before the tests start
            try:
                answer = httpx.get(url + "/health", timeout=5)
                answer.raise_for_status()
                seen.add(answer.headers["x-hashlab-worker"])
            except httpx.HTTPError:
                time.sleep(0.3)
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((root / "server.log").read_text())
        yield {"url": url, "process": process, "root": root, "deployment": deployment}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def add_photo(url: str, image: np.ndarray, metadata: dict) -> tuple[int, dict] | None:
    """POST /items on a new connection; (worker pid, answer) when acknowledged, else None."""
    files = {"image": ("p.png", png_bytes(image), "image/png")}
    data = {"metadata": json.dumps(metadata)}
    for _ in range(20):
        try:
            answer = httpx.post(url + "/items", files=files, data=data, headers=AUTH, timeout=60)
        except httpx.TransportError:  # the worker died under this request: not acknowledged
            return None
        if answer.status_code == 503:  # busy: the server asked to come back later
            assert int(answer.headers["retry-after"]) >= 1
            time.sleep(0.2)
            continue
        assert answer.status_code == 201, answer.text
        return int(answer.headers["x-hashlab-worker"]), answer.json()
    return None


def writers(url: str, images: np.ndarray, n_clients: int, per_client: int, tag: str) -> list:
    """Clients adding photos at once; every acknowledged (worker, answer)."""
    acknowledged: list = []
    lock = threading.Lock()

    def client(c: int) -> None:
        for j in range(per_client):
            image = images[(c * per_client + j) % len(images)]
            # each photo differs (a pixel set per item): content-addressed photos never merge
            image = image.copy()
            image.flat[(c * per_client + j) % image.size] = 255 - image.flat[0]
            done = add_photo(url, image, {"run": tag, "client": c, "n": j})
            if done is not None:
                with lock:
                    acknowledged.append(done)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    return acknowledged


def found_by_every_worker(url: str, expected: dict[int, dict], tag: str) -> set[int]:
    """Workers that answered a filtered search holding every expected item (new connections)."""
    answered: set[int] = set()
    workers: set[int] = set()
    code = next(iter(expected.values()))["code"]
    for _ in range(200):
        body = {"code": code, "k": 1000, "filter": f"run == '{tag}'"}
        answer = httpx.post(url + "/search", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        pid = int(answer.headers["x-hashlab-worker"])
        hits = {hit["id"]: hit["metadata"] for hit in answer.json()["results"]}
        missing = set(expected) - set(hits)
        assert not missing, f"worker {pid} misses acknowledged items {sorted(missing)[:5]}"
        for item_id, item in expected.items():
            assert hits[item_id] == item["metadata"]
        answered.add(pid)
        item_id = next(iter(expected))
        got = httpx.get(f"{url}/items/{item_id}", timeout=30)
        assert got.status_code == 200
        workers.add(int(got.headers["x-hashlab-worker"]))
        if len(answered) >= 2 and len(workers) >= 2:
            break
    return answered


def test_concurrent_adds_are_seen_by_every_worker(server: dict) -> None:
    url, images = server["url"], server["deployment"]["images"]
    acknowledged = writers(url, images, n_clients=4, per_client=4, tag="concurrent")
    assert len(acknowledged) == 16  # no worker died: every add is acknowledged
    assert len({pid for pid, _ in acknowledged}) == 2, "both workers took writes"
    expected = {answer["id"]: answer for _, answer in acknowledged}
    assert len(expected) == 16  # ids never collide across workers
    assert len(found_by_every_worker(url, expected, "concurrent")) == 2
    health = httpx.get(url + "/health", timeout=30).json()
    assert health["items"] == N_INDEXED + 16


def test_a_batch_job_is_known_to_every_worker(server: dict) -> None:
    url, images = server["url"], server["deployment"]["images"]
    n_photos = 20  # two ingest batches: progress is published between them
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(n_photos):
            image = images[i].copy()
            image.flat[i] = 255 - image.flat[i]  # new photos, never merged with stored ones
            archive.writestr(f"batch/{i}.png", png_bytes(image))
        archive.writestr("notes.txt", b"not a photo")
    started = httpx.post(
        url + "/items/batch",
        files={"archive": ("photos.zip", buffer.getvalue(), "application/zip")},
        data={"metadata": json.dumps({"run": "batch"})}, headers=AUTH, timeout=60,
    )  # fmt: skip
    assert started.status_code == 202, started.text
    job = started.json()["job"]
    final: dict[int, dict] = {}  # worker pid -> its answer once the job had ended
    answered: set[int] = set()  # every worker that answered, whatever the state
    ended, polls = False, 0
    deadline = time.monotonic() + 120
    while len(final) < 2 or polls < 40:
        assert time.monotonic() < deadline, f"job {job}: final answers from {set(final)}"
        polls += 1
        answer = httpx.get(f"{url}/jobs/{job}", timeout=30)  # a new connection: any worker
        assert answer.status_code == 200, (answer.headers.get("x-hashlab-worker"), answer.text)
        answered.add(int(answer.headers["x-hashlab-worker"]))
        status = answer.json()
        assert status["job"] == job and status["total"] == n_photos + 1
        assert status["state"] in ("running", "done"), status
        if ended:  # once any worker said it ended, no worker says it runs
            assert status["state"] == "done", status
        if status["state"] == "done":
            ended = True
            final[int(answer.headers["x-hashlab-worker"])] = status
        else:
            time.sleep(0.05)
    assert answered == set(final)  # two workers, and both knew the job at every poll
    reports = list(final.values())
    assert reports[0]["added"] == n_photos and reports[0]["done"] == n_photos + 1
    assert [r["file"] for r in reports[0]["refused"]] == ["notes.txt"]
    for report in reports[1:]:  # both workers give the same final report
        same = {key: value for key, value in report.items() if key != "seconds"}
        assert same == {key: value for key, value in reports[0].items() if key != "seconds"}
    assert httpx.get(f"{url}/jobs/{'0' * 12}", timeout=30).status_code == 404


def test_a_worker_killed_mid_writes_loses_nothing_acknowledged(server: dict) -> None:
    url, root, images = server["url"], server["root"], server["deployment"]["images"]
    pids = set()
    while len(pids) < 2:
        pids.add(int(httpx.get(url + "/health", timeout=30).headers["x-hashlab-worker"]))
    victim = min(pids)
    acknowledged: list = []
    killer_done = threading.Event()

    def killer() -> None:
        time.sleep(1.5)  # the clients are writing by now
        os.kill(victim, signal.SIGKILL)
        killer_done.set()

    thread = threading.Thread(target=killer)
    thread.start()
    acknowledged = writers(url, images, n_clients=3, per_client=6, tag="killed")
    thread.join()
    assert killer_done.is_set()
    assert acknowledged, "some adds were acknowledged"
    expected = {answer["id"]: answer for _, answer in acknowledged}

    # the supervisor replaced the victim: two live workers again, neither of them the victim
    deadline = time.monotonic() + 300
    seen: set[int] = set()
    while len(seen) < 2 and time.monotonic() < deadline:
        try:
            seen.add(int(httpx.get(url + "/health", timeout=5).headers["x-hashlab-worker"]))
        except httpx.TransportError:
            time.sleep(0.3)
    assert len(seen) == 2 and victim not in seen, (seen, victim)
    assert len(found_by_every_worker(url, expected, "killed")) == 2

    checked = subprocess.run(
        [sys.executable, "-m", "hashlab", "index", "check", str(root / "index")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    reader = HammingIndex.open(root / "index")
    try:
        assert all(item_id in reader for item_id in expected)
        metas = reader.metadata(list(expected))
        assert metas == [expected[i]["metadata"] for i in expected]
        # every stored photo of an acknowledged item is there
        uploads = root / "index.uploads"
        assert all((uploads / meta["image"]).is_file() for meta in metas)
    finally:
        reader.close()


def test_a_busy_writer_lock_is_a_503_with_retry_after_and_changes_nothing(
    deployment: dict, tmp_path: Path
) -> None:
    import shutil

    from fastapi.testclient import TestClient

    from hashlab.service import build_service, create_app

    root = deployment["root"]
    shutil.copytree(root / "index", tmp_path / "index")
    service = build_service(root / "model", tmp_path / "index", token=TOKEN, shared_writes=True)
    service.write_wait_s = 0.3
    holder = HammingIndex.open(tmp_path / "index", mode="w")  # another process's write, say
    files = {"image": ("p.png", png_bytes(deployment["images"][3]), "image/png")}
    try:
        with TestClient(create_app(service)) as client:
            n_before = client.get("/health").json()["items"]
            started = time.monotonic()
            busy = client.post("/items", files=files, headers=AUTH)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
            assert "busy" in busy.json()["detail"] and time.monotonic() - started >= 0.3
            assert client.delete("/items/1", headers=AUTH).status_code == 503
            holder.close()
            assert client.get("/health").json()["items"] == n_before  # nothing written
            added = client.post("/items", files=files, headers=AUTH)
            assert added.status_code == 201, added.text
            assert client.get("/health").json()["items"] == n_before + 1
    finally:
        holder.close()
        service.index.close()


def test_milvus_lite_index_is_refused_with_several_workers(tmp_path: Path, capsys) -> None:
    pytest.importorskip("pymilvus", reason="pymilvus 2.4 + milvus-lite not installed")
    from hashlab.cli import main
    from hashlab.index.engines.milvus import MilvusConnectionError

    database = tmp_path / "codes.db"
    try:
        index = HammingIndex.create(
            tmp_path / "index", 16, backend="milvus", backend_params={"uri": str(database)}
        )
    except MilvusConnectionError as error:
        pytest.skip(f"milvus-lite cannot start here: {error}")
    index.add(np.zeros((3, 2), dtype=np.uint8))
    index.close()
    index.engine.close()
    (tmp_path / "model").mkdir()
    code = main(["serve", "--workers", "2", "--model", str(tmp_path / "model"),
                 "--index", str(tmp_path / "index"), "--port", str(free_port())])  # fmt: skip
    assert code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert "needs a Milvus server URI" in message and "milvus-lite" in message
    assert str(database) in message
