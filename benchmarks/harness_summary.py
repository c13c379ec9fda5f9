"""Print a short markdown summary of harness tables, for the README (numbers are never typed).

    python benchmarks/harness_summary.py benchmarks/harness/mirflickr-labels [more dirs]
        [--metric map@all] [--verdicts-only]

For each table folder: its command, one metric's mean +- std table (default: map@all) and the
claims' verdicts on that metric, read from ``result.json``; the full protocol, the other
metrics and the tuning are in the folder's ``results.md``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def summary(folder: Path, metric: str, verdicts_only: bool = False) -> str:
    result = json.loads((folder / "result.json").read_text())
    spec, cells, protocol = result["spec"], result["cells"], result["protocol"]
    bits = [b for b in spec["bits"] if any(c["bits"] == b for c in cells.values())]
    lines = [f"```bash\n{protocol['command']}\n```", ""]
    if not verdicts_only:
        lines += [
            f"{metric}, mean +- std over seeds {', '.join(map(str, spec['seeds']))} "
            f"(full output: `{folder}/results.md`):",
            "",
            "| row | " + " | ".join(f"{b} bits" for b in bits) + " |",
            "|---|" + "---|" * len(bits),
        ]
        for row in spec["rows"]:
            out = []
            for n_bits in bits:
                cell = cells.get(f"{row['label']}@{n_bits}")
                if cell is None:
                    out.append("-")
                    continue
                text = f"{cell[metric]['mean']:.3f} +- {cell[metric]['std']:.3f}"
                if len(cell["seeds"]) < len(spec["seeds"]):
                    text += f" ({len(cell['seeds'])} seeds)"
                if cell["unconverged_seeds"]:
                    text += " (not converged)"
                out.append(text)
            if any(v != "-" for v in out):
                lines.append(f"| {row['label']} | " + " | ".join(out) + " |")
        reference = result.get("float_reference")
        if reference and metric in reference["scores"]:
            value = reference["scores"][metric]
            lines.append(
                f"| float cosine (no hashing) | {value:.3f} (any length) |" + " |" * (len(bits) - 1)
            )
        lines.append("")
    mine = [v for v in result["verdicts"] if v["metric"] == metric]
    if mine:
        lines += [
            "| claim | bits | A | B | A - B per seed | verdict |",
            "|---|---|---|---|---|---|",
        ]
        for v in mine:
            gaps = ", ".join(f"{g:+.3f}" for g in v["gaps"])
            lines.append(
                f"| {v['claim']} | {v['bits']} | {v['a_mean']:.3f} +- {v['a_std']:.3f} | "
                f"{v['b_mean']:.3f} +- {v['b_std']:.3f} | {gaps} | {v['verdict']} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--metric", default="map@all")
    parser.add_argument("--verdicts-only", action="store_true")
    args = parser.parse_args()
    for folder in args.folders:
        print(summary(folder, args.metric, args.verdicts_only))


if __name__ == "__main__":
    main()
