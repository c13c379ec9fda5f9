"""Turn a :class:`BenchResult` into files people read: JSON, CSV, Markdown, PNG plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from hashlab.bench.paper_numbers import paper_comparison_table
from hashlab.bench.runner import BenchResult


def markdown_table(result: BenchResult, metrics: list[str] | None = None) -> str:
    """One row per method, one column per (metric, bits)."""
    metrics = metrics or result.config.metrics
    bits = sorted({row["bits"] for row in result.rows})
    methods = list(dict.fromkeys(row["method"] for row in result.rows))
    by_key = {(row["method"], row["bits"]): row for row in result.rows}
    header = ["method"] + [f"{metric} {b}b" for metric in metrics for b in bits]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        cells = [method]
        for metric in metrics:
            for b in bits:
                row = by_key.get((method, b))
                cells.append(f"{row[metric]:.3f}" if row and metric in row else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compact_table(result: BenchResult, metrics: list[str] | None = None) -> str:
    """One row per method, one column per metric holding every bit length ("a / b / c"),
    with the published numbers beside the metric a paper table covers: narrow enough for a
    README."""
    from hashlab.bench.paper_numbers import paper_value

    metrics = metrics or result.config.metrics
    config = result.config
    bits = sorted({row["bits"] for row in result.rows})
    methods = list(dict.fromkeys(row["method"] for row in result.rows))
    by_key = {(row["method"], row["bits"]): row for row in result.rows}
    bits_text = "/".join(str(b) for b in bits)
    header = ["method"]
    for metric in metrics:
        header.append(f"{metric} ({bits_text} bits)")
        if any(
            paper_value(config.dataset, config.protocol, metric, m, b) is not None
            for m in methods
            for b in bits
        ):
            header.append(f"paper {metric}")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        cells = [method]
        for metric in metrics:
            values = [by_key.get((method, b), {}).get(metric) for b in bits]
            cells.append(" / ".join(f"{v:.3f}" if v is not None else "-" for v in values))
            if f"paper {metric}" in header:
                published = [
                    paper_value(config.dataset, config.protocol, metric, method, b) for b in bits
                ]
                cells.append(
                    " / ".join(f"{v:.3f}" if v is not None else "-" for v in published)
                    if any(v is not None for v in published)
                    else "-"
                )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def protocol_text(protocol: dict[str, Any]) -> str:
    return "; ".join(f"{key}: {value}" for key, value in protocol.items())


def write_report(result: BenchResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``result.json``, ``results.csv``, ``results.md`` and plots into ``out_dir``."""
    from hashlab.bench.plots import plot_metric_vs_bits, plot_pr_curves

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out / "result.json",
        "csv": out / "results.csv",
        "markdown": out / "results.md",
    }
    files["json"].write_text(json.dumps(result.to_json(), indent=2))
    scalar_keys = [k for k in result.rows[0] if k != "params"] if result.rows else []
    with open(files["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=scalar_keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(result.rows)
    markdown = (
        f"Protocol: {protocol_text(result.protocol)}\n\n{compact_table(result)}\n\n"
        f"Every (metric, bits) in its own column:\n\n{markdown_table(result)}\n"
    )
    for metric in result.config.metrics:
        beside_paper = paper_comparison_table(
            result.rows, result.config.dataset, result.config.protocol, metric
        )
        if beside_paper:
            markdown += f"\n{beside_paper}\n"
    files["markdown"].write_text(markdown)
    for n_bits in sorted({row["bits"] for row in result.rows}):
        curves = {
            key.split("@")[0]: (value["precision"], value["recall"])
            for key, value in result.pr_curves.items()
            if key.endswith(f"@{n_bits}")
        }
        path = out / f"pr_curve_{n_bits}bits.png"
        plot_pr_curves(curves, path, title=f"PR curves, {result.config.dataset}, {n_bits} bits")
        files[f"pr_{n_bits}"] = path
    for metric in result.config.metrics:
        if metric.startswith(("precision@r", "map@r")):
            path = out / f"{metric.replace('@', '_at_')}_vs_bits.png"
            plot_metric_vs_bits(result.rows, metric, path)
            files[metric] = path
    return files
