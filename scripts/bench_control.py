"""Downstream control on frozen encoders: issue 5's "must show" numbers, from files alone.

What it runs (every stage is skipped when its output already exists, so a killed run resumes):

1. Expert demonstrations per task (``collect --policy expert``, episode i = seed i), and for
   each pretrained objective without a ``--pretrained`` directory, a noisy-expert stream and a
   ``pretrain`` run on it.
2. BC policies (same head, data and budget for every encoder) with ``--num-demos`` (25) on
   every task for every encoder (state oracle, frozen ``none``, ``scratch``, each objective),
   and on ``--efficiency-task`` for every count in ``--efficiency-demos`` with the
   ``--efficiency-encoders``; ``--seeds`` training seeds each.
3. Evaluation of the final and the best checkpoint on ``--episodes`` seeded episodes from seed
   ``--eval-seed`` (disjoint from the demonstration seeds 0..N-1 and from the validation seeds
   from 1,000,000), optionally also under the held-out visual preset.
4. Aggregation over training seeds (stratified bootstrap, 95%), the two tables, and the issue's
   checks: the state oracle's success; ``fdm+future`` >= 80% of the oracle on average over the
   tasks and >= 20 points above ``none``; where ``scratch`` beats ``fdm+future``, said plainly.

Prints its settings, the tables (Markdown) and median wall times; writes ``summary.json``.

Usage:
    python scripts/bench_control.py --quick                 # every code path, minutes on 2 CPUs
    python scripts/bench_control.py                         # the real numbers (hours on 2 CPUs)
    python scripts/bench_control.py --pretrained 'fdm+future=runs/pretrain/{task}_fdm_future'
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# A script (not the library) may choose the GL backend for its process.
os.environ.setdefault("MUJOCO_GL", "egl")

import torch

import sslrobot
from sslrobot.data import CollectConfig, collect, open_dataset
from sslrobot.evaluation.evaluate import aggregate_results, evaluate, load_results
from sslrobot.policy import PolicyConfig, train_policy

ALL_TASKS = ("sslrobot/Reach-v0", "sslrobot/Push-v0", "sslrobot/Navigate-v0")
BASELINES = ("state", "none", "scratch")
KEY_OBJECTIVE = "fdm+future"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_control"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code paths")
    parser.add_argument("--tasks", nargs="+", default=None, help=f"default: {ALL_TASKS}")
    parser.add_argument("--objectives", nargs="+", default=None, help="default: fdm+future")
    parser.add_argument(
        "--pretrained",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="use an existing encoder dir for objective NAME; {task} becomes reach/push/...",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: 0 1 2")
    parser.add_argument("--num-demos", type=int, default=None, help="default: 25")
    parser.add_argument("--efficiency-task", default="sslrobot/Push-v0")
    parser.add_argument("--efficiency-demos", type=int, nargs="+", default=None)
    parser.add_argument(
        "--efficiency-encoders", nargs="+", default=[KEY_OBJECTIVE, "none", "scratch"]
    )
    parser.add_argument("--episodes", type=int, default=None, help="eval episodes (default 50)")
    parser.add_argument("--eval-seed", type=int, default=100_000)
    parser.add_argument("--heldout", action="store_true", help="also the held-out visual preset")
    parser.add_argument("--videos", type=int, default=1, help="videos per policy, first seed")
    parser.add_argument("--image-size", type=int, default=None, help="default 64 (quick: 32)")
    parser.add_argument("--bc-steps", type=int, default=None, help="BC gradient steps (2000)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--val-episodes", type=int, default=None, help="default 10 (quick: 2)")
    parser.add_argument("--unlabeled-episodes", type=int, default=None, help="default 200")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="default 1500")
    parser.add_argument("--pretrain-batch-size", type=int, default=None, help="default 128")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "tasks": ["sslrobot/Reach-v0"] if quick else list(ALL_TASKS),
        "objectives": [KEY_OBJECTIVE],
        "seeds": [0] if quick else [0, 1, 2],
        "num_demos": 3 if quick else 25,
        "efficiency_demos": [2, 3] if quick else [5, 10, 25, 50],
        "episodes": 3 if quick else 50,
        "image_size": 32 if quick else 64,
        "bc_steps": 20 if quick else 2000,
        "val_episodes": 2 if quick else 10,
        "unlabeled_episodes": 6 if quick else 200,
        "pretrain_steps": 20 if quick else 1500,
        "pretrain_batch_size": 16 if quick else 128,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if quick and args.efficiency_task not in args.tasks:
        args.efficiency_task = args.tasks[0]
    return args


def task_name(env_id: str) -> str:
    """``sslrobot/Push-v0`` -> ``push``."""
    return env_id.split("/")[-1].split("-v")[0].lower()


def slug(label: str) -> str:
    return label.replace("+", "_").replace("/", "_")


def ensure_dataset(out: Path, env_id: str, policy: str, num_episodes: int, image_size: int) -> Path:
    """Collect (or complete) a dataset; episode i is reset with seed i."""
    config = CollectConfig(
        env_id=env_id,
        out=out,
        policy=policy,
        num_episodes=num_episodes,
        image_size=image_size,
        resume=(out / "manifest.json").is_file(),
    )
    if config.resume and len(open_dataset(out).episode_ids) >= num_episodes:
        return out
    return collect(config, progress=False)


def ensure_pretrained(args: argparse.Namespace, env_id: str, objective: str) -> Path:
    """The encoder directory of ``objective`` for ``env_id``: given, or pretrained here."""
    for spec in args.pretrained:
        name, _, pattern = spec.partition("=")
        if name == objective:
            path = Path(pattern.format(task=task_name(env_id)))
            if not path.is_dir():
                raise SystemExit(f"--pretrained {spec}: {path} is not a directory")
            return path
    from sslrobot.models.encoder import EncoderConfig
    from sslrobot.pretraining import PretrainConfig, pretrain

    task = task_name(env_id)
    out = args.out / "pretrain" / f"{task}_{slug(objective)}"
    if (out / "encoder_config.json").is_file():
        return out
    data = ensure_dataset(
        args.out / "unlabeled" / task,
        env_id,
        "noisy-expert",
        args.unlabeled_episodes,
        args.image_size,
    )
    config = PretrainConfig(
        out=str(out),
        data=str(data),
        objective=objective,
        steps=args.pretrain_steps,
        batch_size=args.pretrain_batch_size,
        device=args.device,
        encoder=EncoderConfig(image_size=args.image_size),
        image_every=0,
    )
    return pretrain(config, progress=False)


def run_policy(
    args: argparse.Namespace,
    env_id: str,
    label: str,
    encoder: str,
    demos: Path,
    num_demos: int,
    seed: int,
    timings: dict[str, list[float]],
) -> list[Path]:
    """Train one BC policy (unless done) and evaluate its checkpoints; returns result files."""
    name = f"{task_name(env_id)}/{slug(label)}/demos{num_demos}/seed{seed}"
    policy_dir = args.out / "policies" / name
    if not (policy_dir / "policy_config.json").is_file():
        start = time.perf_counter()
        train_policy(
            PolicyConfig(
                env_id=env_id,
                encoder=encoder,
                algo="bc",
                out=policy_dir,
                seed=seed,
                demos=demos,
                num_demos=num_demos,
                steps=args.bc_steps,
                batch_size=args.batch_size,
                image_size=args.image_size,
                val_episodes=args.val_episodes,
                cache_dir=args.out / "feature_cache",
                device=args.device,
                progress=False,
            )
        )
        timings.setdefault(f"train/{label}", []).append(time.perf_counter() - start)
    results = []
    presets = ("train", "heldout") if args.heldout else ("train",)
    for preset in presets:
        for checkpoint in ("final", "best"):
            out = args.out / "results" / name / f"{checkpoint}_{preset}.json"
            if not out.is_file():
                start = time.perf_counter()
                evaluate(
                    policy_dir,
                    num_episodes=args.episodes,
                    seed=args.eval_seed,
                    visual_preset=preset,
                    out_json=out,
                    num_videos=args.videos if seed == args.seeds[0] else 0,
                    checkpoint=checkpoint,
                    device="cpu",
                )
                timings.setdefault(f"eval/{label}", []).append(time.perf_counter() - start)
            results.append(out)
    return results


def fmt(success: dict[str, float] | None) -> str:
    if success is None:
        return "—"
    return f"{100 * success['mean']:.0f}% [{100 * success['low']:.0f}, {100 * success['high']:.0f}]"


def find(rows: list[dict], **labels: Any) -> dict | None:
    for row in rows:
        if all(row[key] == value for key, value in labels.items()):
            return row
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings.update(
        {
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "sslrobot": sslrobot.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
        }
    )
    print("settings:", json.dumps(settings, indent=2, sort_keys=True))
    start = time.perf_counter()
    timings: dict[str, list[float]] = {}
    labels = [*BASELINES, *args.objectives]
    max_demos = max([args.num_demos, *args.efficiency_demos])
    result_files: list[Path] = []
    for env_id in args.tasks:
        demos = ensure_dataset(
            args.out / "demos" / task_name(env_id), env_id, "expert", max_demos, args.image_size
        )
        encoders = {label: label for label in BASELINES}
        for objective in args.objectives:
            encoders[objective] = str(ensure_pretrained(args, env_id, objective))
        jobs = [(label, args.num_demos) for label in labels]
        if env_id == args.efficiency_task:
            jobs += [
                (label, n) for label in args.efficiency_encoders for n in args.efficiency_demos
            ]
        for label, num_demos in dict.fromkeys(jobs):
            for seed in args.seeds:
                print(
                    f"[{time.perf_counter() - start:7.0f}s] {env_id} {label} demos={num_demos} "
                    f"seed={seed}",
                    flush=True,
                )
                result_files += run_policy(
                    args, env_id, label, encoders[label], demos, num_demos, seed, timings
                )
    rows = aggregate_results(load_results(result_files), min_seeds=len(args.seeds))
    report = summarise(args, rows, labels)
    report["timings_median_s"] = {k: statistics.median(v) for k, v in sorted(timings.items())}
    report["settings"] = settings
    report["total_wall_time_s"] = time.perf_counter() - start
    print("\nmedian wall time per policy (s):")
    for key, value in report["timings_median_s"].items():
        print(f"  {key}: {value:.1f}")
    args.out.mkdir(parents=True, exist_ok=True)
    from sslrobot.utils.io import atomic_write_json

    atomic_write_json(args.out / "summary.json", {**report, "rows": rows})
    print(f"\nsummary: {args.out / 'summary.json'} ({report['total_wall_time_s']:.0f}s in all)")
    return 0


def summarise(args: argparse.Namespace, rows: list[dict], labels: list[str]) -> dict[str, Any]:
    """Print the two tables and the issue's checks; return them as data."""
    report: dict[str, Any] = {"checks": {}}
    for checkpoint in ("final", "best"):
        print(
            f"\n### Success with {args.num_demos} demos, {checkpoint} checkpoint "
            f"({len(args.seeds)} seeds x {args.episodes} episodes, mean [95% CI])\n"
        )
        print("| task | " + " | ".join(labels) + " |")
        print("|---" * (len(labels) + 1) + "|")
        for env_id in args.tasks:
            cells = []
            for label in labels:
                row = find(
                    rows,
                    encoder=label,
                    env_id=env_id,
                    num_demos=args.num_demos,
                    checkpoint=checkpoint,
                    visual_preset="train",
                )
                cells.append(fmt(row["success"] if row else None))
            print(f"| {task_name(env_id)} | " + " | ".join(cells) + " |")
        report["checks"][checkpoint] = check_claims(args, rows, checkpoint)
    if args.heldout:
        print("\n### Generalisation gap (final checkpoint): train preset -> held-out preset\n")
        for env_id in args.tasks:
            for label in labels:
                pair = [
                    find(
                        rows,
                        encoder=label,
                        env_id=env_id,
                        num_demos=args.num_demos,
                        checkpoint="final",
                        visual_preset=preset,
                    )
                    for preset in ("train", "heldout")
                ]
                if all(pair):
                    print(
                        f"- {task_name(env_id)} {label}: {fmt(pair[0]['success'])} -> "
                        f"{fmt(pair[1]['success'])}"
                    )
    print(f"\n### Data efficiency on {task_name(args.efficiency_task)} (final checkpoint)\n")
    print("| demos | " + " | ".join(args.efficiency_encoders) + " |")
    print("|---" * (len(args.efficiency_encoders) + 1) + "|")
    for num_demos in sorted(set(args.efficiency_demos)):
        cells = []
        for label in args.efficiency_encoders:
            row = find(
                rows,
                encoder=label,
                env_id=args.efficiency_task,
                num_demos=num_demos,
                checkpoint="final",
                visual_preset="train",
            )
            cells.append(fmt(row["success"] if row else None))
        print(f"| {num_demos} | " + " | ".join(cells) + " |")
    return report


def check_claims(args: argparse.Namespace, rows: list[dict], checkpoint: str) -> dict[str, Any]:
    """The issue's criteria on the mean success over tasks; prints plain verdicts."""

    def mean_success(label: str) -> float | None:
        values = []
        for env_id in args.tasks:
            row = find(
                rows,
                encoder=label,
                env_id=env_id,
                num_demos=args.num_demos,
                checkpoint=checkpoint,
                visual_preset="train",
            )
            if row is None:
                return None
            values.append(row["success"]["mean"])
        return sum(values) / len(values)

    oracle, key, none = mean_success("state"), mean_success(KEY_OBJECTIVE), mean_success("none")
    scratch = mean_success("scratch")
    checks: dict[str, Any] = {
        "oracle": oracle,
        KEY_OBJECTIVE: key,
        "none": none,
        "scratch": scratch,
    }
    print()
    if None in (oracle, key, none):
        print(f"- ({checkpoint}) not all of state, {KEY_OBJECTIVE}, none were run: no verdict")
        return checks
    ratio = key / oracle if oracle > 0 else float("nan")
    checks["ratio_to_oracle"] = ratio
    checks["points_above_none"] = 100 * (key - none)
    checks["pass_80pct_oracle"] = bool(oracle > 0 and ratio >= 0.8)
    checks["pass_20pts_above_none"] = bool(key - none >= 0.2)
    print(
        f"- ({checkpoint}) mean over tasks: state oracle {100 * oracle:.0f}%, {KEY_OBJECTIVE} "
        f"{100 * key:.0f}% ({100 * ratio:.0f}% of oracle: "
        f"{'PASS' if checks['pass_80pct_oracle'] else 'FAIL'} >= 80%), none {100 * none:.0f}% "
        f"({checks['points_above_none']:+.0f} points: "
        f"{'PASS' if checks['pass_20pts_above_none'] else 'FAIL'} >= +20)"
    )
    for env_id in args.tasks:
        rows_by = {
            label: find(
                rows,
                encoder=label,
                env_id=env_id,
                num_demos=args.num_demos,
                checkpoint=checkpoint,
                visual_preset="train",
            )
            for label in (KEY_OBJECTIVE, "scratch")
        }
        if all(rows_by.values()):
            ours, theirs = rows_by[KEY_OBJECTIVE]["success"], rows_by["scratch"]["success"]
            if theirs["mean"] > ours["mean"]:
                clear = theirs["low"] > ours["high"]
                print(
                    f"- ({checkpoint}) {task_name(env_id)}: training from scratch beats the "
                    f"frozen {KEY_OBJECTIVE} encoder ({fmt(theirs)} vs {fmt(ours)}"
                    f"{', intervals do not overlap' if clear else ', intervals overlap'})"
                )
    return checks


if __name__ == "__main__":
    sys.exit(main())
