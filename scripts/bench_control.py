"""Downstream control on frozen encoders: issue 5's "must show" numbers, from files alone.

Runs the same stages as ``sslrobot run`` (through ``run_pipeline``, so nothing is re-implemented
and a killed run resumes) with a data-efficiency sweep on one manipulation task, then prints:

1. success (mean over training seeds, two-level bootstrap 95% CI, no narrower than Wilson's)
   per task and encoder with 25 demonstrations: state oracle, frozen ``none``, ``scratch`` and
   each pretrained objective;
2. the checks of the issue: ``fdm+future`` >= 80% of the oracle on average over the tasks and
   >= 20 points above ``none``; where ``scratch`` beats ``fdm+future``, said plainly;
3. the data-efficiency table (success vs number of demonstrations).

Usage:
    python scripts/bench_control.py --quick             # every code path, about a minute
    python scripts/bench_control.py                     # the real numbers (about an hour on 2 CPUs)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
from pathlib import Path
from typing import Any

from sslrobot.pipeline.presets import make_run_config
from sslrobot.pipeline.run import run_pipeline, task_slug


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_control"))
    parser.add_argument("--quick", action="store_true", help="the quick preset's tiny sizes")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="as `sslrobot run --replace`: --out may hold a run made with other settings, whose "
        "changed stages are made again",
    )
    parser.add_argument("--tasks", nargs="+", default=None, help="default: all three")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2")
    parser.add_argument(
        "--episodes", type=int, default=None, help="eval episodes (default: preset's)"
    )
    parser.add_argument("--efficiency-task", default="sslrobot/Reach-v0")
    parser.add_argument("--efficiency-demos", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    parser.add_argument("--heldout", action="store_true", help="also the held-out visual preset")
    parser.add_argument(
        "--transfer-objective",
        default=None,
        help="also an encoder of this objective pretrained on every task's streams (transfer)",
    )
    parser.add_argument("--device", default="auto")
    return parser.parse_args()


def _rate(interval: dict[str, float] | None) -> str:
    if interval is None:
        return "—"
    return (
        f"{100 * interval['mean']:.0f}% [{100 * interval['low']:.0f}, {100 * interval['high']:.0f}]"
    )


def _success(rows: list[dict[str, Any]], **keys: Any) -> dict[str, float] | None:
    """The success of the row matching ``keys`` (the final checkpoint unless one is named)."""
    keys.setdefault("checkpoint", "final")
    for row in rows:
        if all(row.get(k) == v for k, v in keys.items()):
            return row["success"]
    return None


def main() -> None:
    args = parse_args()
    base = make_run_config("quick" if args.quick else "default")
    tasks = tuple(args.tasks) if args.tasks else base.tasks
    efficiency_task = args.efficiency_task if args.efficiency_task in tasks else None
    demos = (
        base.num_demos if args.quick else tuple(sorted({*args.efficiency_demos, base.main_demos}))
    )
    config = dataclasses.replace(
        base,
        tasks=tasks,
        num_demos=demos if efficiency_task else (base.main_demos,),
        main_num_demos=base.main_demos,
        num_demo_episodes=max(max(demos), base.num_demo_episodes),
        data_efficiency_task=efficiency_task,
        policy_seeds=tuple(args.seeds) if args.seeds else base.policy_seeds,
        eval_episodes=args.episodes or base.eval_episodes,
        heldout_eval=args.heldout,
        transfer_objective=args.transfer_objective,
    )
    print("settings:", json.dumps(config.to_dict(), sort_keys=True))
    print("machine:", platform.platform(), "| device:", args.device)
    run_pipeline(
        config,
        args.out,
        device=args.device,
        command="scripts/bench_control.py",
        replace=args.replace,
    )
    rows = json.loads((args.out / "results.json").read_text())["aggregated"]
    main_demos = config.main_demos

    print(
        f"\n## Success with {main_demos} demonstrations ({config.eval_episodes} episodes x "
        f"{len(config.policy_seeds)} seeds, 95% CI)\n"
    )
    encoders = config.encoder_names
    print("| task | " + " | ".join(encoders) + " |")
    print("| --- |" + " ---: |" * len(encoders))
    for task in tasks:
        cells = [
            _rate(
                _success(
                    rows,
                    task=task_slug(task),
                    encoder=e,
                    num_demos=main_demos,
                    visual_preset="train",
                )
            )
            for e in encoders
        ]
        print(f"| {task_slug(task)} | " + " | ".join(cells) + " |")

    if config.heldout_eval:
        print("\n## Robustness: success under the held-out visual preset (train preset)\n")
        print("| task | " + " | ".join(encoders) + " |")
        print("| --- |" + " ---: |" * len(encoders))
        for task in tasks:
            cells = []
            for e in encoders:
                keys = {"task": task_slug(task), "encoder": e, "num_demos": main_demos}
                heldout = _success(rows, **keys, visual_preset="heldout")
                train = _success(rows, **keys, visual_preset="train")
                cells.append(f"{_rate(heldout)} ({_rate(train)})")
            print(f"| {task_slug(task)} | " + " | ".join(cells) + " |")

    print("\n## Checks\n")
    means = {
        encoder: [
            (
                _success(
                    rows,
                    task=task_slug(t),
                    encoder=encoder,
                    num_demos=main_demos,
                    visual_preset="train",
                )
                or {"mean": float("nan")}
            )["mean"]
            for t in tasks
        ]
        for encoder in encoders
    }
    absent = [
        f"{encoder} on {task_slug(task)}"
        for encoder, values in means.items()
        for task, value in zip(tasks, values, strict=True)
        if value != value  # NaN: no result
    ]
    if absent:  # a check over fewer tasks than it names would print MET or NOT MET wrongly
        raise SystemExit(
            f"no {main_demos}-demonstration result for {', '.join(absent)}: finish the run"
        )
    oracle, ff, none = (statistics.mean(means[e]) for e in ("state", "fdm+future", "none"))
    ratio = ff / oracle if oracle > 0 else float("nan")
    print(f"- state oracle mean success: {100 * oracle:.0f}%")
    print(
        f"- fdm+future / oracle: {100 * ratio:.0f}% (target >= 80%): "
        f"{'MET' if ratio >= 0.8 else 'NOT MET'}"
    )
    print(
        f"- fdm+future - none: {100 * (ff - none):+.0f} points (target >= +20): "
        f"{'MET' if ff - none >= 0.2 else 'NOT MET'}"
    )
    for task, f, s in zip(tasks, means["fdm+future"], means["scratch"], strict=True):
        if s > f:
            print(
                f"- {task_slug(task)}: training from scratch beats frozen fdm+future "
                f"({100 * s:.1f}% vs {100 * f:.1f}%)"
            )

    if efficiency_task:
        print(f"\n## Data efficiency on {task_slug(efficiency_task)}\n")
        print("| demos | " + " | ".join(encoders) + " |")
        print("| ---: |" + " ---: |" * len(encoders))
        for n in config.num_demos:
            cells = [
                _rate(
                    _success(
                        rows,
                        task=task_slug(efficiency_task),
                        encoder=e,
                        num_demos=n,
                        visual_preset="train",
                    )
                )
                for e in encoders
            ]
            print(f"| {n} | " + " | ".join(cells) + " |")
    print(f"\nreport: {args.out / 'report.html'}")


if __name__ == "__main__":
    main()
