"""The PC-AEGAN table: PC-AEGAN, PC-WGAN, DCH and HashNet next to the paper's Table 1, and the
ablations that answer the paper's claims, in one run.

    python -m hashlab.bench.pc_aegan --bits 16,32,48,64 --out benchmarks/pc_aegan [--epochs 2]

CIFAR-10 (the JPEG copy in ``shared/data``), ``dch`` split (1,000 queries, 5,000 training
images, database = the other 59,000). Every method fits on the 5,000 training images and carves
its own validation images (10% per class) for epoch selection; codes of queries and database are
out-of-sample. Every hash network is the same: a frozen EfficientNet-Lite0 fed 32 x 32 images
upsampled to 64 x 64 in torch (features cached once) and a trainable tanh hash layer. DCH and
HashNet train on the real images' features; PC-AEGAN / PC-WGAN also on their generated images,
which go through the same frozen backbone each step. Metrics: map@r2, precision@r2, recall@r2
(radius inclusive; a query with nothing within radius 2 scores 0) and map@all.

The CPU schedule is much shorter than the paper's (stated in the output): ``--epochs`` epochs
of the GAN methods (default 2: about 140 updates of every player at batch 64; the paper: at most
700), the generator's L_F term of Eq. 17 off unless ``--generator-hash-loss`` (its backward pass
through the backbone doubles the cost of a step on a CPU), one seed. Rows beyond Table 1:

* ``real only, Cauchy`` / ``real only, cosine``: PC-AEGAN's hash network and losses with
  ``use_generated=False`` (no GAN; same schedule), at every bit length: Cauchy vs cosine
  losses with nothing else different;
* at ``--ablation-bits``: PC-AEGAN with cosine losses, PC-AEGAN without the code
  discriminator;
* scarce labels: PC-AEGAN with and without generated images on 500 labelled training images
  (50 per class, as many updates as with 5,000).

Writes ``result.json`` (config, protocol, every row with its parameters, fit time, training
history), ``results.md`` (tables, Table 1, the claims answered), and from the PC-AEGAN and
PC-WGAN runs at ``--ablation-bits`` the generated-image grids and loss curves.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

import hashlab
from hashlab.bench.paper_numbers import PAPER_TABLES
from hashlab.data.shared import default_shared_data
from hashlab.metrics import evaluate

METRICS = ["map@r2", "precision@r2", "recall@r2", "map@all"]
_TABLE1 = PAPER_TABLES[("cifar10", "dch", "map@r2")]  # MAP within Hamming radius 2
PAPER_TABLE1 = {m: _TABLE1["methods"][m] for m in ("hashnet", "pc_wgan", "pc_aegan")}
PAPER_BITS = _TABLE1["bits"]


def load_cifar10_at_64px(data_root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(32 x 32 pixels, labels, frozen EfficientNet-Lite0 features at 64 px) of all 60,000."""
    from hashlab.backbones import create_backbone
    from hashlab.backbones.upsampled import UpsampledBackbone, upsampled_features
    from hashlab.data.cifar10 import load_cifar10
    from hashlab.data.pixels import dataset_pixels

    data = load_cifar10(data_root / "cifar10_jpg.tar.gz")
    pixels = dataset_pixels(data, 32)
    module = UpsampledBackbone(create_backbone("efficientnet_lite0"), 64)
    features = upsampled_features(pixels, module, "efficientnet_lite0", "cifar10", progress=True)
    return pixels, np.asarray(data.labels), features


def run_row(
    label: str, method: str, n_bits: int, params: dict[str, Any], data: dict[str, Any],
    train: np.ndarray, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """Fit one row on ``train`` and score the queries against the database."""
    model = hashlab.create(method, n_bits=n_bits, seed=seed, device="cpu", **params)
    x = data["pixels"] if model.input_kind == "pixels" else data["features"]
    start = time.perf_counter()
    model.fit(x[train], data["labels"][train])
    seconds = time.perf_counter() - start
    query, database = data["split"].query, data["split"].database
    # generative models encode through the same cached 64 px features as everyone else
    scores = evaluate(model.encode(data["features"][query]),
                      model.encode(data["features"][database]),
                      data["labels"][query], data["labels"][database], metrics=METRICS)  # fmt: skip
    training = model.extra_config_.get("training", {})
    row = {"row": label, "method": method, "bits": n_bits, **scores,
           "n_train": int(len(train)), "fit_seconds": round(seconds, 1),
           "params": model.get_params(), "best_epoch": training.get("best_epoch"),
           "history": training.get("history"),
           "adversarial": model.extra_config_.get("adversarial")}  # fmt: skip
    print(f"{label:34s} {n_bits:2d} bits  " + "  ".join(f"{m} {scores[m]:.4f}" for m in METRICS)
          + f"  ({seconds:.0f} s)", flush=True)  # fmt: skip
    return row


def plan(bits: list[int], ablation_bits: int | None, gan: dict[str, Any], baseline_epochs: int,
         cosine_gan: bool, which: str = "all") -> list[tuple]:  # fmt: skip
    """(label, method, bits, params, training set) of every row, in running order.

    The ablation bit length comes first, with every ablation, so that a run cut short still
    answers every claim at one bit length. ``which``: "all", "main" (no ablation rows) or
    "ablations" (only them), to run parts side by side and ``--merge`` them.
    """
    rows: list[tuple] = []
    ablations: list[tuple] = []
    baseline = {"epochs": baseline_epochs}
    for n_bits in sorted(bits, key=lambda b: b != ablation_bits):
        rows += [
            ("dch", "dch", n_bits, baseline, "full"),
            ("hashnet", "hashnet", n_bits, baseline, "full"),
            ("real only, Cauchy", "pc_aegan", n_bits, {**gan, "use_generated": False}, "full"),
            ("real only, cosine", "pc_aegan", n_bits,
             {**gan, "use_generated": False, "hash_losses": "cosine"}, "full"),
            ("pc_aegan", "pc_aegan", n_bits, gan, "full"),
            ("pc_wgan", "pc_wgan", n_bits, gan, "full"),
        ]  # fmt: skip
        if n_bits != ablation_bits:
            continue
        ablations += [
            ("pc_aegan, no code discriminator", "pc_aegan", ablation_bits,
             {**gan, "code_discriminator": False}, "full"),
            ("500 labels: real only", "pc_aegan", ablation_bits,
             {**gan, "use_generated": False, "epochs": gan["epochs"] * 10}, "scarce"),
            ("500 labels: pc_aegan", "pc_aegan", ablation_bits,
             {**gan, "epochs": gan["epochs"] * 10}, "scarce"),
        ]  # fmt: skip
        if cosine_gan:
            ablations.append(("pc_aegan, cosine losses", "pc_aegan", ablation_bits,
                              {**gan, "hash_losses": "cosine"}, "full"))  # fmt: skip
    if which == "all":  # the ablations right after the main rows at their bit length
        split = len(ablations) and 6
        return rows[:split] + ablations + rows[split:]
    return rows if which == "main" else ablations


def _value(rows: list[dict], label: str, n_bits: int, metric: str) -> float | None:
    for row in rows:
        if row["row"] == label and row["bits"] == n_bits:
            return row[metric]
    return None


def markdown(result: dict[str, Any]) -> str:
    rows, bits = result["rows"], result["config"]["bits"]
    config, lines = result["config"], []
    lines += [
        "# PC-AEGAN on CIFAR-10 (`dch` protocol)", "",
        f"Command: `{config['command']}`", "",
        f"Protocol: {result['protocol']}", "",
        f"Schedule (CPU, reduced; the paper: at most 700 iterations, AlexNet fine-tuned at "
        f"224 px): {config['schedule']}", "",
    ]  # fmt: skip
    labels = list(dict.fromkeys(row["row"] for row in rows if row["n_train"] > 1000))
    for metric in METRICS:
        lines += [f"## {metric}", "", "| method | " + " | ".join(map(str, bits)) + " |",
                  "|---|" + "---|" * len(bits)]  # fmt: skip
        for label in labels:
            cells = [_value(rows, label, b, metric) for b in bits]
            if all(c is None for c in cells):
                continue
            lines.append(f"| {label} | " + " | ".join(
                "" if c is None else f"{c:.3f}" for c in cells) + " |")  # fmt: skip
        lines.append("")
    lines += ["## Beside the paper's Table 1 (map@r2; paper / ours)", "",
              "| method | " + " | ".join(map(str, PAPER_BITS)) + " |",
              "|---|" + "---|" * len(PAPER_BITS)]  # fmt: skip
    for method, paper in PAPER_TABLE1.items():
        cells = []
        for b, p in zip(PAPER_BITS, paper, strict=True):
            ours = _value(rows, method, b, "map@r2")
            cells.append(f"{p:.3f} / " + ("-" if ours is None else f"{ours:.3f}"))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    scarce = [row for row in rows if row["n_train"] <= 1000]
    if scarce:
        lines += ["", "## Labelled data scarce vs plentiful", "",
                  "| row | bits | labelled images | " + " | ".join(METRICS) + " |",
                  "|---|---|---|" + "---|" * len(METRICS)]  # fmt: skip
        plentiful = [r for r in rows if r["row"] in ("real only, Cauchy", "pc_aegan")
                     and r["bits"] == config["ablation_bits"]]  # fmt: skip
        for row in plentiful + scarce:
            lines.append(f"| {row['row']} | {row['bits']} | {row['n_train']} | " +
                         " | ".join(f"{row[m]:.3f}" for m in METRICS) + " |")  # fmt: skip
    lines += ["", "## The paper's claims, answered", ""] + [f"- {c}" for c in claims(result)]
    return "\n".join(lines) + "\n"


def claims(result: dict[str, Any]) -> list[str]:
    rows, bits, ab = result["rows"], result["config"]["bits"], result["config"]["ablation_bits"]

    def compare(a: str, b: str, metric: str, at: list[int]) -> str:
        pairs = [(n, _value(rows, a, n, metric), _value(rows, b, n, metric)) for n in at]
        pairs = [(n, x, y) for n, x, y in pairs if x is not None and y is not None]
        wins = sum(x > y for _, x, y in pairs)
        detail = ", ".join(f"{n}: {x:.3f} vs {y:.3f}" for n, x, y in pairs)
        return f"{wins}/{len(pairs)} bit lengths ({detail})"

    def recall_drop(label: str) -> str:
        first, last = _value(rows, label, bits[0], "recall@r2"), _value(rows, label, bits[-1],
                                                                          "recall@r2")  # fmt: skip
        if first is None or last is None or len(bits) < 2:
            return "n/a (one bit length)"
        kept = f", {last / first:.0%} of it kept" if first > 0 else ""
        return f"{first:.3f} -> {last:.3f} ({last - first:+.3f}{kept})"

    out = [
        "PC-AEGAN > PC-WGAN (map@r2): PC-AEGAN wins at "
        + compare("pc_aegan", "pc_wgan", "map@r2", bits),
        "Cauchy > cosine within radius 2 (map@r2), hash network on real images only, nothing "
        "else different: Cauchy wins at "
        + compare("real only, Cauchy", "real only, cosine", "map@r2", bits),  # fmt: skip
        f"Same with the GAN (PC-AEGAN vs PC-AEGAN with cosine losses, {ab} bits): "
        + (
            "Cauchy wins at " + compare("pc_aegan", "pc_aegan, cosine losses", "map@r2", [ab])
            if _value(rows, "pc_aegan, cosine losses", ab, "map@r2") is not None
            else "not run (--cosine-gan); PC-WGAN differs from PC-AEGAN in the losses and C"
        ),
        f"recall@r2 from {bits[0]} to {bits[-1]} bits: Cauchy (real only) "
        f"{recall_drop('real only, Cauchy')}; cosine (real only) "
        f"{recall_drop('real only, cosine')}; PC-AEGAN {recall_drop('pc_aegan')}; PC-WGAN "
        f"{recall_drop('pc_wgan')}",
        f"Code discriminator ({ab} bits): with it wins at "
        + compare("pc_aegan", "pc_aegan, no code discriminator", "map@r2", [ab]),
        "Generated images, 5,000 labelled: PC-AEGAN beats its real-only hash network at "
        + compare("pc_aegan", "real only, Cauchy", "map@r2", bits),
        f"Generated images, 500 labelled ({ab} bits): PC-AEGAN beats real-only at "
        + compare("500 labels: pc_aegan", "500 labels: real only", "map@r2", [ab]),
    ]
    return out


def merge(files: list[str], out: Path, bits: list[int]) -> None:
    """One report from several runs' result.json (rows concatenated; first run's config)."""
    parts = [json.loads(Path(f).read_text()) for f in files]
    rows = {}
    for row in (row for part in parts for row in part["rows"]):
        rows.setdefault((row["row"], row["bits"]), row)  # a row run twice: the first file's
    result = {**parts[0], "rows": list(rows.values())}
    result["config"] = {**result["config"], "bits": bits,
                        "merged_from": [{"file": f, "command": p["config"]["command"]}
                                        for f, p in zip(files, parts, strict=True)]}  # fmt: skip
    ablations = [p["config"]["ablation_bits"] for p in parts if p["config"]["ablation_bits"]]
    result["config"]["ablation_bits"] = ablations[0] if ablations else 0
    result["config"]["command"] = " ; ".join(p["config"]["command"] for p in parts)
    (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "results.md").write_text(markdown(result))
    for figure in (png for f in files for png in Path(f).parent.glob("*.png")):
        shutil.copy(figure, out / figure.name)
    print(markdown(result))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", default="16,32,48,64")
    parser.add_argument("--out", default="benchmarks/pc_aegan")
    parser.add_argument("--data-root", default=str(default_shared_data()))
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the GAN methods")
    parser.add_argument(
        "--ablation-bits",
        type=int,
        default=32,
        help="bit length of the ablation rows; 0: no ablation rows",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="RESULT_JSON",
        help="only write results.md (and result.json) in --out from the rows "
        "of earlier runs, e.g. one run per bit length run side by side",
    )
    parser.add_argument(
        "--generator-hash-loss",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="G also minimises L_F of its fakes (Eq. 17)",
    )
    parser.add_argument("--rows", choices=("all", "main", "ablations"), default="all")
    parser.add_argument(
        "--channels", type=int, default=16, help="base width of G and D (method default 32)"
    )
    parser.add_argument("--generated-per-batch", type=int, default=16)
    parser.add_argument(
        "--baseline-epochs",
        type=int,
        default=10,
        help="epochs of DCH and HashNet (early stopping as usual)",
    )
    parser.add_argument(
        "--cosine-gan",
        action="store_true",
        help="also PC-AEGAN with cosine losses at --ablation-bits",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    bits = [int(b) for b in args.bits.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        merge(args.merge, out, bits)
        return

    from hashlab.data.splits import make_split

    pixels, labels, features = load_cifar10_at_64px(Path(args.data_root))
    split = make_split(labels, protocol="dch", seed=args.seed)
    train = split.train_all
    rng = np.random.default_rng(args.seed)
    scarce = np.sort(np.concatenate([rng.choice(train[labels[train] == c], 50, replace=False)
                                     for c in np.unique(labels)]))  # fmt: skip
    data = {"pixels": pixels, "labels": labels, "features": features, "split": split}
    gan = {
        "epochs": args.epochs,
        "generator_hash_loss": args.generator_hash_loss,
        "generator_channels": args.channels,
        "discriminator_channels": args.channels,
        "generated_per_batch": args.generated_per_batch,
    }
    schedule = (
        f"GAN methods and 'real only' rows: {args.epochs} epochs on 4,500 training "
        f"images (~{args.epochs * 71} updates per player, batch 64; 500-label rows: "
        f"{args.epochs * 10} epochs on 450, about as many updates), generator's L_F "
        f"term {'on' if args.generator_hash_loss else 'off'}, G / D base width "
        f"{args.channels}, {args.generated_per_batch} generated images per batch of 64 "
        f"real, stage 1 300 steps; DCH / HashNet: {args.baseline_epochs} epochs (early "
        f"stopping as usual); seed {args.seed}"
    )
    result: dict[str, Any] = {
        "config": {"bits": bits, "ablation_bits": args.ablation_bits, "epochs": args.epochs,
                   "generator_hash_loss": args.generator_hash_loss, "seed": args.seed,
                   "schedule": schedule,
                   "command": "python -m hashlab.bench.pc_aegan " + " ".join(
                       argv if argv is not None else __import__("sys").argv[1:])},
        "protocol": f"CIFAR-10 JPEG, dch split: {split.describe()}; hash network input: "
                    "frozen EfficientNet-Lite0 on 32 px images upsampled to 64 px",
        "rows": [],
    }  # fmt: skip
    samples = out / "runs"
    rows = plan(bits, args.ablation_bits, gan, args.baseline_epochs, args.cosine_gan, args.rows)
    for label, method, n_bits, params, which in rows:
        params = dict(params)
        figures = None
        if label in ("pc_aegan", "pc_wgan") and n_bits == args.ablation_bits:
            figures = samples / f"{label}_{n_bits}bits"
            params["sample_dir"] = str(figures)
        rows_train = train if which == "full" else scarce
        result["rows"].append(run_row(label, method, n_bits, params, data, rows_train, args.seed))
        if figures is not None:  # the final grid and curves beside the tables
            shutil.copy(figures / "samples.png", out / f"{label}_{n_bits}bits_samples.png")
            shutil.copy(figures / "loss_curves.png", out / f"{label}_{n_bits}bits_loss_curves.png")
        (out / "result.json").write_text(json.dumps(result, indent=2, default=str))
        (out / "results.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
