"""Are two ``sslrobot run`` directories the same experiment's same results? A reproducibility check.

Compares, for every (task, encoder, visual preset, number of demonstrations) the two runs share,
the aggregated success and return (means and 95% intervals) in ``results.json``, and, for every
pretrained encoder they share, the logged loss columns of ``metrics.csv`` row by row. Timing
columns are ignored: wall-clock differs between runs by nature. Usage:

    python scripts/compare_runs.py runs/default5 runs/default7

Prints one line per compared item and a summary; exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path


def aggregated(run: Path) -> dict[tuple, dict]:
    """``results.json``'s aggregated records keyed by what they measure."""
    records = json.loads((run / "results.json").read_text())["aggregated"]
    return {
        (r["env_id"], r["encoder"], r.get("visual_preset"), r.get("num_demos")): r for r in records
    }


def loss_rows(path: Path) -> list[list[str]]:
    """The step and loss columns of a ``metrics.csv``, as logged (strings: exact comparison)."""
    with path.open() as file:
        rows = list(csv.reader(file))
    keep = [i for i, name in enumerate(rows[0]) if name == "step" or "loss" in name]
    return [[row[i] for i in keep] for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    differ = 0
    first, second = aggregated(args.first), aggregated(args.second)
    shared = sorted(set(first) & set(second), key=str)
    for key in shared:
        same = all(first[key][m] == second[key][m] for m in ("success", "return"))
        differ += not same
        print(
            f"{'same' if same else 'DIFFERS'}: {key} success {first[key]['success']['mean']:.4f}"
            f" vs {second[key]['success']['mean']:.4f}"
        )
    curves = sorted(
        p.relative_to(args.first) for p in args.first.glob("*/pretrain/*/encoder/metrics.csv")
    )
    compared = 0
    for relative in curves:
        other = args.second / relative
        if not other.is_file():
            continue
        compared += 1
        same = loss_rows(args.first / relative) == loss_rows(other)
        differ += not same
        print(f"{'same' if same else 'DIFFERS'}: loss curve {relative}")
    print(
        f"{len(shared)} shared results and {compared} shared loss curves compared, "
        f"{differ} differ ({len(first)} / {len(second)} results in each run)"
    )
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
