"""``hashlab index build|info`` and ``hashlab search`` on real image files, in process."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hashlab.cli import main
from hashlab.index import HammingIndex
from hashlab.index.native import load_native
from hashlab.methods.base import ShallowMethod
from hashlab.methods.registry import _REGISTRY, register
from hashlab.methods.tags import MethodTags
from hashlab.pipeline import encode_images, read_build_record

N_BITS = 16


if "test-index-sign" not in _REGISTRY:

    @register("test-index-sign")
    class FirstFeatureSigns(ShallowMethod):
        """Signs of the first K centred backbone features: enough to hash real pixels."""

        tags = MethodTags(family="shallow", supervision="none", inputs="features")

        def _fit(self, x, y):
            self.mean_ = x.mean(axis=0)

        def _project(self, x):
            return (x - self.mean_)[:, :N_BITS]


@pytest.fixture
def built_index(tmp_path, monkeypatch):
    load_native()  # build/load the kernels from the real cache before redirecting it
    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        folder = images / "sub" if i % 2 else images
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        paths.append(folder / f"img{i:02d}.png")
        Image.fromarray(pixels).save(paths[-1])
    (tmp_path / "meta.csv").write_text(
        "path,label\n" + "".join(f"{p.relative_to(images)},{i % 3}\n" for i, p in enumerate(paths))
    )
    from hashlab.backbones import extract_features

    features = extract_features(paths, "small_cnn", dataset_key="fit", progress=False)
    model = FirstFeatureSigns(n_bits=N_BITS).fit(features)
    model.extra_config_ = {"backbone": "small_cnn"}
    model.save(tmp_path / "model")
    code = main(
        [
            "index", "build", "--model", str(tmp_path / "model"), "--images", str(images),
            "--metadata", str(tmp_path / "meta.csv"), "--out", str(tmp_path / "idx"),
            "--batch-size", "5",
        ]
    )  # fmt: skip
    assert code == 0
    return tmp_path, paths, model


def test_build_info_and_search_by_code(built_index, capsys):
    tmp_path, paths, model = built_index
    index = HammingIndex.open(tmp_path / "idx")
    assert len(index) == 12
    codes = encode_images(model, paths)
    ids, dists = index.search(codes, 1)
    # each image finds a code at distance 0 (itself, or an identical code with a smaller id)
    assert (dists[:, 0] == 0).all()
    capsys.readouterr()
    assert main(["index", "info", str(tmp_path / "idx"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_items"] == 12 and info["n_bits"] == N_BITS
    hex_code = np.packbits(codes[3]).tobytes().hex()
    assert main(["search", str(tmp_path / "idx"), "--code", hex_code, "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert len(hits) == 3 and hits[0]["distance"] == 0
    assert [h["distance"] for h in hits] == sorted(h["distance"] for h in hits)
    first = hits[0]["metadata"]
    assert set(first) == {"path", "label"}
    assert (
        np.packbits(codes[paths.index(type(paths[0])(first["path"]))]).tobytes().hex() == hex_code
    )


def test_search_by_image_and_radius(built_index, capsys):
    tmp_path, paths, _ = built_index
    capsys.readouterr()
    args = ["search", str(tmp_path / "idx"), "--image", str(paths[5]), "--radius", "0", "--json"]
    assert main(args) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert any(h["metadata"]["path"] == str(paths[5]) for h in hits)
    assert all(h["distance"] == 0 for h in hits)


def test_user_errors_exit_2(built_index, tmp_path, capsys):
    idx = str(built_index[0] / "idx")
    assert main(["search", idx, "--code", "zz", "-k", "1"]) == 2
    assert main(["search", idx, "--code", "00", "-k", "1"]) == 2  # 8 bits for a 16-bit index
    assert main(["index", "info", str(tmp_path / "missing")]) == 2
    assert "error" in capsys.readouterr().err


def test_build_record_names_absolute_paths(built_index):
    tmp_path, paths, model = built_index
    record = read_build_record(tmp_path / "idx")
    assert record["model"] == str((tmp_path / "model").resolve())
    assert record["images"] == str((tmp_path / "images").resolve())
    assert record["n_images"] == 12 and record["backbone"] == "small_cnn"
    index = HammingIndex.open(tmp_path / "idx")
    stored = {m["path"] for m in index.metadata(np.arange(12))}
    assert stored == {str(p.resolve()) for p in paths}


def test_interrupted_build_leaves_nothing_and_a_rerun_works(built_index, monkeypatch, capsys):
    """A build that dies after its first committed batch leaves no index behind (not a
    half-built one that looks complete), and running the same command again succeeds."""
    tmp_path, paths, model = built_index
    import hashlab.pipeline as pipeline

    real = pipeline.encode_images
    calls = {"n": 0}

    def dies_on_the_second_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # what Ctrl-C raises mid-build
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "encode_images", dies_on_the_second_batch)
    command = ["index", "build", "--model", str(tmp_path / "model"), "--images",
               str(tmp_path / "images"), "--out", str(tmp_path / "idx2"), "--batch-size", "5"]
    assert main(command) == 130
    assert calls["n"] == 2
    assert not (tmp_path / "idx2").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".idx2")]
    monkeypatch.setattr(pipeline, "encode_images", real)
    assert main(command) == 0
    assert len(HammingIndex.open(tmp_path / "idx2")) == 12
    assert main(command) == 2  # the index exists now: a third build refuses to overwrite it
    assert "already exists" in capsys.readouterr().err


def test_search_with_a_huge_k_answers_every_item(built_index, capsys):
    tmp_path, paths, model = built_index
    hex_code = np.packbits(encode_images(model, paths[:1])[0]).tobytes().hex()
    capsys.readouterr()
    args = ["search", str(tmp_path / "idx"), "--code", hex_code, "-k", "1000000000000", "--json"]
    assert main(args) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 12
