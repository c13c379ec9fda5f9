"""Training speed of the deep hashing trainer on this machine.

1. Frozen mode: seconds per epoch of a method's hash head on cached backbone features
   (CIFAR-10 EfficientNet-Lite0 features under the ``dch`` protocol when their cache is
   complete, else scikit-learn's digits: 64 pixel features), training + validation mAP.
2. Fine-tune mode: images per second through backbone + head, forward, backward and
   optimiser step with augmentation and JPEG decoding included (CIFAR-10 images when the
   archive is there, else the digits as RGB images).

Usage: python benchmarks/train.py [--method dch] [--bits 32] [--device cpu] [--threads N]
Prints the configuration with every number.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

import hashlab
from hashlab.data.digits import load_digits_dataset

CIFAR = "/work/shared/data/cifar10_jpg.tar.gz"


def cifar_dataset():
    if not os.path.exists(CIFAR):
        return None
    from hashlab.data.cifar10 import load_cifar10

    return load_cifar10(CIFAR)


def cached_cifar_features(dataset):
    from hashlab.backbones import extract_features
    from hashlab.backbones.cache import feature_cache_path

    folder = feature_cache_path("cifar10", "efficientnet_lite0", 224, dataset.image_paths)
    if not (folder / "manifest.json").is_file():
        return None  # never start a 60,000-image extraction from a benchmark
    return extract_features(dataset.image_paths, dataset_key="cifar10", progress=False)


def frozen_epochs(args, cifar) -> None:
    from hashlab.data.splits import make_split

    features = cached_cifar_features(cifar) if cifar is not None else None
    if features is not None:
        labels, source = cifar.labels, "CIFAR-10 dch split, EfficientNet-Lite0 features (1280-d)"
        split = make_split(labels, protocol="dch", seed=0)
        extra = {}
    else:
        digits = load_digits_dataset()
        features, labels = digits.features, digits.labels
        source = "digits (64 pixel features; CIFAR-10 feature cache not complete)"
        split = make_split(labels, protocol="per-class", seed=0)
        extra = {"head_hidden": 256}
    model = hashlab.create(args.method, n_bits=args.bits, epochs=args.epochs, patience=None,
                           device=args.device, **extra)  # fmt: skip
    model.fit(features[split.train], labels[split.train],
              validation=(features[split.validation], labels[split.validation]))  # fmt: skip
    seconds = [row["seconds"] for row in model.extra_config_["training"]["history"]]
    print(f"[frozen] {source}")
    print(f"[frozen] {args.method} {args.bits} bits, batch {model.hparams.batch_size}, "
          f"{len(split.train)} train + {len(split.validation)} validation items, "
          f"{args.epochs} epochs, device {model.extra_config_['training']['device']}")  # fmt: skip
    print(f"[frozen] seconds per epoch (train + validation mAP): mean {np.mean(seconds):.3f}, "
          f"min {np.min(seconds):.3f}, first {seconds[0]:.3f}")  # fmt: skip


def finetune_throughput(args, cifar) -> None:
    if cifar is not None:
        data, source = cifar.subset(np.arange(args.images)), "CIFAR-10 JPEGs (32 px, upscaled)"
    else:
        data, source = load_digits_dataset().subset(np.arange(args.images)), "digits as RGB"
    model = hashlab.create(args.method, n_bits=args.bits, epochs=1, mode="finetune",
                           backbone=args.backbone, batch_size=args.batch_size,
                           validation_fraction=0.0, device=args.device,
                           num_workers=args.workers)  # fmt: skip
    started = time.perf_counter()
    model.fit(data)
    total = time.perf_counter() - started
    epoch = model.extra_config_["training"]["history"][0]["seconds"]
    print(f"[finetune] {source}; backbone {args.backbone}, batch {args.batch_size}, "
          f"{args.images} images, {args.workers} loader workers, "
          f"device {model.extra_config_['training']['device']}, "
          f"amp {model.extra_config_['training']['amp_dtype']}")  # fmt: skip
    print(f"[finetune] training images per second: {args.images / epoch:.1f} "
          f"(epoch {epoch:.1f} s; {total:.1f} s with model building)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="dch")
    parser.add_argument("--bits", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--images", type=int, default=64, help="images for the fine-tune timing")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--skip-finetune", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"hashlab {hashlab.__version__}, torch {torch.__version__}, python "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}, CUDA {torch.cuda.is_available()}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    cifar = cifar_dataset()
    frozen_epochs(args, cifar)
    if not args.skip_finetune:
        finetune_throughput(args, cifar)


if __name__ == "__main__":
    main()
