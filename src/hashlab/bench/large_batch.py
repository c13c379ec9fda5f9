"""Table 4 of Zhang & Zhou 2021 (``lbo_cmh``) on data large enough to ask its question.

The paper's Table 4 trains at batch 512 / 2,048 / 8,192 (lr 0.02 / 0.04 / 0.08: the
square-root rule lr = 0.02 sqrt(b / 512), Sec. 3.4) with and without the orthogonal term of
L4, on Wikipedia, whose 2,173 x 4 = 8,692 triplets per direction make batch 8,192 the whole
epoch. Its three findings: (1) a bigger batch alone does not help (MAP), (2) orthogonal
regularisation does, at every batch size, and (3) a bigger batch cuts the time per epoch
(9.3 s -> 7.5 s at 16 bits without the term). Here:

- ``wikipedia``: the paper's set (128-d SIFT / 10-d LDA here, not its VGG-19 / BoW), read
  from ``benchmarks/cross_modal/wikipedia_table4.json`` (the same protocol, run earlier by
  :func:`hashlab.bench.cross_modal.run_batch_table`) rather than rerun (~3 CPU hours);
- ``mirflickr-pairs``: the 730 MIRFlickr-25K pairs with images here
  (:func:`hashlab.data.mirflickr_pairs.load_mirflickr_image_pairs`): image side
  EfficientNet-Lite0 features (1,280-d), text side the papers' 1,386-word tag bag-of-words,
  relevance = a shared label of 24; 73 random queries, the other 657 the retrieval set
  (10% of it held out for validation). Even smaller than Wikipedia: batch 2,048 and 8,192
  are both the whole epoch;
- ``synthetic-100k``: a clearly labelled stand-in, NOT real data: Wikipedia's training pairs
  resampled with replacement to 100,000 pairs, each copy with Gaussian noise added to both
  sides, x' = x + sigma s_d e (e ~ N(0, 1), s_d the standard deviation of dimension d over
  the training pairs, sigma = ``noise`` = 0.5 by default), labels kept. The queries are the
  693 real Wikipedia ``_te`` pairs (no noise), the database the 100,000 synthetic pairs, the
  validation the 10% of real training pairs whose copies are not trained on (so no noisy
  copy of a validation pair is in the training set). Here batch 8,192 is 2% of an epoch's
  400,000 triplets (m = 4), so the batch sizes differ in what they mean.

Protocol (as :mod:`hashlab.bench.cross_modal`): equal updates (``budget`` optimiser steps per
network for every batch size, epochs = budget / steps per epoch, best validation epoch kept,
early stopping after 25% of the budget without improvement), 3 seeds, both directions
(i2t: image queries against text codes; t2i the reverse), ``map@all``, database encoded
out-of-sample by the learned hash functions. Learning rates: the paper's square-root rule
with Adam's quarter base (0.005 / 0.01 / 0.02; ``lbo_cmh``'s default and docstring).
Seconds per epoch: both alternating phases, validation excluded, one thread.

``ddp_smoke``: the synthetic set across 2 processes (``torchrun --nproc_per_node 2``, gloo on
CPU): each global batch of triplets split by rank, every rank's codes all-gathered into the
loss (:mod:`hashlab.train.distributed`); the weights are compared with one process's.

    python -m hashlab.bench.large_batch --sets mirflickr-pairs,synthetic-100k --ddp \
        --out benchmarks/large_batch
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.bench.cross_modal import (
    PATIENCE_FRACTION,
    TABLE4_SETTINGS,
    _cell,
    _claim,
    _encode_both_ways,
    _score,
    _verdict_lines,
)
from hashlab.bench.verdicts import VERDICT_RULE, converged
from hashlab.data.dataset import Dataset
from hashlab.data.shared import default_shared_data
from hashlab.methods.registry import create

SETS = ("mirflickr-pairs", "synthetic-100k")
REGULARISERS = ("l2", "offdiagonal")  # without / with the orthogonal term (Eq. 19 / BigGAN)
N_SYNTHETIC = 100_000
NOISE = 0.5
WIKIPEDIA_TABLE = Path("benchmarks/cross_modal/wikipedia_table4.json")
SIDES = {
    "wikipedia": "image: 128-d SIFT bag-of-visual-words; text: 10-d LDA topics",
    "mirflickr-pairs": "image: EfficientNet-Lite0 (ImageNet, frozen) 1,280-d; text: 1,386-word "
    "tag bag-of-words (YAll)",
    "synthetic-100k": "Wikipedia's SIFT / LDA pairs resampled with noise (a stand-in, not data)",
}


# -- data ----------------------------------------------------------------------------------
def _wikipedia(root: Path) -> tuple[Dataset, Any]:
    from hashlab.data.wikipedia import load_wikipedia, wikipedia_split

    data = load_wikipedia(root / "wikipedia" / "wiki_data.mat")
    return data, wikipedia_split(data)


def load_set(
    name: str, root: str | Path | None = None, split_seed: int = 0,
    n_synthetic: int = N_SYNTHETIC, noise: float = NOISE,
) -> dict[str, Any]:  # fmt: skip
    """``{"fit", "validation", "database", "query"}`` Datasets of a named set, and its text."""
    from hashlab.bench.cross_modal import validation_split
    from hashlab.data.splits import carve_validation

    root = Path(root) if root is not None else default_shared_data()
    rng = np.random.default_rng(split_seed)
    if name == "mirflickr-pairs":
        from hashlab.backbones import extract_features
        from hashlab.data.mirflickr_pairs import load_mirflickr_image_pairs

        data = load_mirflickr_image_pairs(root / "mirflickr25k", text="bow")
        features = extract_features(data.image_paths, "efficientnet_lite0",
                                    dataset_key=data.name, progress=False)  # fmt: skip
        data = data.with_features(features, backbone="efficientnet_lite0")
        order = rng.permutation(len(data))
        n_query = len(data) // 10
        query, retrieval = np.sort(order[:n_query]), np.sort(order[n_query:])
        fit_pos, val_pos = carve_validation(data.label_matrix()[retrieval], 0.1, rng)
        fit, val = retrieval[np.sort(fit_pos)], retrieval[np.sort(val_pos)]
        parts = {"fit": data.subset(fit), "validation": data.subset(val),
                 "database": data.subset(retrieval), "query": data.subset(query)}  # fmt: skip
        text = (f"{len(query)} random queries, {len(retrieval)} retrieval pairs (database, "
                f"in-sample items encoded by the hash functions), {len(val)} of them held out "
                f"for validation, {len(fit)} trained on")  # fmt: skip
    elif name == "synthetic-100k":
        data, split = _wikipedia(root)
        fit_base, val_base = validation_split(data, split, split_seed)
        picks = fit_base[rng.integers(0, len(fit_base), n_synthetic)]
        sides = {}
        for side, values in (("features", data.features), ("text", data.text)):
            scale = values[fit_base].std(axis=0)  # s_d: the real pairs' spread per dimension
            noisy = values[picks] + noise * scale * rng.standard_normal((n_synthetic, len(scale)))
            sides[side] = noisy.astype(np.float32)
        synthetic = Dataset(name="synthetic-100k", features=sides["features"], text=sides["text"],
                            labels=data.labels[picks], info={"resampled_from": picks})  # fmt: skip
        parts = {"fit": synthetic, "validation": data.subset(val_base),
                 "database": synthetic, "query": data.subset(split.query)}  # fmt: skip
        text = (f"{n_synthetic:,} synthetic pairs (noisy copies of {len(fit_base)} real "
                f"Wikipedia training pairs, noise sigma = {noise} x per-dimension std) trained on "
                f"and searched (database); validation: the {len(val_base)} real training pairs "
                f"held out; queries: the {len(split.query)} real _te pairs")  # fmt: skip
    else:
        raise ValueError(f"unknown set {name!r}; known: {', '.join(SETS)}")
    return {**parts, "description": text, "sides": SIDES[name]}


_SETS: dict[tuple, dict[str, Any]] = {}


def _cached_set(task: dict[str, Any]) -> dict[str, Any]:
    key = (task["set"], task["root"], task["split_seed"], task["n_synthetic"], task["noise"])
    if key not in _SETS:
        _SETS[key] = load_set(task["set"], task["root"], task["split_seed"],
                              task["n_synthetic"], task["noise"])  # fmt: skip
    return _SETS[key]


# -- one run -------------------------------------------------------------------------------
def run_key(task: dict[str, Any]) -> str:
    fields = ("set", "batch", "regulariser", "bits", "seed", "budget", "triplets_per_query",
              "split_seed", "n_synthetic", "noise")  # fmt: skip
    return json.dumps({k: task[k] for k in fields}, sort_keys=True)


def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """One lbo_cmh fit on ``budget`` updates per network; map@all both ways, s/epoch."""
    import torch

    torch.set_num_threads(1)
    parts = _cached_set(task)
    params = {"batch_size": task["batch"], "regulariser": task["regulariser"],
              "triplets_per_query": task["triplets_per_query"], "device": "cpu"}  # fmt: skip
    probe = create("lbo_cmh", n_bits=task["bits"], **params)
    steps = probe.steps_per_epoch(parts["fit"].label_matrix())
    epochs = math.ceil(task["budget"] / steps)
    started = time.perf_counter()
    model = create("lbo_cmh", n_bits=task["bits"], seed=task["seed"], epochs=epochs,
                   patience=max(1, math.ceil(PATIENCE_FRACTION * epochs)), **params)  # fmt: skip
    model.fit(parts["fit"], parts["validation"])
    training = model.extra_config_["training"]
    db, q = parts["database"], parts["query"]
    both = Dataset(name="both", features=np.concatenate([db.features, q.features]),
                   text=np.concatenate([db.text, q.text]),
                   labels=np.concatenate([db.label_matrix(), q.label_matrix()]))  # fmt: skip
    database, queries = np.arange(len(db)), np.arange(len(db), len(both))
    scores = _score(_encode_both_ways(model, both, database, queries), both, database, queries)
    return {
        "key": run_key(task), **{k: task[k] for k in ("set", "batch", "regulariser", "seed")},
        "lr": model.lr, "epochs": epochs, "steps_per_epoch": steps,
        "best_epoch": training["best_epoch"], "epochs_run": len(training["history"]),
        "stopped_early": training["stopped_early"],
        "converged": bool(converged(training["best_epoch"], epochs) or training["stopped_early"]),
        "updates_run": training["updates_per_network"]["total"],
        "seconds_per_epoch": model.seconds_per_epoch_, **scores,
        "total": scores["i2t"] + scores["t2i"],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip


def run_all(tasks: list[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    """Runs not yet in ``out/runs.jsonl``, each appended as it ends (a rerun resumes)."""
    runs_file = out / "runs.jsonl"
    done = {}
    if runs_file.is_file():
        for line in runs_file.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                done[record["key"]] = record
    for task in tasks:
        if run_key(task) in done:
            continue
        record = run_one(task)
        done[record["key"]] = record
        print(json.dumps({k: record[k] for k in ("set", "batch", "regulariser", "seed", "i2t",
                                                 "t2i", "seconds_per_epoch", "wall_seconds")}),
              flush=True)  # fmt: skip
        with open(runs_file, "a") as handle:
            handle.write(json.dumps(record) + "\n")
    return [done[run_key(t)] for t in tasks]


# -- tables ----------------------------------------------------------------------------------
def _by_seed(runs: list[dict], batch: int, regulariser: str, metric: str) -> dict[int, float]:
    return {r["seed"]: r[metric] for r in runs
            if r["batch"] == batch and r["regulariser"] == regulariser}  # fmt: skip


def claims(runs: list[dict[str, Any]], batches: Sequence[int]) -> list[dict[str, Any]]:
    """The paper's three findings as paired per-seed verdicts (:mod:`hashlab.bench.verdicts`)."""
    small, large = min(batches), max(batches)
    out = [_claim(f"a bigger batch helps ({reg})", f"{large} vs {small}, total map@all",
                  _by_seed(runs, large, reg, "total"), _by_seed(runs, small, reg, "total"))
           for reg in REGULARISERS]  # fmt: skip
    out += [_claim("orthogonal regularisation helps (offdiagonal vs L2)",
                   f"batch {b}, total map@all", _by_seed(runs, b, "offdiagonal", "total"),
                   _by_seed(runs, b, "l2", "total")) for b in batches]  # fmt: skip
    out.append(_claim("a bigger batch cuts time per epoch", f"{large} vs {small}, s/epoch (l2)",
                      _by_seed(runs, large, "l2", "seconds_per_epoch"),
                      _by_seed(runs, small, "l2", "seconds_per_epoch"),
                      higher_is_better=False))  # fmt: skip
    return out


def table_markdown(name: str, runs: list[dict], batches: Sequence[int], meta: dict) -> str:
    lines = [f"### {name}", "", f"Sides: {meta['sides']}.", f"Split: {meta['description']}.",
             f"Budget: {meta['budget']}.", "",
             "| batch | share of an epoch | lr | L4 | i2t | t2i | total | s/epoch "
             "| best epoch / epochs | converged |", "|---" * 10 + "|"]  # fmt: skip
    for batch in batches:
        for reg in REGULARISERS:
            rs = [r for r in runs if r["batch"] == batch and r["regulariser"] == reg]
            if not rs:
                continue
            cells = [_cell([r[k] for r in rs]) for k in ("i2t", "t2i", "total")]
            share = min(1.0, 1.0 / rs[0]["steps_per_epoch"])
            best = ", ".join(f"{r['best_epoch']}/{r['epochs']}" for r in rs)
            ok = sum(bool(r["converged"]) for r in rs)
            spe = _cell([r["seconds_per_epoch"] for r in rs])
            lines.append(f"| {batch} | {share:.3g} | {rs[0]['lr']:.3g} | {reg} | "
                         f"{' | '.join(cells)} | {spe} | {best} | {ok}/{len(rs)} |")  # fmt: skip
    lines += ["", *_verdict_lines(claims(runs, batches)), ""]
    return "\n".join(lines)


def wikipedia_from_table4(path: Path = WIKIPEDIA_TABLE) -> str:
    """The existing Wikipedia Table 4 (l2 / offdiagonal rows), re-tabled with its verdicts."""
    if not path.is_file():
        return f"### wikipedia\n\n({path} not found: `hashlab.bench.cross_modal --table4`)\n"
    stored = json.loads(path.read_text())
    runs = []
    for r in stored["runs"]:
        batch, reg = r["row"].removeprefix("batch ").split(", ")
        if reg in REGULARISERS:
            runs.append({**r, "batch": int(batch), "regulariser": reg})
    batches = sorted({r["batch"] for r in runs})
    meta = {"sides": SIDES["wikipedia"], "budget": stored["config"]["budget"],
            "description": f"693 _te queries, 2,173 _tr retrieval pairs; "
            f"{stored['config']['validation']} (read from {path}, not rerun)"}  # fmt: skip
    return table_markdown("wikipedia (real, 2,173 training pairs)", runs, batches, meta)


# -- DDP smoke -------------------------------------------------------------------------------
def _ddp_params(args: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": args.ddp_batch, "regulariser": "offdiagonal", "epochs": args.ddp_epochs,
            "triplets_per_query": args.triplets_per_query, "device": "cpu",
            "patience": None, "seed": 0}  # fmt: skip


def ddp_worker(args: argparse.Namespace) -> None:
    """One rank (or the one process) of the smoke run; rank 0 writes its record."""
    import torch

    torch.set_num_threads(1)
    parts = load_set("synthetic-100k", args.data_root, 0, args.n_synthetic, args.noise)
    model = create("lbo_cmh", n_bits=args.bits, **_ddp_params(args))
    model.fit(parts["fit"], parts["validation"])
    if int(os.environ.get("RANK", 0)) == 0:
        history = model.extra_config_["training"]["history"]
        weights = {k: getattr(model, k).tolist() for k in ("image_w1_", "text_w1_", "image_w2_")}
        Path(args.ddp_worker).write_text(json.dumps({
            "epoch_seconds": [row["train_seconds"] for row in history],
            "world_size": int(os.environ.get("WORLD_SIZE", 1)), "weights": weights}))  # fmt: skip


def ddp_smoke(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hashlab-lb-") as tmp:
        one, two = Path(tmp) / "one.json", Path(tmp) / "two.json"
        base = [sys.executable, "-m", "hashlab.bench.large_batch", "--bits", str(args.bits),
                "--ddp-batch", str(args.ddp_batch), "--ddp-epochs", str(args.ddp_epochs),
                "--n-synthetic", str(args.n_synthetic), "--noise", str(args.noise),
                "--triplets-per-query", str(args.triplets_per_query)]  # fmt: skip
        if args.data_root:
            base += ["--data-root", str(args.data_root)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run([*base, "--ddp-worker", str(one)], check=True, env=env)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                  "--master_addr", "127.0.0.1", "--master_port", str(port), "-m",
                  *base[2:], "--ddp-worker", str(two)]  # fmt: skip
        subprocess.run(launch, check=True, env=env)
        a, b = json.loads(one.read_text()), json.loads(two.read_text())
    gap = max(float(np.abs(np.asarray(a["weights"][k]) - np.asarray(b["weights"][k])).max())
              for k in a["weights"])  # fmt: skip
    return {"params": _ddp_params(args), "n_synthetic": args.n_synthetic,
            "world_size": b["world_size"],
            "epoch_seconds_1": a["epoch_seconds"], "epoch_seconds_2": b["epoch_seconds"],
            "max_weight_difference": gap,
            "command": "torchrun --nproc_per_node 2 -m hashlab.bench.large_batch --ddp-worker "
            "OUT.json ... (gloo on CPU)"}  # fmt: skip


# -- main ------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--batches", default="512,2048,8192")
    parser.add_argument("--bits", type=int, default=16)
    parser.add_argument("--budget", type=int, default=300,
                        help="updates per network (real pairs); the synthetic set uses "
                        "--synthetic-budget")  # fmt: skip
    parser.add_argument("--synthetic-budget", type=int, default=None,
                        help="updates per network on synthetic-100k (default: one epoch at "
                        "the smallest batch)")  # fmt: skip
    parser.add_argument("--triplets-per-query", type=int, default=4, help="m (paper: 4)")
    parser.add_argument("--synthetic-m", type=int, default=None,
                        help="m on synthetic-100k (default: --triplets-per-query)")  # fmt: skip
    parser.add_argument("--n-synthetic", type=int, default=N_SYNTHETIC)
    parser.add_argument("--noise", type=float, default=NOISE)
    parser.add_argument("--data-root", default=None, help="shared data folder")
    parser.add_argument("--out", default="benchmarks/large_batch")
    parser.add_argument("--ddp", action="store_true", help="also the 2-process smoke run")
    parser.add_argument("--ddp-only", action="store_true", help="only the 2-process smoke run")
    parser.add_argument("--ddp-batch", type=int, default=8192)
    parser.add_argument("--ddp-epochs", type=int, default=2)
    parser.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        ddp_worker(args)
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m hashlab.bench.large_batch " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))  # fmt: skip
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    paper_lr = dict(TABLE4_SETTINGS)
    sections = [wikipedia_from_table4()]
    results: dict[str, Any] = {"command": command, "sets": {}}
    for name in [] if args.ddp_only else [s for s in args.sets.split(",") if s.strip()]:
        budget, m = args.budget, args.triplets_per_query
        if name == "synthetic-100k":
            m = args.synthetic_m or m
            budget = args.synthetic_budget or math.ceil(args.n_synthetic * m / min(batches))
        tasks = [{"set": name, "batch": b, "regulariser": reg, "bits": args.bits, "seed": s,
                  "budget": budget, "triplets_per_query": m,
                  "split_seed": 0, "n_synthetic": args.n_synthetic, "noise": args.noise,
                  "root": args.data_root} for s in seeds for b in batches
                 for reg in REGULARISERS]  # fmt: skip
        runs = run_all(tasks, out)
        parts = _cached_set(tasks[0])
        meta = {"sides": parts["sides"], "description": parts["description"],
                "budget": f"{budget} optimiser steps per network for every batch size "
                f"(epochs = steps / steps per epoch, the last epoch completed), early stopping "
                f"after {PATIENCE_FRACTION:.0%} of it without validation improvement; m = "
                f"{m} triplets per query" + ("" if m == 4 else " (REDUCED from the paper's "
                "4 to fit this machine: an epoch is m x 100,000 triplets per direction)")
                }  # fmt: skip
        label = f"{name} ({len(parts['fit']):,} training pairs)"
        if name == "synthetic-100k":
            label = f"synthetic-100k: A STAND-IN, NOT REAL DATA ({len(parts['fit']):,} pairs)"
        sections.append(table_markdown(label, runs, batches, meta))
        results["sets"][name] = {"runs": runs, "meta": meta, "claims": claims(runs, batches)}
    smoke_file = out / "ddp.json"  # its own file: a table regenerated later still shows it
    if args.ddp or args.ddp_only:
        smoke = ddp_smoke(args)
        smoke_file.write_text(json.dumps({**smoke, "command_1": command}, indent=2))
        if args.ddp_only:
            print(json.dumps(smoke, indent=2))
            return 0
    if smoke_file.is_file():
        smoke = json.loads(smoke_file.read_text())
        results["ddp"] = smoke
        p = smoke["params"]
        sections.append(
            f"### 2 DDP processes (torchrun, gloo, CPU): smoke run\n\nsynthetic-100k "
            f"({smoke['n_synthetic']:,} pairs), global batch {p['batch_size']} split 2 ways "
            f"(each rank encodes half, codes all-gathered into the loss), {p['epochs']} epochs, "
            f"{p['regulariser']} L4, m = {p['triplets_per_query']}; command "
            f"`{smoke['command_1']}`. s/epoch, 1 process: "
            f"{', '.join(f'{s:.1f}' for s in smoke['epoch_seconds_1'])}; 2 processes: "
            f"{', '.join(f'{s:.1f}' for s in smoke['epoch_seconds_2'])} (on 2 shared cores). "
            f"Largest weight difference, 2 vs 1 process: {smoke['max_weight_difference']:.2e}.\n"
        )
    header = [
        "# Table 4 (Zhang & Zhou 2021) on larger data: lbo_cmh, batch 512 / 2,048 / 8,192",
        "", f"Command: `{command}`", "",
        f"{args.bits} bits; map@all both ways (i2t: image queries against text codes; t2i the "
        "reverse), mean ± std over seeds " + ", ".join(map(str, seeds)) + "; lr: the paper's "
        "square-root rule with Adam's quarter base (paper lr "
        + " / ".join(str(paper_lr[b]) for b in batches if b in paper_lr)
        + " x 0.25); L4: l2 = Eq. 19 (no orthogonal term), offdiagonal = BigGAN's orthogonal "
        "term (lbo_cmh's default). s/epoch: both alternating phases, validation excluded, one "
        "thread on a shared 2-core machine (read ratios, not absolute values). 'share of an "
        "epoch' = one batch / the epoch's triplets per direction.",
        f"Verdict rule: {VERDICT_RULE}.", "",
    ]  # fmt: skip
    markdown = "\n".join(header) + "\n" + "\n".join(sections)
    (out / "results.md").write_text(markdown)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
