"""Published numbers to print beside ours, with where each table comes from.

Only numbers printed in the source texts (as transcribed in ``shared/specs``) live here; a
method a paper did not report simply has no entry. Keys: (dataset, protocol, metric) ->
{"source": ..., "bits": [...], "methods": {hashlab method name: [value per bit length]}}.
"""

from __future__ import annotations

from typing import Any

_EDDH_SOURCE = (
    "EDDH paper, Table 1 (shared/specs/eddh.md): mAP over Hamming ranking, ImageNet-pretrained "
    "CNN-F fine-tuned; the slides do not print the cut-off, filed under each set's standard "
    "one (shared/specs/protocols.md)"
)

PAPER_TABLES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("cifar10", "dch", "map@r2"): {
        "source": "PC-AEGAN paper, Table 1 (shared/specs/pc_aegan.md): AlexNet-era features, "
        "deep methods fine-tuned end to end",
        "bits": [16, 32, 48, 64],
        "methods": {
            "itq_cca": [0.354, 0.414, 0.449, 0.462],
            "bre": [0.370, 0.438, 0.468, 0.491],
            "ksh": [0.524, 0.558, 0.567, 0.569],
            "sdh": [0.461, 0.520, 0.553, 0.568],
            "dnnh": [0.559, 0.558, 0.581, 0.583],
            "dhn": [0.568, 0.603, 0.621, 0.635],
            "hashnet": [0.643, 0.667, 0.675, 0.687],
            "pc_wgan": [0.668, 0.731, 0.735, 0.749],
            "pc_aegan": [0.693, 0.758, 0.767, 0.772],
        },
    },
    # EDDH paper, Table 1: the field's list-file splits (see _EDDH_SOURCE for the cut-off)
    ("imagenet100", "listfile", "map@1000"): {
        "source": _EDDH_SOURCE,
        "bits": [16, 32, 48, 64],
        "methods": {
            "itq": [0.259, 0.333, 0.356, 0.411],
            "dhn": [0.273, 0.393, 0.435, 0.491],
            "dph": [0.347, 0.512, 0.556, 0.579],
            "eddh": [0.381, 0.562, 0.597, 0.604],
        },
    },
    ("nuswide21", "listfile", "map@5000"): {
        "source": _EDDH_SOURCE,
        "bits": [16, 32, 48, 64],
        "methods": {
            "itq": [0.352, 0.427, 0.459, 0.498],
            "dhn": [0.584, 0.613, 0.636, 0.638],
            "dph": [0.654, 0.683, 0.699, 0.728],
            "eddh": [0.711, 0.730, 0.745, 0.771],
        },
    },
    ("coco", "listfile", "map@5000"): {
        "source": _EDDH_SOURCE,
        "bits": [16, 32, 48, 64],
        "methods": {
            "itq": [0.521, 0.584, 0.621, 0.632],
            "dhn": [0.622, 0.648, 0.665, 0.669],
            "dph": [0.687, 0.722, 0.739, 0.763],
            "eddh": [0.747, 0.771, 0.794, 0.811],
        },
    },
}


def paper_value(dataset: str, protocol: str, metric: str, method: str, n_bits: int) -> float | None:
    """The published value for one cell, or None when the paper has none."""
    table = PAPER_TABLES.get((dataset, protocol, metric))
    if table is None or method not in table["methods"] or n_bits not in table["bits"]:
        return None
    return table["methods"][method][table["bits"].index(n_bits)]


def paper_comparison_table(
    rows: list[dict[str, Any]], dataset: str, protocol: str, metric: str
) -> str | None:
    """Markdown: ours / paper per bit length for ``metric``; None when no paper number applies
    to any of the rows' (method, bits)."""
    table = PAPER_TABLES.get((dataset, protocol, metric))
    if table is None:
        return None
    bits = sorted({row["bits"] for row in rows})
    methods = list(dict.fromkeys(row["method"] for row in rows))
    if not any(
        paper_value(dataset, protocol, metric, m, b) is not None for m in methods for b in bits
    ):
        return None  # a table of dashes says nothing
    ours = {(row["method"], row["bits"]): row.get(metric) for row in rows}
    header = ["method"] + [f"{b} bits: ours / paper" for b in bits]
    lines = [
        f"{metric}, ours beside the published numbers ({table['source']}); "
        "'-' where the paper has no number.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for method in methods:
        cells = [method]
        for b in bits:
            value = ours.get((method, b))
            published = paper_value(dataset, protocol, metric, method, b)
            mine = f"{value:.3f}" if value is not None else ""
            cells.append(f"{mine} / {published:.3f}" if published is not None else f"{mine} / -")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
