"""The command line as a user meets it: the demo works, bad input gets one line and exit 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hashlab.cli import main


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hashlab.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_demo_prints_table_writes_plots_and_searches(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path / "demo"), "--methods", "lsh,itq,itq_cca")
    assert result.returncode == 0, result.stderr
    assert "| method |" in result.stdout
    # the whole road: a shallow and a deep model each index the digit images and find the
    # query's digit; the HTTP service over the deep index answers what the index answers
    road = [line for line in result.stdout.splitlines() if "top 10 digits" in line]
    assert [line.split(" at ")[0] for line in road] == ["itq_cca", "dch"], result.stdout
    query_digit = int(road[0].split("(digit ")[1].split(")")[0])
    found = [json.loads(line.split("top 10 digits ")[1].split("]")[0] + "]") for line in road]
    assert all(len(f) == 10 and f.count(query_digit) >= 2 for f in found), found  # random: ~1
    http = [line for line in result.stdout.splitlines() if line.startswith("HTTP")]
    assert http and http[0].endswith(str(found[1]).replace("'", "")), result.stdout
    assert len(list((tmp_path / "demo" / "images").glob("*.png"))) == 1597
    assert (tmp_path / "demo" / "pr_curve_32bits.png").stat().st_size > 1000
    rows = json.loads((tmp_path / "demo" / "result.json").read_text())["rows"]
    by_method = {(r["method"], r["bits"]): r["map@all"] for r in rows}
    # supervised ITQ-CCA must beat LSH on real data; if not, the pipeline is broken somewhere
    assert by_method[("itq_cca", 32)] > by_method[("lsh", 32)]


def test_bench_json_document(tmp_path, capsys):
    code = main(
        [
            "bench", "--dataset", "digits", "--methods", "lsh,itq", "--bits", "16",
            "--metrics", "map@all,map@r2", "--out", str(tmp_path), "--json",
        ]
    )  # fmt: skip
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["protocol"]["dataset"] == "digits"
    assert document["protocol"]["map_convention"] == "retrieved"
    assert {row["method"] for row in document["rows"]} == {"lsh", "itq"}
    assert all(0.0 <= row["map@all"] <= 1.0 for row in document["rows"])
    assert (tmp_path / "results.csv").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["bench", "--methods", "nosuch"], "unknown method 'nosuch'"),
        (["bench", "--metrics", "map@foo"], "map@foo"),
        (["bench", "--bits", "16,x"], "--bits"),
        (["bench", "--dataset", "cifar10", "--root", "/no/such/path"], "/no/such/path"),
        (["bench", "--dataset", "imagenet21k"], "unknown data set"),
        (["bench", "--methods", "pcah", "--bits", "128"], "128"),
        (["bench", "--harness", "nosuch"], "unknown harness table 'nosuch'"),
    ],
)
def test_user_errors_are_one_line_exit_2(args, message, tmp_path):
    result = run_cli(*args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_nan_features_are_rejected(tmp_path):
    import numpy as np

    import hashlab

    features = np.random.default_rng(0).normal(size=(50, 8))
    features[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        hashlab.create("itq", n_bits=4).fit(features)


def test_bad_parameters_and_huge_k_are_user_errors_not_tracebacks(tmp_path):
    result = run_cli("train", "--method", "itq", "--dataset", "digits", "--bits", "16",
                     "--out", str(tmp_path / "m"), "--param", "bogus=1")  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "itq has no parameter 'bogus'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_a_real_bug_shows_its_traceback(monkeypatch):
    """Only hashlab's own errors (and OS errors on user paths) become exit 2: a bug is a bug."""
    import hashlab.cli.demo as demo

    def broken(args):
        return {}["no such key"]

    monkeypatch.setattr(demo, "run", broken)
    with pytest.raises(KeyError):
        main(["demo"])


def test_bench_harness_runs_a_quick_table_and_refuses_unknown_ones(tmp_path, capsys):
    out = tmp_path / "table"
    code = main(["bench", "--harness", "digits", "--quick", "--rows", "itq,itq_cca",
                 "--seeds", "0,1", "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "python -m hashlab.bench.harness --table digits" in printed
    result = json.loads((out / "result.json").read_text())
    assert set(result["cells"]) == {"itq@16", "itq_cca@16"}
    assert result["cells"]["itq@16"]["seeds"] == [0, 1]
