"""``hashlab train`` (fit a method on a data set's protocol split and save the model) and
``hashlab encode`` (codes for a folder of images from a saved model).

``train`` splits the data with ``hashlab.data.make_split`` (validation carved from the training
items, never the queries), trains, scores the test queries against the database (encoded
out-of-sample), records the protocol and scores in the model's ``config.json`` and saves it.
Deep methods checkpoint every epoch into ``--checkpoint-dir`` (default ``OUT.ckpt``);
``--resume`` continues an interrupted run from there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from hashlab.cli.common import UserError, add_tag_arguments, tag_supervision

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a hashing method on a data set and save the model",
        description="Split the data set by a protocol, train the method on the training "
        "split (validation carved from it), report test mAP, save a model directory.",
    )
    parser.add_argument("--method", required=True, help="registered method, e.g. dch")
    parser.add_argument("--dataset", default="digits", help="cifar10, digits, folder, mirflickr")
    parser.add_argument("--root", help="path of the data set (folder or archive)")
    parser.add_argument("--protocol", default=None,
                        help="dch, deephash, per-class, random (default: dch for cifar10, "
                        "per-class otherwise)")  # fmt: skip
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--mode", choices=("frozen", "finetune"), default="frozen")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--weights", default=None, help="backbone ImageNet weights file")
    parser.add_argument("--checkpoint-dir", default=None, help="default: OUT.ckpt")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="method parameter, e.g. gamma=10 (repeatable)")  # fmt: skip
    add_tag_arguments(parser)
    parser.set_defaults(func=run_train)

    encode = subparsers.add_parser(
        "encode",
        help="binary codes for a folder of images from a saved model",
        description="Encode every image under DIR (recursively, sorted by path) with a model "
        "directory; writes an (N, K) uint8 0/1 .npy and the image paths beside it.",
    )
    encode.add_argument("model", help="model directory written by hashlab train")
    encode.add_argument("--images", required=True, help="folder of images")
    encode.add_argument("--out", required=True, help="codes file (.npy)")
    encode.add_argument("--batch-size", type=int, default=256)
    encode.set_defaults(func=run_encode)


def _method_params(pairs: list[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--param must look like KEY=VALUE, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def run_train(args: argparse.Namespace) -> int:
    import hashlab
    from hashlab.data.catalog import dataset_features, load_dataset
    from hashlab.data.splits import make_split
    from hashlab.methods.registry import get_method_class
    from hashlab.metrics import evaluate

    cls = get_method_class(args.method)
    from hashlab.methods.deep.base import DeepHashMethod

    deep = issubclass(cls, DeepHashMethod)
    progress = sys.stderr.isatty()
    params = _method_params(args.param)
    if deep:
        chosen = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size}
        params.update({k: v for k, v in chosen.items() if v is not None})
        params.update(
            mode=args.mode, backbone=args.backbone, backbone_weights=args.weights,
            device=args.device, progress=progress, resume=args.resume,
            checkpoint_dir=args.checkpoint_dir or f"{Path(args.out)}.ckpt",
        )  # fmt: skip
        if getattr(cls, "trains_on_images", False):  # generative: sample grids, loss curves
            params.setdefault("sample_dir", params["checkpoint_dir"])
    elif args.mode == "finetune" or args.resume:
        raise UserError(f"{args.method} is not a deep method: --mode finetune and --resume "
                        "apply to deep methods only")  # fmt: skip

    protocol = args.protocol or ("dch" if args.dataset == "cifar10" else "per-class")
    dataset = load_dataset(args.dataset, args.root, args.csv, args.label_column, args.tags_column)
    split = make_split(dataset, protocol=protocol, seed=args.seed)
    labels = np.asarray(dataset.labels)
    model = hashlab.create(args.method, n_bits=args.bits, seed=args.seed, **params)
    # tag-supervised methods (IDEA, WDHT): tags + vocabulary + embedding, never labels
    weak = tag_supervision(model, dataset, split.train, args.embedding)
    validation = split.validation
    # methods that train on pixels (PC-AEGAN's generator) get images even in frozen mode
    if deep and (args.mode == "finetune" or getattr(cls, "trains_on_images", False)):
        model.fit(
            dataset.subset(split.train),
            validation=None if validation is None else (dataset.subset(validation), None),
        )
        query_codes = model.encode(dataset.subset(split.query))
        db_codes = model.encode(dataset.subset(split.database))
    else:
        maps = getattr(cls, "feature_map", False)  # IDEA pools 7 x 7 region maps itself
        features, source = dataset_features(
            dataset, args.backbone, args.weights, progress, feature_map=maps
        )
        if weak:  # validation relevance: shared tags (held-out training items, not queries)
            model.fit(
                features[split.train], **weak,
                validation=None if validation is None
                else (features[validation], dataset.tags[validation]),
            )  # fmt: skip
            model.extra_config_["feature_source"] = source
        elif deep:
            model.fit(
                features[split.train], labels[split.train],
                validation=None if validation is None
                else (features[validation], labels[validation]),
            )  # fmt: skip
            model.extra_config_["feature_source"] = source
        else:  # no model selection: train on train + validation, the paper's training set
            train = split.train_all
            model.fit(features[train], labels[train] if model.supervised else None)
            model.extra_config_ = {"feature_source": source, "backbone": args.backbone}
        query_codes, db_codes = (
            model.encode(features[split.query]),
            model.encode(features[split.database]),
        )
    scores = None  # a tags-only data set trains a tag-supervised model but cannot score it
    if dataset.labels is not None:
        scores = evaluate(query_codes, db_codes, labels[split.query], labels[split.database],
                          metrics=["map@all", "map@r2"])  # fmt: skip
    model.extra_config_ = {
        **model.extra_config_,
        "dataset": args.dataset,
        "protocol": split.describe(),
        "test_scores": None if scores is None else {**scores, "database_codes": "out-of-sample"},
    }
    model.save(args.out)
    training = model.extra_config_.get("training", {})
    print(f"{args.method} {args.bits} bits on {args.dataset}: {split.describe()}")
    if training:
        best = training["best_score"]
        print(f"device {training['device']}, {len(training['history'])} epochs, best epoch "
              f"{training['best_epoch']} (validation map@all {best})")  # fmt: skip
    if scores is None:
        print(f"{dataset.name} has no labels: test retrieval not scored")
    else:
        print(f"test map@all {scores['map@all']:.4f}, map@r2 {scores['map@r2']:.4f}")
    print(f"saved {args.out}")
    return 0


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )  # fmt: skip


def run_encode(args: argparse.Namespace) -> int:
    import hashlab

    model = hashlab.load(args.model)
    if not hasattr(model, "encode_images"):
        raise UserError(
            f"model {args.model} ({model.name}) encodes feature vectors, not images; "
            "use a deep model trained with hashlab train"
        )
    folder = Path(args.images)
    if not folder.is_dir():
        raise UserError(f"--images {folder} is not a folder")
    paths = _image_files(folder)
    if not paths:
        raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    chunks = [
        model.encode_images(paths[start : start + args.batch_size])
        for start in range(0, len(paths), args.batch_size)
    ]
    codes = np.concatenate(chunks)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, codes)
    paths_file = out.with_suffix(".paths.txt")
    paths_file.write_text("".join(f"{p}\n" for p in paths))
    print(f"encoded {len(paths)} images into {codes.shape[1]}-bit codes: {out} ({paths_file})")
    return 0
