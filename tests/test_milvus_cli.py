"""``hashlab index build --backend milvus --uri ...`` and ``hashlab search`` over it.

The same images are indexed twice, by the native engine and by Milvus (milvus-lite file);
every search the CLI answers (k-NN, radius, filtered) must be identical. Bad input is one
line on stderr with exit code 2 and no index directory left behind.
"""

from __future__ import annotations

import json
import socket
import warnings

import numpy as np
import pytest
from PIL import Image

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    pytest.importorskip(
        "pymilvus", reason="pymilvus 2.4 + milvus-lite not installed: pip install -e '.[milvus]'"
    )

from hashlab.cli import main  # noqa: E402
from hashlab.index import HammingIndex  # noqa: E402
from hashlab.index.engines.milvus import MilvusConnectionError, MilvusEngine  # noqa: E402
from hashlab.methods.base import ShallowMethod  # noqa: E402
from hashlab.methods.registry import _REGISTRY, register  # noqa: E402
from hashlab.methods.tags import MethodTags  # noqa: E402
from hashlab.pipeline import encode_images  # noqa: E402

N_BITS = 16

if "test-milvus-sign" not in _REGISTRY:

    @register("test-milvus-sign")
    class FirstFeatureSigns(ShallowMethod):
        """Signs of the first K centred backbone features: enough to hash real pixels."""

        tags = MethodTags(family="shallow", supervision="none", inputs="features")

        def _fit(self, x, y):
            self.mean_ = x.mean(axis=0)

        def _project(self, x):
            return (x - self.mean_)[:, : self.n_bits]


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("milvus_cli")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(30):
        paths.append(images / f"img{i:02d}.png")
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(paths[-1])
    (tmp_path / "meta.csv").write_text(
        "path,site\n" + "".join(f"{p.name},{'AB'[i % 2]}{i % 3}\n" for i, p in enumerate(paths))
    )
    from hashlab.backbones import extract_features

    try:
        MilvusEngine(N_BITS, uri=str(tmp_path / "probe.db")).drop()
    except MilvusConnectionError as error:
        pytest.skip(f"milvus-lite cannot start here: {error}")
    features = extract_features(paths, "small_cnn", dataset_key="fit", progress=False)
    model = FirstFeatureSigns(n_bits=N_BITS).fit(features)
    model.extra_config_ = {"backbone": "small_cnn"}
    model.save(tmp_path / "model")
    common = ["index", "build", "--model", str(tmp_path / "model"), "--images", str(images),
              "--metadata", str(tmp_path / "meta.csv"), "--batch-size", "7"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "native")]) == 0
    milvus = [*common, "--out", str(tmp_path / "photos"), "--backend", "milvus"]
    assert main([*milvus, "--uri", str(tmp_path / "codes.db")]) == 0
    yield tmp_path, paths, model, common
    monkeypatch.undo()


def cli_hits(capsys, index, *args) -> list[tuple[int, int, str]]:
    capsys.readouterr()
    assert main(["search", str(index), *args, "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    return [(h["id"], h["distance"], h["metadata"]["path"]) for h in hits]


def test_milvus_build_answers_like_native(two_builds, capsys) -> None:
    tmp_path, paths, model, _ = two_builds
    index = HammingIndex.open(tmp_path / "photos")
    assert index.backend == "milvus" and len(index) == len(paths)
    assert index.engine.info()["milvus_live_rows"] == len(paths)
    codes = encode_images(model, paths)
    for i in (0, 7, 19):
        code = np.packbits(codes[i]).tobytes().hex()
        for mode in (["-k", "5"], ["--radius", "3"], ["-k", "4", "--filter", "site like 'A%'"]):
            native = cli_hits(capsys, tmp_path / "native", "--code", code, *mode)
            milvus = cli_hits(capsys, tmp_path / "photos", "--code", code, *mode)
            assert milvus == native, mode
            assert native, mode
    code = np.packbits(codes[3]).tobytes().hex()
    filtered = cli_hits(capsys, tmp_path / "photos", "--code", code, "--radius", "16",
                        "--filter", "site in ['A0', 'B1']")  # fmt: skip
    sites = {paths.index(type(paths[0])(p)) % 6 for _, _, p in filtered}
    assert len(filtered) == 10 and sites == {0, 1}  # i % 6 == 0 -> A0, == 1 -> B1


def test_bad_milvus_input_is_one_line_and_writes_nothing(two_builds, capsys) -> None:
    tmp_path, _, _, common = two_builds
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    other = MilvusEngine(64, uri=str(tmp_path / "codes.db"), collection="wide")
    other.close()
    cases = [
        (["--uri", "ftp://nowhere/codes"], "unknown scheme"),
        (["--uri", str(tmp_path / "missing" / "codes.db")], "does not exist"),
        (["--uri", f"http://127.0.0.1:{port}"], "cannot open the Milvus server"),
        (["--uri", str(tmp_path / "codes.db"), "--collection", "wide"], "holds 64-bit codes"),
        ([], "needs --uri"),
    ]
    for extra, expected in cases:
        out = tmp_path / "bad"
        capsys.readouterr()
        assert main([*common, "--out", str(out), "--backend", "milvus", *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
        assert err.startswith("hashlab index: error: ") and expected in err, err
        assert not out.exists() and not list(tmp_path.glob(".bad*")), extra
    capsys.readouterr()
    code = "00" * (N_BITS // 8)
    assert main(["search", str(tmp_path / "photos"), "--code", code, "-k", "3",
                 "--filter", "site == = 'A'"]) == 2  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "invalid filter at column 9" in err and "\n" not in err
    assert HammingIndex.open(tmp_path / "photos").engine.info()["milvus_live_rows"] == 30
