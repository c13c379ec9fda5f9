"""A real deployment for service tests: 300 scikit-learn digits hashed by ITQ on small_cnn
features, saved as ``hashlab serve`` expects (model directory, durable index, image store).

Shared by the API tests (``test_service.py``) and the browser test (``test_service_page.py``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

import hashlab
from hashlab.backbones import create_backbone
from hashlab.data.digits import load_digits_dataset
from hashlab.index import HammingIndex

N_INDEXED = 300
N_BITS = 32
TOKEN = "s3cret-token"


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def build_deployment(root: Path) -> dict:
    """Model in ``root/model``, index in ``root/index``, images in ``root/images``.

    Items 5 and 6 carry paths that try to leave the image store (``../secret.txt`` and an
    absolute path to it); item 8 records an absolute path inside the store, as
    ``hashlab index build`` does.
    """
    import torch

    digits = load_digits_dataset()
    images = digits.images[: N_INDEXED + 20]
    backbone = create_backbone("small_cnn")
    pil_images = [Image.open(io.BytesIO(png_bytes(a))).convert("RGB") for a in images]
    model = hashlab.create("itq", n_bits=N_BITS)
    # the model is fitted on backbone features of the decoded PNGs, exactly what the app sees
    with torch.inference_mode():
        features = backbone.module(backbone.preprocess(pil_images)).numpy()
    model.fit(features[:N_INDEXED])
    model.extra_config_ = {"backbone": "small_cnn"}
    model.save(root / "model")

    store = root / "images"
    store.mkdir()
    metadata = []
    for i in range(N_INDEXED):
        (store / f"{i}.png").write_bytes(png_bytes(images[i]))
        metadata.append(
            {
                "label": int(digits.labels[i]),
                "lat": 48.0 + i / 1000,
                "lon": 2.0,
                "image": f"{i}.png",
            }
        )
    (root / "secret.txt").write_text("not for the web")
    metadata[5]["image"] = "../secret.txt"
    metadata[6] = {"path": str(root / "secret.txt")}
    metadata[8] = {"path": str(store / "8.png")}
    codes = model.encode(features[:N_INDEXED])
    index = HammingIndex.create(root / "index", N_BITS)
    index.add(codes, metadata=metadata)
    index.close()
    return {
        "root": root,
        "images": images,
        "labels": digits.labels,
        "codes": codes,
        "extra_codes": model.encode(features[N_INDEXED:]),
    }
