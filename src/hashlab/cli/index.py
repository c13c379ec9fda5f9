"""``hashlab index build|info`` and ``hashlab search``: build and query a Hamming index.

Build encodes every image under a folder with a saved model (through
:func:`hashlab.index.encode.encode_image_files`) and adds the codes in committed batches,
so an interrupted build leaves an index of the batches done so far. Metadata per image is
its path plus the columns of an optional CSV whose ``path`` column names the image
(relative to the folder or absolute).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.cli.common import UserError, print_json

BUILD_BATCH = 1000
BUILD_RECORD = "build.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    index = subparsers.add_parser("index", help="build and inspect Hamming indexes")
    commands = index.add_subparsers(dest="index_command", metavar="ACTION")

    build = commands.add_parser("build", help="encode a folder of images into a new index")
    build.add_argument("--model", required=True, help="saved model directory")
    build.add_argument("--images", required=True, help="folder of images (searched recursively)")
    build.add_argument("--metadata", help="CSV with a 'path' column and fields per image")
    build.add_argument("--out", required=True, help="index directory to create")
    build.add_argument("--batch-size", type=int, default=BUILD_BATCH, help="images per commit")
    build.set_defaults(func=run_build)

    info = commands.add_parser("info", help="print size, engine and layout of an index")
    info.add_argument("index", help="index directory")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=run_info)
    index.set_defaults(func=lambda args: index.print_help() or 2)

    search = subparsers.add_parser("search", help="query an index by image or hex code")
    search.add_argument("index", help="index directory")
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--image", help="query image (encoded with the index's model)")
    query.add_argument("--code", help="query code as hex (packed bytes, big-endian bits)")
    query.add_argument(
        "--text", help="query text, for a cross-modal model with a bag-of-words text side"
    )
    query.add_argument(
        "--text-features", help=".npy text feature row(s) for a cross-modal model (e.g. LDA)"
    )
    mode = search.add_mutually_exclusive_group(required=True)
    mode.add_argument("-k", type=int, help="number of nearest codes")
    mode.add_argument("--radius", type=int, help="all codes within this Hamming distance")
    search.add_argument("--model", help="model for --image (default: the one that built it)")
    search.add_argument("--json", action="store_true", help="print JSON")
    search.set_defaults(func=run_search)


def _read_metadata_csv(path: Path, folder: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"metadata CSV not found: {path}")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "path" not in reader.fieldnames:
            raise UserError(f"{path} needs a 'path' column naming each image")
        table = {}
        for row in reader:
            image = Path(row["path"])
            image = image if image.is_absolute() else folder / image
            table[str(image.resolve())] = {k: v for k, v in row.items() if k != "path"}
    return table


def run_build(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    import hashlab
    from hashlab.index import HammingIndex
    from hashlab.index.encode import encode_image_files, list_images

    folder = Path(args.images)
    images = list_images(folder)
    if not images:
        raise UserError(f"no images found under {folder}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    extra = _read_metadata_csv(Path(args.metadata), folder) if args.metadata else {}
    model = hashlab.load(args.model)
    out = Path(args.out)
    try:
        index = HammingIndex.create(out, model.n_bits)
    except FileExistsError as error:
        raise UserError(str(error)) from None
    (out / BUILD_RECORD).write_text(
        json.dumps({"model": str(Path(args.model).resolve()), "images": str(folder.resolve())})
    )
    with tqdm(total=len(images), unit="img", desc="indexing") as bar:
        for start in range(0, len(images), args.batch_size):
            batch = images[start : start + args.batch_size]
            codes = encode_image_files(model, batch, dataset_key=f"index-{folder.name}")
            metadata = [{"path": str(p)} | extra.get(str(p.resolve()), {}) for p in batch]
            index.add(codes, metadata=metadata)
            bar.update(len(batch))
    print(f"indexed {len(index)} images ({model.n_bits} bits) into {out}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from hashlab.index import HammingIndex

    index = HammingIndex.open(args.index)
    info = index.info()
    record = Path(args.index) / BUILD_RECORD
    if record.is_file():
        info["build"] = json.loads(record.read_text())
    if args.json:
        print_json(info)
    else:
        for key, value in info.items():
            print(f"{key:32s} {value}")
    return 0


def _query_code(args: argparse.Namespace, index: Any) -> np.ndarray:
    from hashlab.codes import hex_to_codes

    if args.code is not None:
        return hex_to_codes(args.code, index.n_bits)
    import hashlab
    from hashlab.index.encode import encode_image_files

    model_dir = args.model
    record = Path(args.index) / BUILD_RECORD
    if model_dir is None and record.is_file():
        model_dir = json.loads(record.read_text()).get("model")
    if model_dir is None:
        raise UserError("--image/--text need --model: this index does not record the model")
    model = hashlab.load(model_dir)
    if model.n_bits != index.n_bits:
        raise UserError(f"model makes {model.n_bits}-bit codes, the index holds {index.n_bits}")
    if args.text is not None or args.text_features is not None:
        if not getattr(model, "cross_modal", False):
            raise UserError(f"--text needs a cross-modal model; {model.name} hashes images only")
        from hashlab.methods.cross_modal.text import text_features_from_file, text_to_features

        if args.text is not None:
            features = text_to_features(model, args.text)
        else:
            features = text_features_from_file(model, args.text_features)
        return model.encode(features, modality="text")
    return encode_image_files(model, [args.image], dataset_key="index-queries")


def run_search(args: argparse.Namespace) -> int:
    from hashlab.index import HammingIndex

    index = HammingIndex.open(args.index)
    code = _query_code(args, index)
    if args.k is not None:
        if args.k < 1:
            raise UserError(f"-k must be a positive integer, got {args.k}")
        ids, dists, meta = index.search(code, args.k, with_metadata=True)
        ids, dists, meta = ids[0], dists[0], meta[0]
        keep = ids >= 0
        ids, dists = ids[keep], dists[keep]
        meta = [m for m, k in zip(meta, keep, strict=True) if k]
    else:
        if args.radius < 0:
            raise UserError(f"--radius must be non-negative, got {args.radius}")
        ids, dists, meta = index.range_search(code, args.radius, with_metadata=True)[0]
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
