"""Benchmark: hashlab's native engine against every faiss binary index, on the same codes.

For each database size N, code length K and distribution, with Q queries from the same
distribution:

* distributions: ``uniform`` random codes; ``c1000`` = 1,000 random centres with 2% of bits
  flipped; ``c10`` = 10 centres with 10% flipped; ``itq`` = codes of an ITQ model trained on
  real CIFAR-10 EfficientNet-Lite0 features (the feature cache of ``hashlab features``),
  replicated to N with 3% bit noise; queries are held-out images' codes with the same noise.
  If that cache has fewer than ``--min-features`` images, ITQ is trained on scikit-learn's
  digits instead and the row says so;
* hashlab (native engine, planner on ``auto``): radius search r = 0..3 (inclusive), exact
  top-10 / top-100, batched (all queries in one call) and single-query top-10 (one call per
  query); build time (add + the tables the first search builds) and memory;
* faiss ``IndexBinaryFlat`` (exact), ``IndexBinaryHash`` (24-bit key; range search exact
  with ``nflip = r``, k-NN with ``nflip = 2`` approximate), ``IndexBinaryMultiHash``
  (``nhash = round(K / log2 N)``; range exact with ``nflip = floor(r / nhash)``, k-NN with
  ``nflip = 1`` approximate) and ``IndexBinaryHNSW`` (M = 16, efSearch = 128, approximate;
  no range search; only for the ``--hnsw`` configurations, as its build takes about 10
  minutes per million codes here). faiss radii are strict: it is asked for ``r + 1``.

Reported: ms per query, by default of *CPU time* (``--clock cpu``: the process's CPU seconds,
all threads summed, as ``time.process_time`` counts them), because on a shared, overloaded
machine wall-clock times swing by 100x with the scheduler, for faiss and hashlab alike;
``--clock wall`` times wall clock (on an idle machine: CPU time / threads, roughly). k-NN
recall against the exact answer (tie-aware: the share of the exact k distances matched),
build seconds (same clock), memory in MB and as a multiple of the raw code bytes + 8-byte
ids, and per configuration the speed-up of hashlab over the fastest *exact* faiss index
(faiss ms / hashlab ms; for k-NN only the flat index is exact).
hashlab's answers are checked against faiss's flat index on the timed flat queries (range:
identical hit counts; k-NN: identical distances). faiss's flat index costs seconds per query
batch at 10M, so it is timed on the first ``--flat-queries`` queries (``--flat-queries-10m``
at N >= 10M); time per query does not depend on which queries are timed.

    python benchmarks/search.py                 # N = 1M, 10M; K = 32, 64, 128; 4 distributions
    python benchmarks/search.py --quick         # N = 100k, 1M (smoke run)
    python benchmarks/search.py --fallback-ratio  # numpy fallback / compiled kernel

``--time-budget`` stops starting new configurations after that many seconds; the output says
which ran. Results go to ``--out`` (``results.md`` and ``results.json``, rewritten after every
configuration).
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np

from hashlab.index import HammingIndex
from hashlab.index.native import load_native, n_threads

FEATURES = Path.home() / ".cache" / "hashlab" / "features"
DATA_NAMES = {
    "uniform": "uniform",
    "c1000": "1,000 centres, 2% flips",
    "c10": "10 centres, 10% flips",
    "itq": "ITQ codes of CIFAR-10 features, 3% flips",
}


# ---------------------------------------------------------------------------- data ----
def flip_noise(rng, packed: np.ndarray, n_bits: int, p: float) -> np.ndarray:
    out = np.empty_like(packed)
    for start in range(0, len(packed), 1 << 20):  # chunks keep the float mask small
        stop = min(start + (1 << 20), len(packed))
        flips = np.packbits(rng.random((stop - start, n_bits), dtype=np.float32) < p, axis=1)
        out[start:stop] = packed[start:stop] ^ flips
    return out


def centred(rng, n, n_queries, n_bits, n_centres, p):
    centres = np.packbits(rng.integers(0, 2, (n_centres, n_bits), dtype=np.uint8), axis=1)
    db = flip_noise(rng, centres[rng.integers(0, n_centres, n)], n_bits, p)
    queries = flip_noise(rng, centres[rng.integers(0, n_centres, n_queries)], n_bits, p)
    return db, queries


_ITQ_CACHE: dict = {}


def real_features(min_features: int):
    """CIFAR-10 EfficientNet features from the extraction cache, else digits (with a note)."""
    if "x" in _ITQ_CACHE:
        return _ITQ_CACHE["x"], _ITQ_CACHE["note"]
    chunks = sorted(glob.glob(str(FEATURES / "cifar10-efficientnet_lite0-*" / "chunk_*.npy")))
    x = np.concatenate([np.load(c) for c in chunks]) if chunks else np.zeros((0, 1))
    if len(x) >= min_features:
        note = f"ITQ trained on {len(x):,} CIFAR-10 EfficientNet-Lite0 features (cache chunks)"
    else:
        from sklearn.datasets import load_digits

        x = load_digits().data.astype(np.float32)
        note = (
            f"CIFAR-10 feature cache held {len(x) if chunks else 0} < {min_features} images: "
            "ITQ trained on scikit-learn digits instead"
        )
    _ITQ_CACHE.update(x=x.astype(np.float32), note=note)
    return _ITQ_CACHE["x"], note


def itq_codes(rng, n, n_queries, n_bits, min_features):
    import hashlab

    x, note = real_features(min_features)
    n_hold = max(len(x) // 10, 1)
    base, held = x[:-n_hold], x[-n_hold:]
    if n_bits > x.shape[1]:
        raise SystemExit(f"{n_bits} bits exceed the {x.shape[1]} feature dimensions")
    model = hashlab.create("itq", n_bits=n_bits).fit(base)
    base_codes = np.packbits(model.encode(base).astype(np.uint8), axis=1)
    held_codes = np.packbits(model.encode(held).astype(np.uint8), axis=1)
    db = flip_noise(rng, base_codes[rng.integers(0, len(base_codes), n)], n_bits, 0.03)
    queries = flip_noise(rng, held_codes[rng.integers(0, len(held_codes), n_queries)], n_bits, 0.03)
    return db, queries, note + f"; {len(base):,} distinct base codes replicated, 3% flips"


def make_data(rng, kind, n, n_queries, n_bits, args):
    nb = n_bits // 8
    if kind == "uniform":
        db = rng.integers(0, 256, (n, nb), np.uint8)
        return db, rng.integers(0, 256, (n_queries, nb), np.uint8), ""
    if kind == "c1000":
        return (*centred(rng, n, n_queries, n_bits, 1000, 0.02), "")
    if kind == "c10":
        return (*centred(rng, n, n_queries, n_bits, 10, 0.10), "")
    if kind == "itq":
        return itq_codes(rng, n, n_queries, n_bits, args.min_features)
    raise SystemExit(f"unknown distribution {kind!r}; expected one of {sorted(DATA_NAMES)}")


# ---------------------------------------------------------------------------- timing --
CLOCK = {"now": time.process_time}


def timed(function, *args, repeat: int = 1):
    best, result = math.inf, None
    for _ in range(repeat):
        start = CLOCK["now"]()
        result = function(*args)
        best = min(best, CLOCK["now"]() - start)
    return best, result


def knn_recall(found_d: np.ndarray, exact_d: np.ndarray) -> float:
    """Tie-aware recall: how many of the exact k distances the returned list matches."""
    hits = 0
    for got, want in zip(found_d, exact_d, strict=True):
        got_counts = np.bincount(got[(got >= 0) & (got <= 1024)], minlength=1025)
        want_counts = np.bincount(want[want >= 0], minlength=1025)
        hits += np.minimum(got_counts, want_counts).sum()
    return float(hits / exact_d.size)


def single_query_ms(search, queries, n_single: int) -> float:
    """Mean ms of one call per query (k = 10), after one warm-up call."""
    search(queries[:1])
    start = CLOCK["now"]()
    for i in range(n_single):
        search(queries[i : i + 1])
    return 1e3 * (CLOCK["now"]() - start) / n_single


# ---------------------------------------------------------------------------- one run -
def run_config(n, n_bits, kind, args, rng) -> tuple[list[dict], dict]:
    import faiss

    db, queries, note = make_data(rng, kind, n, args.queries, n_bits, args)
    nq = len(queries)
    n_flat = min(nq, args.flat_queries_10m if n >= 10_000_000 else args.flat_queries)
    raw = n * (n_bits // 8 + 8)
    radii, ks = args.radii, args.ks
    rows: list[dict] = []

    # -- hashlab ------------------------------------------------------------------------
    index = HammingIndex(n_bits)
    start = CLOCK["now"]()
    index.add(db)
    index.range_search(queries[:1], 0)  # builds the tables
    build_s = CLOCK["now"]() - start
    mine: dict = {"engine": "hashlab", "build_s": build_s, "memory": index.memory_bytes}
    plans, hits_per_q, exact_counts = {}, {}, {}
    for r in radii:
        seconds, result = timed(index.range_search, queries, r, repeat=args.repeat)
        mine[f"r{r}"] = 1e3 * seconds / nq
        plans[f"r{r}"] = index.engine.last_plan["plan"]
        hits_per_q[r] = float(result.offsets[-1]) / nq
        exact_counts[r] = np.diff(result.offsets)
    exact_knn = {}
    for k in ks:
        seconds, (_, d) = timed(index.search, queries, k, repeat=args.repeat)
        mine[f"k{k}"] = 1e3 * seconds / nq
        plans[f"k{k}"] = index.engine.last_plan["plan"]
        exact_knn[k] = d
        mine[f"recall{k}"] = 1.0
    mine["single10"] = single_query_ms(lambda q: index.search(q, 10), queries, args.single)
    info = index.info()["engine"]
    mine["notes"] = (
        f"tables m={info['tables']['n_tables']}, key {info['tables']['key_bits']} bits; plans "
        + ", ".join(f"{name}:{plan}" for name, plan in plans.items())
    )
    rows.append(mine)
    index = None  # free it before the faiss indexes are built
    gc.collect()

    def faiss_row(name, index, build_s, memory, range_params, knn_params, note=""):
        row = {"engine": name, "build_s": build_s, "memory": memory, "notes": note}
        sub = queries[:n_flat] if name == "faiss-flat" else queries
        for r in radii:
            if range_params is None:
                row[f"r{r}"] = None
                continue
            range_params(r)
            seconds, (lims, _, _) = timed(index.range_search, sub, r + 1, repeat=args.repeat)
            row[f"r{r}"] = 1e3 * seconds / len(sub)
            counts = np.diff(lims.astype(np.int64))
            if not np.array_equal(counts, exact_counts[r][: len(sub)]):
                row["notes"] += f" r{r}: hit counts differ from hashlab!"
        for k in ks:
            knn_params()
            seconds, (d, _) = timed(index.search, sub, k, repeat=args.repeat)
            row[f"k{k}"] = 1e3 * seconds / len(sub)
            row[f"recall{k}"] = knn_recall(d.astype(np.int64), exact_knn[k][: len(sub)])
        knn_params()
        n_single = min(args.flat_single if name == "faiss-flat" else args.single, len(sub))
        row["single10"] = single_query_ms(lambda q: index.search(q, 10), sub, n_single)
        return row

    # -- faiss IndexBinaryFlat -----------------------------------------------------------
    flat = faiss.IndexBinaryFlat(n_bits)
    build, _ = timed(flat.add, db)
    rows.append(faiss_row("faiss-flat", flat, build, flat.ntotal * flat.code_size, lambda r: None,
                          lambda: None, f"timed on {n_flat} queries"))  # fmt: skip
    del flat
    gc.collect()

    # -- faiss IndexBinaryHash ---------------------------------------------------------
    b = min(24, n_bits)
    hashed = faiss.IndexBinaryHash(n_bits, b)
    build, _ = timed(hashed.add, db)
    memory = faiss.serialize_index_binary(hashed).size

    def hash_range(r):
        hashed.nflip = r  # the key is a substring: its distance is at most the code's

    def hash_knn():
        hashed.nflip = 2

    rows.append(faiss_row("faiss-hash", hashed, build, memory, hash_range, hash_knn,
                          f"b={b}; range nflip=r (exact), k-NN nflip=2"))  # fmt: skip
    hashed = None
    gc.collect()

    # -- faiss IndexBinaryMultiHash ----------------------------------------------------
    nhash = max(1, round(n_bits / math.log2(n)))
    bits_per_hash = min(n_bits // nhash, 63)
    multi = faiss.IndexBinaryMultiHash(n_bits, nhash, bits_per_hash)
    build, _ = timed(multi.add, db)
    memory = faiss.serialize_index_binary(multi).size

    def multi_range(r):
        multi.nflip = r // nhash  # pigeonhole: exact

    def multi_knn():
        multi.nflip = 1

    rows.append(faiss_row("faiss-multihash", multi, build, memory, multi_range, multi_knn,
                          f"nhash={nhash}, b={bits_per_hash}; k-NN nflip=1"))  # fmt: skip
    multi = None
    gc.collect()

    # -- faiss IndexBinaryHNSW ---------------------------------------------------------
    if f"{n}/{n_bits}/{kind}" in args.hnsw.split(",") or args.hnsw == "all":
        hnsw = faiss.IndexBinaryHNSW(n_bits, 16)
        hnsw.hnsw.efConstruction = 40
        build, _ = timed(hnsw.add, db)
        memory = faiss.serialize_index_binary(hnsw).size

        def hnsw_knn():
            hnsw.hnsw.efSearch = 128

        rows.append(faiss_row("faiss-hnsw", hnsw, build, memory, None, hnsw_knn,
                              "M=16, efConstruction=40, efSearch=128; no range"))  # fmt: skip
        hnsw = None
        gc.collect()

    for row in rows:
        row.update(n=n, bits=n_bits, data=kind, memory_ratio=row["memory"] / raw)
    summary = {"n": n, "bits": n_bits, "data": kind, "note": note,
               "hits_per_query": hits_per_q}  # fmt: skip
    exact_names = ("faiss-flat", "faiss-hash", "faiss-multihash")
    exact_range = [row for row in rows if row["engine"] in exact_names]
    for r in radii:
        best = min(row[f"r{r}"] for row in exact_range)
        summary[f"r{r}"] = best / mine[f"r{r}"]
    flat_row = next(row for row in rows if row["engine"] == "faiss-flat")
    for k in ks:
        summary[f"k{k}"] = flat_row[f"k{k}"] / mine[f"k{k}"]
    summary["single10"] = flat_row["single10"] / mine["single10"]
    return rows, summary


# ---------------------------------------------------------------------------- output --
def fmt(value, digits=3):
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if value < 100 else f"{value:.0f}"


def rows_table(rows: list[dict], radii, ks) -> list[str]:
    head = ["N", "bits", "data", "engine", "build s", "MB (x raw)"]  # times: see --clock
    head += [f"r<={r} ms/q" for r in radii] + [f"top-{k} ms/q" for k in ks]
    head += ["top-10 single ms"] + [f"recall@{k}" for k in ks] + ["notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        memory = f"{row['memory'] / 1e6:.1f} ({row['memory_ratio']:.2f}x)"
        cells = [f"{row['n']:,}", str(row["bits"]), row["data"], row["engine"],
                 f"{row['build_s']:.2f}", memory]  # fmt: skip
        cells += [fmt(row.get(f"r{r}"), 4) for r in radii]
        cells += [fmt(row.get(f"k{k}")) for k in ks] + [fmt(row.get("single10"))]
        cells += [fmt(row.get(f"recall{k}")) for k in ks] + [row.get("notes", "")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def summary_table(summaries: list[dict], radii, ks) -> list[str]:
    head = ["N", "bits", "data", "hits/q r<=0..3"]
    head += [f"r<={r}" for r in radii] + [f"top-{k}" for k in ks] + ["top-10 single"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        hits = "/".join(f"{s['hits_per_query'][r]:.0f}" for r in radii)
        cells = [f"{s['n']:,}", str(s["bits"]), s["data"], hits]
        cells += [f"{s[f'r{r}']:.2f}x" for r in radii] + [f"{s[f'k{k}']:.1f}x" for k in ks]
        cells += [f"{s['single10']:.1f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_results(args, header, rows, summaries, skipped, started, out: Path) -> None:
    text = [header, "",
            "Speed-up of hashlab over the fastest exact faiss index (faiss ms / hashlab ms; "
            "range: flat, hash, multihash; top-k: flat, the only exact faiss k-NN):",
            ""]  # fmt: skip
    text += summary_table(summaries, args.radii, args.ks)
    text += ["", "Every engine:", ""] + rows_table(rows, args.radii, args.ks)
    notes = sorted({s["note"] for s in summaries if s["note"]})
    text += [""] + [f"* {note}" for note in notes]
    if skipped:
        text.append(f"* not run (time budget {args.time_budget:.0f} s): " + ", ".join(skipped))
    text.append(f"* total {time.perf_counter() - started:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text("\n".join(text) + "\n")
    (out / "results.json").write_text(json.dumps(
        {"config": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows,
         "summaries": summaries, "skipped": skipped}, indent=1, default=str))  # fmt: skip


def command_line() -> str:
    import shlex
    import sys

    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "HASHLAB_THREADS")
                   if k in os.environ)  # fmt: skip
    return (env + " " if env else "") + "python " + " ".join(shlex.quote(a) for a in sys.argv)


def fallback_ratio(args) -> None:
    """numpy fallback / compiled kernel on 64-bit top-10 over 200k codes, 50 queries."""
    from hashlab.index import scan

    kernels = load_native()
    rng = np.random.default_rng(args.seed)
    db = rng.integers(0, 256, (200_000, 8), np.uint8)
    keys = np.arange(len(db), dtype=np.int64)
    q = rng.integers(0, 256, (50, 8), np.uint8)
    t_numpy, a = timed(scan.knn_scan, db, keys, None, q, (0, len(db)), 64, 10)
    t_c, b = timed(kernels.knn_scan, db, keys, None, q, (0, len(db)), 64, 10, repeat=3)
    assert np.array_equal(a[0], b[0])
    print(f"numpy {t_numpy:.3f} s, compiled {t_c:.4f} s ({kernels.cpu_level}, {n_threads()} "
          f"threads): the numpy fallback is {t_numpy / t_c:.0f}x slower")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 100k, 1M")
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--bits", default="32,64,128")
    parser.add_argument("--data", default="uniform,c1000,c10,itq")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--flat-queries", type=int, default=100)
    parser.add_argument("--flat-queries-10m", type=int, default=20)
    parser.add_argument("--single", type=int, default=50, help="single-query calls timed")
    parser.add_argument("--flat-single", type=int, default=5,
                        help="single-query calls timed on faiss's flat index (slow)")
    parser.add_argument("--radii", default="0,1,2,3")
    parser.add_argument("--ks", default="10,100")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    parser.add_argument("--hnsw", default="1000000/64/itq,100000/64/itq",
                        help="N/bits/data configurations that get an HNSW row: its build takes "
                        "about 10 minutes per 1M codes on the 2 loaded cores")  # fmt: skip
    parser.add_argument("--min-features", type=int, default=5000)
    parser.add_argument("--time-budget", type=float, default=math.inf)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).with_name("search")))
    parser.add_argument("--fallback-ratio", action="store_true")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    CLOCK["now"] = time.process_time if args.clock == "cpu" else time.perf_counter
    if load_native() is None:
        raise SystemExit("the compiled kernel is not built: pip install -e . with a C compiler")
    if args.fallback_ratio:
        fallback_ratio(args)
        return
    if args.quick:
        args.sizes = "100000,1000000"
    args.radii = [int(r) for r in args.radii.split(",")]
    args.ks = [int(k) for k in args.ks.split(",")]
    import faiss

    header = (
        f"# hashlab search benchmark\n\n`{command_line()}`: {platform.machine()}, "
        f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.0f} at the start), "
        f"hashlab kernel {load_native().cpu_level} on {n_threads()} threads, faiss "
        f"{faiss.__version__} on {faiss.omp_get_max_threads()} threads, {args.queries} "
        f"queries per batch, seed {args.seed}; times are {args.clock} time "
        f"({'all threads summed' if args.clock == 'cpu' else 'wall clock'}). "
        "Radii inclusive (faiss asked for r + 1)."
    )
    print(header, flush=True)
    rng = np.random.default_rng(args.seed)
    rows, summaries, skipped = [], [], []
    started = time.perf_counter()
    for n in [int(s) for s in args.sizes.split(",")]:
        for n_bits in [int(b) for b in args.bits.split(",")]:
            for kind in args.data.split(","):
                label = f"{n:,}/{n_bits}/{kind}"
                if time.perf_counter() - started > args.time_budget:
                    skipped.append(label)
                    continue
                config_rows, summary = run_config(n, n_bits, kind, args, rng)
                rows.extend(config_rows)
                summaries.append(summary)
                print("\n".join(rows_table(config_rows, args.radii, args.ks)[2:]), flush=True)
                print("speed-up vs best exact faiss: " + summary_table([summary], args.radii,
                      args.ks)[2], flush=True)  # fmt: skip
                write_results(args, header, rows, summaries, skipped, started, Path(args.out))
    write_results(args, header, rows, summaries, skipped, started, Path(args.out))
    print(f"# total {time.perf_counter() - started:.0f} s; results in {args.out}")


if __name__ == "__main__":
    main()
