"""The harness's rules, each stated once: convergence, seed summaries, claim verdicts.

* **Convergence**: a run whose best validation epoch falls in the last 10% of its epoch budget
  (``best_epoch > budget - max(1, round(0.1 * budget))``) is *not converged*: its score was
  still rising when the budget ran out, so comparing it with a finished run says nothing.
* **Seeds**: a row is reported as mean +- sample standard deviation (ddof = 1) over its seeds.
* **Verdicts**: a claim "A beats B" is checked seed by seed (A and B trained with the same
  seed on the same split). It **holds** when A > B on every seed and the mean gap exceeds
  twice the pooled standard deviation sqrt((sd_A^2 + sd_B^2) / 2); it is **reversed** when
  B > A on every seed and the mean gap is more than twice the pooled std the other way; else
  it is **within noise**. (With one seed there is no spread to compare against: a verdict
  needs at least two.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "CONVERGENCE_RULE",
    "VERDICT_RULE",
    "Verdict",
    "converged",
    "mean_std",
    "paired_verdict",
]

TAIL_FRACTION = 0.1
CONVERGENCE_RULE = (
    "a run is 'not converged' when its best validation epoch falls in the last 10% of its "
    "epoch budget; the harness then reruns it with a doubled budget up to the cap"
)
VERDICT_RULE = (
    "per seed, A and B trained with the same seed on the same split; 'holds': A > B on every "
    "seed and the mean gap > 2 x pooled std (sqrt((sd_A^2 + sd_B^2) / 2), sample std over "
    "seeds); 'reversed': B > A on every seed and the gap > 2 x pooled std the other way; "
    "otherwise 'within noise'"
)


def last_epochs(budget: int) -> int:
    """How many final epochs make up "the last 10%" of a ``budget``-epoch run (at least 1)."""
    if budget < 1:
        raise ValueError(f"an epoch budget must be at least 1, got {budget}")
    return max(1, round(TAIL_FRACTION * budget))


def converged(best_epoch: int, budget: int) -> bool:
    """False when ``best_epoch`` (1-based) lies in the last 10% of ``budget`` epochs."""
    if not 1 <= best_epoch <= budget:
        raise ValueError(f"best epoch {best_epoch} is outside the budget of 1..{budget} epochs")
    return best_epoch <= budget - last_epochs(budget)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample std with ddof = 1; 0 for a single value)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("mean_std needs at least one value")
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), std


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "holds" | "reversed" | "within noise" | "not enough seeds"
    mean_gap: float  # mean over seeds of A - B
    pooled_std: float
    gaps: tuple[float, ...]  # A - B per seed, in seed order
    seeds: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def paired_verdict(
    a: dict[int, float], b: dict[int, float], higher_is_better: bool = True
) -> Verdict:
    """The verdict on "A beats B" from per-seed scores ``{seed: score}`` (see module docs).

    Only seeds both sides have are compared; fewer than two give "not enough seeds".
    """
    seeds = tuple(sorted(set(a) & set(b)))
    sign = 1.0 if higher_is_better else -1.0
    gaps = tuple(sign * (float(a[s]) - float(b[s])) for s in seeds)
    if len(seeds) < 2:
        gap = gaps[0] if gaps else math.nan
        return Verdict("not enough seeds", gap, math.nan, gaps, seeds)
    _, sd_a = mean_std([a[s] for s in seeds])
    _, sd_b = mean_std([b[s] for s in seeds])
    pooled = math.sqrt((sd_a**2 + sd_b**2) / 2.0)
    mean_gap = float(np.mean(gaps))
    if all(g > 0 for g in gaps) and mean_gap > 2.0 * pooled:
        verdict = "holds"
    elif all(g < 0 for g in gaps) and -mean_gap > 2.0 * pooled:
        verdict = "reversed"
    else:
        verdict = "within noise"
    return Verdict(verdict, mean_gap, pooled, gaps, seeds)
