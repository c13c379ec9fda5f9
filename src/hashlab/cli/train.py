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

from hashlab.backbones.registry import DEFAULT_BACKBONE
from hashlab.cli import sharded
from hashlab.cli.common import UserError, add_tag_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a hashing method on a data set and save the model",
        description="Split the data set by a protocol, train the method on the training "
        "split (validation carved from it), report test mAP, save a model directory.",
    )
    parser.add_argument("--method", required=True, help="registered method, e.g. dch")
    parser.add_argument("--dataset", default="digits",
                        help="cifar10, digits, folder, mirflickr, mirflickr-pairs (GloVe text), "
                        "mirflickr-pairs-bow, or list files: listfile, "
                        "nuswide21, coco, imagenet100")  # fmt: skip
    parser.add_argument("--root", help="path of the data set (folder or archive)")
    parser.add_argument("--image-root", default=None,
                        help="list-file sets: folder the listed image paths are relative to "
                        "(default: --root, the folder of train.txt, test.txt and "
                        "database.txt)")  # fmt: skip
    parser.add_argument("--protocol", default=None,
                        help="dch, deephash, per-class, random, listfile (default: listfile for "
                        "list-file sets, dch for cifar10, per-class otherwise)")  # fmt: skip
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--out", required=True, help="model directory to write")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--mode", choices=("frozen", "finetune"), default=None,
                        help="deep methods: frozen backbone features (default) or fine-tune")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
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
    sharded.add_arguments(encode)  # --workers N: resumable shards (hashlab.sharded_encode)
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


def _options(args: argparse.Namespace, cls: type, progress: bool) -> dict[str, object]:
    """Command-line options as method parameters, for the methods that have them.

    An option the user gave explicitly that the method has no parameter for is an error
    (``--epochs`` for ITQ); the defaults of the others are passed where accepted.
    """
    accepted = set(cls.param_names())
    explicit = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                "mode": args.mode, "device": args.device, "backbone_weights": args.weights,
                "resume": args.resume or None}  # fmt: skip
    params: dict[str, object] = {}
    for key, value in explicit.items():
        if value is None:
            continue
        if key not in accepted:
            flag = "--" + {"backbone_weights": "weights"}.get(key, key).replace("_", "-")
            raise UserError(f"{args.method} has no parameter {key!r}: {flag} applies to deep "
                            "methods only")  # fmt: skip
        params[key] = value
    checkpoints = args.checkpoint_dir or f"{Path(args.out)}.ckpt"
    defaults = {"backbone": args.backbone, "progress": progress, "checkpoint_dir": checkpoints,
                "sample_dir": checkpoints, "embedding": args.embedding}  # fmt: skip
    params.update({k: v for k, v in defaults.items() if k in accepted})
    return params


def _refuse_supervised_without_labels(method: str, cls: type, dataset: object) -> None:
    """One clear line before any work when a label-supervised method meets a data set without
    labels (a flat folder of photos), naming the methods that learn from images alone."""
    tags = getattr(cls, "tags", None)
    if tags is None or tags.supervision != "labels" or dataset.labels is not None:
        return
    from hashlab.methods.registry import list_methods, method_tags

    unsupervised = [n for n in list_methods(supervision="none")
                    if method_tags(n).modalities == ("image",)]  # fmt: skip
    flat = dataset.info.get("layout") == "flat folder, no labels"
    hint = " (a flat folder of images: class sub-folders would give labels)" if flat else ""
    raise UserError(
        f"{method} is supervised and {dataset.name} has no labels{hint}; methods that learn "
        f"without labels: {', '.join(unsupervised)}"
    )


def run_train(args: argparse.Namespace) -> int:
    import hashlab
    from hashlab import pipeline
    from hashlab.data.catalog import dataset_metric, default_protocol, load_dataset
    from hashlab.data.splits import make_split
    from hashlab.methods.registry import get_method_class
    from hashlab.metrics import evaluate
    from hashlab.train.distributed import is_main_process, main_process_first

    cls = get_method_class(args.method)
    progress = sys.stderr.isatty()
    params = {**_options(args, cls, progress), **_method_params(args.param)}
    dataset = load_dataset(args.dataset, args.root, args.csv, args.label_column, args.tags_column,
                           image_root=args.image_root)  # fmt: skip
    _refuse_supervised_without_labels(args.method, cls, dataset)
    protocol = args.protocol or default_protocol(args.dataset, dataset)
    split = make_split(dataset, protocol=protocol, seed=args.seed)
    model = hashlab.create(args.method, n_bits=args.bits, seed=args.seed, **params)
    # torchrun: rank 0 fills the feature cache first, the other ranks then read it
    with main_process_first():
        inputs = pipeline.method_inputs(model, dataset, args.backbone, args.weights, progress)
    model, record = pipeline.fit_on_split(model, dataset, split, inputs=inputs,
                                          backbone=args.backbone)  # fmt: skip
    if not is_main_process():  # torchrun: rank 0 alone scores, saves and prints
        return 0
    query_codes, db_codes = pipeline.encode_split(model, inputs, split)
    scores = None  # a tags-only data set trains a tag-supervised model but cannot score it
    if dataset.labels is not None:
        labels = np.asarray(dataset.labels)
        metrics = list(dict.fromkeys(["map@all", "map@r2", dataset_metric(args.dataset)]))
        scores = evaluate(query_codes, db_codes, labels[split.query], labels[split.database],
                          metrics=metrics)  # fmt: skip
    model.extra_config_ = {
        **model.extra_config_,
        "dataset": args.dataset,
        "protocol": split.describe(),
        "test_scores": None if scores is None else {**scores, "database_codes": "out-of-sample"},
    }
    model.save(args.out)
    print(f"{args.method} {args.bits} bits on {args.dataset}: {split.describe()}")
    training = model.extra_config_.get("training", {})
    if record.best_epoch is not None:
        # unsupervised methods select on a held-out criterion, not map@all: name what it is
        metric = getattr(getattr(model, "hparams", None), "validation_metric", "map@all")
        print(f"device {training['device']}, {record.epochs_run} epochs, best epoch "
              f"{record.best_epoch} (validation {metric} {record.best_score})")  # fmt: skip
    if scores is None:
        print(f"{dataset.name} has no labels: test retrieval not scored")
    else:
        print("test " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    print(f"saved {args.out}")
    return 0


def run_encode(args: argparse.Namespace) -> int:
    import hashlab
    from hashlab import pipeline

    if sharded.wanted(args):
        return sharded.run_encode(args)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be positive, got {args.batch_size}")
    model = hashlab.load(args.model)
    folder = Path(args.images)
    if not folder.is_dir():
        raise UserError(f"--images {folder} is not a folder")
    paths = pipeline.list_images(folder)
    if not paths:
        raise UserError(f"no images ({', '.join(pipeline.IMAGE_SUFFIXES)}) under {folder}")
    chunks = [
        pipeline.encode_images(model, paths[start : start + args.batch_size])
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
