"""The EDDH table: EDDH, its ablations, ADSH, DPSH and DCH in one run.

    python -m hashlab.bench.eddh --bits 16,32,48,64 --out DIR [--dataset cifar10] [--epochs T]

CIFAR-10 (the JPEG copy in ``shared/data``), ``dch`` split (1,000 queries, 5,000 training
items, database = all but the queries), frozen EfficientNet-Lite0 features (extracted once
and cached by ``hashlab.backbones``). Every method fits on the training items and carves its
own validation items out of them (10%, per class) for epoch selection; database codes are
out-of-sample. Metrics: map@all, map@5000 (AP over the retrieved list, "retrieved"
convention), map@r2 (radius inclusive), ties broken by database order.

Rows (EDDH paper: Yang et al., IP&M 2021): ``eddh`` (continuous S^, discrete B, label
transfer, asymmetric), ``eddh-binary-S`` (s_ij in {-1, 1}), ``eddh-relaxed`` (tanh
relaxation only, no discrete B-step), ``eddh-no-A`` (no label transfer: V free),
``eddh-symmetric`` (V := U). ``--dataset digits`` runs the same table on scikit-learn's
digits (64-d pixels, per-class split) in minutes, to check the pipeline.

Writes ``result.json`` (config, protocol, every row with its parameters), ``results.md``,
``results.csv``, PR-curve plots, and per bit length the EDDH distance fit
(``eddh_similarity_<bits>bits/similarity_fit.{json,png}``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

import hashlab
import hashlab.methods.deep.eddh  # noqa: F401  (registers "eddh" until the package imports it)
from hashlab.bench.report import write_report
from hashlab.bench.runner import BenchConfig, BenchResult, describe_protocol
from hashlab.data.dataset import Dataset
from hashlab.data.splits import make_split
from hashlab.metrics import evaluate, pr_curve

METRICS = ["map@all", "map@5000", "map@r2"]
# row label -> (registered method, its parameters)
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "eddh": ("eddh", {}),
    "eddh-binary-S": ("eddh", {"similarity": "binary"}),
    "eddh-relaxed": ("eddh", {"codes": "relaxed"}),
    "eddh-no-A": ("eddh", {"label_transfer": False}),
    "eddh-symmetric": ("eddh", {"pairing": "symmetric"}),
    "adsh": ("adsh", {}),
    "dpsh": ("dpsh", {}),
    "dch": ("dch", {}),
}


def load_data(name: str, data_root: Path) -> tuple[Dataset, np.ndarray, str]:
    """(dataset, features, backbone description)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        data = Dataset(name="digits", labels=digits.target, features=digits.data)
        return data, digits.data.astype(np.float32), "none (8x8 pixels)"
    from hashlab.backbones import extract_features
    from hashlab.data.cifar10 import load_cifar10

    data = load_cifar10(data_root / "cifar10_jpg.tar.gz")
    features = extract_features(data.image_paths, "efficientnet_lite0", dataset_key="cifar10")
    return data, np.asarray(features, dtype=np.float32), "efficientnet_lite0"


def run(
    bits: list[int], out: Path, dataset: str, data_root: Path, epochs: int | None, seed: int
) -> BenchResult:
    data, features, backbone = load_data(dataset, data_root)
    labels = np.asarray(data.labels)
    split = make_split(labels, "dch" if dataset == "cifar10" else "per-class", seed=seed)
    train = split.train_all  # methods carve their own validation from it
    x_train, y_train = features[train], labels[train]
    x_query, y_query = features[split.query], labels[split.query]
    x_db, y_db = features[split.database], labels[split.database]
    overrides = {} if epochs is None else {"epochs": epochs}
    config = BenchConfig(
        dataset=dataset, protocol=split.protocol, methods=list(ROWS), bits=bits, metrics=METRICS,
        backbone=backbone, seed=seed,
        method_params={row: {**params, **overrides} for row, (_, params) in ROWS.items()},
    )  # fmt: skip
    rows, curves = [], {}
    for n_bits in bits:
        for row, (method, params) in ROWS.items():
            model = hashlab.create(method, n_bits=n_bits, seed=seed, **params, **overrides)
            start = time.perf_counter()
            model.fit(x_train, y_train)
            fit_seconds = time.perf_counter() - start
            query_codes, db_codes = model.encode(x_query), model.encode(x_db)
            scores = evaluate(query_codes, db_codes, y_query, y_db, metrics=METRICS)
            precision, recall = pr_curve(query_codes, db_codes, y_query, y_db)
            curves[f"{row}@{n_bits}"] = {"precision": precision.tolist(), "recall": recall.tolist()}
            training = model.extra_config_.get("training", {})
            rows.append({"method": row, "bits": n_bits, **scores,
                         "fit_seconds": round(fit_seconds, 1),
                         "best_epoch": training.get("best_epoch"),
                         "params": model.get_params()})  # fmt: skip
            shown = "  ".join(f"{m} {scores[m]:.4f}" for m in METRICS)
            print(f"{row:15s} {n_bits:2d} bits  {shown}  ({fit_seconds:.0f} s)", flush=True)
            if row == "eddh":
                title = f"EDDH S^ fit, {dataset} training items, {backbone} features"
                model.similarity_.save_fit(out / f"eddh_similarity_{n_bits}bits", title)
    protocol = describe_protocol(config, data, split)
    protocol["split"] = split.describe()
    result = BenchResult(config, protocol, rows, curves)
    write_report(result, out)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", default="16,32,48,64", help="comma-separated code lengths")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "digits"])
    parser.add_argument("--data-root", default=Path("/work/shared/data"), type=Path)
    parser.add_argument("--epochs", type=int, default=None, help="epochs (EDDH: outer iterations)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    bits = [int(b) for b in args.bits.split(",")]
    result = run(bits, args.out, args.dataset, args.data_root, args.epochs, args.seed)
    print((args.out / "results.md").read_text())
    print(f"{len(result.rows)} rows written to {args.out}")


if __name__ == "__main__":
    main()
