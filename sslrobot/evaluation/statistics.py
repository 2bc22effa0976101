"""Confidence intervals and robust aggregates for evaluation numbers, deterministic per seed."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

# Resample in chunks so that memory stays bounded (chunk rows x sample size indices).
_MAX_INDICES_PER_CHUNK = 2_000_000


def _as_1d(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty; need at least one value")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf: {array[~np.isfinite(array)][:5].tolist()}")
    return array


def _check_bootstrap_args(confidence: float, num_resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")


def _percentile_interval(statistics: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(statistics, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    num_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``values`` with a percentile-bootstrap confidence interval.

    The percentile bootstrap (Efron & Tibshirani 1993) makes no normality assumption, but it
    cannot see past its sample: N equal values give a zero-width interval. For success rates
    use ``success_interval``, which falls back on Wilson's interval there.

    Args:
        values: Sample, shape (N,), finite.
        confidence: Coverage of the interval, in (0, 1).
        num_resamples: Number of bootstrap resamples.
        seed: Seed of the resampling RNG; the same inputs and seed give the same interval.

    Returns:
        ``(mean, low, high)``. With one value, or all values equal, the interval is that value.
    """
    sample = _as_1d(values, "values")
    _check_bootstrap_args(confidence, num_resamples)
    if np.ptp(sample) == 0.0:
        constant = float(sample[0])
        return constant, constant, constant
    rng = np.random.default_rng(seed)
    n = sample.size
    chunk = max(1, _MAX_INDICES_PER_CHUNK // n)
    means = np.empty(num_resamples, dtype=np.float64)
    for start in range(0, num_resamples, chunk):
        stop = min(start + chunk, num_resamples)
        indices = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = sample[indices].mean(axis=1)
    low, high = _percentile_interval(means, confidence)
    return float(sample.mean()), low, high


def stratified_bootstrap_ci(
    per_seed_values: Sequence[Sequence[float] | np.ndarray],
    confidence: float = 0.95,
    num_resamples: int = 10_000,
    seed: int = 0,
    resample_seeds: bool = True,
    shared_episodes: bool = False,
) -> tuple[float, float, float]:
    """Mean of per-seed means with a bootstrap interval over training seeds and episodes.

    Evaluation results are episodes within training seeds. The point estimate is the mean
    over training seeds of each seed's mean over its episodes, so every seed weighs the same
    whatever its episode count (as rliable aggregates runs).

    With ``resample_seeds=True`` (default) the bootstrap is two-level: draw seeds with
    replacement, then episodes with replacement within each drawn seed. The interval then
    covers seed-to-seed variation, the larger source of error with few seeds (Agarwal et al.
    2021). With ``resample_seeds=False`` seeds are strata: every seed is kept and only its
    episodes are resampled, which covers episode noise only (not rliable's stratified
    bootstrap, whose strata are tasks and which resamples the runs, as the default does
    within a task).

    With ``shared_episodes=True`` the seeds were evaluated from the same start states, episode
    i of every seed from the same one (``sslrobot evaluate``'s ``--seed`` is the same for every
    training seed of a configuration): the design is crossed, not nested, and one vector of
    episode indices is drawn per resample for all the seeds. How hard a start state is then
    moves every seed's rate together, a part of the error that resampling each seed's episodes
    on its own does not see: with start states whose difficulty explains half the outcomes'
    variance, the nested resampling's 95% intervals held the true rate 89% of the time, the
    crossed one's 97% (``python scripts/check_interval_coverage.py --episode-spread``).

    Args:
        per_seed_values: One sequence per training seed, shape (num_episodes_s,), finite.
        confidence: Coverage of the interval, in (0, 1).
        num_resamples: Number of bootstrap resamples.
        seed: Seed of the resampling RNG.
        resample_seeds: Whether to resample seeds as well as episodes.
        shared_episodes: Whether episode i of every seed began from the same start state
            (every seed then has as many episodes).

    Returns:
        ``(mean of seed means, low, high)``.
    """
    point, estimates = seed_mean_resamples(
        per_seed_values, num_resamples, seed, resample_seeds, shared_episodes
    )
    _check_bootstrap_args(confidence, num_resamples)
    if np.ptp(estimates) == 0.0 and estimates[0] == point:  # every value alike
        return point, point, point
    low, high = _percentile_interval(estimates, confidence)
    return point, low, high


def seed_mean_resamples(
    per_seed_values: Sequence[Sequence[float] | np.ndarray],
    num_resamples: int = 10_000,
    seed: int = 0,
    resample_seeds: bool = True,
    shared_episodes: bool = False,
) -> tuple[float, np.ndarray]:
    """The mean of per-seed means and its bootstrap distribution (``stratified_bootstrap_ci``'s
    resampling), for statistics built from several of them: a mean over tasks, a ratio or a
    difference of two encoders' means, each resample combined with the others' same-index one.

    Returns:
        ``(mean of seed means, resampled means (num_resamples,))``; when every value is alike,
        every resample is that value.

    Raises:
        ValueError: no seed, a bad value, or ``shared_episodes`` with seeds whose episode
            counts differ.
    """
    if len(per_seed_values) == 0:
        raise ValueError("per_seed_values is empty; need at least one training seed")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    hint = " (one sequence of episode values per training seed: [[...]] for one seed)"
    groups = [_as_1d(v, f"per_seed_values[{i}]{hint}") for i, v in enumerate(per_seed_values)]
    if shared_episodes and len({g.size for g in groups}) > 1:
        raise ValueError(
            "shared_episodes needs as many episodes for every seed (episode i of each from the "
            f"same start state), got {[g.size for g in groups]}"
        )
    if all(np.ptp(g) == 0.0 for g in groups) and len({float(g[0]) for g in groups}) == 1:
        constant = float(groups[0][0])  # exactly, not a mean that rounds
        return constant, np.full(num_resamples, constant)
    point = float(np.mean([g.mean() for g in groups]))
    rng = np.random.default_rng(seed)
    num_seeds = len(groups)
    largest = max(g.size for g in groups)
    chunk = max(1, _MAX_INDICES_PER_CHUNK // (num_seeds * largest))
    stacked = np.stack(groups) if shared_episodes else None
    estimates = np.empty(num_resamples, dtype=np.float64)
    for start in range(0, num_resamples, chunk):
        rows = min(start + chunk, num_resamples) - start
        if resample_seeds:
            chosen = rng.integers(0, num_seeds, size=(rows, num_seeds))
        else:
            chosen = np.broadcast_to(np.arange(num_seeds), (rows, num_seeds))
        if stacked is not None:
            episodes = rng.integers(0, largest, size=(rows, largest))  # one draw for all seeds
            per_seed = stacked[:, episodes].mean(axis=2)  # (num_seeds, rows)
            picked = np.take_along_axis(per_seed.T, chosen, axis=1)
            estimates[start : start + rows] = picked.mean(axis=1)
            continue
        seed_means = np.empty((rows, num_seeds), dtype=np.float64)
        for s, group in enumerate(groups):
            mask = chosen == s
            count = int(mask.sum())
            if count:
                draws = rng.integers(0, group.size, size=(count, group.size))
                seed_means[mask] = group[draws].mean(axis=1)
        estimates[start : start + rows] = seed_means.mean(axis=1)
    return point, estimates


def percentile_interval(resamples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of a bootstrap distribution (percentile method);
    values may be infinite (a ratio whose denominator was resampled to 0): the interval's ends
    are then taken without interpolation, so an infinite end says so rather than NaN."""
    values = np.asarray(resamples, dtype=np.float64)
    if values.ndim != 1 or values.size == 0 or np.isnan(values).any():
        raise ValueError(f"resamples must be a non-empty 1-D array without NaN, got {values!r}")
    _check_bootstrap_args(confidence, values.size)
    if np.isfinite(values).all():
        return _percentile_interval(values, confidence)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def success_interval(
    per_seed_successes: Sequence[Sequence[float] | np.ndarray],
    confidence: float = 0.95,
    num_resamples: int = 10_000,
    seed: int = 0,
    resample_seeds: bool = True,
    shared_episodes: bool = False,
) -> tuple[float, float, float]:
    """Mean success over training seeds with an interval no narrower than Wilson's.

    One training seed's episodes are a binomial sample, for which Wilson's score interval is
    the standard: a percentile bootstrap of it undercovers near 0 and 1 (at 50 episodes, about
    85% coverage at a true rate of 6%, and 1 success in 50 got a lower upper bound than 0 in
    50) and has zero width when every episode ends alike (0 in 50 would read [0, 0], a
    certainty 50 episodes cannot give). So one seed gets Wilson's interval of its count.
    Several seeds get ``stratified_bootstrap_ci``'s interval, which carries the seeds' spread,
    widened where needed to cover Wilson's interval of the pooled count, the width the
    episodes alone already call for.

    Args:
        per_seed_successes: One sequence of 0/1 outcomes per training seed (a single seed's
            evaluation: one sequence).
        confidence, num_resamples, seed, resample_seeds, shared_episodes: As
            ``stratified_bootstrap_ci``.

    Returns:
        ``(mean of seed means, low, high)``.
    """
    if len(per_seed_successes) == 0:
        raise ValueError("per_seed_successes is empty; need at least one training seed")
    pooled = np.concatenate([_as_1d(v, "per_seed_successes") for v in per_seed_successes])
    if not np.isin(pooled, (0.0, 1.0)).all():
        raise ValueError(f"success outcomes must be 0 or 1, got {sorted(set(pooled.tolist()))}")
    counts = {len(v) for v in per_seed_successes}
    # Wilson's interval of the pooled episodes, around the estimate reported: the mean of the
    # seeds' rates, which is the pooled rate only when every seed has as many episodes (10 of
    # 10 and 0 of 90 gave 0.5 with Wilson's [0.06, 0.17] of 10 in 100).
    successes = (
        float(pooled.sum())
        if len(counts) == 1
        else float(np.mean([np.mean(v) for v in per_seed_successes])) * pooled.size
    )
    _, wilson_low, wilson_high = wilson_interval(successes, pooled.size, confidence)
    if len(per_seed_successes) == 1:
        _check_bootstrap_args(confidence, num_resamples)
        return float(pooled.mean()), wilson_low, wilson_high
    mean, low, high = stratified_bootstrap_ci(
        per_seed_successes, confidence, num_resamples, seed, resample_seeds, shared_episodes
    )
    return mean, min(low, wilson_low), max(high, wilson_high)


def interquartile_mean(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the middle 50% of ``values`` (IQM, Agarwal et al. 2021).

    Robust to a few outlier runs yet less noisy than the median. Cuts ``floor(0.25 * N)``
    values from each end, as ``scipy.stats.trim_mean(values, 0.25)`` does.

    Args:
        values: Sample, shape (N,), finite.
    """
    sample = np.sort(_as_1d(values, "values"))
    cut = int(0.25 * sample.size)
    return float(sample[cut : sample.size - cut].mean())


def intervals_overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two closed intervals ``(low, high)`` share at least one point.

    Overlapping 95% intervals do not prove two means equal, but non-overlapping ones are a
    conservative sign of a real difference; the report words its verdict accordingly.
    """
    for name, interval in (("a", a), ("b", b)):
        if len(interval) != 2:
            raise ValueError(f"interval {name} must be (low, high), got {tuple(interval)}")
        if not interval[0] <= interval[1]:
            raise ValueError(f"interval {name} has low > high: {tuple(interval)}")
    return bool(a[0] <= b[1] and b[0] <= a[1])


def wilson_interval(
    num_successes: float, num_trials: int, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Success proportion with the Wilson score interval (Wilson 1927).

    ``num_successes`` may be fractional: a rate times the trials, as ``success_interval``
    gives it for seeds with unequal episode counts.

    Unlike the normal approximation it stays inside [0, 1] and is not degenerate at 0 or N
    successes, which is common for easy or impossible tasks.

    Returns:
        ``(proportion, low, high)``.
    """
    if num_trials < 1:
        raise ValueError(f"num_trials must be >= 1, got {num_trials}")
    if not 0 <= num_successes <= num_trials:
        raise ValueError(f"num_successes must be in [0, {num_trials}], got {num_successes}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = num_successes / num_trials
    denominator = 1.0 + z * z / num_trials
    centre = (p + z * z / (2.0 * num_trials)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / num_trials + z * z / (4.0 * num_trials**2)) / denominator
    # At 0 or N successes the bound is exactly 0 or 1; rounding would leave 1e-17 there.
    low = 0.0 if num_successes == 0 else max(0.0, centre - half)
    high = 1.0 if num_successes == num_trials else min(1.0, centre + half)
    return p, low, high
