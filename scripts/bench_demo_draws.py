"""How much does the draw of the 25 demonstrations move a finished run's success?

``sslrobot run`` trains every training seed of a configuration on the same demonstrations (the
first N of one ``collect --policy expert`` set), so its intervals cover the seeds' spread and
the evaluation episodes', not which N start states the demonstrations happened to show. This
retrains the run's own BC policies (each one's ``train_config`` as the run saved it: encoder,
head, budget, copies, validation) on other draws of the same number of demonstrations, the
sets whose episode i is reset with ``DEMO_SEED_BASE + run seed + k * N + i`` for draw k, and
evaluates them on the run's evaluation episodes; draw 0 is the run's own set, read from its
records. Prints per draw and encoder the success over the training seeds, then each encoder's
mean over draws and their spread.

    python scripts/bench_demo_draws.py --run runs/default36 --task Reach-v0 --draws 4 \\
        --encoders fdm+future none scratch state
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np

from sslrobot.data import CollectConfig, collect
from sslrobot.evaluation.evaluate import aggregate_results, evaluate, load_results
from sslrobot.pipeline.presets import DEMO_SEED_BASE, EVAL_SEED_BASE, RunConfig
from sslrobot.policy.config import PolicyConfig
from sslrobot.policy.train import train_policy


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished `sslrobot run` dir")
    parser.add_argument("--task", default="Reach-v0", help="task directory in the run")
    parser.add_argument("--draws", type=int, default=4, help="demonstration sets, the run's first")
    parser.add_argument(
        "--encoders", nargs="+", default=["fdm+future", "none", "state"], help="the run's names"
    )
    parser.add_argument("--work", type=Path, default=None, help="default: RUN/demo_draws")
    return parser.parse_args()


def run_policy_dirs(run: Path, task: str, encoder: str, num_demos: int) -> list[Path]:
    """The run's final BC policies of ``encoder`` with ``num_demos`` demonstrations, by seed."""
    root = run / task / "policy" / encoder / f"demos{num_demos}"
    dirs = sorted(root.glob("seed*/policy"), key=lambda p: int(p.parent.name[4:]))
    if not dirs:
        raise SystemExit(f"{root} holds no finished policies (seed*/policy)")
    return dirs


def run_records(run: Path, task: str, encoder: str, num_demos: int) -> list[dict]:
    """The run's own evaluation records of those policies (final checkpoints, train look)."""
    root = run / task / "eval" / encoder / f"demos{num_demos}"
    return load_results(sorted(root.glob("seed*/train/result.json")))


def collect_draw(config: RunConfig, env_id: str, num_demos: int, draw: int, out: Path) -> Path:
    """Demonstration set ``draw``: as the run collected its own, from the next start states."""
    base = config.seed + DEMO_SEED_BASE + draw * num_demos
    if base + num_demos > config.seed + EVAL_SEED_BASE:
        raise SystemExit(f"draw {draw} would reach the evaluation seeds ({EVAL_SEED_BASE})")
    return collect(
        CollectConfig(
            env_id=env_id,
            policy="expert",
            num_episodes=num_demos,
            seed=base,
            image_size=config.image_size,
            out=out,
            resume=out.exists(),
        ),
        progress=False,
    )


def main() -> None:
    args = parse_args()
    saved = json.loads((args.run / "config.json").read_text())
    known = {item.name for item in dataclasses.fields(RunConfig)}  # older runs: extra keys
    config = RunConfig(**{key: value for key, value in saved.items() if key in known})
    if config.demos_per_policy_seed:  # its seeds' draws are already these blocks
        raise SystemExit(f"{args.run} trained each seed on its own draw (demos_per_policy_seed)")
    work = args.work or args.run / "demo_draws"
    num_demos = config.main_demos
    env_id = next(t for t in config.tasks if t.endswith("/" + args.task))
    print(f"settings: run {args.run} task {env_id} draws {args.draws} of {num_demos} demos, "
          f"encoders {args.encoders}, the run's BC settings and evaluation episodes")  # fmt: skip
    print("machine:", platform.platform())
    records: dict[tuple[int, str], list[dict]] = {}
    for draw in range(args.draws):
        demos = (
            None
            if draw == 0
            else collect_draw(config, env_id, num_demos, draw, work / f"demos{draw}")
        )
        for encoder in args.encoders:
            if demos is None:
                records[draw, encoder] = run_records(args.run, args.task, encoder, num_demos)
                continue
            found = []
            for saved in run_policy_dirs(args.run, args.task, encoder, num_demos):
                train = json.loads((saved / "policy_config.json").read_text())["train_config"]
                out = work / f"draw{draw}" / encoder / saved.parent.name
                policy = PolicyConfig(**{
                    **train, "demos": str(demos), "out": str(out / "policy"),
                    "cache_dir": train["cache_dir"] and str(work / "feature_cache"),
                    "progress": False,
                    "overwrite": False, "resume": (out / "policy").exists(),
                })  # fmt: skip
                result = out / "result.json"
                if not result.is_file():
                    started = time.perf_counter()
                    if not (out / "policy" / "policy_config.json").is_file():  # else finished
                        train_policy(policy)
                    evaluate(out / "policy", num_episodes=config.eval_episodes,
                             seed=config.seed + EVAL_SEED_BASE, out_json=result)  # fmt: skip
                    print(f"  draw {draw} {encoder} {saved.parent.name}: "
                          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
                found.append(json.loads(result.read_text()))
            records[draw, encoder] = found
    print(f"\n| {args.task}, success | " + " | ".join(f"draw {d}" for d in range(args.draws))
          + " | mean over draws | s.d. over draws |")  # fmt: skip
    print("| --- |" + " ---: |" * (args.draws + 2))
    for encoder in args.encoders:
        means = []
        cells = []
        for draw in range(args.draws):
            (row,) = aggregate_results(records[draw, encoder], min_seeds=1)
            means.append(row["success"]["mean"])
            cells.append(
                f"{100 * row['success']['mean']:.1f}% [{100 * row['success']['low']:.1f}, "
                f"{100 * row['success']['high']:.1f}]"
            )
        spread = f"{100 * np.std(means, ddof=1):.1f}" if len(means) > 1 else "-"
        summary = f" | {100 * np.mean(means):.1f}% | {spread} |"
        print(f"| {encoder} | " + " | ".join(cells) + summary)


if __name__ == "__main__":
    main()
