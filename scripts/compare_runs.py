"""Are two ``sslrobot run`` directories the same experiment's same results? A reproducibility check.

Compares, for every group of evaluation records the two runs share (``evaluate``'s
``GROUP_KEYS``: task, encoder, demonstrations, algorithm, checkpoint, visual preset), the
mean success and return, the per-seed success rates and the seeds in ``results.json`` (not
the 95% intervals: their method changed in sessions 17 and 25, and a file written before
would differ on episodes that are the same), naming each measure that differs, and, for every
pretrained encoder they share, the logged loss columns of ``metrics.csv`` row by row. Timing
columns are ignored: wall-clock differs between runs by nature. Either side may also be a
results file alone (a run's ``results.json``, or the published ``default_results.json``): then
only the results are compared. Config fields the two runs set differently (``bc_augment_copies``,
whose default preset value moved in session 19, say) are named first, from the results
files' headers. Usage:

    python scripts/compare_runs.py runs/default5 runs/default7
    python scripts/compare_runs.py docs/results/default_session20/results.json runs/mine

Prints one line per compared item and a summary; exits 1 if anything differs, or if a
result is in one run only (a run missing a task is not the same results), unless
``--shared-only`` (comparing a run of some tasks with the full one).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from sslrobot.evaluation.evaluate import GROUP_KEYS
from sslrobot.pipeline.presets import RunConfig
from sslrobot.pipeline.run import UNSTAGED_SETTINGS


def aggregated(run: Path) -> dict[tuple, dict]:
    """The aggregated records of a run directory's ``results.json`` (or of a results file),
    keyed by ``GROUP_KEYS`` (a record without ``checkpoint`` predates best checkpoints: its
    final one). Two records under one key would hide one another: an error."""
    path = run / "results.json" if run.is_dir() else run
    if not path.is_file():
        raise SystemExit(f"{run} is neither an `sslrobot run` directory nor a results file")
    keyed: dict[tuple, dict] = {}
    for record in json.loads(path.read_text())["aggregated"]:
        key = tuple(
            record.get(name, "final" if name == "checkpoint" else None) for name in GROUP_KEYS
        )
        if key in keyed:
            group = dict(zip(GROUP_KEYS, key, strict=True))
            raise SystemExit(f"{path}: two aggregated records for {group}")
        keyed[key] = record
    return keyed


#: What two runs' records must agree on to be the same results (means, not intervals).
MEASURES = {
    "success": lambda r: r["success"]["mean"],
    "return": lambda r: r["return"]["mean"],
    "success_per_seed": lambda r: r.get("success_per_seed"),
    "seeds": lambda r: r.get("seeds"),
}


def run_config(run: Path) -> dict:
    """The run's config as its results file's header records it ({} for files without one)."""
    path = run / "results.json" if run.is_dir() else run
    return json.loads(path.read_text()).get("header", {}).get("config", {})


def config_differences(first: dict, second: dict) -> list[str]:
    """``"field: a vs b"`` for every config field the two runs set differently. A field one
    run predates counts as ``RunConfig``'s default for it (the behaviour before the field
    existed, as ``sslrobot run`` reads an older run's config); a run without a recorded
    config (a results file without a header) is compared on results alone."""
    if not first or not second:
        return []
    defaults = json.loads(json.dumps(RunConfig().to_dict()))
    first, second = {**defaults, **first}, {**defaults, **second}
    return [
        f"{key}: {first.get(key)!r} vs {second.get(key)!r}"
        for key in sorted(set(first) | set(second))
        if key not in UNSTAGED_SETTINGS and first.get(key) != second.get(key)
    ]


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
    parser.add_argument(
        "--shared-only",
        action="store_true",
        help="compare the results both runs hold; results in one run only are listed, not failed",
    )
    args = parser.parse_args()
    differ = 0
    first, second = aggregated(args.first), aggregated(args.second)
    for line in config_differences(run_config(args.first), run_config(args.second)):
        print(f"config differs (results may differ for it): {line}")
    shared = sorted(set(first) & set(second), key=str)
    gaps = []
    one_sided = [
        (name, key)
        for name, mine, theirs in ((args.first, first, second), (args.second, second, first))
        for key in sorted(set(mine) - set(theirs), key=str)
    ]
    for name, key in one_sided:
        print(f"ONLY IN {name}: {key}")
    for key in shared:
        differing = [name for name, get in MEASURES.items() if get(first[key]) != get(second[key])]
        same = not differing
        differ += not same
        a, b = first[key]["success"]["mean"], second[key]["success"]["mean"]
        ra, rb = first[key]["return"]["mean"], second[key]["return"]["mean"]
        if key[GROUP_KEYS.index("checkpoint")] == "final":  # a best is often the final again
            gaps.append(abs(b - a))
        print(
            f"{'same' if same else 'DIFFERS (' + ', '.join(differing) + ')'}: {key} success "
            f"{a:.4f} vs {b:.4f} ({100 * (b - a):+.1f} points), return {ra:.4f} vs {rb:.4f}"
        )
    if gaps:
        print(
            f"success (final checkpoints): mean |difference| "
            f"{100 * sum(gaps) / len(gaps):.1f} points, largest {100 * max(gaps):.1f}"
        )
    both_dirs = args.first.is_dir() and args.second.is_dir()
    curves = (
        sorted(
            p.relative_to(args.first) for p in args.first.glob("*/pretrain/*/encoder/metrics.csv")
        )
        if both_dirs
        else []
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
        f"{differ} differ ({len(first)} / {len(second)} results in each run, "
        f"{len(one_sided)} in one only)"
    )
    if not shared and not compared:
        print("nothing to compare: no result (encoder, task, demos, ...) is in both runs")
        return 2
    return 1 if differ or (one_sided and not args.shared_only) else 0


if __name__ == "__main__":
    sys.exit(main())
