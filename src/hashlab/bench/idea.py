"""IDEA's comparison (Liu et al., JNUDT 2022, Tables 1 and 3) on the real MIRFlickr-25K subset.

    python -m hashlab.bench.idea --bits 12,24,32,48 --seeds 0,1,2 --out DIR

Data: the 730 MIRFlickr-25K items whose images are at hand (ids 1-1000 of the 20,015-item
set), not the paper's 16,000 / 2,000 split. Per seed: ``--n-query`` random queries, the rest
is both the training set and the database (database codes out-of-sample: encoded by the
learned function). Relevance: sharing one of the 24 labels; ranking by Hamming distance,
ties by database order; ``map@all`` and ``map@100`` with the "retrieved" convention.
Training sees tags only (``fit(x, tags=...)``); labels are used for scoring alone.

Features: EfficientNet-Lite0's last map (1,280 x 7 x 7), frozen, cached on disk; ITQ and LSH
get its global average (the same features). Tag embeddings: GloVe 6B 50-d, and skip-gram
word2vec (300-d) trained on the tag lists of the 20,015 items minus that seed's queries.
Fixed epochs, no model selection (no query ever informs training or selection); or, with
``--tag-validation F``, the deep methods hold out F of their training items and keep the
epoch whose codes retrieve best on them with "shares a tag" as relevance (tags only: weak
supervision stays weak, and the queries stay unseen).
Outputs ``idea_bench.json`` (config + every run) and ``idea_bench.md`` (mean +- std).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from hashlab.data.shared import default_shared_data
from hashlab.metrics import evaluate

DEEP_METHODS = ("idea", "idea_l", "idea_a", "wdht")
SHALLOW_METHODS = ("itq", "lsh")
METRICS = ("map@all", "map@100")
DATA_ROOT = default_shared_data() / "mirflickr25k"


def _tag_vectors(embedding: str, vocab: list[str], query_rows: np.ndarray, root: Path,
                 seed: int) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    from hashlab.data.mirflickr import load_mirflickr
    from hashlab.text import (
        load_glove_6b_50d,
        tag_embedding_matrix,
        tag_lists_from_matrix,
        train_word2vec,
    )

    if embedding == "glove":
        vectors = load_glove_6b_50d()
    else:
        full = load_mirflickr(root)
        keep = np.setdiff1d(np.arange(len(full)), query_rows)  # queries' tags stay unseen
        lists = tag_lists_from_matrix(full.tags[keep], full.tag_vocab)
        vectors = train_word2vec(lists, dim=300, epochs=10, seed=seed)
    matrix, n_missing = tag_embedding_matrix(vocab, vectors)
    return matrix, {"embedding": vectors.name, "oov_tags": n_missing, "n_tags": len(vocab)}


def run(bits: list[int], seeds: list[int], n_query: int = 200, root: Path = DATA_ROOT,
        embeddings: tuple[str, ...] = ("glove", "word2vec"), epochs: int | None = None,
        methods: tuple[str, ...] = DEEP_METHODS + SHALLOW_METHODS,
        tag_validation: float = 0.0, center_tags: bool = False) -> dict[str, Any]:  # fmt: skip
    """Every (seed, embedding, bits, method) run as rows of a JSON-able dict."""
    import hashlab.methods.deep.idea  # noqa: F401  (registers idea, idea_l, idea_a)
    import hashlab.methods.deep.wdht  # noqa: F401
    from hashlab.backbones import extract_features
    from hashlab.data.mirflickr import load_mirflickr_images

    data = load_mirflickr_images(root)
    maps = extract_features(data.image_paths, "efficientnet_lite0", dataset_key="mirflickr730",
                            feature_map=True, progress=False)  # fmt: skip
    pooled = maps.mean(axis=(2, 3))
    labels = data.labels
    rows_in_full = np.array([m["row_in_20015"] for m in data.metadata])
    results: list[dict[str, Any]] = []
    coverage: dict[str, Any] = {}
    deep_params: dict[str, Any] = {} if epochs is None else {"epochs": epochs}
    if tag_validation:  # best epoch on held-out training items' tags
        deep_params["validation_fraction"] = tag_validation
    if center_tags:  # t_i minus the training mean (hashlab.methods.deep.tagged)
        deep_params["center_tag_embeddings"] = True
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(data))
        query, train = order[:n_query], order[n_query:]
        assert not set(query) & set(train), "query and training items overlap"

        def score(model: Any, x: np.ndarray, query=query, train=train) -> dict[str, float]:
            return evaluate(model.encode(x[query]), model.encode(x[train]), labels[query],
                            labels[train], metrics=list(METRICS))  # fmt: skip

        for n_bits in bits:
            for name in (m for m in methods if m in SHALLOW_METHODS):
                model = hashlab.create(name, n_bits=n_bits, seed=seed).fit(pooled[train])
                results.append({"seed": seed, "bits": n_bits, "method": name,
                                "embedding": "-", **score(model, pooled)})  # fmt: skip
        for embedding in embeddings:
            tag_vectors, record = _tag_vectors(embedding, data.tag_vocab,
                                               rows_in_full[query], root, seed)  # fmt: skip
            coverage[f"{embedding}/seed{seed}"] = record
            for n_bits in bits:
                for name in (m for m in methods if m in DEEP_METHODS):
                    started = time.perf_counter()
                    model = hashlab.create(name, n_bits=n_bits, seed=seed, **deep_params)
                    model.fit(maps[train], tags=data.tags[train], tag_vectors=tag_vectors)
                    epoch = model.extra_config_["training"]["best_epoch"]
                    results.append({"seed": seed, "bits": n_bits, "method": name,
                                    "embedding": embedding, **score(model, maps),
                                    "fit_seconds": time.perf_counter() - started,
                                    "epoch": epoch})  # fmt: skip
                    print(results[-1], flush=True)
    return {
        "protocol": {
            "dataset": "MIRFlickr-25K, the 730 items with images (ids 1-1000 of 20,015)",
            "split": f"{n_query} random queries per seed; the other {len(data) - n_query} "
            "items are training set and database",
            "relevance": "share at least one of 24 labels",
            "metrics": list(METRICS),
            "map_convention": "retrieved",
            "ties": "database order",
            "backbone": "efficientnet_lite0 (frozen), 1280x7x7 map; ITQ/LSH on its mean",
            "database_codes": "out-of-sample",
            "seeds": seeds,
            "epochs": epochs or "default",
            "model_selection": f"best epoch by map@all on {tag_validation:.0%} of the training "
            "items held out, relevance = shared tag"
            if tag_validation
            else "none (fixed epochs)",
            "tag_embeddings": "centred on the training mean"
            if center_tags
            else "as in the paper (not centred)",
            "caveat": data.info.get("caveat"),
        },
        "tag_coverage": coverage,
        "rows": results,
    }


def markdown(result: dict[str, Any]) -> str:
    """One table per metric: method (embedding) x bits, mean +- std over seeds."""
    rows = result["rows"]
    bits = sorted({r["bits"] for r in rows})
    keys = sorted({(r["method"], r["embedding"]) for r in rows},
                  key=lambda k: (k[1], (DEEP_METHODS + SHALLOW_METHODS).index(k[0])))  # fmt: skip
    lines = [f"Protocol: {json.dumps(result['protocol'])}", ""]
    for metric in METRICS:
        lines += [f"### {metric} (mean +- std over seeds {result['protocol']['seeds']})", "",
                  "| method | embedding | " + " | ".join(f"{b} bits" for b in bits) + " |",
                  "|---|---|" + "---|" * len(bits)]  # fmt: skip
        for method, embedding in keys:
            cells = []
            for b in bits:
                values = [
                    r[metric]
                    for r in rows
                    if (r["method"], r["embedding"], r["bits"]) == (method, embedding, b)
                ]
                cells.append(f"{np.mean(values):.4f} +- {np.std(values):.4f}")
            lines.append(f"| {method} | {embedding} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += claims_markdown(rows, bits)
    return "\n".join(lines) + "\n"


CLAIMS = (("idea", "idea_a"), ("idea", "idea_l"), ("idea", "wdht"), ("wdht", "itq"),
          ("itq", "lsh"))  # fmt: skip


def claims_markdown(rows: list[dict[str, Any]], bits: list[int]) -> list[str]:
    """The paper's orderings, answered per embedding with paired map@all differences.

    A cell is the mean +- std over seeds of (left - right) on the same split, and how many
    seeds had left > right. "holds" needs left > right for every seed at every bit length,
    "reversed" the opposite; anything else is "mixed".
    """

    def value(method: str, embedding: str, n_bits: int, seed: int) -> float | None:
        emb = "-" if method in SHALLOW_METHODS else embedding
        for r in rows:
            if (r["method"], r["embedding"], r["bits"], r["seed"]) == (method, emb, n_bits, seed):
                return float(r["map@all"])
        return None

    seeds = sorted({r["seed"] for r in rows})
    methods = {r["method"] for r in rows}
    lines = ["### The paper's claims, answered (map@all: left - right, paired by seed)", "",
             "| embedding | claim | verdict | " + " | ".join(f"{b} bits" for b in bits) + " |",
             "|---|---|---|" + "---|" * len(bits)]  # fmt: skip
    for embedding in sorted({r["embedding"] for r in rows} - {"-"}):
        for left, right in CLAIMS:
            if not {left, right} <= methods:
                continue
            cells, signs = [], []
            for b in bits:
                pairs = [
                    (value(left, embedding, b, s), value(right, embedding, b, s)) for s in seeds
                ]
                diffs = np.array([a - c for a, c in pairs if a is not None and c is not None])
                signs += list(np.sign(diffs))
                cells.append(f"{diffs.mean():+.4f} +- {diffs.std():.4f} ({int((diffs > 0).sum())}"
                             f"/{len(diffs)})")  # fmt: skip
            verdict = ("holds" if all(x > 0 for x in signs) else
                       "reversed" if all(x < 0 for x in signs) else "mixed")  # fmt: skip
            lines.append(
                f"| {embedding} | {left} > {right} | {verdict} | " + " | ".join(cells) + " |"
            )
    return lines + [""]


def plot(result: dict[str, Any], out: Path) -> list[Path]:
    """map@all against bits (mean over seeds), one figure per tag embedding."""
    from hashlab.bench.plots import plot_metric_vs_bits

    rows = result["rows"]
    paths = []
    for embedding in sorted({r["embedding"] for r in rows} - {"-"}):
        chosen = [r for r in rows if r["embedding"] in ("-", embedding)]
        means = []
        for method, n_bits in sorted({(r["method"], r["bits"]) for r in chosen}):
            values = [r["map@all"] for r in chosen if (r["method"], r["bits"]) == (method, n_bits)]
            means.append({"method": method, "bits": n_bits, "map@all": float(np.mean(values))})
        centred = "centred " if "centred" in result["protocol"].get("tag_embeddings", "") else ""
        title = f"MIRFlickr-730, {centred}{embedding} tag embeddings (mean of seeds)"
        paths.append(
            plot_metric_vs_bits(means, "map@all", out / f"idea_map_{embedding}.png", title)
        )
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", default="12,24,32,48")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-query", type=int, default=200)
    parser.add_argument("--embeddings", default="glove,word2vec")
    parser.add_argument("--epochs", type=int, default=None, help="deep methods' epochs")
    parser.add_argument("--tag-validation", type=float, default=0.0,
                        help="fraction of training items held out to pick the epoch by "
                        "tag-relevance map@all (default 0: fixed epochs)")  # fmt: skip
    parser.add_argument("--center-tags", action="store_true",
                        help="deep methods subtract the training mean tag embedding")  # fmt: skip
    parser.add_argument("--data", type=Path, default=DATA_ROOT, help="MIRFlickr-25K folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    bits = [int(b) for b in args.bits.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    embeddings = tuple(args.embeddings.split(","))
    result = run(bits, seeds, args.n_query, args.data, embeddings, args.epochs,
                 tag_validation=args.tag_validation, center_tags=args.center_tags)  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "idea_bench.json").write_text(json.dumps(result, indent=2))
    (args.out / "idea_bench.md").write_text(markdown(result))
    plot(result, args.out)
    print(markdown(result))


if __name__ == "__main__":
    main()
