"""Do a run's training seeds succeed and fail on the same start states? And what that does to
its intervals.

``sslrobot run`` evaluates every training seed of a configuration from the same start states
(one ``evaluate --seed``), so a start state that is hard for one policy may be hard for all.
Until session 36 the intervals resampled each seed's episodes on their own, which cannot see
that shared part of the error; since then they draw one set of episodes for all the seeds
(``statistics.stratified_bootstrap_ci``'s ``shared_episodes``). This reads a run's evaluation
records and prints, per group (encoder, task, demonstrations, checkpoint, look):

- each seed's success rate;
- the intraclass correlation of the outcomes within a start state (one-way ANOVA over start
  states: 0 when which start state it was says nothing about success, 1 when every seed ends
  a start state alike; near 0 and below where the seeds differ more than the start states do);
- the 95% interval drawn both ways, and how much wider the shared (package's) one is.

    python scripts/check_shared_start_states.py runs/default
    python scripts/check_shared_start_states.py runs/default --look train --checkpoint final
"""

from __future__ import annotations

import argparse
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from sslrobot.evaluation.evaluate import (
    GROUP_KEYS,
    episodes_shared,
    load_results,
)
from sslrobot.evaluation.statistics import success_interval


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="an `sslrobot run --out` directory")
    parser.add_argument("--look", default="train", help="visual preset of the evaluations")
    parser.add_argument("--checkpoint", default="final", choices=("final", "best"))
    return parser.parse_args()


def evaluation_records(run: Path) -> list[dict]:
    """Every evaluation result of ``run`` (``TASK/eval/.../result.json``)."""
    paths = sorted(run.glob("*/eval/**/result.json"))
    if not paths:
        raise SystemExit(f"{run} holds no evaluation results (*/eval/**/result.json)")
    return load_results(paths)


def intraclass_correlation(outcomes: np.ndarray) -> float:
    """ICC(1) of (seeds, start states) 0/1 outcomes, start states as the groups."""
    seeds, starts = outcomes.shape
    start_means = outcomes.mean(axis=0)
    between = seeds * start_means.var(ddof=1)
    within = ((outcomes - start_means) ** 2).sum() / (starts * (seeds - 1))
    if between + (seeds - 1) * within == 0.0:
        return float("nan")  # every outcome alike
    return float((between - within) / (between + (seeds - 1) * within))


def main() -> None:
    args = parse_args()
    groups: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for record in evaluation_records(args.run):
        if (
            record["visual_preset"] == args.look
            and record.get("checkpoint", "final") == args.checkpoint
        ):
            groups[tuple(record[name] for name in GROUP_KEYS)][record["seed"]] = record
    print(f"# {args.run}, look {args.look}, {args.checkpoint} checkpoints")
    print("task | encoder | demos | seeds' success | ICC | interval, episodes drawn apart | "
          "drawn together (the package's) | width ratio")  # fmt: skip
    for key in sorted(groups, key=lambda k: tuple(str(v) for v in k)):
        labels = dict(zip(GROUP_KEYS, key, strict=True))
        by_seed = groups[key]
        episodes = [by_seed[s]["episodes"] for s in sorted(by_seed)]
        if len(episodes) < 2 or not episodes_shared(episodes):
            continue  # one seed, or seeds evaluated from other start states
        outcomes = np.array([[float(e["success"]) for e in seed] for seed in episodes])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            icc = intraclass_correlation(outcomes)
        _, low, high = success_interval(list(outcomes))
        _, shared_low, shared_high = success_interval(list(outcomes), shared_episodes=True)
        rates = " / ".join(f"{100 * rate:.0f}" for rate in outcomes.mean(axis=1))
        ratio = (shared_high - shared_low) / (high - low)
        print(
            f"{labels['env_id'].split('/')[-1]} | {labels['encoder']} | {labels['num_demos']} | "
            f"{rates}% | {icc:.2f} | [{100 * low:.1f}, {100 * high:.1f}] | "
            f"[{100 * shared_low:.1f}, {100 * shared_high:.1f}] | {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
