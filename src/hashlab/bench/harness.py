"""The experiment harness: one table spec -> tuned, seeded, convergence-checked runs -> table.

    python -m hashlab.bench.harness --table cifar10 [--quick] --out DIR
        [--bits 16,32,48,64] [--rows dch,itq,...] [--seeds 0,1,2] [--n-trials N]
        [--epochs E] [--metric map@r2] [--resume]

A :class:`TableSpec` names the rows (a method plus fixed parameters, e.g. the linear-head
ablation), the bit lengths, the headline metric, the budget and the claims. For every
(row, bits) the harness

1. **tunes** the row's declared search space (``Config.search_space()``, see
   ``hashlab.bench.tuning``) with ``n_trials`` Optuna trials (the same number for every row
   that has a space), each trained on the split's training items and scored on the
   validation items carved from them (never the queries; ``_check_tuning_indices``), by the
   table's headline metric;
2. trains the chosen configuration once per **seed** (same split, the seed sets the
   network's initialisation and the batch order, or a shallow method's random draws), with
   the **same budget** for every trained row: the same epochs over the same items and batch
   size (so the same maximum number of updates) and the same early-stopping rule, with the
   checkpoint chosen by the headline metric on validation;
3. checks **convergence** (``hashlab.bench.verdicts.converged``): a run whose best epoch is
   in the last 10% of its budget is continued to twice the budget (the trainer resumes from
   its checkpoint, which gives the same run as a fresh one of twice the length), up to
   ``budget.cap_epochs``; what is still unconverged at the cap is marked in the table;
4. scores the queries against the database (codes out-of-sample) with the table's metrics,
   and reports mean +- std over seeds, and every claim as a paired per-seed verdict.

Shallow methods (no training loop) fit on train + validation, as they do no model selection.
Each finished run is appended to ``runs.jsonl`` and each tuning to ``tuning.jsonl`` as it
ends, so ``--resume`` continues an interrupted table; ``result.json`` and ``results.md``
(protocol, budget, trials, seeds, wall time and the command) are rewritten after every run.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.bench import tuning as tuning_lib
from hashlab.bench.verdicts import (
    CONVERGENCE_RULE,
    VERDICT_RULE,
    converged,
    mean_std,
    paired_verdict,
)

__all__ = ["Budget", "Claim", "Harness", "Row", "TableSpec", "Target", "TABLES", "table_spec"]

DEFAULT_METRICS = ("map@all", "map@r2", "precision@r2", "recall@r2")
# the MLP head of the default CPU protocol (issue 14): 1280 -> 1024 -> K with dropout
MLP_HEAD = {"head_hidden": 1024, "dropout": 0.5}
LINEAR_HEAD = {"head_hidden": 0, "dropout": 0.0}


# -- the spec ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """A table row: ``method`` with fixed ``params`` (tuned parameters come on top)."""

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    """The same for every trained row of a table."""

    epochs: int = 50  # over the same training items, same batch size: same max updates
    patience: int | None = 10  # early stopping: epochs without validation improvement
    cap_epochs: int = 200  # convergence reruns double the budget up to this
    batch_size: int = 64

    def describe(self) -> str:
        stop = (
            "no early stopping"
            if self.patience is None
            else (f"early stopping after {self.patience} epochs without validation improvement")
        )
        return (
            f"{self.epochs} epochs of batch {self.batch_size} over the training items "
            f"({stop}), doubled up to {self.cap_epochs} for runs not converged"
        )


@dataclass(frozen=True)
class Claim:
    """ "``a`` beats ``b``" on ``metric`` (None: the headline) at ``bits`` (None: every one)."""

    text: str
    a: str
    b: str
    metric: str | None = None
    bits: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Target:
    """A number the issue asks for: mean ``metric`` of ``row`` at ``bits`` >= ``threshold``."""

    row: str
    metric: str
    bits: int
    threshold: float


@dataclass(frozen=True)
class TableSpec:
    name: str
    dataset: str  # "cifar10" | "digits"
    protocol: str  # split protocol (hashlab.data.splits)
    rows: tuple[Row, ...]
    bits: tuple[int, ...]
    metric: str  # headline: checkpoints and trials are selected by it
    metrics: tuple[str, ...] = DEFAULT_METRICS
    budget: Budget = Budget()
    n_trials: int = 8
    seeds: tuple[int, ...] = (0, 1, 2)
    quick_budget: Budget = Budget(epochs=8, patience=3, cap_epochs=16)
    split_seed: int = 0
    # keyword arguments of hashlab.data.splits.make_split beyond the protocol's defaults
    split_options: tuple[tuple[str, int], ...] = ()
    claims: tuple[Claim, ...] = ()
    targets: tuple[Target, ...] = ()
    notes: str = ""
    # the float upper reference (pooled features by cosine, hashlab.bench.float_reference)
    float_reference: bool = True

    def row(self, label: str) -> Row:
        for row in self.rows:
            if row.label == label:
                return row
        raise ValueError(
            f"table {self.name!r} has no row {label!r}; rows: "
            f"{', '.join(r.label for r in self.rows)}"
        )


def _beats(deep: list[str], shallow: list[str], metric: str) -> tuple[Claim, ...]:
    return tuple(Claim(f"{a} beats {b} at {metric}", a, b, metric) for a in deep for b in shallow)


_CIFAR_DEEP = ["dch", "dpsh", "hashnet", "dhn"]
# shallow rows first: they take seconds, and every claim compares against them
_CIFAR_ROWS = (
    Row("itq", "itq"),
    Row("itq_cca", "itq_cca"),
    Row("sdh", "sdh"),
    *(Row(m, m, MLP_HEAD) for m in _CIFAR_DEEP),
    Row("dch-linear", "dch", LINEAR_HEAD),
)
# 200 queries (as hashlab.bench.idea), the other 530 items train, 10% of them validate
_MIRFLICKR_SPLIT = (("n_query", 200), ("n_train", 530))
_MIRFLICKR_LABEL_ROWS = (
    Row("itq", "itq"),
    Row("itq_cca", "itq_cca"),
    Row("sdh", "sdh"),
    *(Row(m, m, MLP_HEAD) for m in ("dch", "dpsh", "hashnet", "dhn")),
    # issue 18's multi-label-capable methods (greedyhash refuses multi-hot labels)
    *(Row(m, m, MLP_HEAD) for m in ("csq", "orthohash", "dpn", "idhn", "dph", "dtsh")),
)
# issue 18: every supervised method on the CIFAR-10 table's protocol. Same data, split,
# budget, trials and headline as "cifar10", so its finished runs can seed this table
# (copy runs.jsonl / tuning.jsonl / spec.json and --resume: only the new rows run)
_CENTRE_METHODS = ["csq", "orthohash", "dpn"]
_NEW_SUPERVISED = [*_CENTRE_METHODS, "greedyhash", "dsdh", "dtsh", "dfh", "idhn", "dph", "cnnh",
                   "ddsh"]  # fmt: skip
_CIFAR_ALL_ROWS = (
    *_CIFAR_ROWS,
    *(Row(m, m, MLP_HEAD) for m in ("dsh", "dnnh", "adsh", *_NEW_SUPERVISED)),
)
# issue 19: deep unsupervised rows select epochs and trials by their held-out label-free
# criterion; labels score the test queries only
_UNSUPERVISED_DEEP = ["bihalf", "greedyhash_unsup", "deepbit", "dh", "uh_bdnn", "cibhash",
                      "sadh", "dbd_mq", "bgan", "hashgan_unsup", "uadh"]  # fmt: skip
# issue 14: EDDH and the rows its claims compare with, trained to convergence on one budget
_EDDH_ROWS = (
    Row("itq", "itq"),
    Row("eddh", "eddh", MLP_HEAD),
    # the weights a variant does not use are fixed, so tuning does not spend trials on them
    Row("eddh-symmetric", "eddh", {**MLP_HEAD, "pairing": "symmetric", "gamma": 1.0, "rho": 0.01}),
    Row("eddh-binary-S", "eddh", {**MLP_HEAD, "similarity": "binary"}),
    Row("adsh", "adsh", MLP_HEAD),
)
TABLES: dict[str, TableSpec] = {
    "cifar10": TableSpec(
        name="cifar10",
        dataset="cifar10",
        protocol="dch",
        rows=_CIFAR_ROWS,
        bits=(16, 32, 48, 64),
        metric="map@r2",  # DCH's table metric (MAP within Hamming radius 2)
        # sized for 2 shared CPU cores: 30 epochs (an MLP head on frozen features peaks well
        # before), patience 5, 4 trials per (row, bits)
        budget=Budget(epochs=30, patience=5, cap_epochs=120),
        n_trials=4,
        claims=(
            *_beats(_CIFAR_DEEP, ["itq_cca", "sdh"], "map@all"),
            Claim("an MLP head beats one linear layer (DCH)", "dch", "dch-linear"),
            Claim(
                "an MLP head beats one linear layer (DCH) at map@all",
                "dch",
                "dch-linear",
                "map@all",
            ),
        ),
        targets=(
            Target("dch", "map@r2", 16, 0.75),
            *(Target("dch", "map@all", b, 0.75) for b in (32, 48, 64)),
        ),
        notes="frozen EfficientNet-Lite0 features (ImageNet weights, 224 px, pooled); deep "
        "rows train an MLP head 1280 -> 1024 -> K (ReLU, dropout) on them, dch-linear the one "
        "linear layer (the ablation)",
    ),
    "cifar10-all": TableSpec(
        name="cifar10-all",
        dataset="cifar10",
        protocol="dch",
        rows=_CIFAR_ALL_ROWS,
        bits=(16, 32, 48, 64),
        metric="map@r2",
        budget=Budget(epochs=30, patience=5, cap_epochs=120),
        n_trials=4,
        claims=(
            *(
                Claim(f"{m} at or above DCH at map@all (its paper's claim)", m, "dch", "map@all",
                      (32, 48, 64))
                for m in _CENTRE_METHODS
            ),
            *_beats(_NEW_SUPERVISED, ["itq"], "map@all"),
        ),  # fmt: skip
        notes="the cifar10 table's protocol with every supervised method: frozen "
        "EfficientNet-Lite0 features, MLP head 1280 -> 1024 -> K (ReLU, dropout 0.5) for every "
        "deep row, dch-linear the one-linear-layer ablation",
    ),
    "cifar10-unsupervised": TableSpec(
        name="cifar10-unsupervised",
        dataset="cifar10",
        protocol="dch",
        rows=(
            *(Row(m, m) for m in ("lsh", "itq", "sph", "agh")),
            *(Row(m, m, MLP_HEAD) for m in _UNSUPERVISED_DEEP),
            # semi-supervised: SSDH keeps this many of the training labels (the rest unknown)
            Row("ssdh-500", "ssdh", {**MLP_HEAD, "n_labelled": 500}),
            Row("ssdh-4500", "ssdh", {**MLP_HEAD, "n_labelled": 4500}),
        ),
        bits=(16, 32, 64),
        metric="map@all",
        budget=Budget(epochs=30, patience=5, cap_epochs=120),
        n_trials=4,
        claims=(
            *_beats(_UNSUPERVISED_DEEP, ["itq"], "map@all"),
            Claim("SSDH with 500 labels beats every label-free row (ITQ)", "ssdh-500", "itq"),
            Claim("more labels help SSDH (4,500 vs 500)", "ssdh-4500", "ssdh-500"),
        ),
        notes="ssdh rows are semi-supervised (500 or all 4,500 training labels kept); no "
        "other row reads a label: deep rows pick their best epoch and their tuning trial "
        "by their own held-out label-free criterion (methods/deep/unsupervised.py), shallow "
        "rows fit on train + validation; the labels score the test queries only. MLP head "
        "1280 -> 1024 -> K (ReLU, dropout 0.5) on frozen EfficientNet-Lite0 features",
    ),
    "mirflickr-unsupervised": TableSpec(
        name="mirflickr-unsupervised",
        dataset="mirflickr",
        protocol="random",
        split_options=_MIRFLICKR_SPLIT,
        rows=(
            *(Row(m, m) for m in ("lsh", "itq", "sph", "agh")),
            *(Row(m, m, MLP_HEAD) for m in _UNSUPERVISED_DEEP),
        ),
        bits=(16, 32, 64),
        metric="map@all",
        metrics=("map@all", "map@r2", "precision@r2"),
        budget=Budget(epochs=30, patience=5, cap_epochs=120),
        n_trials=4,
        claims=_beats(_UNSUPERVISED_DEEP, ["itq"], "map@all"),
        notes="the 730 MIRFlickr images we have; no row reads a label (deep rows select by "
        "their held-out label-free criterion); the 24 labels score the test queries only",
    ),
    "eddh": TableSpec(
        name="eddh",
        dataset="cifar10",
        protocol="dch",
        rows=_EDDH_ROWS,
        bits=(16, 32, 48, 64),
        metric="map@all",  # EDDH's Table 1: mAP over the Hamming ranking
        budget=Budget(epochs=30, patience=5, cap_epochs=120),
        n_trials=4,
        claims=(
            Claim("EDDH beats its symmetric variant (V := U)", "eddh", "eddh-symmetric"),
            Claim("EDDH beats its binary-similarity variant", "eddh", "eddh-binary-S"),
            Claim("EDDH beats ADSH", "eddh", "adsh"),
            Claim("EDDH beats ITQ", "eddh", "itq"),
        ),
        notes="EDDH's epochs are its outer iterations (one theta-step pass each); every row "
        "on the same epoch budget and early-stopping rule, runs whose best epoch is in the "
        "last 10% continued up to the cap. MLP head 1280 -> 1024 -> K on frozen features",
    ),
    # the CIFAR-10 table's rows on the classes cached so far (see _cached_cifar10_classes):
    # 100 queries and 500 training images per class, as the dch split; not the full protocol
    "cifar10-cached": TableSpec(
        name="cifar10-cached",
        dataset="cifar10-cached",
        protocol="per-class",
        rows=_CIFAR_ROWS,
        bits=(16, 32),
        metric="map@r2",
        budget=Budget(epochs=30, patience=5, cap_epochs=120),
        n_trials=4,
        claims=(
            *_beats(_CIFAR_DEEP, ["itq_cca", "sdh"], "map@all"),
            Claim("an MLP head beats one linear layer (DCH)", "dch", "dch-linear"),
            Claim(
                "an MLP head beats one linear layer (DCH) at map@all",
                "dch",
                "dch-linear",
                "map@all",
            ),
        ),
        notes="a subset of CIFAR-10 (the classes whose features were cached), so not the dch "
        "protocol's numbers; deep rows: MLP head 1280 -> 1024 -> K (ReLU, dropout 0.5), "
        "dch-linear the one linear layer",
    ),
    # issue 14: IDEA (and the WDHT-style baseline) tuned on tags alone; labels only score
    "mirflickr-tags": TableSpec(
        name="mirflickr-tags",
        dataset="mirflickr",
        protocol="random",
        split_options=_MIRFLICKR_SPLIT,
        rows=(
            Row("lsh", "lsh"),
            Row("itq", "itq"),
            Row("idea", "idea"),
            Row("wdht", "wdht"),
        ),
        bits=(12, 24, 32, 48),  # IDEA's code lengths
        metric="map@all",
        metrics=("map@all", "map@r2", "precision@r2"),
        budget=Budget(epochs=30, patience=5, cap_epochs=120),
        n_trials=4,
        claims=(
            Claim("IDEA beats ITQ (the paper's claim; review: ITQ beats every tag method)",
                  "idea", "itq"),
            Claim("IDEA beats the WDHT-style baseline", "idea", "wdht"),
        ),  # fmt: skip
        notes="tag rows see only user tags: their per-epoch validation and tuning score "
        "map@all with 'shares a tag' relevance on validation items carved from training; "
        "the 24 labels score the test queries only. IDEA's lr and loss weights are tuned "
        "(its losses are averaged, not summed as in the paper; see methods/deep/idea.py)",
    ),
    # issue 18: multi-label supervised hashing on the MIRFlickr images we have
    "mirflickr-labels": TableSpec(
        name="mirflickr-labels",
        dataset="mirflickr",
        protocol="random",
        split_options=_MIRFLICKR_SPLIT,
        rows=_MIRFLICKR_LABEL_ROWS,
        bits=(16, 32, 64),
        metric="map@all",
        metrics=("map@all", "map@r2", "precision@r2"),
        budget=Budget(epochs=30, patience=5, cap_epochs=120),
        n_trials=4,
        claims=(
            *_beats(["dch", "dpsh", "hashnet", "dhn", "csq", "idhn"], ["itq"], "map@all"),
            Claim("IDHN's soft multi-label similarity beats DPSH's 0/1 pairs", "idhn", "dpsh"),
            *(Claim(f"{m} at or above DCH at map@all", m, "dch") for m in _CENTRE_METHODS),
        ),
        notes="relevance: sharing at least one of the 24 labels; deep rows: MLP head "
        "1280 -> 1024 -> K (ReLU, dropout 0.5) on frozen pooled features",
    ),
    "digits": TableSpec(
        name="digits",
        dataset="digits",
        protocol="per-class",
        rows=(
            Row("dch", "dch", {"head_hidden": 64, "dropout": 0.1}),
            Row("itq", "itq"),
            Row("itq_cca", "itq_cca"),
        ),
        bits=(16, 32),
        metric="map@all",
        budget=Budget(epochs=30, patience=5, cap_epochs=120),
        quick_budget=Budget(epochs=15, patience=4, cap_epochs=60),
        n_trials=4,
        claims=(Claim("dch beats itq", "dch", "itq"), Claim("dch beats itq_cca", "dch", "itq_cca")),
        notes="scikit-learn's 8x8 digits (64-d pixels): a pipeline check, not a benchmark",
    ),
}


def table_spec(name: str, quick: bool = False) -> TableSpec:
    """The named table; ``quick`` shrinks it to a CI-sized check (one bit length, short
    budget, two trials) while keeping three seeds, so the verdicts still have a spread."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}")
    spec = TABLES[name]
    if quick:
        spec = replace(
            spec,
            bits=spec.bits[:1],
            budget=spec.quick_budget,
            n_trials=2,
            name=f"{spec.name} (quick)",
        )
    return spec


# -- data --------------------------------------------------------------------------------
@dataclass
class TableData:
    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) class ids or (N, C) multi-hot
    description: str  # data set and where its features come from
    # for tag-supervised rows: (N, V) 0/1 user tags and their words
    tags: np.ndarray | None = None
    tag_vocab: list[str] | None = None
    # for rows whose methods take region maps (inputs="feature_maps"): (N, C, 7, 7)
    feature_maps: np.ndarray | None = None


def load_table_data(dataset: str, data_root: str | Path | None = None) -> TableData:
    if dataset == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return TableData(
            digits.data.astype(np.float32),
            digits.target.astype(np.int64),
            "scikit-learn digits, 1,797 items, 64-d pixels",
        )
    if dataset == "cifar10":
        from hashlab.backbones import extract_features
        from hashlab.data.cifar10 import load_cifar10
        from hashlab.data.shared import default_shared_data

        root = Path(data_root) if data_root else default_shared_data()
        data = load_cifar10(root / "cifar10_jpg.tar.gz")
        features = extract_features(data.image_paths, "efficientnet_lite0", dataset_key="cifar10")
        return TableData(
            np.asarray(features, dtype=np.float32),
            np.asarray(data.labels),
            "CIFAR-10 (60,000 images), efficientnet_lite0 (ImageNet, frozen, 224 px,"
            " pooled last conv map: 1280-d)",
        )
    if dataset == "cifar10-cached":
        return _cached_cifar10_classes(data_root)
    if dataset == "mirflickr":
        return _mirflickr_images(data_root)
    raise ValueError(
        f"unknown data set {dataset!r} for the harness; known: cifar10, cifar10-cached, "
        "digits, mirflickr"
    )


def _mirflickr_images(data_root: str | Path | None) -> TableData:
    """The 730 MIRFlickr-25K items we have images of: 24 labels (relevance), user tags (the
    weak supervision of tag rows), EfficientNet-Lite0 region maps and their pooled vectors
    (the same feature cache as ``hashlab.bench.idea``)."""
    from hashlab.backbones import extract_features
    from hashlab.data.mirflickr import SMALL_SET_CAVEAT, load_mirflickr_images
    from hashlab.data.shared import default_shared_data

    root = Path(data_root) if data_root else default_shared_data()
    data = load_mirflickr_images(root / "mirflickr25k")
    maps = extract_features(
        data.image_paths,
        "efficientnet_lite0",
        dataset_key="mirflickr730",
        feature_map=True,
        progress=False,
    )
    maps = np.asarray(maps, dtype=np.float32)
    return TableData(
        maps.mean(axis=(2, 3)),
        np.asarray(data.labels),
        "MIRFlickr-25K, the 730 items with images (24 labels, 1,386 user tags), "
        "efficientnet_lite0 (ImageNet, frozen, 224 px; pooled 1280-d, or the 7 x 7 region "
        f"maps for methods that take them). {SMALL_SET_CAVEAT}",
        tags=np.asarray(data.tags),
        tag_vocab=list(data.tag_vocab or []),
        feature_maps=maps,
    )


def _cached_cifar10_classes(data_root: str | Path | None) -> TableData:
    """The CIFAR-10 classes whose EfficientNet-Lite0 features are all on disk already, read
    from the feature cache's finished chunks without extracting anything (for a run while
    the full extraction is still going). The cache fills in image order: training folder
    class by class, then the test folder, so these are the first classes' 5,000 training
    images each."""
    from hashlab.backbones.cache import feature_cache_path
    from hashlab.data.cifar10 import load_cifar10
    from hashlab.data.shared import default_shared_data

    root = Path(data_root) if data_root else default_shared_data()
    data = load_cifar10(root / "cifar10_jpg.tar.gz")
    labels = np.asarray(data.labels)
    official = np.asarray(data.info["official_split"])
    folder = feature_cache_path("cifar10", "efficientnet_lite0", 224, list(data.image_paths))
    chunks = []
    while (folder / f"chunk_{len(chunks):05d}.npy").is_file():
        chunks.append(np.load(folder / f"chunk_{len(chunks):05d}.npy"))
    n_cached = sum(len(c) for c in chunks)
    train = np.flatnonzero(official == "train")
    done = [
        c
        for c in np.unique(labels)
        if np.isin(train[labels[train] == c], np.arange(n_cached)).all()
    ]
    if len(done) < 2:
        raise ValueError(f"only {n_cached} CIFAR-10 features are cached: no two whole classes yet")
    keep = train[np.isin(labels[train], done)]
    features = np.concatenate(chunks)[keep].astype(np.float32)
    names = ", ".join(data.class_names[c] for c in done)
    return TableData(
        features,
        labels[keep],
        f"CIFAR-10 training-folder images of the {len(done)} classes whose features "
        f"were cached when the run started ({names}; {len(keep):,} images), "
        "efficientnet_lite0 (ImageNet, frozen, 224 px, pooled: 1280-d)",
    )


# -- method plumbing (kept here so the harness does not depend on method internals) --------
def _method_class(method: str) -> Any:
    from hashlab.methods.registry import get_method_class

    return get_method_class(method)


def is_trained(method: str) -> bool:
    """Whether ``method`` has a training loop (epochs, validation): deep methods."""
    config = getattr(_method_class(method), "Config", None)
    return config is not None and "epochs" in {f.name for f in fields(config)}


def _trained_params(spec: TableSpec, epochs: int) -> dict[str, Any]:
    budget = spec.budget
    return {
        "epochs": epochs,
        "patience": budget.patience,
        "batch_size": budget.batch_size,
        "validation_metric": spec.metric,
    }


def _fit(model: Any, dataset: Any, split: Any) -> dict[str, Any]:
    """Fit through the pipeline on ``split``'s training items with its validation items
    (deep methods select epochs on them; shallow ones train on them too); the trainer's
    record (history, best epoch) for trained methods, else ``{}``. ``dataset`` holds the
    inputs the model takes (``Harness.inputs_for``)."""
    from hashlab.pipeline import fit_on_split

    fit_on_split(model, dataset, split, validation="split", inputs=dataset)
    return dict((getattr(model, "extra_config_", None) or {}).get("training") or {})


def _selection_metric(model: Any, table_metric: str) -> str:
    """What a trained model selected its epochs by: the table's metric, except for methods
    that cannot compute it (unsupervised ones select by a label-free held-out criterion)."""
    hparams = getattr(model, "hparams", None)
    return str(getattr(hparams, "validation_metric", table_metric) or table_metric)


def record_history(model: Any) -> list[dict[str, Any]]:
    """The per-epoch training history a fitted deep model recorded (``[]`` for others)."""
    training = (getattr(model, "extra_config_", None) or {}).get("training") or {}
    return list(training.get("history") or [])


# -- the harness -------------------------------------------------------------------------
TrialRunner = Callable[..., float]


class Harness:
    """Runs one :class:`TableSpec` into ``out_dir`` (see the module docstring)."""

    def __init__(
        self,
        spec: TableSpec,
        out_dir: str | Path,
        data: TableData | None = None,
        command: str | None = None,
        resume: bool = False,
        log: Callable[[str], None] | None = None,
        data_root: str | Path | None = None,
    ) -> None:
        from hashlab.data.splits import make_split

        self.spec = spec
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.command = command or "python -m hashlab.bench.harness " + " ".join(
            shlex.quote(a) for a in sys.argv[1:]
        )
        self.log = log or (lambda text: print(text, flush=True))
        started = time.perf_counter()
        self.data = data or load_table_data(spec.dataset, data_root)
        from hashlab.data.dataset import Dataset

        # features already extracted: the pipeline takes them as they are
        self.dataset = Dataset(
            name=spec.dataset,
            features=self.data.features,
            labels=self.data.labels,
            tags=self.data.tags,
            tag_vocab=self.data.tag_vocab,
            info={"feature_source": self.data.description},
        )
        self.load_seconds = time.perf_counter() - started
        self.split = make_split(
            self.data.labels, spec.protocol, seed=spec.split_seed, **dict(spec.split_options)
        )
        self.split.check(len(self.data.labels))
        if self.split.validation is None or not len(self.split.validation):
            raise ValueError(f"split {spec.protocol!r} left no validation items to tune on")
        self.runs: dict[tuple[str, int, int], dict[str, Any]] = {}
        self.tunings: dict[tuple[str, int], dict[str, Any]] = {}
        self.seconds_before = 0.0  # wall time of earlier (resumed) sessions
        self._check_out_dir(resume)
        # who trains a trial: replaceable so tests can watch the indices it is given
        self.trial_runner: TrialRunner = self.run_trial
        self.jobs = 1  # worker processes that made the table (main's --jobs)
        self.note = ""  # e.g. that the table is a merge of stopped workers' parts
        self._best_trial: dict[tuple[str, int], tuple[float, dict[str, Any], Any, Any]] = {}

    def inputs_for(self, model: Any) -> Any:
        """The table's items as ``model`` takes them: region maps for methods that ask for
        them (``input_kind == "feature_maps"``), the pooled features otherwise."""
        if model.input_kind != "feature_maps":
            return self.dataset
        if self.data.feature_maps is None:
            raise ValueError(f"{model.name} takes region maps and {self.spec.dataset} has none")
        return replace(self.dataset, features=self.data.feature_maps)

    # -- bookkeeping ---------------------------------------------------------------------
    def _spec_key(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "dataset": spec.dataset,
            "protocol": spec.protocol,
            "metric": spec.metric,
            "budget": asdict(spec.budget),
            "n_trials": spec.n_trials,
            "split_seed": spec.split_seed,
            **({"split_options": dict(spec.split_options)} if spec.split_options else {}),
        }

    def _check_out_dir(self, resume: bool) -> None:
        key_file = self.out / "spec.json"
        if resume and key_file.is_file():
            saved = json.loads(key_file.read_text())
            if saved["key"] != self._spec_key():
                raise ValueError(
                    f"{self.out} holds a table made with {saved['key']}, not "
                    f"{self._spec_key()}: use another --out to start afresh"
                )
            self.seconds_before = float(saved.get("seconds", 0.0))
            for line in _read_lines(self.out / "runs.jsonl"):
                self.runs[(line["row"], line["bits"], line["seed"])] = line
            for line in _read_lines(self.out / "tuning.jsonl"):
                self.tunings[(line["row"], line["bits"])] = line
            self.log(f"resuming: {len(self.runs)} runs and {len(self.tunings)} tunings done")
        else:
            for name in ("runs.jsonl", "tuning.jsonl"):
                (self.out / name).unlink(missing_ok=True)
        key_file.write_text(json.dumps({"key": self._spec_key(), "seconds": self.seconds_before}))

    def _append(self, name: str, record: dict[str, Any]) -> None:
        with open(self.out / name, "a") as handle:
            handle.write(json.dumps(record, default=_json_default) + "\n")

    # -- tuning --------------------------------------------------------------------------
    def _check_tuning_indices(self, fit_idx: np.ndarray, val_idx: np.ndarray) -> None:
        """Tuning data must come from the training split only (never queries)."""
        split = self.split
        allowed = np.union1d(split.train, split.validation)
        for name, idx in (("fit", fit_idx), ("validation", val_idx)):
            if np.intersect1d(idx, split.query).size or not np.isin(idx, allowed).all():
                raise RuntimeError(f"tuning {name} items are not all training items")
        if np.intersect1d(fit_idx, val_idx).size:
            raise RuntimeError("tuning fit and validation items overlap")

    def run_trial(
        self,
        row: Row,
        n_bits: int,
        params: dict[str, Any],
        fit_idx: np.ndarray,
        val_idx: np.ndarray,
        report: Callable[[int, float], None],
    ) -> float:
        """Train ``row`` with ``params`` on ``fit_idx``; its best validation score on
        ``val_idx`` (``report`` gets the per-epoch curve for the pruner)."""
        import hashlab
        from hashlab.data.splits import Split

        model = hashlab.create(
            row.method,
            n_bits=n_bits,
            seed=self.spec.seeds[0],
            **{**row.params, **params, **_trained_params(self.spec, self.spec.budget.epochs)},
        )
        key = f"validation_{_selection_metric(model, self.spec.metric)}"
        model.on_epoch_validated = lambda state, record: report(record["epoch"], record[key])
        # a split of the training items alone: nothing else exists for the trial
        tuning_split = Split(
            query=np.empty(0, np.int64),
            train=fit_idx,
            database=fit_idx,
            validation=val_idx,
            protocol=f"tuning inside {self.split.protocol} training items",
        )
        record = _fit(model, self.inputs_for(model), tuning_split)
        model.on_epoch_validated = None
        score = float(record["best_score"])
        same_as_final = np.array_equal(fit_idx, self.split.train) and np.array_equal(
            val_idx, self.split.validation
        )
        best = self._best_trial.get((row.label, n_bits))
        if same_as_final and (best is None or score > best[0]):
            # kept: if these params win, this trial *is* the first seed's final run
            self._best_trial[(row.label, n_bits)] = (score, dict(params), model, record)
        return score

    def _trial_model(
        self, row: Row, n_bits: int, seed: int, params: dict[str, Any]
    ) -> tuple[Any, dict[str, Any]] | None:
        """The winning tuning trial's (model, record) when it is exactly this run."""
        best = self._best_trial.pop((row.label, n_bits), None)
        if best is None or seed != self.spec.seeds[0] or best[1] != params:
            return None
        return best[2], best[3]

    def tune_row(self, row: Row, n_bits: int) -> dict[str, Any]:
        done = self.tunings.get((row.label, n_bits))
        if done is not None:
            return done
        space = tuning_lib.method_search_space(row.method) if is_trained(row.method) else {}
        space = {k: v for k, v in space.items() if k not in row.params}  # fixed by the row
        fit_idx, val_idx = self.split.train, self.split.validation
        self._check_tuning_indices(fit_idx, val_idx)
        self.log(
            f"tune {row.label} {n_bits} bits: {len(space)} parameters, "
            f"{self.spec.n_trials if space else 0} trials"
        )

        def trial(params: dict[str, Any], report: Callable[[int, float], None]) -> float:
            score = self.trial_runner(row, n_bits, params, fit_idx, val_idx, report)
            self.log(f"  trial {params} -> {score:.4f}")
            return score

        result = tuning_lib.tune(
            space,
            trial,
            self.spec.n_trials,
            seed=self.spec.seeds[0],
            defaults=tuning_lib.method_defaults(row.method, list(space)),
            log=self.log,
        )
        record = {
            "row": row.label,
            "bits": n_bits,
            **result.to_json(),
            "n_fit": int(len(fit_idx)),
            "n_validation": int(len(val_idx)),
        }
        self.tunings[(row.label, n_bits)] = record
        self._append("tuning.jsonl", record)
        return record

    # -- one seeded run ------------------------------------------------------------------
    def run_row(self, row: Row, n_bits: int, seed: int, params: dict[str, Any]) -> dict[str, Any]:
        import hashlab
        from hashlab.metrics import evaluate
        from hashlab.pipeline import encode_split

        done = self.runs.get((row.label, n_bits, seed))
        if done is not None:
            return done
        spec, split = self.spec, self.split
        started = time.perf_counter()
        attempts: list[dict[str, Any]] = []
        record: dict[str, Any] = {
            "row": row.label,
            "method": row.method,
            "bits": n_bits,
            "seed": seed,
            "params": {**row.params, **params},
        }
        if is_trained(row.method):
            epochs = spec.budget.epochs
            reused = self._trial_model(row, n_bits, seed, params)
            while True:
                if reused is not None:  # the chosen trial is this very run (same seed, data)
                    model, training = reused
                    reused = None
                    record["reused_tuning_trial"] = True
                else:
                    model = hashlab.create(
                        row.method,
                        n_bits=n_bits,
                        seed=seed,
                        **{**row.params, **params, **_trained_params(spec, epochs)},
                    )
                    training = _fit(model, self.inputs_for(model), split)
                ok = converged(training["best_epoch"], epochs)
                attempts.append(
                    {
                        "epochs": epochs,
                        "best_epoch": training["best_epoch"],
                        "best_score": training["best_score"],
                        "converged": ok,
                        "stopped_early": training["stopped_early"],
                    }
                )
                if ok or epochs * 2 > spec.budget.cap_epochs:
                    break
                self.log(
                    f"  {row.label} {n_bits} bits seed {seed}: best epoch "
                    f"{training['best_epoch']} of {epochs}, not converged: "
                    f"continuing to {epochs * 2}"
                )
                epochs *= 2  # a fresh run of twice the length (same seed: same first epochs)
            history = training["history"]
            record.update(
                epochs_budget=epochs,
                epochs_run=len(history),
                best_epoch=training["best_epoch"],
                converged=attempts[-1]["converged"],
                attempts=attempts,
                updates=int(history[-1].get("steps", 0)) if history else 0,
                validation_score=training["best_score"],
                selection_metric=_selection_metric(model, spec.metric),
                validation_curve=[
                    h.get(f"validation_{_selection_metric(model, spec.metric)}") for h in history
                ],
            )
        else:
            model = hashlab.create(row.method, n_bits=n_bits, seed=seed, **row.params, **params)
            _fit(model, self.inputs_for(model), split)  # train + validation: no selection
            record.update(converged=None, epochs_budget=None)
        fit_seconds = time.perf_counter() - started
        if record.get("reused_tuning_trial"):  # its training ran during tuning
            fit_seconds += sum(float(h.get("seconds", 0.0)) for h in record_history(model))
        query_codes, db_codes = encode_split(model, self.inputs_for(model), split)
        y = self.data.labels
        scores = evaluate(
            query_codes, db_codes, y[split.query], y[split.database], metrics=list(spec.metrics)
        )
        record.update(
            scores={k: float(v) for k, v in scores.items()},
            fit_seconds=round(fit_seconds, 1),
            seconds=round(time.perf_counter() - started, 1),
        )
        self.runs[(row.label, n_bits, seed)] = record
        self._append("runs.jsonl", record)
        flag = "" if record["converged"] in (True, None) else " (NOT converged)"
        shown = ", ".join(
            f"{m} {scores[m]:.4f}" for m in dict.fromkeys([spec.metric, "map@all"]) if m in scores
        )
        self.log(
            f"run {row.label} {n_bits} bits seed {seed}: {shown} in {record['seconds']:.0f}s{flag}"
        )
        return record

    # -- the table -----------------------------------------------------------------------
    def reference(self) -> dict[str, Any] | None:
        """The float reference of this table (computed once, kept in the out dir)."""
        if not self.spec.float_reference:
            return None
        path = self.out / "float_reference.json"
        if path.is_file():
            return json.loads(path.read_text())
        from hashlab.bench.float_reference import float_reference

        split = self.split
        result = float_reference(
            self.data.features,
            self.data.labels,
            split.query,
            split.database,
            self.spec.metrics,
            self.spec.bits,
        )
        path.write_text(json.dumps(result, indent=2, default=_json_default))
        self.log(f"float reference (cosine): {result['scores']}")
        return result

    def run(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.reference()
        for n_bits in self.spec.bits:
            for row in self.spec.rows:
                tuned = self.tune_row(row, n_bits)
                for seed in self.spec.seeds:
                    self.run_row(row, n_bits, seed, tuned["best_params"])
                    self.write(time.perf_counter() - started)
        return self.write(time.perf_counter() - started)

    def write(self, seconds: float) -> dict[str, Any]:
        """Rewrite ``result.json`` and ``results.md`` from the runs so far."""
        total = self.seconds_before + seconds
        key_file = self.out / "spec.json"
        key_file.write_text(json.dumps({"key": self._spec_key(), "seconds": total}))
        result = summarise(self.spec, list(self.runs.values()), list(self.tunings.values()))
        path = self.out / "float_reference.json"
        if self.spec.float_reference and path.is_file():
            result["float_reference"] = json.loads(path.read_text())
        result["protocol"] = self.protocol(total)
        (self.out / "result.json").write_text(json.dumps(result, indent=2, default=_json_default))
        (self.out / "results.md").write_text(render_markdown(result))
        return result

    def protocol(self, seconds: float) -> dict[str, Any]:
        import torch

        import hashlab

        spec, split = self.spec, self.split
        trained = [r.label for r in spec.rows if is_trained(r.method)]
        return {
            "table": spec.name,
            "command": self.command,
            "data": self.data.description,
            "split": split.describe(),
            "notes": spec.notes,
            "headline_metric": f"{spec.metric} (checkpoints and tuning trials are selected by it)",
            "metrics": list(spec.metrics),
            "map_convention": "retrieved (AP over the retrieved list), ties broken by database "
            "order; radius inclusive (distance <= r)",
            "database_codes": "out-of-sample (database encoded by the learned hash function)",
            "budget": spec.budget.describe() + f"; trained rows: {', '.join(trained)}",
            "shallow_rows": "fit on train + validation (no model selection)",
            "tuning": f"{spec.n_trials} trials per (row, bits) for every row with a search space "
            f"({tuning_lib.SAMPLER}; {tuning_lib.PRUNER}), the defaults as the first trial; "
            "trained on the training split, scored on the validation items carved from it",
            "seeds": list(spec.seeds),
            "convergence": CONVERGENCE_RULE,
            "verdict_rule": VERDICT_RULE,
            "wall_seconds": round(seconds, 1),
            "worker_processes": self.jobs,
            **({"note": self.note} if self.note else {}),
            "hashlab_version": hashlab.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        }


# -- summaries ---------------------------------------------------------------------------
def summarise(
    spec: TableSpec, runs: list[dict[str, Any]], tunings: list[dict[str, Any]]
) -> dict[str, Any]:
    """Mean +- std per (row, bits, metric), convergence, claim verdicts, targets."""
    cells: dict[str, dict[str, Any]] = {}
    for row in spec.rows:
        for n_bits in spec.bits:
            mine = sorted(
                (r for r in runs if r["row"] == row.label and r["bits"] == n_bits),
                key=lambda r: r["seed"],
            )
            if not mine:
                continue
            cell: dict[str, Any] = {
                "row": row.label,
                "bits": n_bits,
                "seeds": [r["seed"] for r in mine],
                "unconverged_seeds": [r["seed"] for r in mine if r.get("converged") is False],
            }
            for metric in spec.metrics:
                mean, std = mean_std([r["scores"][metric] for r in mine])
                cell[metric] = {
                    "mean": mean,
                    "std": std,
                    "per_seed": {r["seed"]: r["scores"][metric] for r in mine},
                }
            cells[f"{row.label}@{n_bits}"] = cell
    verdicts = []
    for claim in spec.claims:
        metric = claim.metric or spec.metric
        for n_bits in claim.bits or spec.bits:
            a, b = cells.get(f"{claim.a}@{n_bits}"), cells.get(f"{claim.b}@{n_bits}")
            if a is None or b is None:
                continue
            verdict = paired_verdict(a[metric]["per_seed"], b[metric]["per_seed"])
            verdicts.append(
                {
                    "claim": claim.text,
                    "a": claim.a,
                    "b": claim.b,
                    "metric": metric,
                    "bits": n_bits,
                    "a_mean": a[metric]["mean"],
                    "a_std": a[metric]["std"],
                    "b_mean": b[metric]["mean"],
                    "b_std": b[metric]["std"],
                    **verdict.to_json(),
                }
            )
    targets = []
    for target in spec.targets:
        cell = cells.get(f"{target.row}@{target.bits}")
        if cell is None:
            continue
        mean = cell[target.metric]["mean"]
        targets.append(
            {
                **asdict(target),
                "mean": mean,
                "std": cell[target.metric]["std"],
                "met": bool(mean >= target.threshold),
            }
        )
    return {
        "spec": _spec_json(spec),
        "cells": cells,
        "verdicts": verdicts,
        "targets": targets,
        "tuning": tunings,
        "runs": runs,
    }


def _spec_json(spec: TableSpec) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(spec), default=_json_default))


def render_markdown(result: dict[str, Any]) -> str:
    spec, cells, protocol = result["spec"], result["cells"], result.get("protocol", {})
    rows = [r["label"] for r in spec["rows"]]
    bits = list(spec["bits"])
    lines = [
        f"# {spec['name']}: {spec['dataset']}, `{spec['protocol']}` split",
        "",
        f"Command: `{protocol.get('command', '')}`",
        "",
    ]
    lines += [f"- {key}: {value}" for key, value in protocol.items() if key != "command"]
    lines.append("")
    tuned = {(t["row"], t["bits"]): t for t in result["tuning"]}
    for metric in spec["metrics"]:
        headline = " (headline: selection metric)" if metric == spec["metric"] else ""
        lines += [
            f"## {metric}{headline}: mean +- std over seeds",
            "",
            "| row | " + " | ".join(f"{b} bits" for b in bits) + " |",
            "|---|" + "---|" * len(bits),
        ]
        for label in rows:
            out = []
            for n_bits in bits:
                cell = cells.get(f"{label}@{n_bits}")
                if cell is None:
                    out.append("-")
                    continue
                text = f"{cell[metric]['mean']:.3f} +- {cell[metric]['std']:.3f}"
                if len(cell["seeds"]) < len(spec["seeds"]):
                    text += f" ({len(cell['seeds'])} seeds)"
                if cell["unconverged_seeds"]:
                    text += f" (not converged: seeds {cell['unconverged_seeds']})"
                out.append(text)
            lines.append(f"| {label} | " + " | ".join(out) + " |")
        lines.append("")
    lines += _float_reference_lines(result.get("float_reference"), bits)
    if result["targets"]:
        lines += [
            "## Targets (issue 14)",
            "",
            "| row | metric | bits | wanted | ours | met |",
            "|---|---|---|---|---|---|",
        ]
        for t in result["targets"]:
            lines.append(
                f"| {t['row']} | {t['metric']} | {t['bits']} | >= {t['threshold']:.2f} "
                f"| {t['mean']:.3f} +- {t['std']:.3f} | {'yes' if t['met'] else 'no'} |"
            )
        lines.append("")
    if result["verdicts"]:
        lines += [
            "## Claims: paired per-seed verdicts",
            "",
            f"Rule: {VERDICT_RULE}.",
            "",
            "| claim | metric | bits | A | B | A - B per seed | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for v in result["verdicts"]:
            gaps = ", ".join(f"{g:+.3f}" for g in v["gaps"])
            lines.append(
                f"| {v['claim']} | {v['metric']} | {v['bits']} | "
                f"{v['a_mean']:.3f} +- {v['a_std']:.3f} | "
                f"{v['b_mean']:.3f} +- {v['b_std']:.3f} | {gaps} | {v['verdict']} |"
            )
        lines.append("")
    lines += [
        "## Tuning and convergence per (row, bits)",
        "",
        "| row | bits | trials (pruned) | chosen parameters | validation score | "
        "epoch budget | best epochs per seed | updates | fit s per seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label in rows:
        for n_bits in bits:
            mine = sorted(
                (r for r in result["runs"] if r["row"] == label and r["bits"] == n_bits),
                key=lambda r: r["seed"],
            )
            if not mine:
                continue
            t = tuned.get((label, n_bits), {})
            chosen = ", ".join(f"{k}={_short(v)}" for k, v in t.get("best_params", {}).items())
            value = t.get("best_value")
            budgets = sorted({r["epochs_budget"] for r in mine if r.get("epochs_budget")})
            best = ", ".join(str(r.get("best_epoch", "-")) for r in mine)
            updates = ", ".join(str(r.get("updates", "-")) for r in mine)
            fit = ", ".join(f"{r['fit_seconds']:.0f}" for r in mine)
            lines.append(
                f"| {label} | {n_bits} | {t.get('n_trials', 0)} ({t.get('n_pruned', 0)}) | "
                f"{chosen or '(none tuned)'} | {'-' if value is None else f'{value:.3f}'} | "
                f"{'/'.join(map(str, budgets)) or '-'} | {best} | {updates} | {fit} |"
            )
    lines.append("")
    return "\n".join(lines)


def _float_reference_lines(reference: dict[str, Any] | None, bits: list[int]) -> list[str]:
    """The float upper reference: its scores, and what the codes save in memory and time."""
    if not reference:
        return []
    costs = reference["costs"]
    scores = ", ".join(f"{k} {v:.3f}" for k, v in reference["scores"].items())
    lines = [
        "## Float reference: pooled CNN features ranked by cosine (no hashing)",
        "",
        f"{reference['feature_dim']}-d float32 features, exact cosine ranking: {scores} "
        f"(not applicable: {', '.join(reference['not_applicable']) or 'none'}; deterministic, "
        "so one value, not a mean over seeds). What ranking by the raw features gives: the "
        "bound for codes that only summarise them (unsupervised rows); label-supervised codes "
        "learn the labels' similarity and can pass it. Its cost beside the codes' "
        f"({costs['timing']}; top-{costs['k']} over {costs['n_items']:,} items):",
        "",
        "| representation | bytes per item | top-k CPU time per query, float / codes |",
        "|---|---|---|",
        f"| float32 {reference['feature_dim']}-d | {costs['float']['bytes_per_item']:,} | 1 |",
    ]
    for n_bits in bits:
        code = costs["codes"].get(str(n_bits))
        if code:
            ratio = code["float_time_ratio"]
            lines.append(
                f"| {n_bits}-bit codes | {code['bytes_per_item']} | "
                f"{'-' if ratio is None else f'{ratio:.1f}x'} |"
            )
    return [*lines, ""]


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by a kill: that run is redone
            continue
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# -- CLI ---------------------------------------------------------------------------------
def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hashlab.bench.harness", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--table", required=True, choices=sorted(TABLES))
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--quick", action="store_true", help="a CI-sized version of the table")
    parser.add_argument("--bits", type=_int_list, help="bit lengths, e.g. 16,32")
    parser.add_argument("--rows", help="comma-separated row labels to run (default: all)")
    parser.add_argument("--seeds", type=_int_list, help="seeds, e.g. 0,1,2")
    parser.add_argument("--n-trials", type=int, help="tuning trials per (row, bits)")
    parser.add_argument("--epochs", type=int, help="epoch budget of every trained row")
    parser.add_argument("--metric", help="headline (selection) metric")
    parser.add_argument("--data-root", help="folder holding the shared data sets")
    parser.add_argument("--resume", action="store_true", help="continue the runs in --out")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine two threads "
        "spin-wait on each other and train ~10x slower than one)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="run the bit lengths in this many worker processes (their parts "
        "in OUT/parts/), then merge them into one table",
    )
    parser.add_argument(
        "--merge-only",
        action="store_true",
        help="merge the parts already in OUT/parts/ (e.g. of stopped workers) "
        "into the table without running anything",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:  # numpy's BLAS too (ITQ-CCA, SDH, the metrics): the same spin-waiting
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency

        threadpool_limits(args.threads)
    except ImportError:  # pragma: no cover - scikit-learn always brings it
        pass
    spec = table_spec(args.table, quick=args.quick)
    changes: dict[str, Any] = {}
    if args.bits:
        changes["bits"] = args.bits
    if args.seeds:
        changes["seeds"] = args.seeds
    if args.n_trials is not None:
        changes["n_trials"] = args.n_trials
    if args.metric:
        changes["metric"] = args.metric
    if args.epochs:
        changes["budget"] = replace(
            spec.budget, epochs=args.epochs, cap_epochs=max(spec.budget.cap_epochs, args.epochs)
        )
    if args.rows:
        changes["rows"] = tuple(spec.row(label.strip()) for label in args.rows.split(","))
    spec = replace(spec, **changes)
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--merge-only"]
    command = "python -m hashlab.bench.harness " + " ".join(shlex.quote(a) for a in given)
    if args.jobs > 1 or args.merge_only:
        result = _run_in_parts(spec, args, command)
    else:
        harness = Harness(
            spec, args.out, command=command, resume=args.resume, data_root=args.data_root
        )
        result = harness.run()
    print(render_markdown(result))
    return 0


def _work_groups(
    spec: TableSpec, jobs: int
) -> list[tuple[tuple[int, ...], tuple[Row, ...], str]]:
    """(bit lengths, rows, part folder) per worker: the bit lengths dealt round robin; with
    more workers than bit lengths, each length's rows are dealt over several workers too
    (the trained rows first, so the slow ones spread evenly)."""
    jobs = max(1, jobs)
    if jobs <= len(spec.bits):
        groups = [tuple(spec.bits[i::jobs]) for i in range(jobs)]
        return [(g, spec.rows, "bits-" + "-".join(map(str, g))) for g in groups if g]
    per_bits = jobs // len(spec.bits)
    ordered = sorted(spec.rows, key=lambda r: not is_trained(r.method))
    out = []
    for n_bits in spec.bits:
        for i in range(per_bits):
            rows = tuple(ordered[i::per_bits])
            if rows:
                out.append(((n_bits,), rows, f"bits-{n_bits}-rows-{i + 1}of{per_bits}"))
    return out


def _seed_part(main: Path, part: Path, bits: tuple[int, ...]) -> None:
    """A new part of a resumed table starts from the main folder's finished runs and
    tunings at its bit lengths, so a worker never retrains what the table already has."""
    if (part / "spec.json").is_file() or not (main / "spec.json").is_file():
        return
    (part / "spec.json").write_text((main / "spec.json").read_text())
    for name in ("runs.jsonl", "tuning.jsonl"):
        lines = [line for line in _read_lines(main / name) if line["bits"] in bits]
        with open(part / name, "a") as handle:
            for line in lines:
                handle.write(json.dumps(line, default=_json_default) + "\n")


def _run_in_parts(spec: TableSpec, args: argparse.Namespace, command: str) -> dict[str, Any]:
    """Bit lengths split over ``args.jobs`` worker processes, each a harness of its own in
    ``OUT/parts/bits-...`` (log in ``log.txt`` there), merged into ``OUT`` at the end."""
    import subprocess

    started = time.perf_counter()
    parts = Path(args.out) / "parts"
    groups = _work_groups(spec, args.jobs)
    if not args.merge_only:
        workers = []
        for group, rows, folder_name in groups:
            folder = parts / folder_name
            folder.mkdir(parents=True, exist_ok=True)
            if args.resume:
                _seed_part(Path(args.out), folder, group)
            worker = [
                sys.executable,
                "-m",
                "hashlab.bench.harness",
                "--table",
                args.table,
                "--out",
                str(folder),
                "--bits",
                ",".join(map(str, group)),
                "--rows",
                ",".join(r.label for r in rows),
                "--seeds",
                ",".join(map(str, spec.seeds)),
                "--n-trials",
                str(spec.n_trials),
                "--epochs",
                str(spec.budget.epochs),
                "--metric",
                spec.metric,
                "--threads",
                str(args.threads),
            ]
            worker += ["--quick"] * args.quick + ["--resume"] * args.resume
            worker += ["--data-root", args.data_root] if args.data_root else []
            log = open(folder / "log.txt", "a")
            workers.append((subprocess.Popen(worker, stdout=log, stderr=subprocess.STDOUT), log))
            print(
                f"worker {workers[-1][0].pid}: bits {group}, {len(rows)} rows, "
                f"log {folder / 'log.txt'}",
                flush=True,
            )
        failed = []
        for process, log in workers:
            if process.wait() != 0:
                failed.append(process.args)
            log.close()
        if failed:
            raise RuntimeError(f"{len(failed)} worker(s) failed; see the log.txt files in {parts}")
    harness = Harness(spec, args.out, command=command, resume=args.resume, data_root=args.data_root)
    for folder in sorted(parts.glob("bits-*")):
        for line in _read_lines(folder / "tuning.jsonl"):
            if (line["row"], line["bits"]) not in harness.tunings:
                harness.tunings[(line["row"], line["bits"])] = line
                harness._append("tuning.jsonl", line)
        for line in _read_lines(folder / "runs.jsonl"):
            if (line["row"], line["bits"], line["seed"]) not in harness.runs:
                harness.runs[(line["row"], line["bits"], line["seed"])] = line
                harness._append("runs.jsonl", line)
    harness.jobs = len(groups)
    harness.reference()  # the float reference of the merged table (the parts have their own)
    expected = len(spec.rows) * len(spec.bits) * len(spec.seeds)
    if args.merge_only and len(harness.runs) < expected:
        harness.note = (
            "merged with --merge-only: the workers were stopped before the end, "
            "so this table holds the runs that had finished"
        )
    # the parts ran side by side: the table took as long as the longest of them
    part_seconds = [
        json.loads((f / "spec.json").read_text()).get("seconds", 0.0)
        for f in parts.glob("bits-*")
        if (f / "spec.json").is_file()
    ]
    elapsed = max([time.perf_counter() - started, *part_seconds]) - harness.seconds_before
    return harness.write(max(0.0, elapsed))


if __name__ == "__main__":
    raise SystemExit(main())
