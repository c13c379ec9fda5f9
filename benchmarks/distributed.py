"""Distributed encoding and training, 1 vs 2 workers, in one run (issue 17.7).

    python benchmarks/distributed.py [--images DIR] [--n-images 240] [--out benchmarks/distributed]

1. Encoding throughput: ``hashlab.sharded_encode.encode_folder_sharded`` over the first
   ``--n-images`` MIRFlickr thumbnails with a small real model (ITQ, 32 bits, on
   EfficientNet-Lite0 features), with 1 worker (in this process) and 2 worker processes.
   Wall time from the call to the merged codes, so the 2-worker time includes starting the
   processes and loading the model twice: what a user waits for.
2. Training epoch time: DCH on scikit-learn's digits features (hidden layer ``--hidden``),
   one process vs a ``torchrun --nproc_per_node 2`` launch (gloo on CPU) on the same global
   batch; the median of the per-epoch training seconds (validation excluded), so process
   start-up is not counted. The 2-process run's weights are checked against the 1-process
   run's (their maximum difference is printed): the speed is for the same computation.

Writes ``results.json`` (everything, with the machine's load) and ``results.md`` (the tables).
Ratios are what to read: this machine is shared, so absolute numbers move with its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests"))


def _shared_data() -> Path:
    from conftest import SHARED_DATA

    return SHARED_DATA


def _train_params(args: argparse.Namespace) -> dict:
    return {"n_bits": 32, "seed": 0, "epochs": args.epochs, "batch_size": args.batch_size,
            "head_hidden": args.hidden, "dropout": 0.0, "patience": None,
            "validation_fraction": 0.1, "device": "cpu"}  # fmt: skip


def train_once(args: argparse.Namespace, out: Path | None) -> dict:
    """DCH on digits; under torchrun this is one rank. Returns (rank 0 saves) the record."""
    import torch

    import hashlab
    from hashlab.data.digits import load_digits_dataset

    torch.set_num_threads(args.threads)
    data = load_digits_dataset()
    model = hashlab.create("dch", **_train_params(args)).fit(data.features, data.labels)
    history = model.extra_config_["training"]["history"]
    record = {
        "epoch_seconds": [row["train_seconds"] for row in history],
        "weights": {k: v.detach().cpu().numpy().tolist()
                    for k, v in model.network_.state_dict().items()},
    }  # fmt: skip
    if out is not None and int(os.environ.get("RANK", 0)) == 0:
        out.write_text(json.dumps(record))
    return record


def bench_training(args: argparse.Namespace, tmp: Path) -> dict:
    single = train_once(args, None)
    out = tmp / "ranks.json"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(port), str(HERE),
               "--train-rank", str(out), "--epochs", str(args.epochs),
               "--batch-size", str(args.batch_size), "--hidden", str(args.hidden),
               "--threads", str(args.threads)]  # fmt: skip
    started = time.perf_counter()
    launch = subprocess.run(command, capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})  # fmt: skip
    launch_seconds = time.perf_counter() - started
    if launch.returncode != 0:
        raise SystemExit(f"torchrun failed:\n{launch.stderr[-3000:]}")
    double = json.loads(out.read_text())
    gap = max(float(np.abs(np.asarray(single["weights"][k]) - np.asarray(v)).max())
              for k, v in double["weights"].items())  # fmt: skip
    # the first epoch also pays for warm-up (allocations, gloo connections): the median
    one, two = (float(np.median(r["epoch_seconds"])) for r in (single, double))
    return {"method": "dch", "data": "digits (1,797 x 64 features)", **_train_params(args),
            "threads_per_process": args.threads,
            "epoch_seconds_1": one, "epoch_seconds_2": two, "speedup": one / two,
            "max_weight_difference": gap, "launch_seconds_2": launch_seconds,
            "command_2": " ".join(command[:8]) + " ..."}  # fmt: skip


def bench_encoding(args: argparse.Namespace, tmp: Path) -> dict:
    import hashlab
    from hashlab.backbones.features import image_features
    from hashlab.pipeline import list_images
    from hashlab.sharded_encode import encode_folder_sharded

    source = Path(args.images) if args.images else _shared_data() / "mirflickr25k" / "thumbs"
    folder = tmp / "images"
    folder.mkdir()
    for name in sorted(os.listdir(source))[: args.n_images]:
        shutil.copy(source / name, folder / name)
    paths = list_images(folder)
    fit_on = paths[:64]
    model = hashlab.create("itq", n_bits=32).fit(image_features(fit_on, "efficientnet_lite0"))
    model.extra_config_ = {"backbone": "efficientnet_lite0"}
    model.save(tmp / "model")
    rows = {}
    codes = {}
    for workers in (1, 2):
        work = tmp / f"work{workers}"
        started = time.perf_counter()
        result = encode_folder_sharded(tmp / "model", folder, work, workers=workers,
                                       shard_size=args.shard_size, progress=False)  # fmt: skip
        seconds = time.perf_counter() - started
        codes[workers] = result.codes
        rows[workers] = {"seconds": seconds, "images_per_second": len(paths) / seconds}
    assert np.array_equal(codes[1], codes[2]), "1 and 2 workers must give the same codes"
    return {"model": "itq 32 bits on efficientnet_lite0 features", "n_images": len(paths),
            "shard_size": args.shard_size, "workers_1": rows[1], "workers_2": rows[2],
            "speedup": rows[1]["seconds"] / rows[2]["seconds"],
            "same_codes": True}  # fmt: skip


def _markdown(result: dict) -> str:
    enc, tr, machine = result["encoding"], result["training"], result["machine"]
    lines = [
        f"Machine: {machine['cpus']} CPUs, load average {machine['load_before']} before and "
        f"{machine['load_after']} after the run (a shared machine: read the ratios).",
        "",
        f"Encoding {enc['n_images']} MIRFlickr thumbnails ({enc['model']}, shards of "
        f"{enc['shard_size']}), wall time to the merged codes (process start-up included):",
        "",
        "| workers | seconds | images / s | speed-up |",
        "|---|---|---|---|",
        f"| 1 | {enc['workers_1']['seconds']:.2f} | {enc['workers_1']['images_per_second']:.1f} "
        "| 1.00 |",
        f"| 2 | {enc['workers_2']['seconds']:.2f} | {enc['workers_2']['images_per_second']:.1f} "
        f"| {enc['speedup']:.2f} |",
        "",
        f"Training DCH on digits (hidden {tr['head_hidden']}, global batch {tr['batch_size']}, "
        f"{tr['epochs']} epochs, {tr['threads_per_process']} thread(s) per process), median "
        "training seconds per epoch:",
        "",
        "| processes | s / epoch | speed-up |",
        "|---|---|---|",
        f"| 1 | {tr['epoch_seconds_1']:.3f} | 1.00 |",
        f"| 2 (torchrun, gloo) | {tr['epoch_seconds_2']:.3f} | {tr['speedup']:.2f} |",
        "",
        f"The 2-process weights differ from the 1-process weights by at most "
        f"{tr['max_weight_difference']:.1e} (same computation).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default=None, help="image folder (default: MIRFlickr thumbs)")
    parser.add_argument("--n-images", type=int, default=240)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "distributed"))
    parser.add_argument("--train-rank", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_rank:  # one rank of the torchrun launch of bench_training
        train_once(args, Path(args.train_rank))
        return
    import torch

    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HASHLAB_CACHE"] = str(Path(tmp) / "cache")
        encoding = bench_encoding(args, Path(tmp))
        training = bench_training(args, Path(tmp))
    result = {
        "command": "python benchmarks/distributed.py " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "load_before": load_before,
                    "load_after": [round(x, 2) for x in os.getloadavg()]},
        "encoding": encoding, "training": training,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    table = f"Command: `{result['command']}`\n\n" + _markdown(result)
    (out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
