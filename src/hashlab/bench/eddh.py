"""The EDDH table: EDDH, its ablations, ADSH, DPSH and DCH in one run.

    python -m hashlab.bench.eddh --bits 16,32,48,64 --out DIR [--dataset cifar10] [--epochs T]
        [--eddh-params '{"lam": 0.1}'] [--tune-grid 'lam=0.1,1;gamma=0.1,1' --tune-bits 32]
        [--rows eddh,eddh-binary-S]

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

EDDH's weights: ``--eddh-params`` sets them for every EDDH row (a key naming a row sets that
row's own, e.g. ``{"lam": 1, "eddh-symmetric": {"lam": 0.1}}``); ``--tune-grid`` instead picks
them per EDDH row by validation map@all at ``--tune-bits``, on items carved from the training
set (10% per class as validation queries, the rest as fit items and database), never from
the queries or the retrieval database. The grid and every score go to ``tuning.json`` and
``results.md``. ADSH, DPSH and DCH keep their defaults.

``results.md`` ends with the paper's ablation claims (EDDH beats its symmetric and its
binary-similarity variants) checked per metric and bit length on these rows.

Writes ``result.json`` (config, protocol, every row with its parameters), ``results.md``,
``results.csv``, PR-curve plots, and per bit length the EDDH distance fit
(``eddh_similarity_<bits>bits/similarity_fit.{json,png}``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

import hashlab
import hashlab.methods.deep.eddh  # noqa: F401  (registers "eddh" until the package imports it)
from hashlab.bench.report import write_report
from hashlab.bench.runner import BenchConfig, BenchResult, describe_protocol
from hashlab.data.dataset import Dataset
from hashlab.data.shared import default_shared_data
from hashlab.data.splits import make_split
from hashlab.methods.deep.base import carve_validation
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


EDDH_ROWS = [row for row, (method, _) in ROWS.items() if method == "eddh"]
# weights a variant does not use (relaxed: B := U; symmetric: V := U, the slides' problem (2)),
# so tuning does not fit it once per value of them
UNUSED_WEIGHTS = {"eddh-relaxed": {"lam"}, "eddh-symmetric": {"gamma", "rho"}}
# (claim, the EDDH row it is checked against)
CLAIMS = [
    ("EDDH beats its symmetric variant (V := U)", "eddh-symmetric"),
    ("EDDH beats its binary-similarity variant (s_ij in {-1, 1})", "eddh-binary-S"),
]


def parse_grid(text: str) -> dict[str, list[float]]:
    """``"lam=0.1,1;gamma=1,10"`` -> {"lam": [0.1, 1.0], "gamma": [1.0, 10.0]}."""
    grid = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, values = part.partition("=")
        if not values:
            raise ValueError(f"grid entries look like name=v1,v2; got {part!r}")
        grid[name.strip()] = [float(v) for v in values.split(",")]
    return grid


def tune_eddh(
    x_train: np.ndarray,
    y_train: np.ndarray,
    grid: dict[str, list[float]],
    rows: list[str],
    n_bits: int,
    base_params: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """Pick each EDDH row's weights by validation map@all, inside the training set only.

    10% of the training items per class are validation queries; the rest are both the fit
    items and the database. (Each fit carves its own epoch-selection items from those.)
    """
    rng = np.random.default_rng(seed + 1)  # not the split the fits carve (seed)
    fit_pos, val_pos = carve_validation(y_train, 0.1, rng)
    x_fit, y_fit = x_train[fit_pos], y_train[fit_pos]
    x_val, y_val = x_train[val_pos], y_train[val_pos]
    names = list(grid)
    trials, best = [], {}
    for row in rows:
        unused = UNUSED_WEIGHTS.get(row, set())
        axes = [grid[name][:1] if name in unused else grid[name] for name in names]
        for values in itertools.product(*axes):
            params = {**ROWS[row][1], **base_params, **dict(zip(names, values, strict=True))}
            model = hashlab.create("eddh", n_bits=n_bits, seed=seed, **params)
            start = time.perf_counter()
            model.fit(x_fit, y_fit)
            scores = evaluate(model.encode(x_val), model.encode(x_fit), y_val, y_fit,
                              metrics=["map@all", "map@r2"])  # fmt: skip
            trial = {"row": row, **dict(zip(names, values, strict=True)), **scores,
                     "fit_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
            trials.append(trial)
            print(f"tune {row:15s} {n_bits} bits {dict(zip(names, values, strict=True))}  "
                  f"val map@all {scores['map@all']:.4f}", flush=True)  # fmt: skip
            if row not in best or scores["map@all"] > best[row]["map@all"]:
                best[row] = trial
    return {
        "bits": n_bits,
        "grid": grid,
        "protocol": f"{len(val_pos)} validation queries (10% of the training items per class) "
        f"against the other {len(fit_pos)} training items, which are also the fit items; "
        "score: map@all; the test queries and the retrieval database are not used",
        "trials": trials,
        "chosen": {row: {name: trial[name] for name in names} for row, trial in best.items()},
    }


def tuning_markdown(tuning: dict[str, Any]) -> str:
    names = list(tuning["grid"])
    lines = [f"EDDH weights chosen on validation at {tuning['bits']} bits: {tuning['protocol']}.",
             "", "| row | " + " | ".join(names) + " | val map@all | val map@r2 | chosen |",
             "|" + "---|" * (len(names) + 4)]  # fmt: skip
    for trial in tuning["trials"]:
        chosen = tuning["chosen"][trial["row"]] == {name: trial[name] for name in names}
        scores = [f"{trial['map@all']:.4f}", f"{trial['map@r2']:.4f}", "yes" if chosen else ""]
        cells = [trial["row"], *(f"{trial[name]:g}" for name in names), *scores]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def claims_markdown(rows: list[dict[str, Any]]) -> str:
    """The paper's ablation claims, checked per metric and bit length on these rows."""
    by_key = {(row["method"], row["bits"]): row for row in rows}
    bits = sorted({row["bits"] for row in rows})
    lines = []
    for claim, rival in CLAIMS:
        if not all((name, b) in by_key for name in ("eddh", rival) for b in bits):
            continue
        lines.append(f"- {claim}:")
        for metric in METRICS:
            gaps = [by_key["eddh", b][metric] - by_key[rival, b][metric] for b in bits]
            wins = sum(gap > 0 for gap in gaps)
            shown = ", ".join(f"{b}b {gap:+.3f}" for b, gap in zip(bits, gaps, strict=True))
            verdict = "holds" if wins == len(bits) else "does not hold" if wins == 0 else "mixed"
            lines.append(f"  - {metric}: {verdict} ({wins}/{len(bits)} bit lengths; "
                         f"EDDH minus {rival}: {shown})")  # fmt: skip
    return "\n".join(lines)


def _write_results(result: BenchResult, out: Path, tuning: dict[str, Any] | None) -> None:
    write_report(result, out)
    extra = ["", "## The paper's ablation claims on these rows", "", claims_markdown(result.rows)]
    if tuning is not None:
        extra += ["", "## EDDH weight selection", "", tuning_markdown(tuning)]
    with open(out / "results.md", "a") as handle:
        handle.write("\n".join(extra) + "\n")


def run(
    bits: list[int],
    out: Path,
    dataset: str,
    data_root: Path,
    epochs: int | None,
    seed: int,
    eddh_params: dict[str, Any] | None = None,
    tune_grid: dict[str, list[float]] | None = None,
    tune_bits: int = 32,
    only_rows: list[str] | None = None,
) -> BenchResult:
    unknown = set(only_rows or []) - set(ROWS)
    if unknown:
        raise ValueError(f"unknown rows {sorted(unknown)}; expected some of {list(ROWS)}")
    table = {row: spec for row, spec in ROWS.items() if not only_rows or row in only_rows}
    data, features, backbone = load_data(dataset, data_root)
    labels = np.asarray(data.labels)
    split = make_split(labels, "dch" if dataset == "cifar10" else "per-class", seed=seed)
    train = split.train_all  # methods carve their own validation from it
    x_train, y_train = features[train], labels[train]
    x_query, y_query = features[split.query], labels[split.query]
    x_db, y_db = features[split.database], labels[split.database]
    overrides = {} if epochs is None else {"epochs": epochs}
    row_params = {row: {**params, **overrides} for row, (_, params) in ROWS.items()}
    # {"lam": 1, "eddh-symmetric": {"lam": 0.1}}: shared weights, then one row's own
    shared_eddh = {k: v for k, v in (eddh_params or {}).items() if k not in ROWS}
    for row in EDDH_ROWS:
        row_params[row].update({**shared_eddh, **(eddh_params or {}).get(row, {})})
    tuning = None
    if tune_grid:
        tuned_rows = [row for row in EDDH_ROWS if row in table]
        tuning = tune_eddh(x_train, y_train, tune_grid, tuned_rows, tune_bits,
                           {**overrides, **shared_eddh}, seed)  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        (out / "tuning.json").write_text(json.dumps(tuning, indent=2))
        for row, chosen in tuning["chosen"].items():
            row_params[row].update(chosen)
    config = BenchConfig(
        dataset=dataset, protocol=split.protocol, methods=list(table), bits=bits, metrics=METRICS,
        backbone=backbone, seed=seed, method_params={row: row_params[row] for row in table},
    )  # fmt: skip
    protocol = describe_protocol(config, data, split)
    protocol["split"] = split.describe()
    schedule = {
        row: hashlab.create(method, n_bits=bits[0], **row_params[row]).hparams.epochs
        for row, (method, _) in table.items()
    }
    protocol["epochs"] = ", ".join(f"{row} {n}" for row, n in schedule.items())
    if tuning is not None:
        protocol["eddh_weights"] = f"chosen on validation at {tune_bits} bits (tuning.json)"
    rows, curves = [], {}
    result = BenchResult(config, protocol, rows, curves)
    for n_bits in bits:
        for row, (method, _) in table.items():
            model = hashlab.create(method, n_bits=n_bits, seed=seed, **row_params[row])
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
        _write_results(result, out, tuning)  # after every code length: a long run keeps its rows
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", default="16,32,48,64", help="comma-separated code lengths")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "digits"])
    parser.add_argument("--data-root", default=default_shared_data(), type=Path)
    parser.add_argument("--epochs", type=int, default=None, help="epochs (EDDH: outer iterations)")
    parser.add_argument("--seed", type=int, default=0)
    example = '{"lam": 1, "gamma": 1, "eddh-symmetric": {"lam": 0.1}}'
    parser.add_argument("--eddh-params", type=json.loads, default=None,
                        help=f"JSON for every EDDH row, e.g. '{example}'")  # fmt: skip
    parser.add_argument("--tune-grid", type=parse_grid, default=None,
                        help="EDDH weights to pick on validation: 'lam=0.1,1;gamma=1'")  # fmt: skip
    parser.add_argument("--tune-bits", type=int, default=32, help="code length of the tuning")
    parser.add_argument("--rows", default=None, help=f"comma-separated subset of {list(ROWS)}")
    args = parser.parse_args(argv)
    bits = [int(b) for b in args.bits.split(",")]
    result = run(bits, args.out, args.dataset, args.data_root, args.epochs, args.seed,
                 args.eddh_params, args.tune_grid, args.tune_bits,
                 args.rows.split(",") if args.rows else None)  # fmt: skip
    print((args.out / "results.md").read_text())
    print(f"{len(result.rows)} rows written to {args.out}")


if __name__ == "__main__":
    main()
