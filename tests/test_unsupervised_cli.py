"""``hashlab train`` on an unlabelled photo collection (issue 19): a flat folder of images with
no class sub-folders trains an unsupervised method and refuses a supervised one in one line.

Real data: 40 MIRFlickr-25K thumbnails copied into a flat folder; the tiny ``small_cnn``
backbone keeps it fast.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import SHARED_DATA

import hashlab
from hashlab.cli import main
from hashlab.pipeline import encode_images

THUMBS = SHARED_DATA / "mirflickr25k" / "thumbs"


@pytest.fixture
def photos(tmp_path, monkeypatch):
    if not THUMBS.is_dir():
        pytest.skip("the MIRFlickr thumbnails are not on this machine")
    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(1, 41):
        shutil.copy(THUMBS / f"im{i}.jpg", folder / f"im{i}.jpg")
    return folder


def test_a_supervised_method_is_refused_on_a_flat_folder(photos, tmp_path, capsys):
    code = main(["train", "--method", "dch", "--dataset", "folder", "--root", str(photos),
                 "--out", str(tmp_path / "model"), "--backbone", "small_cnn"])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error  # one line
    assert "dch is supervised and photos has no labels" in error
    named = error.split("without labels: ")[1].split(", ")
    assert {"bihalf", "cibhash", "lsh", "itq"} <= set(named)
    assert "cmfh" not in named  # cross-modal: needs paired text, not photos alone
    assert not (tmp_path / "model").exists()


def test_bihalf_trains_on_a_flat_folder_without_labels(photos, tmp_path, capsys):
    out = tmp_path / "model"
    code = main(["train", "--method", "bihalf", "--dataset", "folder", "--root", str(photos),
                 "--out", str(out), "--backbone", "small_cnn", "--bits", "8", "--epochs", "3",
                 "--device", "cpu"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "photos has no labels: test retrieval not scored" in printed
    assert "validation heldout_criterion" in printed
    config = json.loads((out / "config.json").read_text())
    assert config["extra"]["training"]["selection"] == "lowest held-out loss, no labels"
    assert config["extra"]["test_scores"] is None
    model = hashlab.load(out)
    codes = encode_images(model, sorted(photos.iterdir())[:5])
    assert codes.shape == (5, 8) and set(np.unique(codes)) <= {0, 1}
