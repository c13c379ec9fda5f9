"""Plots of retrieval results: PR curves over Hamming radius and a metric against code length.

Uses matplotlib's non-interactive Agg backend so plots render on headless machines (CI, the
GPU box); every figure is written to a file and closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

__all__ = ["plot_pr_curves", "plot_metric_vs_bits"]

# matplotlib cycles 10 colours; a benchmark of 17 methods needs a second cue so that no two
# lines look alike: line style and marker change with each pass through the colours
_LINE_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")


def _line_style(index: int) -> dict[str, Any]:
    colour_pass = index // 10
    return {
        "color": f"C{index % 10}",
        "linestyle": _LINE_STYLES[colour_pass % len(_LINE_STYLES)],
        "marker": _MARKERS[colour_pass % len(_MARKERS)],
    }


def _legend(axes: Any, n_lines: int) -> None:
    # many lines: legend beside the axes, not over the data
    if n_lines > 6:
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        axes.legend(fontsize="small")


def plot_pr_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """One precision-recall curve per label; each curve is (precision[r], recall[r]) for
    Hamming radius r = 0..K as returned by :func:`hashlab.metrics.pr_curve`."""
    if not curves:
        raise ValueError("plot_pr_curves needs at least one curve")
    figure, axes = plt.subplots(figsize=(7.0 if len(curves) > 6 else 5.5, 4.5))
    try:
        for index, (label, (precision, recall)) in enumerate(curves.items()):
            if len(precision) != len(recall):
                raise ValueError(
                    f"curve {label!r}: precision has {len(precision)} points, recall {len(recall)}"
                )
            style = {**_line_style(index), "marker": "."}
            axes.plot(recall, precision, markersize=3, label=label, **style)
        axes.set_xlabel("recall (within Hamming radius r, r = 0..K)")
        axes.set_ylabel("precision (empty set counts as 0)")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
        _legend(axes, len(curves))
        if title:
            axes.set_title(title)
        return _save(figure, path)
    finally:
        plt.close(figure)


def plot_metric_vs_bits(
    rows: Iterable[Mapping[str, Any]],
    metric: str,
    path: str | Path,
    title: str | None = None,
) -> Path:
    """``metric`` against code length, one line per method, from result rows holding
    ``method``, ``bits`` and the metric (rows without the metric are left out)."""
    by_method: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        if metric in row:
            by_method.setdefault(str(row["method"]), []).append((int(row["bits"]), row[metric]))
    if not by_method:
        raise ValueError(f"no result row holds the metric {metric!r}")
    figure, axes = plt.subplots(figsize=(7.0 if len(by_method) > 6 else 5.5, 4.5))
    try:
        all_bits: set[int] = set()
        for index, (method, points) in enumerate(by_method.items()):
            points.sort()
            bits = [b for b, _ in points]
            all_bits.update(bits)
            axes.plot(bits, [v for _, v in points], label=method, **_line_style(index))
        axes.set_xticks(sorted(all_bits))
        axes.set_xlabel("bits")
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        _legend(axes, len(by_method))
        axes.set_title(title or f"{metric} vs code length")
        return _save(figure, path)
    finally:
        plt.close(figure)


def _save(figure: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120, bbox_inches="tight")  # keeps an outside legend
    return path
