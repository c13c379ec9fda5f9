"""``hashlab demo``: the whole pipeline on scikit-learn's digits, in seconds, offline.

Trains several shallow methods on real data that ships inside scikit-learn, prints a results
table, saves PR-curve plots, and runs an example search through a HammingIndex.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEMO_METHODS = "lsh,pcah,itq,sh,sph,agh,itq_cca,sdh"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train, evaluate and search on the embedded digits data (seconds)"
    )
    parser.add_argument("--methods", default=DEMO_METHODS)
    parser.add_argument("--bits", default="16,32")
    parser.add_argument("--out", default="hashlab-demo", help="folder for the table and plots")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    import hashlab
    from hashlab.bench.report import markdown_table, protocol_text, write_report
    from hashlab.bench.runner import BenchConfig, run_benchmark
    from hashlab.cli.common import parse_int_list
    from hashlab.data.digits import load_digits_dataset
    from hashlab.data.splits import make_split
    from hashlab.index import HammingIndex

    dataset = load_digits_dataset()
    split = make_split(
        dataset, protocol="per-class", seed=args.seed, n_query_per_class=20, n_train_per_class=100
    )
    features = np.asarray(dataset.features, dtype=np.float64)
    methods = [m for m in args.methods.split(",") if m]
    config = BenchConfig(
        dataset="digits",
        protocol="scikit-learn digits, 1,797 8x8 images, 10 classes; per-class: 20 queries/class, "
        "100 train/class, database = all but queries",
        methods=methods,
        bits=parse_int_list(args.bits, "--bits"),
        backbone="none: the 64 raw pixel values",
        seed=args.seed,
    )
    result = run_benchmark(config, dataset, features, split, progress=sys.stderr.isatty())
    files = write_report(result, Path(args.out))
    print(f"Protocol: {protocol_text(result.protocol)}\n")
    print(markdown_table(result))

    # Example search: index the database with the best method at the longest code length.
    n_bits = max(config.bits)
    best = max((r for r in result.rows if r["bits"] == n_bits), key=lambda r: r["map@all"])
    model = hashlab.create(best["method"], n_bits=n_bits, seed=args.seed)
    model.fit(features[split.train], dataset.labels[split.train] if model.supervised else None)
    index = HammingIndex(n_bits)
    index.add(
        model.encode(features[split.database]),
        ids=np.asarray(split.database),
        metadata=[{"label": int(dataset.labels[i])} for i in split.database],
    )
    query = int(split.query[0])
    ids, distances = index.search(model.encode(features[[query]]), k=10)
    found = [int(dataset.labels[i]) for i in ids[0]]
    print(
        f"\nExample search with {best['method']} at {n_bits} bits: query item {query} "
        f"(digit {int(dataset.labels[query])}) -> top 10 ids {ids[0].tolist()}, "
        f"Hamming distances {distances[0].tolist()}, digits {found}"
    )
    print(f"\nwrote {', '.join(str(p) for p in files.values())}")
    return 0
