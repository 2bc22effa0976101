"""Which of several ``sslrobot run`` variants would online validation pick, policy by policy,
and what do the picked policies score on the evaluation episodes?

A setting that helps one task and hurts another (session 40: the first frame's features as
context, +7.5 points on Reach, -3 to -5 on Push) may only be chosen per task on episodes the
reported score does not use. Every BC policy of a run with ``bc_val_episodes`` logs its
success on validation seeds (1,000,000 on, apart from demonstrations and evaluation) at each
check (``logs/bc.csv``). For every (task, encoder, demonstrations, training seed) this takes
each variant's mean validation success over the checks, picks the variant with the highest
(ties: the first named), and reports that variant's evaluation success for the seed. The
evaluation episodes choose nothing, so the picked row is an honest score of "choose the
setting by validation". The logged checks replay the same few episodes (the preset's 10)
at every check, so they know 10 start states; ``--episodes N`` instead rolls each policy's
checkpoint out on N validation episodes of its own, reset seeds 1,100,000 on
(``SELECTION_SEED_BASE``, as ``sslrobot run --set bc_context=auto`` chooses: past the
policies' own validation seeds, apart from every other range), and picks on those. Usage
(each ``--run`` is ``LABEL=DIR``; a label may name several directories, one per task):

    python scripts/select_by_validation.py --run none=runs/s42/reach --run none=runs/s42/push \
        --run first=runs/s42/reach_first --run first=runs/s42/push_first --episodes 100

Prints, per task and encoder, each variant's evaluation success (mean over training seeds,
then per seed) and mean validation success, the variant picked for each seed, and the picked
policies' evaluation success; then, over the tasks every variant holds, each encoder's mean
success, its share of the state oracle's and its lead over ``none`` (point estimates: the
run's report gives intervals for a single variant).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

from sslrobot.policy.config import SELECTION_SEED_BASE as SELECTION_SEED

#: A policy: (task slug, encoder, demonstrations, training seed).
Key = tuple[str, str, int, int]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="LABEL=DIR",
        help="a variant's run directory (repeat; a label may name one directory per task)",
    )
    parser.add_argument("--checkpoint", default="final", choices=("final", "best"))
    parser.add_argument(
        "--episodes",
        type=int,
        default=0,
        help="pick on this many fresh validation episodes per policy (default: 0, the "
        "logged online checks)",
    )
    args = parser.parse_args()
    args.variants = defaultdict(list)
    for item in args.run:
        label, sep, directory = item.partition("=")
        if not sep or not label or not directory:
            parser.error(f"--run takes LABEL=DIR, got {item!r}")
        if not (Path(directory) / "results.json").is_file():
            parser.error(f"--run {item}: {directory} holds no results.json (a finished run)")
        args.variants[label].append(Path(directory))
    if len(args.variants) < 2:
        parser.error("name at least two variants to choose between")
    return args


def evaluation_success(run: Path, checkpoint: str) -> dict[Key, float]:
    """Success on the run's train-look evaluation episodes of every BC policy, by policy."""
    results = json.loads((run / "results.json").read_text())
    scores: dict[Key, float] = {}
    for record in results["aggregated"]:
        if record.get("algo", "bc") != "bc" or record.get("visual_preset", "train") != "train":
            continue
        if record.get("checkpoint", "final") != checkpoint or "success_per_seed" not in record:
            continue
        slug = record["env_id"].split("/")[-1]
        for seed, rate in zip(record["seeds"], record["success_per_seed"], strict=True):
            scores[(slug, record["encoder"], int(record["num_demos"]), int(seed))] = rate
    return scores


def policy_dir(run: Path, key: Key) -> Path:
    slug, encoder, demos, seed = key
    return run / slug / "policy" / encoder / f"demos{demos}" / f"seed{seed}" / "policy"


def validation_success(run: Path, key: Key, episodes: int, checkpoint: str) -> float:
    """One policy's success on ``episodes`` fresh validation episodes, or (0) its mean over
    the online validation checks it logged.

    Raises:
        SystemExit: naming the policy's log when it holds no validation success (the run
            had no ``bc_val_episodes``).
    """
    if episodes:
        from sslrobot.evaluation.evaluate import evaluate

        directory = policy_dir(run, key)
        record = evaluate(
            directory, num_episodes=episodes, seed=SELECTION_SEED, checkpoint=checkpoint
        )
        return float(record["success_rate"])
    log = policy_dir(run, key) / "logs"
    with (log / "bc.csv").open() as file:
        rows = list(csv.DictReader(file))
    values = [float(row["eval/val_success"]) for row in rows if row.get("eval/val_success")]
    if not values:
        raise SystemExit(f"{log / 'bc.csv'} holds no validation success: run with bc_val_episodes")
    return sum(values) / len(values)


def main() -> None:
    args = parse_args()
    source = "the logged online checks"
    if args.episodes:
        source = f"{args.episodes} episodes from seed {SELECTION_SEED}"
    print(f"select_by_validation: checkpoint={args.checkpoint}, validation on {source}:")
    for label, runs in args.variants.items():
        print(f"  {label}: {', '.join(str(r) for r in runs)}")
    tests: dict[str, dict[Key, float]] = {label: {} for label in args.variants}
    home: dict[str, dict[Key, Path]] = {label: {} for label in args.variants}
    for label, runs in args.variants.items():
        for run in runs:
            scores = evaluation_success(run, args.checkpoint)
            tests[label].update(scores)
            home[label].update(dict.fromkeys(scores, run))
    shared = sorted(set.intersection(*(set(t) for t in tests.values())))
    if not shared:
        raise SystemExit("the variants share no policy (task, encoder, demos, seed)")
    validation = {
        label: {
            key: validation_success(home[label][key], key, args.episodes, args.checkpoint)
            for key in shared
        }
        for label in tests
    }
    # max keeps the first of equal values: ties go to the first variant named.
    picked = {key: max(tests, key=lambda label: validation[label][key]) for key in shared}
    groups: dict[tuple[str, str, int], list[Key]] = defaultdict(list)
    for key in shared:
        groups[key[:3]].append(key)
    table: dict[str, dict[tuple[str, str, int], float]] = {"picked": {}}
    for group, keys in sorted(groups.items()):
        print(f"\n{group[0]} {group[1]} ({group[2]} demos)")
        for label in tests:
            rates = [tests[label][key] for key in keys]
            checks = [validation[label][key] for key in keys]
            table.setdefault(label, {})[group] = mean(rates)
            print(
                f"  {label:>8}: success {percent(mean(rates))} ({per_seed(rates)}), "
                f"validation {percent(mean(checks))} ({per_seed(checks)})"
            )
        table["picked"][group] = mean([tests[picked[key]][key] for key in keys])
        choices = " / ".join(picked[key] for key in keys)
        print(f"  {'picked':>8}: success {percent(table['picked'][group])} ({choices})")
    print("\nover the tasks (point estimates)")
    tasks = sorted({group[0] for group in groups})
    for demos in sorted({group[2] for group in groups}):
        for label, by_group in table.items():
            overall = {
                encoder: mean([by_group[(task, encoder, demos)] for task in tasks])
                for encoder in sorted({group[1] for group in groups})
                if all((task, encoder, demos) in by_group for task in tasks)
            }
            cells = [f"{encoder} {percent(value)}" for encoder, value in overall.items()]
            for encoder, value in overall.items():
                if encoder in ("none", "state", "scratch") or not overall.get("state"):
                    continue
                lead = value - overall["none"] if "none" in overall else float("nan")
                cells.append(
                    f"{encoder}: {100 * value / overall['state']:.0f}% of state, "
                    f"{100 * lead:+.1f} over none"
                )
            print(f"  {demos} demos, {label:>8}: {'; '.join(cells)}")


def percent(value: float) -> str:
    return f"{100 * value:5.1f}%"


def per_seed(values: list[float]) -> str:
    return " / ".join(f"{100 * value:.0f}" for value in values)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


if __name__ == "__main__":
    main()
