"""Benchmark: the Milvus engine (embedded milvus-lite, BIN_FLAT) beside native and faiss.

One run, the same codes and queries for all three (data from ``benchmarks/search.py``):
``N`` x ``K``-bit codes (default 1M x 64, ``c1000`` = 1,000 random centres with 2% of bits
flipped, so that radius queries have hits), ``Q`` queries from the same distribution.

* hashlab native (``HammingIndex``, planner on ``auto``), faiss ``IndexBinaryFlat``, and
  ``MilvusEngine`` on a milvus-lite file in a temporary directory;
* exact top-k and radius r (inclusive; faiss and Milvus are asked for r + 1), all queries in
  one call; ms per query of **wall clock** (milvus-lite searches in its own server process,
  which a CPU-time clock of this process would not see); best of ``--repeat``;
* recall of k-NN against native's exact answer (tie-aware: share of the exact k distances
  matched) and, for radius search, whether every engine returned the same hits;
* insert rate into Milvus (column-wise batches, then a flush) and the first search after it
  (Milvus loads the segments then).

    python benchmarks/search_milvus.py                    # 1M x 64 bits
    python benchmarks/search_milvus.py --n 100000 --queries 100   # a smoke run

Results go to ``--out`` (``results.md``, ``results.json``).
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

sys.path.insert(0, str(Path(__file__).parent))
from search import DATA_NAMES, knn_recall, make_data  # noqa: E402

from hashlab.index import HammingIndex  # noqa: E402
from hashlab.index.engines.milvus import MilvusEngine  # noqa: E402


def best_of(repeat: int, function, *args):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def range_hits(result) -> list[np.ndarray]:
    """Per query, the sorted hit rows / ids (for comparing engines)."""
    return [np.sort(np.asarray(rows)) for rows, _ in result]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--data", default="c1000", choices=sorted(DATA_NAMES))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ks", default="10,100")
    parser.add_argument("--radii", default="0,2,4")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--min-features", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("milvus")))
    args = parser.parse_args()
    import faiss

    ks = [int(k) for k in args.ks.split(",")]
    radii = [int(r) for r in args.radii.split(",")]
    rng = np.random.default_rng(args.seed)
    db, queries, note = make_data(rng, args.data, args.n, args.queries, args.bits, args)
    nq = len(queries)
    ids = np.arange(args.n, dtype=np.int64)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    load = os.getloadavg()[0]

    native = HammingIndex(args.bits)
    t_native_build, _ = best_of(1, native.add, db, ids)
    flat = faiss.IndexBinaryFlat(args.bits)
    t_faiss_build, _ = best_of(1, flat.add, db)
    workdir = tempfile.mkdtemp(prefix="hashlab-milvus-bench-")
    engine = MilvusEngine(args.bits, uri=os.path.join(workdir, "codes.db"), collection="bench")
    start = time.perf_counter()
    engine.add(db, ids)
    engine.flush()
    t_milvus_insert = time.perf_counter() - start
    t_first, _ = best_of(1, engine.knn, queries[:1], 1)

    rows = []
    for k in ks:
        t_n, (n_ids, n_d) = best_of(args.repeat, native.search, queries, k)
        t_f, (f_d, _) = best_of(args.repeat, flat.search, queries, k)
        t_m, (m_d, m_rows) = best_of(args.repeat, engine.knn, queries, k)
        rows.append(
            {
                "search": f"top-{k}",
                "native_ms": 1e3 * t_n / nq,
                "faiss_flat_ms": 1e3 * t_f / nq,
                "milvus_ms": 1e3 * t_m / nq,
                "faiss_recall": knn_recall(f_d, n_d),
                "milvus_recall": knn_recall(m_d, n_d),
                "milvus_same_ids": bool(np.array_equal(m_rows, n_ids)),
            }
        )
        print(rows[-1], flush=True)
    for r in radii:
        t_n, n_res = best_of(args.repeat, native.range_search, queries, r)
        t_f, (lims, _, labels) = best_of(args.repeat, flat.range_search, queries, r + 1)
        t_m, m_res = best_of(args.repeat, engine.range, queries, r)
        native_hits = [np.sort(hit[0]) for hit in n_res]
        faiss_hits = [np.sort(labels[lims[i] : lims[i + 1]]) for i in range(nq)]
        milvus_hits = range_hits(m_res)
        same = all(
            np.array_equal(a, b) and np.array_equal(a, c)
            for a, b, c in zip(native_hits, faiss_hits, milvus_hits, strict=True)
        )
        rows.append(
            {
                "search": f"radius {r}",
                "native_ms": 1e3 * t_n / nq,
                "faiss_flat_ms": 1e3 * t_f / nq,
                "milvus_ms": 1e3 * t_m / nq,
                "hits_per_query": float(np.mean([len(h) for h in native_hits])),
                "same_hits_all_three": same,
            }
        )
        print(rows[-1], flush=True)
    engine.drop()
    engine.close()

    header = {
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
        "started": started,
        "n": args.n,
        "bits": args.bits,
        "data": DATA_NAMES[args.data] + (f" ({note})" if note else ""),
        "queries": nq,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, load average {load:.1f}",
        "clock": f"wall, best of {args.repeat}",
        "build_s": {
            "native_add": t_native_build,
            "faiss_flat_add": t_faiss_build,
            "milvus_insert_and_flush": t_milvus_insert,
            "milvus_insert_rows_per_s": args.n / t_milvus_insert,
            "milvus_first_search": t_first,
        },
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    lines = [
        "# Milvus (milvus-lite, BIN_FLAT) beside native and faiss",
        "",
        f"`{header['command']}` ({started}; {header['machine']}; clock: {header['clock']})",
        "",
        f"{args.n:,} x {args.bits}-bit codes, {header['data']}, {nq} queries in one call.",
        f"Build: native add {t_native_build:.2f} s, faiss add {t_faiss_build:.2f} s, Milvus "
        f"insert + flush {t_milvus_insert:.1f} s ({args.n / t_milvus_insert:,.0f} rows/s), "
        f"first Milvus search {t_first:.2f} s.",
        "",
        "| search | native ms/q | faiss flat ms/q | Milvus ms/q | Milvus/native | recall / same |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if "milvus_recall" in row:
            check = (
                f"Milvus {row['milvus_recall']:.3f}, faiss {row['faiss_recall']:.3f}, "
                f"ids identical to native: {row['milvus_same_ids']}"
            )
        else:
            check = (
                f"{row['hits_per_query']:.1f} hits/q, identical in all three: "
                f"{row['same_hits_all_three']}"
            )
        ratio = row["milvus_ms"] / row["native_ms"]
        lines.append(
            f"| {row['search']} | {row['native_ms']:.3f} | {row['faiss_flat_ms']:.3f} | "
            f"{row['milvus_ms']:.3f} | {ratio:.1f}x | {check} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
