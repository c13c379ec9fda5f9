"""``hashlab bench``: run a protocol over methods x bit lengths; print and save the table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hashlab.backbones.registry import DEFAULT_BACKBONE
from hashlab.cli.common import UserError, add_tag_arguments, parse_int_list, print_json

BITS_DEFAULT = "16,32,48,64"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run a retrieval protocol over methods and bit lengths",
        description="Fit each method at each bit length on the protocol's training split, "
        "encode queries and database, and report the protocols spec's metrics.",
    )
    parser.add_argument(
        "--dataset",
        default="digits",
        help="cifar10, digits, folder, mirflickr, listfile, nuswide21, coco, imagenet100",
    )
    parser.add_argument("--root", help="path of the data set (folder or archive)")
    parser.add_argument(
        "--protocol",
        default=None,
        help="dch, deephash, per-class or listfile (default: listfile for list-file sets, dch for "
        "cifar10, per-class otherwise)",
    )
    parser.add_argument("--queries", type=int, default=None, help="queries per class (per-class)")
    parser.add_argument("--train", type=int, default=None, help="training items per class")
    parser.add_argument("--methods", default="lsh,pcah,itq,sh,itq_cca,sdh")
    parser.add_argument("--bits", default=BITS_DEFAULT)
    parser.add_argument("--metrics", default="map@all,map@r2,precision@r2,recall@r2")
    parser.add_argument(
        "--convention",
        default="retrieved",
        choices=("retrieved", "min_r_k"),
        help="map@k denominator: relevant items retrieved, or min(R, k)",
    )
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--weights", default=None, help="backbone weights file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="method parameter, e.g. dch.epochs=30 (repeatable)",
    )
    add_tag_arguments(parser)
    parser.add_argument("--out", default="bench-results", help="folder for JSON, CSV, plots")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    harness = parser.add_argument_group(
        "fair tables (the experiment harness: equal budgets, validation tuning, seeds, "
        "verdicts; python -m hashlab.bench.harness takes the same options)"
    )
    harness.add_argument(
        "--harness",
        metavar="TABLE",
        help="run a harness table instead of the quick protocol above (cifar10, "
        "cifar10-all, cifar10-unsupervised, eddh, mirflickr-tags, mirflickr-labels, digits ...)",
    )
    harness.add_argument("--quick", action="store_true", help="a CI-sized version of the table")
    harness.add_argument("--rows", help="table rows to run (default: all)")
    harness.add_argument("--seeds", help="seeds, e.g. 0,1,2 (default: the table's)")
    harness.add_argument("--n-trials", type=int, help="tuning trials per (row, bits)")
    harness.add_argument("--jobs", type=int, default=1, help="worker processes")
    harness.add_argument("--resume", action="store_true", help="continue the runs in --out")
    parser.set_defaults(func=run)


def run_harness(args: argparse.Namespace) -> int:
    """``hashlab bench --harness TABLE``: the harness's own CLI, with the options given."""
    from hashlab.bench import harness

    if args.harness not in harness.TABLES:
        raise UserError(
            f"unknown harness table {args.harness!r}; known: {', '.join(sorted(harness.TABLES))}"
        )
    argv = ["--table", args.harness, "--out", args.out, "--jobs", str(args.jobs)]
    given = {"--bits": args.bits_given, "--rows": args.rows, "--seeds": args.seeds}
    argv += [item for flag, value in given.items() if value for item in (flag, value)]
    argv += ["--n-trials", str(args.n_trials)] if args.n_trials is not None else []
    argv += ["--quick"] * args.quick + ["--resume"] * args.resume
    argv += ["--data-root", args.root] if args.root else []
    return harness.main(argv)


def parse_method_params(pairs: list[str]) -> dict[str, dict[str, object]]:
    params: dict[str, dict[str, object]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise UserError(f"--param must look like METHOD.KEY=VALUE, got {pair!r}")
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params.setdefault(method, {})[name] = value
    return params


def run(args: argparse.Namespace) -> int:
    if args.harness:
        args.bits_given = None if args.bits == BITS_DEFAULT else args.bits
        return run_harness(args)
    import hashlab
    from hashlab.backbones.features import dataset_features
    from hashlab.bench.report import markdown_table, protocol_text, write_report
    from hashlab.bench.runner import BenchConfig, run_benchmark
    from hashlab.data.catalog import default_protocol, load_dataset
    from hashlab.data.splits import make_split
    from hashlab.metrics import parse_metric

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    known = hashlab.list_methods()
    for method in methods:
        if method not in known:
            raise UserError(f"unknown method {method!r}; known methods: {', '.join(known)}")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    for metric in metrics:
        parse_metric(metric)  # raises ValueError naming the bad metric
    bits = parse_int_list(args.bits, "--bits")
    protocol = args.protocol or default_protocol(args.dataset)
    progress = not args.json and sys.stderr.isatty()

    dataset = load_dataset(args.dataset, args.root, args.csv, args.label_column, args.tags_column)
    if dataset.labels is None:
        raise UserError(f"{dataset.name} has no labels to score retrieval with")
    split = make_split(
        dataset,
        protocol=protocol,
        seed=args.seed,
        n_query_per_class=args.queries,
        n_train_per_class=args.train,
    )
    # the pooled features once, for the table's protocol line and every method that takes
    # them; region maps and pixels are got by the pipeline for the methods whose tags ask
    features, feature_source = dataset_features(dataset, args.backbone, args.weights, progress)
    config = BenchConfig(
        dataset=args.dataset,
        protocol=protocol,
        methods=methods,
        bits=bits,
        metrics=metrics,
        backbone=feature_source,
        seed=args.seed,
        convention=args.convention,
        method_params=parse_method_params(args.param),
        tag_embedding=args.embedding,
    )
    result = run_benchmark(config, dataset, features, split, progress, backbone=args.backbone)
    files = write_report(result, Path(args.out))
    if args.json:
        print_json(result.to_json())
    else:
        print(f"Protocol: {protocol_text(result.protocol)}\n")
        print(markdown_table(result))
        print(f"\nwrote {', '.join(str(p) for p in files.values())}")
    return 0
