"""``hashlab features``: extract and cache backbone features for a data set."""

from __future__ import annotations

import argparse
import sys

from hashlab.backbones.registry import DEFAULT_BACKBONE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "features",
        help="extract backbone features once and cache them on disk (resumable)",
        description="Features are cached under $HASHLAB_CACHE (default ~/.cache/hashlab), "
        "keyed by data set, backbone and input size. An interrupted run resumes at the "
        "first unfinished chunk.",
    )
    parser.add_argument("--dataset", required=True, help="cifar10, folder, mirflickr")
    parser.add_argument("--root", required=True)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--out", default=None, help="also save the matrix as this .npy file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from hashlab.backbones.features import dataset_features
    from hashlab.data.catalog import load_dataset

    dataset = load_dataset(args.dataset, args.root)
    features, source = dataset_features(dataset, args.backbone, args.weights, sys.stderr.isatty())
    print(f"{args.dataset}: {features.shape[0]} items x {features.shape[1]} features ({source})")
    if args.out:
        np.save(args.out, features)
        print(f"wrote {args.out}")
    return 0
