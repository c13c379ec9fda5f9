"""Benchmark: hashlab's native HammingIndex against faiss's binary indexes on the same codes.

For each database size N, code length K and distribution (uniform random codes; clustered
codes = 1,000 random centres with every bit flipped at p = 0.1), with 1,000 queries drawn
from the same distribution:

* exact top-k (k = 100): native (multi-index k-NN with scan fallback) vs faiss
  ``IndexBinaryFlat`` (exhaustive) and ``IndexBinaryMultiHash`` (approximate k-NN);
* radius search, distance <= 2 (faiss radius 3, as faiss's radius is strict): native
  (multi-index hashing) vs ``IndexBinaryFlat.range_search`` and ``IndexBinaryMultiHash``
  with ``nflip = floor(2 / nhash)`` (exact).

Reported: time per query (ms, wall clock, all cores), recall against the exact answer
(k-NN: share of the exact k distances matched, which is tie-aware; radius: share of the
exact hits returned), index memory (MB) and its ratio to the raw code bytes + 8-byte ids,
and the speed-up of native over each faiss index (faiss time / native time). faiss's flat
scans cost seconds per run at 10M codes; ``--flat-queries`` times them on the first F
queries (time per query does not depend on which queries are timed).

    python benchmarks/search.py            # N = 100k, 1M, 10M; K = 32, 64, 128
    python benchmarks/search.py --quick    # N = 10k, 100k; K = 32, 64
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from hashlab.index import HammingIndex
from hashlab.index.native import load_native, n_threads

N_CENTRES = 1000
FLIP_P = 0.1


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_codes(rng: np.random.Generator, n: int, n_bits: int, centres: np.ndarray | None):
    """Packed codes; ``centres`` (C, K) bits -> clustered codes, None -> uniform."""
    n_bytes = n_bits // 8
    if centres is None:
        return rng.integers(0, 256, (n, n_bytes), dtype=np.uint8)
    out = np.empty((n, n_bytes), dtype=np.uint8)
    packed_centres = np.packbits(centres, axis=1)
    for start in range(0, n, 1 << 20):  # chunks keep the float flip mask small
        stop = min(start + (1 << 20), n)
        flips = np.packbits(rng.random((stop - start, n_bits), dtype=np.float32) < FLIP_P, axis=1)
        out[start:stop] = packed_centres[rng.integers(0, len(centres), stop - start)] ^ flips
    return out


def knn_recall(found_d: np.ndarray, exact_d: np.ndarray) -> float:
    """Tie-aware recall: how many of the exact k distances the returned list matches."""
    k = exact_d.shape[1]
    hits = 0
    for got, want in zip(found_d, exact_d, strict=True):
        got_counts = np.bincount(got[(got >= 0) & (got <= 256)], minlength=257)
        want_counts = np.bincount(want[want >= 0], minlength=257)
        hits += np.minimum(got_counts, want_counts).sum()
    return hits / (k * len(exact_d))


def range_recall(found: list[np.ndarray], exact: list[np.ndarray]) -> float:
    total = sum(len(e) for e in exact)
    if total == 0:
        return 1.0
    return sum(len(np.intersect1d(f, e)) for f, e in zip(found, exact, strict=True)) / total


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def run_config(n, n_bits, kind, args, rng) -> list[dict]:
    import faiss

    centres = rng.integers(0, 2, (N_CENTRES, n_bits), dtype=np.uint8) if kind != "uniform" else None
    db = make_codes(rng, n, n_bits, centres)
    queries = make_codes(rng, args.queries, n_bits, centres)
    n_flat = min(args.flat_queries, args.queries)
    raw = n * (n_bits // 8 + 8)
    rows = []

    # -- native -----------------------------------------------------------------------
    index = HammingIndex(n_bits)
    t0 = time.perf_counter()
    index.add(db)
    index.range_search(queries[:1], 0)  # builds the multi-index tables
    build_s = time.perf_counter() - t0
    knn_s, (exact_ids, exact_d) = timed(index.search, queries, args.k)
    range_s, exact_range = timed(index.range_search, queries, args.radius)
    exact_range_ids = [r[0] for r in exact_range]
    plan = index.info()["multi_index"]
    native = {
        "engine": "native",
        "build_s": build_s,
        "memory_mb": index.memory_bytes / 1e6,
        "memory_ratio": index.memory_bytes / raw,
        "knn_ms": 1e3 * knn_s / args.queries,
        "knn_recall": 1.0,
        "range_ms": 1e3 * range_s / args.queries,
        "range_recall": 1.0,
        "detail": f"m={plan['n_tables']} (paper {plan['paper_tables']}), "
        f"key {plan['key_bits']} bits",
    }
    rows.append(native)
    del index
    gc.collect()

    # -- faiss IndexBinaryFlat ---------------------------------------------------------
    flat = faiss.IndexBinaryFlat(n_bits)
    build_s, _ = timed(flat.add, db)
    knn_s, (flat_d, _) = timed(flat.search, queries[:n_flat], args.k)
    range_s, (lims, _, flat_labels) = timed(flat.range_search, queries[:n_flat], args.radius + 1)
    flat_range = [flat_labels[lims[i] : lims[i + 1]] for i in range(n_flat)]
    rows.append(
        {
            "engine": "faiss-flat",
            "build_s": build_s,
            "memory_mb": flat.ntotal * flat.code_size / 1e6,
            "memory_ratio": flat.ntotal * flat.code_size / raw,
            "knn_ms": 1e3 * knn_s / n_flat,
            "knn_recall": knn_recall(flat_d, exact_d[:n_flat]),
            "range_ms": 1e3 * range_s / n_flat,
            "range_recall": range_recall(flat_range, exact_range_ids[:n_flat]),
            "detail": f"timed on {n_flat} queries, no ids stored",
        }
    )
    del flat
    gc.collect()

    # -- faiss IndexBinaryMultiHash ----------------------------------------------------
    nhash = max(1, round(n_bits / math.log2(n)))
    bits_per_hash = min(n_bits // nhash, 63)
    before = rss_bytes()
    multi = faiss.IndexBinaryMultiHash(n_bits, nhash, bits_per_hash)
    build_s, _ = timed(multi.add, db)
    # faiss keeps the codes plus, per table, an id (8 B) in a hash-map bucket vector; the
    # RSS growth is the real cost but reads low when freed pages are reused, so take the max
    memory = max(rss_bytes() - before, multi.ntotal * (multi.code_size + 8 * nhash))
    multi.nflip = args.radius // nhash  # exact for the radius (pigeonhole)
    range_s, (lims, _, mh_labels) = timed(multi.range_search, queries, args.radius + 1)
    mh_range = [mh_labels[lims[i] : lims[i + 1]] for i in range(args.queries)]
    multi.nflip = args.mh_knn_nflip
    knn_s, (mh_d, _) = timed(multi.search, queries, args.k)
    rows.append(
        {
            "engine": "faiss-multihash",
            "build_s": build_s,
            "memory_mb": memory / 1e6,
            "memory_ratio": memory / raw,
            "knn_ms": 1e3 * knn_s / args.queries,
            "knn_recall": knn_recall(mh_d, exact_d),
            "range_ms": 1e3 * range_s / args.queries,
            "range_recall": range_recall(mh_range, exact_range_ids),
            "detail": f"nhash={nhash}, b={bits_per_hash}, k-NN nflip={args.mh_knn_nflip}",
        }
    )
    del multi
    gc.collect()
    for row in rows:
        row.update(n=n, bits=n_bits, data=kind)
        row["knn_speedup"] = row["knn_ms"] / native["knn_ms"]
        row["range_speedup"] = row["range_ms"] / native["range_ms"]
    return rows


def print_table(rows: list[dict]) -> None:
    header = (
        "| N | bits | data | engine | build s | memory MB (x raw) | top-100 ms/q | recall "
        "| native speed-up | r<=2 ms/q | recall | native speed-up | notes |"
    )
    print(header)
    print("|" + "---|" * 13)
    for r in rows:
        print(
            f"| {r['n']:,} | {r['bits']} | {r['data']} | {r['engine']} | {r['build_s']:.2f} "
            f"| {r['memory_mb']:.1f} ({r['memory_ratio']:.2f}x) | {r['knn_ms']:.3f} "
            f"| {r['knn_recall']:.3f} | {r['knn_speedup']:.2f}x | {r['range_ms']:.4f} "
            f"| {r['range_recall']:.3f} | {r['range_speedup']:.1f}x | {r['detail']} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 10k, 100k; 32, 64 bits")
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--bits", default="32,64,128")
    parser.add_argument("--data", default="uniform,clustered")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--flat-queries", type=int, default=1000)
    parser.add_argument("-k", type=int, default=100)
    parser.add_argument("--radius", type=int, default=2)
    parser.add_argument("--mh-knn-nflip", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the rows and the config as JSON here")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.bits = "10000,100000", "32,64"
    if load_native() is None:
        raise SystemExit("the native kernels could not be built (no C compiler?)")
    print(
        f"# hashlab search benchmark: {platform.processor() or platform.machine()}, "
        f"{n_threads()} threads, {args.queries} queries, k={args.k}, radius<={args.radius}, "
        f"clustered = {N_CENTRES} centres, p={FLIP_P}",
        flush=True,
    )
    print_table([])
    rng = np.random.default_rng(args.seed)
    all_rows = []
    started = time.perf_counter()
    for n in [int(s) for s in args.sizes.split(",")]:
        for n_bits in [int(b) for b in args.bits.split(",")]:
            for kind in args.data.split(","):
                rows = run_config(n, n_bits, kind, args, rng)
                print_table_rows(rows)
                all_rows.extend(rows)
    print(f"# total {time.perf_counter() - started:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({"config": vars(args), "rows": all_rows}, indent=2))


def print_table_rows(rows: list[dict]) -> None:
    """Rows without the header (the header is printed once)."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        print_table(rows)
    print("\n".join(buffer.getvalue().splitlines()[2:]), flush=True)


if __name__ == "__main__":
    main()
