"""Hyper-parameter tuning on the validation split, with the same effort for every method.

A method declares what may be tuned as ``Config.search_space()`` (a classmethod on its config
dataclass) returning ``{name: spec}`` with ``spec`` one of

* ``("float", low, high, "log" | "linear")``,
* ``("int", low, high)``,
* ``("categorical", [choice, ...])``.

:func:`tune` runs an Optuna study (TPE sampler, seeded; median pruner on the per-epoch
validation curve) for ``n_trials`` trials. The method's defaults are enqueued as the first
trial, so a tuned configuration is never worse on validation than the defaults. A trial is a
callable ``trial_fn(params, report) -> score``: it trains with ``params`` and calls
``report(epoch, value)`` after each epoch with the validation score; ``report`` raises
:class:`optuna.TrialPruned` when the pruner gives up on the trial. Which items the trial
trains and validates on is the caller's business: the harness gives it the training split
and the validation items carved from it, never the queries (``tests/test_harness.py`` checks
the indices).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = ["TuningResult", "check_space", "method_search_space", "tune"]

SearchSpace = dict[str, tuple]
TrialFn = Callable[[dict[str, Any], Callable[[int, float], None]], float]

SAMPLER = "optuna TPESampler (seeded; random for the first half of the trials, 2 to 10)"
PRUNER = (
    "optuna MedianPruner on the per-epoch validation curve (2 startup trials, 3 warm-up epochs)"
)


@dataclass
class TuningResult:
    best_params: dict[str, Any]
    best_value: float | None
    n_trials: int
    n_pruned: int
    trials: list[dict[str, Any]] = field(default_factory=list)
    space: dict[str, list[Any]] = field(default_factory=dict)
    seconds: float = 0.0
    sampler: str = SAMPLER
    pruner: str = PRUNER

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def method_search_space(method: str) -> SearchSpace:
    """The search space ``method``'s config declares (``{}`` when it declares none)."""
    from hashlab.methods.registry import get_method_class

    config = getattr(get_method_class(method), "Config", None)
    declared = getattr(config, "search_space", None)
    return check_space(declared() if callable(declared) else {}, method)


def method_defaults(method: str, names: list[str]) -> dict[str, Any]:
    """The config defaults of ``names`` (what the untuned method would use)."""
    from hashlab.methods.registry import get_method_class

    config = getattr(get_method_class(method), "Config", None)
    if config is None:
        return {}
    defaults = {f.name: f.default for f in fields(config)}
    return {name: defaults[name] for name in names if name in defaults}


def check_space(space: SearchSpace, owner: str = "search space") -> SearchSpace:
    """Raise ``ValueError`` naming the bad entry of a malformed space; return it."""
    for name, spec in space.items():
        kind = spec[0] if spec else None
        if kind == "float" and len(spec) == 4 and spec[3] in ("log", "linear"):
            low, high = float(spec[1]), float(spec[2])
            if not low < high or (spec[3] == "log" and low <= 0):
                raise ValueError(f"{owner}: {name} has an empty or non-positive range {spec}")
        elif kind == "int" and len(spec) == 3:
            if not int(spec[1]) < int(spec[2]):
                raise ValueError(f"{owner}: {name} has an empty range {spec}")
        elif kind == "categorical" and len(spec) == 2 and len(spec[1]) >= 2:
            pass
        else:
            raise ValueError(
                f"{owner}: search space entry {name}={spec!r} is not ('float', low, high, "
                "'log'|'linear'), ('int', low, high) or ('categorical', [choices...])"
            )
    return space


def _inside(spec: tuple, value: Any) -> bool:
    if spec[0] == "categorical":
        return value in spec[1]
    try:
        return float(spec[1]) <= float(value) <= float(spec[2])
    except (TypeError, ValueError):
        return False


def _suggest(trial: Any, name: str, spec: tuple) -> Any:
    if spec[0] == "float":
        return trial.suggest_float(name, float(spec[1]), float(spec[2]), log=spec[3] == "log")
    if spec[0] == "int":
        return trial.suggest_int(name, int(spec[1]), int(spec[2]))
    return trial.suggest_categorical(name, list(spec[1]))


def tune(
    space: SearchSpace,
    trial_fn: TrialFn,
    n_trials: int,
    seed: int = 0,
    defaults: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> TuningResult:
    """Maximise ``trial_fn``'s validation score over ``space`` in ``n_trials`` trials."""
    import optuna

    check_space(space)
    if not space or n_trials < 1:
        return TuningResult(best_params={}, best_value=None, n_trials=0, n_pruned=0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        # TPE models the trials so far after a few random ones: half the budget (2..10), so
        # that even a small budget gets some model-guided trials
        sampler=optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=max(2, min(10, n_trials // 2))
        ),
        # epochs are reported as steps 1, 2, ...: steps below 4 are never pruned
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=4),
    )
    start_defaults = {k: v for k, v in (defaults or {}).items() if k in space}
    if start_defaults and all(_inside(space[k], v) for k, v in start_defaults.items()):
        study.enqueue_trial(start_defaults)
    records: list[dict[str, Any]] = []

    def objective(trial: Any) -> float:
        params = {name: _suggest(trial, name, spec) for name, spec in space.items()}
        started = time.perf_counter()

        def report(epoch: int, value: float) -> None:
            trial.report(float(value), int(epoch))
            if trial.should_prune():
                records.append(_record(trial.number, params, None, "pruned", epoch, started))
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        value = float(trial_fn(params, report))
        if not math.isfinite(value):
            value = float("-inf")  # a diverged run loses, it does not crash the study
        records.append(_record(trial.number, params, value, "complete", None, started))
        return value

    started = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, catch=())
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"every one of the {n_trials} tuning trials was pruned")
    best = max(complete, key=lambda t: t.value)
    result = TuningResult(
        best_params=dict(best.params),
        best_value=float(best.value),
        n_trials=len(study.trials),
        n_pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        trials=sorted(records, key=lambda r: r["trial"]),
        space={name: list(spec) for name, spec in space.items()},
        seconds=round(time.perf_counter() - started, 1),
    )
    if log is not None:
        log(
            f"  tuned in {result.seconds:.0f}s: best {result.best_params} -> "
            f"{result.best_value:.4f} ({result.n_pruned} of {result.n_trials} trials pruned)"
        )
    return result


def _record(
    number: int,
    params: dict[str, Any],
    value: float | None,
    state: str,
    epoch: int | None,
    started: float,
) -> dict[str, Any]:
    return {
        "trial": number,
        "params": dict(params),
        "value": value,
        "state": state,
        "pruned_at_epoch": epoch,
        "seconds": round(time.perf_counter() - started, 1),
    }
