"""The experiment harness (issue 14): convergence rule, tuning data, verdicts, a real table.

Everything runs on scikit-learn's digits with short budgets (one torch thread), so the file
stays well under a minute on two cores.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from hashlab.bench import tuning
from hashlab.bench.harness import Budget, Claim, Harness, Row, TableSpec, load_table_data
from hashlab.bench.verdicts import converged, last_epochs, mean_std, paired_verdict

DCH_SMALL = {"head_hidden": 32, "dropout": 0.0}


@pytest.fixture(scope="module")
def digits():
    return load_table_data("digits")


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on two busy cores spin-wait on each other
    yield
    torch.set_num_threads(previous)


def small_spec(**changes) -> TableSpec:
    spec = TableSpec(
        name="digits-test",
        dataset="digits",
        protocol="per-class",
        rows=(Row("dch", "dch", DCH_SMALL), Row("itq", "itq")),
        bits=(16,),
        metric="map@all",
        metrics=("map@all", "map@r2"),
        budget=Budget(epochs=12, patience=3, cap_epochs=24),
        n_trials=2,
        seeds=(0, 1, 2),
        claims=(Claim("dch beats itq", "dch", "itq"),),
    )
    return replace(spec, **changes)


# -- the rules -------------------------------------------------------------------------------
def test_convergence_rule_flags_best_epoch_in_last_tenth():
    assert not converged(50, 50)  # the last epoch: still rising when the budget ran out
    assert not converged(46, 50)  # 46..50 are the last 10% of 50
    assert converged(45, 50)
    assert not converged(5, 5) and converged(4, 5)  # the last 10% is at least one epoch
    assert last_epochs(200) == 20
    with pytest.raises(ValueError, match="outside the budget"):
        converged(51, 50)


def test_harness_reruns_an_unconverged_run_with_a_doubled_budget(digits, tmp_path):
    # 2 epochs on digits: the validation curve is still climbing at the end
    spec = small_spec(rows=(Row("dch", "dch", DCH_SMALL),), n_trials=0, seeds=(0,),
                      budget=Budget(epochs=2, patience=None, cap_epochs=4))  # fmt: skip
    harness = Harness(spec, tmp_path, data=digits, log=lambda _: None)
    record = harness.run_row(spec.rows[0], 16, 0, {})
    first, *rest = record["attempts"]
    assert first["epochs"] == 2 and first["best_epoch"] == 2 and first["converged"] is False
    assert [a["epochs"] for a in rest] == [4]  # doubled once, then the cap stops it
    assert record["epochs_budget"] == 4 and record["epochs_run"] == 4
    # 4 epochs are still too few (digits' curve climbs for ~10): the cap leaves it unconverged,
    # and the table says so
    assert record["best_epoch"] == 4 and record["converged"] is False
    result = harness.write(0.0)
    assert "not converged: seeds [0]" in (tmp_path / "results.md").read_text()
    assert result["cells"]["dch@16"]["unconverged_seeds"] == [0]


def test_paired_verdicts():
    holds = paired_verdict({0: 0.80, 1: 0.82, 2: 0.81}, {0: 0.70, 1: 0.71, 2: 0.72})
    assert holds.verdict == "holds" and holds.gaps == pytest.approx((0.10, 0.11, 0.09))
    reversed_ = paired_verdict({0: 0.60, 1: 0.61, 2: 0.62}, {0: 0.70, 1: 0.71, 2: 0.72})
    assert reversed_.verdict == "reversed" and reversed_.mean_gap == pytest.approx(-0.10)
    # one seed disagrees: not a claim that holds, however large the mean gap
    split = paired_verdict({0: 0.90, 1: 0.90, 2: 0.69}, {0: 0.70, 1: 0.70, 2: 0.70})
    assert split.verdict == "within noise"
    # every seed agrees but the gap (0.02) is under twice the pooled std
    noisy = paired_verdict({0: 0.70, 1: 0.76, 2: 0.73}, {0: 0.69, 1: 0.74, 2: 0.70})
    _, sd_a = mean_std([0.70, 0.76, 0.73])
    _, sd_b = mean_std([0.69, 0.74, 0.70])
    assert noisy.pooled_std == pytest.approx(math.sqrt((sd_a**2 + sd_b**2) / 2))
    assert noisy.mean_gap < 2 * noisy.pooled_std and noisy.verdict == "within noise"
    assert paired_verdict({0: 0.9}, {0: 0.1}).verdict == "not enough seeds"


def test_tuning_prunes_on_the_validation_curve_and_keeps_the_best():
    calls = []

    def trial(params, report):
        # a made-up curve whose level is set by lr: low lr is hopeless from epoch 1
        level = -abs(math.log10(params["lr"]) + 3)  # best at lr = 1e-3
        for epoch in range(1, 11):
            report(epoch, level + 0.01 * epoch)
        calls.append(params["lr"])
        return level + 0.1

    space = {"lr": ("float", 1e-5, 1e-1, "log")}
    result = tuning.tune(space, trial, n_trials=12, seed=0, defaults={"lr": 3e-5})
    assert result.n_trials == 12 and result.n_pruned >= 1
    assert result.trials[0]["params"] == {"lr": 3e-5}  # the defaults go first
    pruned = [t for t in result.trials if t["state"] == "pruned"]
    assert all(t["pruned_at_epoch"] > 3 for t in pruned)  # never inside the warm-up
    best_complete = max(t["value"] for t in result.trials if t["state"] == "complete")
    assert result.best_value == pytest.approx(best_complete)
    assert len(calls) == 12 - result.n_pruned


def test_search_spaces_are_declared_and_valid():
    space = tuning.method_search_space("dch")
    assert {"lr", "weight_decay", "gamma"} <= set(space)  # gamma: per code length
    assert tuning.method_search_space("itq") == {}  # nothing to tune
    with pytest.raises(ValueError, match="gamma"):
        tuning.check_space({"gamma": ("float", 5.0, 1.0, "log")})


# -- tuning data -----------------------------------------------------------------------------
def test_tuning_never_sees_query_items(digits, tmp_path):
    spec = small_spec(rows=(Row("dch", "dch", DCH_SMALL),), n_trials=3, seeds=(0,),
                      budget=Budget(epochs=4, patience=2, cap_epochs=8))  # fmt: skip
    harness = Harness(spec, tmp_path, data=digits, log=lambda _: None)
    seen = []
    real_runner = harness.trial_runner

    def watching(row, n_bits, params, fit_idx, val_idx, report):
        seen.append((np.array(fit_idx), np.array(val_idx)))
        return real_runner(row, n_bits, params, fit_idx, val_idx, report)

    harness.trial_runner = watching
    record = harness.tune_row(spec.rows[0], 16)
    split = harness.split
    assert len(seen) == record["n_trials"] == 3
    training = np.union1d(split.train, split.validation)
    for fit_idx, val_idx in seen:
        assert np.intersect1d(fit_idx, split.query).size == 0
        assert np.intersect1d(val_idx, split.query).size == 0
        assert np.isin(fit_idx, training).all() and np.isin(val_idx, training).all()
        assert np.intersect1d(fit_idx, val_idx).size == 0
        np.testing.assert_array_equal(np.sort(val_idx), np.sort(split.validation))
    # and the guard itself refuses query items
    with pytest.raises(RuntimeError, match="not all training items"):
        harness._check_tuning_indices(split.train, split.query[:5])


# -- a whole table ---------------------------------------------------------------------------
def test_tiny_table_end_to_end(digits, tmp_path):
    spec = small_spec()
    harness = Harness(spec, tmp_path, data=digits, command="harness test", log=lambda _: None)
    result = harness.run()

    cell = result["cells"]["dch@16"]
    assert cell["seeds"] == [0, 1, 2]
    per_seed = [cell["map@all"]["per_seed"][s] for s in (0, 1, 2)]
    assert cell["map@all"]["mean"] == pytest.approx(np.mean(per_seed))
    assert cell["map@all"]["std"] == pytest.approx(np.std(per_seed, ddof=1))
    assert len(set(per_seed)) > 1  # the seed changes the run
    assert 0.5 < cell["map@all"]["mean"] <= 1.0  # DCH learns digits' classes

    (verdict,) = result["verdicts"]
    assert verdict["verdict"] in ("holds", "reversed", "within noise")
    assert list(verdict["seeds"]) == [0, 1, 2] and len(verdict["gaps"]) == 3
    gaps = [cell["map@all"]["per_seed"][s] - result["cells"]["itq@16"]["map@all"]["per_seed"][s]
            for s in (0, 1, 2)]  # fmt: skip
    assert verdict["gaps"] == pytest.approx(gaps)

    (tuned,) = [t for t in result["tuning"] if t["row"] == "dch"]
    assert tuned["n_trials"] == 2 and "gamma" in tuned["best_params"]
    runs = [r for r in result["runs"] if r["row"] == "dch"]
    assert all(r["params"]["gamma"] == tuned["best_params"]["gamma"] for r in runs)
    assert {r["epochs_budget"] for r in runs} <= {12, 24}

    protocol = result["protocol"]
    assert protocol["command"] == "harness test" and protocol["seeds"] == [0, 1, 2]
    assert protocol["wall_seconds"] > 0 and "2 trials" in protocol["tuning"]
    markdown = (tmp_path / "results.md").read_text()
    assert "Command: `harness test`" in markdown and " +- " in markdown
    assert verdict["verdict"] in markdown
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["cells"]["dch@16"]["map@all"]["mean"] == pytest.approx(cell["map@all"]["mean"])
    # the float reference (cosine on the raw features) is computed once and printed
    reference = result["float_reference"]
    assert 0.3 < reference["scores"]["map@all"] <= 1.0
    assert "Float reference" in markdown and "64-d float32" in markdown

    # --resume: nothing is trained again, the table is the same
    again = Harness(spec, tmp_path, data=digits, resume=True, log=lambda _: None)
    again.trial_runner = lambda *args: pytest.fail("a finished tuning ran again")
    repeat = again.run()
    assert repeat["cells"]["dch@16"]["map@all"] == cell["map@all"]


def test_work_groups_deal_bits_then_rows_over_workers():
    from hashlab.bench.harness import _work_groups

    spec = small_spec(rows=(Row("itq", "itq"), Row("dch", "dch", DCH_SMALL), Row("a", "dpsh")))
    spec = replace(spec, bits=(16, 32))
    by_bits = _work_groups(spec, 2)
    assert [g[0] for g in by_bits] == [(16,), (32,)] and all(g[1] == spec.rows for g in by_bits)
    by_rows = _work_groups(spec, 4)
    assert [g[0] for g in by_rows] == [(16,), (16,), (32,), (32,)]
    for n_bits in (16, 32):  # every (row, bits) exactly once, trained rows spread first
        mine = [r.label for g in by_rows if g[0] == (n_bits,) for r in g[1]]
        assert sorted(mine) == ["a", "dch", "itq"]
    assert {r.label for r in by_rows[0][1]} == {"dch", "itq"}
    assert len({g[2] for g in by_rows}) == 4  # one folder per worker


def test_a_new_part_of_a_resumed_table_starts_from_its_finished_runs(tmp_path):
    from hashlab.bench.harness import _read_lines, _seed_part

    main, part = tmp_path / "table", tmp_path / "table" / "parts" / "bits-16"
    part.mkdir(parents=True)
    (main / "spec.json").write_text(json.dumps({"key": {"metric": "map@all"}, "seconds": 1.0}))
    runs = [{"row": "itq", "bits": b, "seed": 0, "scores": {}} for b in (16, 32)]
    (main / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    _seed_part(main, part, (16,))
    assert [r["bits"] for r in _read_lines(part / "runs.jsonl")] == [16]
    assert json.loads((part / "spec.json").read_text())["key"] == {"metric": "map@all"}
    _seed_part(main, part, (16,))  # a part that already has its own spec is left alone
    assert len(_read_lines(part / "runs.jsonl")) == 1
