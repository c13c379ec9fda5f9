"""Protocol runs: fit every (method, bits) on a split's training set, encode queries and
database, and score them with the protocols spec's metrics.

A run is described by a :class:`BenchConfig`, and everything it produces (the config, one row
per (method, bits), PR curves) goes into one :class:`BenchResult`, which ``report`` turns into
JSON, CSV, Markdown and plots. Database codes are out-of-sample: the database is encoded with
the learned hash function, as a deployed system does.

Every method gets its inputs from :func:`hashlab.pipeline.method_inputs` and is fitted by
:func:`hashlab.pipeline.fit_on_split` (train + validation as one training set: shallow
methods do no model selection, deep ones carve their own validation from it): tag-supervised
methods (IDEA, WDHT) get the training items' tags and vocabulary with
``config.tag_embedding``, never labels (labels only score them); methods whose tags ask for
region maps get ``feature_maps``.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import hashlab
from hashlab import pipeline
from hashlab.data.dataset import Dataset
from hashlab.metrics import evaluate, pr_curve

DEFAULT_METRICS = ("map@all", "map@r2", "precision@r2", "recall@r2")


@dataclass
class BenchConfig:
    dataset: str
    protocol: str
    methods: list[str]
    bits: list[int]
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    backbone: str = "none (raw features)"
    backbone_mode: str = "frozen"
    seed: int = 0
    convention: str = "retrieved"
    method_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    tag_embedding: str = "glove"  # word vectors for tag-supervised methods


@dataclass
class BenchResult:
    config: BenchConfig
    protocol: dict[str, Any]
    rows: list[dict[str, Any]]
    pr_curves: dict[str, dict[str, list[float]]]

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "config": asdict(self.config),
            "rows": self.rows,
            "pr_curves": self.pr_curves,
        }


def describe_protocol(config: BenchConfig, dataset: Dataset, split: Any) -> dict[str, Any]:
    """Everything a reader needs to know to trust (or rerun) a table."""
    return {
        "dataset": config.dataset,
        "n_items": len(dataset),
        "split": config.protocol,
        "n_query": int(len(split.query)),
        "n_train": int(len(split.train_all)),
        "n_database": int(len(split.database)),
        "n_validation": int(split.sizes()["validation"]),
        "training_set": "train + validation (shallow methods do no model selection; deep "
        "methods carve their own validation split from it, never from the queries)",
        "backbone": config.backbone,
        "backbone_mode": config.backbone_mode,
        "seed": config.seed,
        "relevance": "share at least one label",
        "ranking": "Hamming distance, ties broken by database order",
        "map_convention": config.convention,
        "radius": "inclusive (distance <= r)",
        "database_codes": "out-of-sample (database encoded by the learned hash function)",
        "supervision": "labels for supervised methods; tags (+ vocabulary, "
        f"{config.tag_embedding} word vectors) for tag-supervised ones, whose labels only "
        "score them",
        "hashlab_version": hashlab.__version__,
        "python": platform.python_version(),
    }


def run_benchmark(
    config: BenchConfig,
    dataset: Dataset,
    features: np.ndarray | None,
    split: Any,
    progress: bool = True,
    feature_maps: np.ndarray | None = None,
    backbone: str | None = None,
) -> BenchResult:
    """Fit, encode and evaluate every (method, bits) pair of ``config`` on ``split``.

    ``features`` / ``feature_maps``: precomputed inputs of the whole data set (None: the
    pipeline computes what each method's tags ask for, with ``backbone``).
    """
    labels = np.asarray(dataset.labels)
    y_query, y_db = labels[split.query], labels[split.database]
    precomputed = {"features": features, "feature_maps": feature_maps}
    rows: list[dict[str, Any]] = []
    curves: dict[str, dict[str, list[float]]] = {}
    jobs = [(m, b) for b in config.bits for m in config.methods]
    bar = tqdm(jobs, desc="bench", unit="run", disable=not progress)
    for method, n_bits in bar:
        bar.set_postfix_str(f"{method} {n_bits} bits")
        params = dict(config.method_params.get(method, {}))
        if "embedding" in hashlab.get_method_class(method).param_names():
            params.setdefault("embedding", config.tag_embedding)
        model = hashlab.create(method, n_bits=n_bits, seed=config.seed, **params)
        inputs = pipeline.method_inputs(model, dataset, backbone, precomputed=precomputed)
        start = time.perf_counter()
        pipeline.fit_on_split(model, dataset, split, validation="carve", inputs=inputs)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        query_codes, db_codes = pipeline.encode_split(model, inputs, split)
        encode_seconds = time.perf_counter() - start
        scores = evaluate(
            query_codes,
            db_codes,
            y_query,
            y_db,
            metrics=config.metrics,
            convention=config.convention,
        )
        precision, recall = pr_curve(query_codes, db_codes, y_query, y_db)
        curves[f"{method}@{n_bits}"] = {
            "precision": [float(v) for v in precision],
            "recall": [float(v) for v in recall],
        }
        rows.append(
            {
                "method": method,
                "bits": n_bits,
                **{name: float(value) for name, value in scores.items()},
                "fit_seconds": round(fit_seconds, 3),
                "encode_seconds": round(encode_seconds, 3),
                "params": model.get_params(),
            }
        )
    return BenchResult(config, describe_protocol(config, dataset, split), rows, curves)
