"""How honest are the report's 95% intervals with 3 training seeds? A simulation.

Every success rate the package reports is a two-level bootstrap (training seeds, then their
evaluation episodes), widened to Wilson's interval of the pooled count where that is wider;
one training seed's is Wilson's (``statistics.success_interval``), and the report calls two encoders
apart when their intervals do not overlap. With few seeds a percentile bootstrap runs narrow
when the seeds themselves differ (a policy's success moves by several points with its training
seed). And every training seed is evaluated from the same start states (one ``--seed`` for all),
some of which are harder than others for every policy: that shared part of the error is seen
only by a bootstrap that draws the same episodes for all the seeds (``shared_episodes``, what
the package does since session 36), not by one that draws each seed's episodes on its own (the
nested bootstrap it did before).

For each trial this draws per-episode true rates (a Beta around the base rate with the episode
spread given as its standard deviation; the same start states for every seed and for both
encoders of a pair, as ``sslrobot run`` evaluates them), per-seed offsets (normal, with the seed
spread given), each seed's outcomes from the offset rates clipped to [0, 1], and prints:

- coverage: how often the interval holds the population's mean rate over training seeds and
  start states (the clipping to [0, 1] moves it off the base rate a little, printed), for the
  package's interval and for the nested one;
- for two encoders with the same rates: how often the report's overlap test calls them apart,
  and how often the bootstrap interval of their difference excludes 0 (the test a session-24
  change used for verdicts and withdrew for this reason).

    python scripts/check_interval_coverage.py                       # 3 seeds x 100 episodes
    python scripts/check_interval_coverage.py --seeds 5 --trials 2000
    python scripts/check_interval_coverage.py --spreads 0 0.08 --episode-spreads 0 0.2 0.35
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
    parser.add_argument(
        "--episode-spreads",
        type=float,
        nargs="+",
        default=[0.0],
        help="standard deviations of the per-episode true rate, shared by every seed",
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


def draw_start_states(
    rng: np.random.Generator, rate: float, spread: float, episodes: int
) -> np.ndarray:
    """Each start state's true rate: a Beta with mean ``rate`` and standard deviation
    ``spread`` (all ``rate`` at 0)."""
    if spread == 0.0:
        return np.full(episodes, rate)
    concentration = rate * (1.0 - rate) / spread**2 - 1.0
    if concentration <= 0.0:
        raise SystemExit(f"--episode-spreads {spread} is too wide for --rate {rate}")
    return rng.beta(rate * concentration, (1.0 - rate) * concentration, size=episodes)


def draw_outcomes(
    rng: np.random.Generator, start_rates: np.ndarray, spread: float, seeds: int
) -> list[np.ndarray]:
    """One encoder's 0/1 outcomes per training seed from the same start states."""
    offsets = spread * rng.standard_normal(seeds)
    rates = np.clip(start_rates[None, :] + offsets[:, None], 0.0, 1.0)
    return list((rng.random(rates.shape) < rates).astype(np.float64))


def population_mean(
    rng: np.random.Generator, rate: float, seed_spread: float, episode_spread: float
) -> float:
    """The mean rate over training seeds and start states that the intervals estimate."""
    start_rates = draw_start_states(rng, rate, episode_spread, 1_000_000)
    offsets = seed_spread * rng.standard_normal(start_rates.size)
    return float(np.clip(start_rates + offsets, 0.0, 1.0).mean())


def main() -> None:
    args = parse_args()
    rng = np.random.default_rng(args.seed)
    print(
        f"# {args.seeds} seeds x {args.episodes} episodes, base rate {args.rate}, "
        f"{args.trials} trials, {args.resamples} bootstrap resamples, 95% intervals"
    )
    print("seed spread | episode spread | population mean | coverage, package (crossed) | "
          "nested | equal pair apart: overlap test | difference's interval excludes 0")  # fmt: skip
    for spread in args.spreads:
        for episode_spread in args.episode_spreads:
            truth = population_mean(rng, args.rate, spread, episode_spread)
            covered = covered_nested = overlap_apart = difference_apart = 0
            for trial in range(args.trials):
                start_rates = draw_start_states(rng, args.rate, episode_spread, args.episodes)
                first = draw_outcomes(rng, start_rates, spread, args.seeds)
                second = draw_outcomes(rng, start_rates, spread, args.seeds)
                options = {"num_resamples": args.resamples, "shared_episodes": True}
                a = success_interval(first, seed=2 * trial, **options)
                b = success_interval(second, seed=2 * trial + 1, **options)
                nested = success_interval(first, num_resamples=args.resamples, seed=2 * trial)
                covered += a[1] <= truth <= a[2]
                covered_nested += nested[1] <= truth <= nested[2]
                overlap_apart += not intervals_overlap(a[1:], b[1:])
                _, draws_a = seed_mean_resamples(first, seed=2 * trial, **options)
                _, draws_b = seed_mean_resamples(second, seed=2 * trial + 1, **options)
                low, high = percentile_interval(draws_a - draws_b)
                difference_apart += not low <= 0.0 <= high
            n = args.trials
            print(
                f"{100 * spread:11.0f} | {100 * episode_spread:14.0f} | {100 * truth:14.2f}% | "
                f"{100 * covered / n:26.1f}% | {100 * covered_nested / n:5.1f}% | "
                f"{100 * overlap_apart / n:29.1f}% | {100 * difference_apart / n:30.1f}%",
                flush=True,
            )


if __name__ == "__main__":
    main()
