"""``hashlab index build|info`` and ``hashlab search``: build and query a Hamming index.

Build is :func:`hashlab.pipeline.build_index`: every image under a folder encoded with a
saved model, into a new index built under a temporary name and renamed when complete (an
interrupted build leaves nothing half-built; run it again). Metadata per image is its
absolute path plus the columns of an optional CSV whose ``path`` column names the image
(relative to the folder or absolute). Queries by image or text go through
:func:`hashlab.pipeline.encode_images` / :func:`~hashlab.pipeline.encode_text`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.cli import sharded
from hashlab.cli.common import UserError, print_json
from hashlab.pipeline import read_build_record

BUILD_BATCH = 1000


def register(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser("index", help="build and inspect Hamming indexes")
    commands = index.add_subparsers(dest="index_command", metavar="ACTION")

    build = commands.add_parser("build", help="encode a folder of images into a new index")
    build.add_argument("--model", required=True, help="saved model directory")
    build.add_argument("--images", required=True, help="folder of images (searched recursively)")
    build.add_argument("--metadata", help="CSV with a 'path' column and fields per image")
    build.add_argument("--out", required=True, help="index directory to create")
    build.add_argument("--batch-size", type=int, default=BUILD_BATCH, help="images per commit")
    build.add_argument(
        "--backend", default="native", help="search engine: native, faiss-flat, ..., milvus"
    )
    build.add_argument(
        "--uri", help="milvus: a milvus-lite file (codes.db) or a server (http://host:19530); "
        "a server token is read from MILVUS_TOKEN, never stored"
    )  # fmt: skip
    build.add_argument("--collection", help="milvus: collection name (default: the index's name)")
    sharded.add_arguments(build)  # --workers N: resumable shards (hashlab.sharded_encode)
    build.set_defaults(func=run_build)

    info = commands.add_parser("info", help="print size, engine and layout of an index")
    info.add_argument("index", help="index directory")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)

    check = commands.add_parser("check", help="check an index's files and metadata; --repair")
    check.add_argument("index", help="index directory")
    check.add_argument("--repair", action="store_true", help="fix what is found (writer lock)")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.set_defaults(func=run_check)
    index.set_defaults(func=lambda args: index.print_help() or 2)

    search = subparsers.add_parser("search", help="query an index by image or hex code")
    search.add_argument("index", help="index directory")
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", help="query image (encoded with the index's model)")
    query.add_argument("--code", help="query code as hex (packed bytes, big-endian bits)")
    query.add_argument(
        "--text", help="query text, for a cross-modal model with a bag-of-words or GloVe text side"
    )
    query.add_argument(
        "--text-features", help=".npy text feature row(s) for a cross-modal model (e.g. LDA)"
    )
    mode = search.add_mutually_exclusive_group(required=True)
    mode.add_argument("-k", type=int, help="number of nearest codes")
    mode.add_argument("--radius", type=int, help="all codes within this Hamming distance")
    search.add_argument("--model", help="model for --image (default: the one that built it)")
    search.add_argument("--filter", help="metadata filter, e.g. \"site == 'A12' and year >= 2024\"")
    search.add_argument("--json", action="store_true", help="print JSON")
    search.set_defaults(func=run_search)


def run_build(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from hashlab import pipeline

    if sharded.wanted(args):
        return sharded.run_build(args)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    if Path(args.out).exists():
        raise UserError(f"{args.out} already exists: choose a new index directory")
    backend = _backend_arguments(args)
    n_images = len(pipeline.list_images(args.images))
    with tqdm(total=n_images, unit="img", desc="indexing") as bar:
        record = pipeline.build_index(args.model, args.images, args.out, args.metadata,
                                      args.batch_size, on_batch=bar.update,
                                      **backend)  # fmt: skip
    print(f"indexed {record.n_images} images ({record.n_bits} bits) into {args.out}")
    return 0


def _backend_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """backend / backend_params for the index from --backend, --uri, --collection."""
    import re

    if args.backend != "milvus":
        if args.uri or args.collection:
            raise UserError(f"--uri and --collection are for --backend milvus, not {args.backend}")
        return {"backend": args.backend}
    if not args.uri:
        raise UserError("--backend milvus needs --uri (a file like codes.db, or http://host:19530)")
    from hashlab.index.engines.milvus import check_uri

    uri, local = check_uri(args.uri)  # a bad URI is refused before any image is encoded
    uri = uri if local else args.uri
    collection = args.collection or re.sub(r"\W", "_", Path(args.out).name)
    if collection[:1].isdigit():
        collection = "_" + collection
    params = {"uri": uri, "collection": collection}
    return {"backend": "milvus", "backend_params": params}


def run_info(args: argparse.Namespace) -> int:
    from hashlab.index import HammingIndex

    index = HammingIndex.open(args.index)
    info = index.info()
    record = read_build_record(args.index)
    if record is not None:
        info["build"] = record
    if args.json:
        print_json(info)
    else:
        for key, value in info.items():
            print(f"{key:32s} {value}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """``hashlab index check DIR [--repair]``: exit 0 when nothing is left wrong, else 1."""
    from hashlab.index.storage import check_index

    report = check_index(args.index, repair=args.repair)
    if args.json:
        print_json(report)
    else:
        for line in report["repaired"]:
            print(f"repaired: {line}")
        for line in report["problems"]:
            print(f"problem: {line}")
        state = "ok" if report["ok"] else f"{len(report['problems'])} problem(s)"
        print(f"{report['path']}: {state}, {report.get('n_items', '?')} items")
    return 0 if report["ok"] else 1


def _query_code(args: argparse.Namespace, index: Any) -> np.ndarray:
    from hashlab.codes import hex_to_codes

    if args.code is not None:
        return hex_to_codes(args.code, index.n_bits)
    import hashlab
    from hashlab import pipeline

    model_dir = args.model
    if model_dir is None:
        model_dir = (read_build_record(args.index) or {}).get("model")
    if model_dir is None:
        raise UserError("--image/--text need --model: this index does not record the model")
    model = hashlab.load(model_dir)
    if model.n_bits != index.n_bits:
        raise UserError(f"model makes {model.n_bits}-bit codes, the index holds {index.n_bits}")
    if args.text is not None or args.text_features is not None:
        return pipeline.encode_text(model, args.text, args.text_features)
    return pipeline.encode_images(model, [args.image], cache_key="index-queries")


def run_search(args: argparse.Namespace) -> int:
    from hashlab.index import HammingIndex

    index = HammingIndex.open(args.index)
    code = _query_code(args, index)
    if args.k is not None:
        if args.k < 1:
            raise UserError(f"-k must be a positive integer, got {args.k}")
        # more neighbours than items only pads with -1: asking for len(index) answers the same
        # and keeps a huge -k from allocating (Q, k) result arrays
        k = min(args.k, max(len(index), 1))
        ids, dists, meta = index.search(code, k, with_metadata=True, filter=args.filter)
        ids, dists, meta = ids[0], dists[0], meta[0]
        keep = ids >= 0
        ids, dists = ids[keep], dists[keep]
        meta = [m for m, k in zip(meta, keep, strict=True) if k]
    else:
        if args.radius < 0:
            raise UserError(f"--radius must be non-negative, got {args.radius}")
        ids, dists, meta = index.range_search(
            code, args.radius, with_metadata=True, filter=args.filter
        )[0]
    hits = [
        {"id": int(i), "distance": int(d), "metadata": m}
        for i, d, m in zip(ids, dists, meta, strict=True)
    ]
    if args.json:
        print_json({"query": args.code or args.image, "results": hits})
    else:
        for hit in hits:
            print(f"{hit['id']}\t{hit['distance']}\t{json.dumps(hit['metadata'])}")
    return 0
