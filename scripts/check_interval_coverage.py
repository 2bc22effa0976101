"""How honest are the report's 95% intervals with 3 training seeds? A simulation.

Every success rate the package reports is a two-level bootstrap (training seeds, then their
evaluation episodes), widened to Wilson's interval of the pooled count where that is wider;
one training seed's is Wilson's (``statistics.success_interval``), and the report calls two encoders
apart when their intervals do not overlap. With few seeds a percentile bootstrap runs narrow
when the seeds themselves differ (a policy's success moves by several points with its training
seed). This draws, for each trial, per-seed true success rates around a base rate (normal, with
the seed spread given, clipped to [0, 1]), then each seed's episodes, and prints:

- coverage: how often the interval holds the base rate (the population's mean over training
  seeds; where the clipping to [0, 1] bites, as at 3% with a spread of 2 points, the clipped
  population's mean sits a little above it, 3.06% there);
- for two encoders with the same base rate: how often the report's overlap test calls them
  apart, and how often the bootstrap interval of their difference excludes 0 (the test a
  session-24 change used for verdicts and withdrew for this reason).

    python scripts/check_interval_coverage.py                       # 3 seeds x 100 episodes
    python scripts/check_interval_coverage.py --seeds 5 --trials 2000
"""

from __future__ import annotations

import argparse

import numpy as np

from sslrobot.evaluation.statistics import (
    intervals_overlap,
    percentile_interval,
    seed_mean_resamples,
    success_interval,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per encoder")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per seed")
    parser.add_argument("--rate", type=float, default=0.2, help="base success rate")
    parser.add_argument(
        "--spreads",
        type=float,
        nargs="+",
        default=[0.0, 0.04, 0.08],
        help="standard deviations of the per-seed true rate",
    )
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument(
        "--resamples",
        type=int,
        default=2000,
        help="bootstrap resamples (the package uses 10,000; 2,000 keeps the simulation short)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def draw_outcomes(
    rng: np.random.Generator, rate: float, spread: float, seeds: int, episodes: int
) -> tuple[list[np.ndarray], float]:
    """One encoder's 0/1 outcomes per training seed, and the mean of its seeds' true rates."""
    true_rates = np.clip(rate + spread * rng.standard_normal(seeds), 0.0, 1.0)
    outcomes = [(rng.random(episodes) < p).astype(np.float64) for p in true_rates]
    return outcomes, float(true_rates.mean())


def main() -> None:
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    print(
        f"# {args.seeds} seeds x {args.episodes} episodes, base rate {args.rate}, "
        f"{args.trials} trials, {args.resamples} bootstrap resamples, 95% intervals"
    )
    print("seed spread (points) | coverage of the base rate | equal pair called apart: "
          "overlap test | difference's interval excludes 0")  # fmt: skip
    for spread in args.spreads:
        covered = overlap_apart = difference_apart = 0
        for trial in range(args.trials):
            first, _ = draw_outcomes(rng, args.rate, spread, args.seeds, args.episodes)
            second, _ = draw_outcomes(rng, args.rate, spread, args.seeds, args.episodes)
            a = success_interval(first, num_resamples=args.resamples, seed=2 * trial)
            b = success_interval(second, num_resamples=args.resamples, seed=2 * trial + 1)
            covered += a[1] <= args.rate <= a[2]
            overlap_apart += not intervals_overlap(a[1:], b[1:])
            _, draws_a = seed_mean_resamples(first, args.resamples, 2 * trial)
            _, draws_b = seed_mean_resamples(second, args.resamples, 2 * trial + 1)
            low, high = percentile_interval(draws_a - draws_b)
            difference_apart += not low <= 0.0 <= high
        n = args.trials
        print(
            f"{100 * spread:20.0f} | {100 * covered / n:25.1f}% | "
            f"{100 * overlap_apart / n:35.1f}% | {100 * difference_apart / n:30.1f}%",
            flush=True,
        )


if __name__ == "__main__":
    main()
