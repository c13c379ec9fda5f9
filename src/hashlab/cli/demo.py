"""``hashlab demo``: the whole road on scikit-learn's digits, offline, in well under a minute.

1. a results table (and PR-curve plots) of several shallow methods, through the bench runner;
2. the best shallow method at the longest code length and a deep one (DCH on a frozen
   "backbone" that reads the digits' 64 pixel values back from their images) fitted through
   :func:`hashlab.pipeline.fit_on_split` and saved;
3. the database digits written as PNG files and indexed from each saved model with
   :func:`hashlab.pipeline.build_index`, the way a user indexes a folder of photos;
4. a search by an example query image through each index, and one through the HTTP service
   started in-process (FastAPI's TestClient: no socket, no network).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEMO_METHODS = "lsh,pcah,itq,sh,sph,agh,itq_cca,sdh"
DEMO_DEEP = "dch"
#: reads the digits' pixel values back from their images (hashlab.backbones.registry)
DIGITS_BACKBONE = "digit_pixels"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="train, evaluate, index and search the embedded digits data (seconds)"
    )
    parser.add_argument("--methods", default=DEMO_METHODS)
    parser.add_argument("--bits", default="16,32")
    parser.add_argument("--deep", default=DEMO_DEEP, help="deep method walked through the road")
    parser.add_argument("--deep-epochs", type=int, default=10)
    parser.add_argument("--out", default="hashlab-demo", help="folder for the table and plots")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    import hashlab
    from hashlab import pipeline
    from hashlab.bench.report import markdown_table, protocol_text, write_report
    from hashlab.bench.runner import BenchConfig, run_benchmark
    from hashlab.cli.common import parse_int_list
    from hashlab.data.digits import load_digits_dataset
    from hashlab.data.splits import make_split

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
    out = Path(args.out)
    files = write_report(result, out)
    print(f"Protocol: {protocol_text(result.protocol)}\n")
    print(markdown_table(result))

    # The road a user takes: fit on the split, save, index a folder of images, search.
    n_bits = max(config.bits)
    best = max((r for r in result.rows if r["bits"] == n_bits), key=lambda r: r["map@all"])
    folder = _write_database_images(dataset, split, out / "images")
    query = int(split.query[0])
    query_file = _write_image(dataset, query, out / "query")
    models = {
        best["method"]: hashlab.create(best["method"], n_bits=n_bits, seed=args.seed),
        args.deep: hashlab.create(args.deep, n_bits=n_bits, seed=args.seed,
                                  epochs=args.deep_epochs, backbone=DIGITS_BACKBONE),
    }  # fmt: skip
    print()
    for name, model in models.items():
        # carve: the table's training set (train + validation), so the shallow model here is
        # the one in its row; the deep one picks its best epoch on a carved validation part
        model, record = pipeline.fit_on_split(model, dataset, split, validation="carve",
                                              backbone=DIGITS_BACKBONE)  # fmt: skip
        model_dir = model.save(out / "models" / name)
        index_dir = out / "indexes" / name
        if index_dir.exists():  # a rerun of the demo rebuilds its indexes
            import shutil

            shutil.rmtree(index_dir)
        labels_csv = folder / "labels.csv"
        built = pipeline.build_index(model_dir, folder, index_dir, metadata_csv=labels_csv)
        from hashlab.index import HammingIndex

        index = HammingIndex.open(index_dir)
        code = pipeline.encode_images(model, [query_file])
        ids, distances = index.search(code, k=10)
        digits = [int(m["label"]) for m in index.metadata(ids[0])]
        index.close()
        fit = f"fitted in {record.timings['fit_seconds']:.1f} s"
        if record.best_epoch is not None:
            fit += f", best epoch {record.best_epoch} of {record.epochs_run}"
        print(f"{name} at {n_bits} bits ({record.tags['family']}; {fit}): indexed "
              f"{built.n_images} digit images from {folder}; query item {query} "
              f"(digit {int(dataset.labels[query])}) -> top 10 digits {digits}, Hamming "
              f"distances {distances[0].tolist()}")  # fmt: skip
    http = _search_over_http(out / "models" / args.deep, out / "indexes" / args.deep, query_file)
    print(f"\nHTTP (in-process service over the {args.deep} index): POST /search with the query "
          f"image -> {len(http['results'])} hits, digits "
          f"{[int(h['metadata']['label']) for h in http['results']]}")  # fmt: skip
    print(f"\nwrote {', '.join(str(p) for p in files.values())}")
    return 0


def _write_image(dataset: object, item: int, folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"digit-{item:04d}.png"
    Image.fromarray(dataset.images[item]).save(path)
    return path


def _write_database_images(dataset: object, split: object, folder: Path) -> Path:
    """The database items as PNG files (lossless: pixels read back exactly) plus a CSV."""
    rows = ["path,label,item"]
    for item in split.database:
        path = _write_image(dataset, int(item), folder)
        rows.append(f"{path.name},{int(dataset.labels[item])},{int(item)}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def _search_over_http(model_dir: Path, index_dir: Path, query_file: Path) -> dict:
    from fastapi.testclient import TestClient

    from hashlab.service import build_service, create_app

    service = build_service(model_dir, index_dir)
    with TestClient(create_app(service)) as client:
        with open(query_file, "rb") as handle:
            response = client.post("/search", files={"image": ("query.png", handle, "image/png")},
                                   data={"k": "10"})  # fmt: skip
    if response.status_code != 200:
        from hashlab.errors import HashlabError

        raise HashlabError(f"the service answered {response.status_code}: {response.text}")
    return response.json()
