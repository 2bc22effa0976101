"""Issue 5's bar over tasks from evaluation records on disk, made by any mix of commands.

``sslrobot run`` reports each encoder's mean success over its tasks, its share of the state
oracle's and its lead over ``none`` with bootstrap intervals; results made outside one run
(``scripts/bench_rl.py``, a run per task, hand-made ``sslrobot evaluate`` records) had only a
hand-computed share. This reads every ``result.json`` under the directories given, keeps one
algorithm, demonstration count, look and checkpoint, and prints the same statistics
(``sslrobot.evaluation.across_tasks``) with the settings.

Encoders are named by where their record lies: ``.../<eval or eval_rl>/ENCODER/...`` (an
``sslrobot run`` directory) or ``.../ENCODER/seed<N>/result.json`` (``bench_rl.py``'s
layout), else by the record's own ``encoder``; ``+critic-state`` is added where SAC's critics
read the state (``train-policy --rl-critic-input state``). An encoder not evaluated on every
task is left out, and said so.

Usage:
    python scripts/across_tasks.py runs/s44/rl_reach_demos runs/s44/rl_push_state_demos \
        runs/s44/rl_nav_demos --algo rl-sac --num-demos 25
    python scripts/across_tasks.py runs/s42/all_auto --algo bc --num-demos 25
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from sslrobot.evaluation.across_tasks import outcomes_by_encoder, success_across_tasks

EVAL_DIRS = ("eval", "eval_rl")
#: The label's suffix of records whose critics read the state (bench_rl_readout.py's too).
CRITIC_STATE = "+critic-state"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", type=Path, nargs="+", help="directories holding result.json")
    parser.add_argument("--algo", default="bc", help="the records' algo: bc, rl-sac, rl-ppo")
    parser.add_argument("--num-demos", type=int, default=25)
    parser.add_argument("--visual-preset", default="train")
    parser.add_argument("--checkpoint", default="final")
    parser.add_argument("--reference", default="state", help="the share's denominator")
    parser.add_argument("--baselines", nargs="*", default=["none", "scratch"])
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    return parser.parse_args()


def encoder_label(path: Path, record: dict[str, Any]) -> str:
    """The encoder a record belongs to, from its place in a run or a benchmark directory,
    with ``+critic-state`` where SAC's critics read the state (``rl_critic_input``): another
    protocol, never one row with the symmetric one's seeds."""
    label = _place_label(path, record)
    if record.get("rl_critic_input") == "state" and not label.endswith(CRITIC_STATE):
        label += CRITIC_STATE
    return label


def _place_label(path: Path, record: dict[str, Any]) -> str:
    parts = path.parts
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] in EVAL_DIRS:
            return parts[index + 1]
    if re.fullmatch(r"seed\d+", path.parent.name):
        return path.parent.parent.name
    return str(record["encoder"])


def read_records(dirs: list[Path]) -> list[dict[str, Any]]:
    """Every evaluation record under ``dirs``, labelled by ``encoder_label``."""
    records = []
    for directory in dirs:
        if not directory.is_dir():
            raise SystemExit(f"{directory}: not a directory")
        for path in sorted(directory.rglob("result.json")):
            record = json.loads(path.read_text())
            if "episodes" not in record or "env_id" not in record:
                continue  # another command's result.json
            records.append({**record, "encoder": encoder_label(path, record)})
    return records


def _interval(value: dict[str, Any] | None, scale: float, fmt: str) -> str:
    if value is None:
        return "—"
    high = "unbounded" if value["high"] is None else fmt.format(scale * value["high"])
    return f"{fmt.format(scale * value['mean'])} [{fmt.format(scale * value['low'])}, {high}]"


def main() -> None:
    args = parse_args()
    settings = {k: [str(d) for d in v] if k == "dirs" else v for k, v in vars(args).items()}
    print("settings:", json.dumps(settings, default=str))
    records = read_records(args.dirs)
    outcomes = outcomes_by_encoder(
        records, args.num_demos, args.visual_preset, args.checkpoint, algo=args.algo
    )
    tasks = sorted({task for by_task in outcomes.values() for task in by_task})
    for encoder, by_task in outcomes.items():
        seeds = {task.split("/")[-1]: len(per_seed) for task, per_seed in by_task.items()}
        missing = [task for task in tasks if task not in by_task]
        note = f"; left out: not evaluated on {missing}" if missing else ""
        print(f"{encoder}: training seeds per task {seeds}{note}")
    rows = success_across_tasks(
        outcomes, tasks=tasks, reference=args.reference, baselines=args.baselines, seed=args.seed
    )
    if not rows:
        raise SystemExit(f"nothing to average: tasks {tasks} (two or more are needed)")
    baselines = [b for b in args.baselines if any(b in row["gain_over"] for row in rows)]
    print(f"\nmean over {', '.join(tasks)}; {args.algo}, {args.num_demos} demos, "
          f"{args.visual_preset} look, {args.checkpoint} checkpoints")  # fmt: skip
    titles = ["encoder", "mean success [95% CI]", f"share of {args.reference}'s (%)"]
    titles += [f"over {b} (points)" for b in baselines]
    print("| " + " | ".join(titles) + " |")
    print("| --- |" + " ---: |" * (len(titles) - 1))
    for row in rows:
        cells = [
            row["encoder"],
            _interval(row["success"], 100.0, "{:.1f}%"),
            _interval(row["of_reference"], 100.0, "{:.0f}"),
            *(_interval(row["gain_over"].get(b), 1.0, "{:+.1f}") for b in baselines),
        ]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
