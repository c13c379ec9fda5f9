"""Bench reports: the table beside the paper's numbers puts each published value in its cell."""

import numpy as np

from hashlab.bench.paper_numbers import paper_comparison_table, paper_value
from hashlab.bench.report import write_report
from hashlab.bench.runner import BenchConfig, run_benchmark
from hashlab.data.digits import load_digits_dataset
from hashlab.data.splits import make_split


def test_paper_values_come_from_table_1_and_missing_cells_are_none():
    assert paper_value("cifar10", "dch", "map@r2", "ksh", 32) == 0.558
    assert paper_value("cifar10", "dch", "map@r2", "hashnet", 64) == 0.687
    assert paper_value("cifar10", "dch", "map@r2", "lsh", 32) is None  # not in Table 1
    assert paper_value("cifar10", "dch", "map@r2", "ksh", 24) is None  # no such column
    assert paper_value("cifar10", "dch", "map@all", "ksh", 32) is None  # no such table
    assert paper_value("digits", "per-class", "map@r2", "ksh", 32) is None


def test_comparison_table_cells():
    rows = [
        {"method": "ksh", "bits": 16, "map@r2": 0.5},
        {"method": "ksh", "bits": 32, "map@r2": 0.61234},
        {"method": "lsh", "bits": 16, "map@r2": 0.1},
        {"method": "lsh", "bits": 32, "map@r2": 0.2},
    ]
    text = paper_comparison_table(rows, "cifar10", "dch", "map@r2")
    assert text is not None
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0] == "| method | 16 bits: ours / paper | 32 bits: ours / paper |"
    assert table[1] == "| ksh | 0.500 / 0.524 | 0.612 / 0.558 |"
    assert table[2] == "| lsh | 0.100 / - | 0.200 / - |"
    assert paper_comparison_table(rows, "digits", "per-class", "map@r2") is None
    no_published = [{"method": "eddh", "bits": 32, "map@r2": 0.6}]
    assert paper_comparison_table(no_published, "cifar10", "dch", "map@r2") is None


def test_report_files_from_a_real_run(tmp_path):
    data = load_digits_dataset()
    split = make_split(data.labels, protocol="per-class", seed=0, n_query_per_class=10,
                       n_train_per_class=50)  # fmt: skip
    config = BenchConfig(dataset="digits", protocol="per-class", methods=["lsh", "itq"],
                         bits=[16], metrics=["map@all", "map@r2"])  # fmt: skip
    result = run_benchmark(config, data, data.features.astype(np.float32), split)
    files = write_report(result, tmp_path)
    markdown = files["markdown"].read_text()
    assert "| lsh |" in markdown and "| itq |" in markdown
    assert "ours / paper" not in markdown  # no published table for digits
    assert files["json"].is_file() and files["csv"].read_text().count("\n") == 3


def test_compact_table_puts_bit_lengths_in_one_cell_and_the_paper_beside_them():
    from hashlab.bench.report import compact_table
    from hashlab.bench.runner import BenchResult

    config = BenchConfig(dataset="cifar10", protocol="dch", methods=["ksh", "lsh"],
                         bits=[16, 32], metrics=["map@all", "map@r2"])  # fmt: skip
    rows = [
        {"method": "ksh", "bits": 16, "map@all": 0.4, "map@r2": 0.5},
        {"method": "ksh", "bits": 32, "map@all": 0.45, "map@r2": 0.6},
        {"method": "lsh", "bits": 16, "map@all": 0.1, "map@r2": 0.2},
    ]
    text = compact_table(BenchResult(config=config, protocol={}, rows=rows, pr_curves={}))
    lines = text.splitlines()
    assert lines[0] == ("| method | map@all (16/32 bits) | map@r2 (16/32 bits) | paper map@r2 |")
    assert lines[2] == "| ksh | 0.400 / 0.450 | 0.500 / 0.600 | 0.524 / 0.558 |"
    assert lines[3] == "| lsh | 0.100 / - | 0.200 / - | - |"  # a missing run shows as "-"
