"""The service as a utility engineer uses it: filters, paging, CSV, batch ingestion, text, token.

Same digits deployment as ``test_service.py`` (ITQ on small_cnn features, 300 items with
``label``, ``lat``, ``lon``); every ranking is checked against brute-force Hamming distances
with ties broken by id, restricted to the items the filter keeps (judged in Python here).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("multipart")

from fastapi.testclient import TestClient  # noqa: E402
from service_deployment import N_INDEXED, TOKEN, build_deployment, png_bytes  # noqa: E402

from hashlab.codes import codes_to_hex, hamming_distance_matrix  # noqa: E402
from hashlab.service import build_service, create_app  # noqa: E402

AUTH = {"X-Token": TOKEN}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return build_deployment(tmp_path_factory.mktemp("features"))


@pytest.fixture()
def client(deployment: dict, tmp_path: Path) -> Iterator[TestClient]:
    root = deployment["root"]
    shutil.copytree(root / "index", tmp_path / "index")
    (tmp_path / "ingest").mkdir()
    service = build_service(
        root / "model", tmp_path / "index", image_store=root / "images", token=TOKEN,
        max_upload_bytes=200_000,
    )  # fmt: skip
    service.configure(ingest_root=tmp_path / "ingest")
    with TestClient(create_app(service)) as test_client:
        test_client.service = service
        test_client.tmp = tmp_path
        yield test_client
    service.index.close()


def metadata_of(deployment: dict) -> list[dict]:
    """The deployment's metadata as build_deployment wrote it (items 6 and 8: path only)."""
    metas = []
    for i in range(N_INDEXED):
        metas.append({"label": int(deployment["labels"][i]), "lat": 48.0 + i / 1000})
    metas[6] = metas[8] = {}
    return metas


def ranking(deployment: dict, query: int, keep) -> tuple[list[int], np.ndarray]:
    codes = deployment["codes"]
    distances = hamming_distance_matrix(codes[query : query + 1], codes)[0]
    ids = np.array([i for i, meta in enumerate(metadata_of(deployment)) if keep(meta)])
    order = ids[np.lexsort((ids, distances[ids]))]
    return order.tolist(), distances


def test_filtered_knn_matches_brute_force(client: TestClient, deployment: dict) -> None:
    code = codes_to_hex(deployment["codes"][11:12])[0]
    body = client.post("/search", json={"code": code, "k": 10, "filter": "label == 3"}).json()
    expected, distances = ranking(deployment, 11, lambda m: m.get("label") == 3)
    assert [h["id"] for h in body["results"]] == expected[:10]
    assert [h["distance"] for h in body["results"]] == distances[expected[:10]].tolist()
    assert all(h["metadata"]["label"] == 3 for h in body["results"])
    assert body["filter"] == "label == 3"


def test_filter_syntax_errors_name_the_column(client: TestClient) -> None:
    response = client.post("/search", json={"code": "00000000", "filter": "label == == 3"})
    assert response.status_code == 400
    assert "column 10" in response.json()["detail"], response.json()


def test_pages_of_a_filtered_radius_search_tile_the_ball(
    client: TestClient, deployment: dict
) -> None:
    code = codes_to_hex(deployment["codes"][40:41])[0]
    expected, _ = ranking(deployment, 40, lambda m: m.get("lat", 99) < 48.1)
    seen: list[int] = []
    offset: int | None = 0
    for _ in range(50):  # bounded: 100 items in pages of 7
        body = client.post(
            "/search",
            json={"code": code, "radius": 32, "limit": 7, "offset": offset,
                  "filter": "lat < 48.1"},
        ).json()  # fmt: skip
        assert body["matches"] == len(expected)
        seen += [h["id"] for h in body["results"]]
        offset = body["next_offset"]
        if offset is None:
            break
    assert seen == expected


def test_knn_pages_continue_the_ranking(client: TestClient, deployment: dict) -> None:
    code = codes_to_hex(deployment["codes"][5:6])[0]
    expected, _ = ranking(deployment, 5, lambda m: True)
    pages = []
    for offset in (0, 10, 20):
        body = client.post("/search", json={"code": code, "k": 10, "offset": offset}).json()
        assert body["next_offset"] == offset + 10
        pages += [h["id"] for h in body["results"]]
    assert pages == expected[:30]
    last = client.post("/search", json={"code": code, "k": 10, "offset": N_INDEXED - 4}).json()
    assert [h["id"] for h in last["results"]] == expected[-4:] and last["next_offset"] is None


def test_k_with_radius_and_a_window_past_the_cap_are_refused(client: TestClient) -> None:
    both = client.post("/search", json={"code": "00000000", "k": 3, "radius": 2})
    assert both.status_code == 400 and "not both" in both.json()["detail"]
    far = client.post("/search", json={"code": "00000000", "k": 10, "offset": 10**6})
    assert far.status_code == 400 and "offset" in far.json()["detail"]


def test_csv_export_has_a_row_per_hit_and_defuses_formulas(
    client: TestClient, deployment: dict
) -> None:
    image = png_bytes(deployment["images"][N_INDEXED + 2])
    added = client.post(
        "/items",
        files={"image": ("x.png", image, "image/png")},
        data={"metadata": '{"title": "=HYPERLINK(\\"http://evil\\")", "site": "A12"}'},
        headers=AUTH,
    ).json()
    code = added["code"]
    response = client.post(
        "/search", data={"code": code, "k": "25", "format": "csv", "filter": "site == 'A12'"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 1 and rows[0]["id"] == str(added["id"]) and rows[0]["distance"] == "0"
    assert rows[0]["title"].startswith("'=")  # a spreadsheet shows it as text
    full = client.post("/search", data={"code": code, "k": "25", "format": "csv"}).text
    rows = list(csv.DictReader(io.StringIO(full)))
    json_hits = client.post("/search", data={"code": code, "k": "25"}).json()["results"]
    assert [int(r["id"]) for r in rows] == [h["id"] for h in json_hits]
    assert {"label", "lat", "lon"} <= set(rows[0])


def test_text_search_on_an_image_only_model_says_why(client: TestClient) -> None:
    response = client.post("/search", json={"text": "a red car", "k": 5})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "text side" in detail and "cross-modal" in detail and "itq" in detail
    assert client.get("/stats").json()["text_search"] is False


def wait_for_job(client: TestClient, job: str) -> dict:
    for _ in range(600):  # bounded: 60 s
        status = client.get(f"/jobs/{job}").json()
        if status["state"] != "running":
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job} did not finish: {status}")


def test_zip_ingestion_adds_good_photos_and_reports_the_rest(
    client: TestClient, deployment: dict
) -> None:
    images = deployment["images"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(4):
            archive.writestr(f"site/{i}.png", png_bytes(images[N_INDEXED + 5 + i]))
        archive.writestr("../../escape.png", png_bytes(images[N_INDEXED + 9]))
        archive.writestr("broken.png", b"this is not a png" * 10)
        archive.writestr("notes.txt", b"field notes")
        archive.writestr("huge.png", b"\x89PNG" + b"\0" * 300_000)
    response = client.post(
        "/items/batch",
        files={"archive": ("photos.zip", buffer.getvalue(), "application/zip")},
        data={"metadata": '{"site": "B7", "date": "2024-05-01"}'},
        headers=AUTH,
    )
    assert response.status_code == 202, response.text
    report = wait_for_job(client, response.json()["job"])
    assert report["state"] == "done", report
    assert report["total"] == 8 and report["done"] == 8 and report["added"] == 5
    reasons = {r["file"]: r["reason"] for r in report["refused"]}
    assert set(reasons) == {"broken.png", "notes.txt", "huge.png"}
    assert "not an image" in reasons["notes.txt"] and "limit" in reasons["huge.png"]
    assert "not an image format" in reasons["broken.png"]
    assert not (client.tmp.parent / "escape.png").exists()  # names are never paths on disk
    assert client.get("/health").json()["items"] == N_INDEXED + 5
    # each added photo is found at distance 0, with the batch's metadata
    for new_id in report["ids"]:
        item = client.get(f"/items/{new_id}").json()
        assert item["metadata"]["site"] == "B7" and item["image_url"]
    by_date = client.post(
        "/search", json={"code": "00000000", "k": 20, "filter": "date >= '2024-01-01'"}
    ).json()
    assert sorted(h["id"] for h in by_date["results"]) == sorted(report["ids"])
    # the archive's temporary copy is gone
    assert list(client.service.uploads.tmp.glob("*")) == []


def test_folder_ingestion_stays_under_the_ingest_root(
    client: TestClient, deployment: dict, tmp_path: Path
) -> None:
    folder = client.tmp / "ingest" / "pole-survey"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(png_bytes(deployment["images"][N_INDEXED + 10 + i]))
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes(deployment["images"][0]))
    (folder / "link.png").symlink_to(outside)
    for escape in ("..", "/etc", "pole-survey/../../"):
        refused = client.post("/items/batch", json={"folder": escape}, headers=AUTH)
        assert refused.status_code == 403, (escape, refused.text)
    response = client.post("/items/batch", json={"folder": "pole-survey"}, headers=AUTH)
    assert response.status_code == 202, response.text
    report = wait_for_job(client, response.json()["job"])
    assert report["state"] == "done" and report["added"] == 3
    link = {"file": "link.png", "reason": "a link that leaves the ingest root"}
    assert report["refused"] == [link]
    anonymous = client.post("/items/batch", json={"folder": "pole-survey"})
    assert anonymous.status_code == 401


def namespace(**values) -> argparse.Namespace:
    return argparse.Namespace(**{"token": None, "token_file": None, **values})


def test_token_comes_from_the_environment_or_a_file_not_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from hashlab.cli.common import UserError
    from hashlab.cli.serve import read_token

    monkeypatch.setenv("HASHLAB_TOKEN", "from-env")
    assert read_token(namespace()) == "from-env"
    secret = tmp_path / "token"
    secret.write_text("from-file\nignored\n")
    assert read_token(namespace(token_file=str(secret))) == "from-file"
    assert capsys.readouterr().err == ""
    assert read_token(namespace(token="on-the-command-line")) == "on-the-command-line"
    assert "visible" in capsys.readouterr().err  # the deprecation warning
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UserError, match="empty"):
        read_token(namespace(token_file=str(tmp_path / "empty")))
    with pytest.raises(UserError, match="cannot be read"):
        read_token(namespace(token_file=str(tmp_path / "missing")))
    monkeypatch.delenv("HASHLAB_TOKEN")
    assert read_token(namespace()) is None
    assert os.environ.get("HASHLAB_TOKEN") is None


WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_text_search_with_a_cross_modal_model(tmp_path: Path) -> None:
    """CMFH on digits: small_cnn image features paired with the digit's name as a word.

    The text query is hashed by the model's text side (its bag-of-words featurizer), and the
    hits are exactly the brute-force ranking of that code over the indexed image codes.
    """
    import torch
    from PIL import Image

    import hashlab
    from hashlab.backbones import create_backbone
    from hashlab.data.digits import load_digits_dataset
    from hashlab.index import HammingIndex
    from hashlab.methods.cross_modal.text import text_to_features

    digits = load_digits_dataset()
    n = 200
    backbone = create_backbone("small_cnn")
    images = [Image.open(io.BytesIO(png_bytes(a))).convert("RGB") for a in digits.images[:n]]
    with torch.inference_mode():
        features = backbone.module(backbone.preprocess(images)).numpy()
    labels = np.asarray(digits.labels[:n])
    texts = np.eye(len(WORDS), dtype=np.float32)[labels]
    model = hashlab.create("cmfh", n_bits=16).fit(
        features, texts, np.eye(10)[labels],
        text_featurizer={"kind": "bow", "vocabulary": WORDS, "binary": True},
    )  # fmt: skip
    model.extra_config_["backbone"] = "small_cnn"
    model.save(tmp_path / "model")
    codes = model.encode(features, modality="image")
    index = HammingIndex.create(tmp_path / "index", 16)
    index.add(codes, metadata=[{"label": int(label)} for label in labels])
    index.close()

    service = build_service(tmp_path / "model", tmp_path / "index")
    with TestClient(create_app(service)) as client:
        assert client.get("/stats").json()["text_search"] is True
        body = client.post("/search", json={"text": "a handwritten three", "k": 15}).json()
        loaded = hashlab.load(tmp_path / "model")
        query = loaded.encode(text_to_features(loaded, "three"), modality="text")
        assert body["query_code"] == codes_to_hex(query)[0]
        distances = hamming_distance_matrix(query, codes)[0]
        expected = np.lexsort((np.arange(n), distances))[:15]
        assert [h["id"] for h in body["results"]] == expected.tolist()
        unknown = client.post("/search", json={"text": "lamp post", "k": 5})
        assert unknown.status_code == 400 and "vocabulary" in unknown.json()["detail"]
    service.index.close()
