"""The two numbers the README's capacity plan for 1 billion photos rests on, measured here.

1. **Scan cost**: ms per query to scan 1M 64-bit codes exactly (native engine forced to its
   linear scan, XOR + popcount, all cores; uniform random codes, top-10), batched and one
   query per call. A 1B-code scan is ~1000x that on one machine (an extrapolation).
2. **Encode rate**: images per second through the default backbone (EfficientNet-Lite0,
   224 x 224, frozen) on this machine's CPU, synthetic 256 x 256 JPEG files read from disk
   through ``extract_features`` (its cache in a fresh folder). GPU rates in the README are
   estimates, not measured here.

    python benchmarks/capacity.py            # writes benchmarks/milvus/capacity.md and .json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def scan_ms(n: int, n_bits: int, n_queries: int, repeat: int) -> dict:
    from hashlab.index import HammingIndex

    rng = np.random.default_rng(0)
    db = rng.integers(0, 256, (n, n_bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (n_queries, n_bits // 8), dtype=np.uint8)
    index = HammingIndex(n_bits, backend_params={"plan": "scan"})
    index.add(db)
    index.search(queries[:1], 10)  # warm-up
    batched = single = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        index.search(queries, 10)
        batched = min(batched, (time.perf_counter() - start) / n_queries)
        start = time.perf_counter()
        for q in queries[:20]:
            index.search(q[None], 10)
        single = min(single, (time.perf_counter() - start) / 20)
    per_million = 1e6 / n
    return {
        "n": n,
        "bits": n_bits,
        "plan": index.explain(queries[:1], k=10).get("plan"),
        "batched_ms_per_query_per_1M": 1e3 * batched * per_million,
        "single_ms_per_query_per_1M": 1e3 * single * per_million,
    }


def encode_rate(n_images: int) -> dict:
    import torch
    from PIL import Image

    from hashlab.backbones import DEFAULT_BACKBONE, extract_features

    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="hashlab-capacity-"))
    paths = []
    for i in range(n_images):
        paths.append(folder / f"{i:04d}.jpg")
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(paths[-1])
    # the real road (decode, resize, backbone), its feature cache sent to a fresh folder
    os.environ["HASHLAB_CACHE"] = str(folder / "cache")
    extract_features(paths[:32], DEFAULT_BACKBONE, dataset_key="warm-up", progress=False)
    start = time.perf_counter()
    extract_features(paths, DEFAULT_BACKBONE, dataset_key="timed", progress=False)
    seconds = time.perf_counter() - start
    return {
        "backbone": DEFAULT_BACKBONE,
        "images": n_images,
        "torch_threads": torch.get_num_threads(),
        "images_per_s": n_images / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--out", default=str(Path(__file__).with_name("milvus")))
    args = parser.parse_args()
    load = os.getloadavg()[0]
    scan = scan_ms(args.n, 64, args.queries, args.repeat)
    print(scan, flush=True)
    encode = encode_rate(args.images)
    print(encode, flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at start"
    result = {
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine,
        "scan": scan,
        "encode": encode,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "capacity.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"`{result['command']}` ({result['started']}; {machine}; wall clock)",
        "",
        "| measured | value |",
        "|---|---:|",
        f"| exact scan of 1M x 64-bit codes, top-10, batched (ms/query) | "
        f"{scan['batched_ms_per_query_per_1M']:.3f} |",
        f"| same, one query per call (ms/query) | {scan['single_ms_per_query_per_1M']:.3f} |",
        f"| encode, {encode['backbone']} on this CPU ({encode['torch_threads']} threads, "
        f"images/s) | {encode['images_per_s']:.1f} |",
    ]
    (out / "capacity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
