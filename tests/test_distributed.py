"""Data-parallel training (hashlab.train.distributed): 2 CPU processes == 1 process.

One ``torchrun --nproc_per_node 2`` launch (gloo on 127.0.0.1, a free port) runs this file as
a script: every deep method is trained on scikit-learn's digits (real handwriting, 64 pixel
features) in 2 processes, each holding half of every global batch; rank 0 saves the weights
and codes. The test trains the same methods in this (single) process on the same global
batch and asserts that weights and codes agree within float tolerance. Pairwise in-batch
losses (DCH, DHN, DSH, DNNH, HashNet, IDEA...) only match because the loss sees the other
rank's codes (the differentiable all-gather); a control shows that half-batches alone give
clearly different weights, so the tolerance is far below what a wrong gather would produce.
The same launch then runs ``hashlab train`` (what ``torchrun -m hashlab train`` runs) and
checks that rank 0 alone saved and printed, and that the model equals a one-process run,
and ``hashlab encode`` of 12 MIRFlickr thumbnails with the ranks as workers.

Dropout is off: one process draws one mask per item of the global batch, two ranks draw
masks for their halves, so no run with dropout can match bit for bit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import hashlab

HERE = Path(__file__).resolve()
BATCH = 64
COMMON = {
    "n_bits": 16, "seed": 0, "epochs": 2, "batch_size": BATCH, "patience": None,
    "validation_fraction": 0.1, "device": "cpu", "dropout": 0.0,
}  # fmt: skip
# every deep method on features (PC-AEGAN trains on pixels through a CNN: too slow for here)
CASES: dict[str, tuple[str, dict]] = {
    "dpsh": ("dpsh", {}),
    "dch": ("dch", {}),
    "dhn": ("dhn", {}),
    "dsh": ("dsh", {}),
    "dnnh": ("dnnh", {}),
    "hashnet": ("hashnet", {}),
    "adsh": ("adsh", {"n_samples": 150, "inner_epochs": 2}),
    "eddh": ("eddh", {"n_pairs": 300}),
    # its loss runs the network on every training item itself (not through the gather)
    "eddh_symmetric": ("eddh", {"n_pairs": 300, "pairing": "symmetric"}),
    "idea": ("idea", {}),
    "wdht": ("wdht", {}),
}
TAGGED = {"idea", "wdht"}
# cross-modal methods on the Trainer's custom-step hooks; LBOCMH splits its triplet batch
# across the ranks and gathers the codes for the loss. "Image" and "text" are the two halves
# of each digit's pixels (the top and bottom rows: two views of one item).
CROSS_MODAL = {
    "lbo_cmh": {"n_bits": 16, "seed": 0, "epochs": 2, "hidden": 64, "batch_size": 256,
                "triplets_per_query": 2, "device": "cpu"},
    "dcmh": {"n_bits": 16, "seed": 0, "epochs": 2, "device": "cpu"},
}  # fmt: skip


def _method_class(name: str) -> type:
    from hashlab.methods.registry import get_method_class

    return get_method_class(name)


def _digits() -> dict[str, np.ndarray]:
    """400 digits; for the tag methods, 4x4 maps of 4 channels and tags made of class facts."""
    from hashlab.data.digits import load_digits_dataset

    data = load_digits_dataset()
    rows = np.random.default_rng(0).permutation(len(data.labels))[:400]
    x, y = data.features[rows].astype(np.float32), np.asarray(data.labels)[rows]
    tags = np.stack([y == d for d in range(10)] + [y % 2 == 0, y >= 5, np.isin(y, [0, 6, 8, 9])],
                    axis=1).astype(np.uint8)  # fmt: skip
    tag_vectors = np.random.default_rng(1).normal(size=(tags.shape[1], 8)).astype(np.float32)
    return {"x": x, "y": y, "maps": x.reshape(-1, 4, 4, 4), "tags": tags,
            "tag_vectors": tag_vectors}  # fmt: skip


def train_case(case: str, data: dict[str, np.ndarray]) -> object:
    if case in CROSS_MODAL:
        model = _method_class(case)(**CROSS_MODAL[case])
        return model.fit(data["x"][:, :32], data["x"][:, 32:], data["y"])
    name, params = CASES[case]
    model = _method_class(name)(**COMMON, **params)
    if name in TAGGED:
        return model.fit(data["maps"], tags=data["tags"], tag_vectors=data["tag_vectors"])
    return model.fit(data["x"], data["y"])


def _result(model: object, data: dict[str, np.ndarray]) -> dict[str, object]:
    if model.name in CROSS_MODAL:
        weights = {f"{m}_{p}_": torch.from_numpy(getattr(model, f"{m}_{p}_"))
                   for m in ("image", "text") for p in ("w1", "b1", "w2", "b2")}  # fmt: skip
        codes = np.concatenate([model.encode(data["x"][:, :32], modality="image"),
                                model.encode(data["x"][:, 32:], modality="text")])  # fmt: skip
        return {"weights": weights, "codes": codes,
                "history": model.extra_config_["training"]["history"]}  # fmt: skip
    x = data["maps"] if model.name in TAGGED else data["x"]
    return {
        "weights": {k: v.detach().clone() for k, v in model.network_.state_dict().items()},
        "codes": np.asarray(model.encode(x)),
        "history": model.extra_config_["training"]["history"],
    }


def cli_train(out: Path) -> list[str]:
    """``hashlab train`` arguments of the command-line case (dropout off: see the docstring)."""
    return ["train", "--method", "dpsh", "--dataset", "digits", "--epochs", "2", "--bits", "16",
            "--device", "cpu", "--param", "dropout=0", "--out", str(out)]  # fmt: skip


def cli_encode(model: Path, images: Path, out: Path) -> list[str]:
    """``hashlab encode`` arguments of the sharded-encoding case (the ranks are the workers)."""
    return ["encode", str(model), "--images", str(images), "--out", str(out), "--shard-size", "3"]


def _worker(out: Path) -> None:
    """One rank of the torchrun launch: train every case, rank 0 saves the results; then
    ``hashlab train`` and ``hashlab encode`` themselves, as ``torchrun -m hashlab`` runs them."""
    from hashlab.cli import main

    torch.set_num_threads(1)
    data = _digits()
    results = {case: _result(train_case(case, data), data) for case in (*CASES, *CROSS_MODAL)}
    if int(os.environ["RANK"]) == 0:
        torch.save(results, out)
    assert main(cli_train(out.with_name("cli_model"))) == 0
    folder = out.with_name("images")
    if folder.is_dir():
        assert main(cli_encode(out.with_name("encode_model"), folder,
                               out.with_name("codes.npy"))) == 0  # fmt: skip


def _encode_fixture(tmp_path: Path) -> Path | None:
    """12 MIRFlickr thumbnails and a small model (ITQ on the small CNN), or None without them."""
    from conftest import SHARED_DATA

    thumbs = SHARED_DATA / "mirflickr25k" / "thumbs"
    if not thumbs.is_dir():
        return None
    import shutil

    from hashlab.backbones.features import image_features
    from hashlab.pipeline import list_images

    folder = tmp_path / "images"
    folder.mkdir()
    for name in sorted(os.listdir(thumbs))[:12]:
        shutil.copy(thumbs / name, folder / name)
    model = hashlab.create("itq", n_bits=8).fit(image_features(list_images(folder), "small_cnn"))
    model.extra_config_ = {"backbone": "small_cnn"}
    model.save(tmp_path / "encode_model")
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_cpu_processes_train_every_deep_method_like_one(tmp_path, monkeypatch):
    out = tmp_path / "ranks.pt"
    monkeypatch.setenv("HASHLAB_CACHE", str(tmp_path / "cache"))
    images = _encode_fixture(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HASHLAB_CACHE": str(tmp_path / "cache")}
    launch = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         str(HERE), str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert launch.returncode == 0, launch.stderr[-4000:]
    distributed = torch.load(out, weights_only=False)

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data = _digits()
        for case in (*CASES, *CROSS_MODAL):
            single = _result(train_case(case, data), data)
            both = distributed[case]
            assert len(both["history"]) == len(single["history"]) == 2, case
            for key, value in single["weights"].items():
                # float sums in another order (gloo, half batches) differ in the last bits
                assert torch.allclose(both["weights"][key], value, atol=2e-5, rtol=1e-4), (
                    case, key, float((both["weights"][key] - value).abs().max()))
            agreement = (both["codes"] == single["codes"]).mean()
            assert agreement >= 0.999, (case, agreement)
            for one, two in zip(single["history"], both["history"], strict=True):
                assert abs(one["loss"] - two["loss"]) < 1e-4 * max(1.0, abs(one["loss"])), case
                score = "validation_map@all"
                assert abs(one[score] - two[score]) < 1e-6, case  # rank 0's score, broadcast

        # the command line: one model directory, written by rank 0, printed once
        from hashlab.cli import main

        assert main(cli_train(tmp_path / "cli_single")) == 0
        assert launch.stdout.count("saved ") == 1, launch.stdout
        one, two = (json.loads((tmp_path / d / "config.json").read_text())
                    for d in ("cli_single", "cli_model"))  # fmt: skip
        for key in ("map@all", "map@r2"):
            assert abs(one["extra"]["test_scores"][key] - two["extra"]["test_scores"][key]) < 1e-3
        trained = [hashlab.load(tmp_path / d).network_.state_dict() for d in
                   ("cli_single", "cli_model")]  # fmt: skip
        for key, value in trained[0].items():
            assert torch.allclose(trained[1][key], value, atol=2e-5, rtol=1e-4), key

        # hashlab encode under torchrun: the two ranks shared the shards, rank 0 merged them
        if images is not None:
            from hashlab.pipeline import encode_images, list_images

            expected = encode_images(hashlab.load(tmp_path / "encode_model"), list_images(images))
            assert np.array_equal(np.load(tmp_path / "codes.npy"), expected)
            shards = json.loads((tmp_path / "codes.shards.json").read_text())
            assert shards["workers"] == 2 and shards["n_shards"] == 4
            assert len({entry["pid"] for entry in shards["shard_log"]}) == 2

        # control: what each rank would learn from its half-batch alone is far outside the
        # tolerance above, so matching means the loss really saw the global batch
        name, params = CASES["dch"]
        half = _method_class(name)(**{**COMMON, "batch_size": BATCH // 2}, **params)
        half.fit(data["x"], data["y"])
        gap = max(float((v - distributed["dch"]["weights"][k]).abs().max())
                  for k, v in half.network_.state_dict().items())  # fmt: skip
        assert gap > 1e-3, gap
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":  # a rank of the torchrun launch above
    _worker(Path(sys.argv[1]))
