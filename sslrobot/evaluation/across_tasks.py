"""Success over several tasks at once, with intervals: the question issue 5 asks of a run.

"At least 80% of the state oracle's success on average over the three tasks and 20 points
above the frozen random encoder" is a statement about a mean over tasks, a ratio and a
difference, each of which inherits the noise of every task's training seeds and episodes. Each
(encoder, task) cell is resampled as the per-task intervals are (training seeds, then episodes
within them: ``seed_mean_resamples``), and each statistic is computed per resample from the
cells' same-index draws, so its percentile interval carries every cell's noise (rliable's way of
aggregating tasks, Agarwal et al. 2021, with the mean over tasks where rliable would take the
IQM over runs: with three tasks the IQM would drop two of them).

Within a cell the training seeds were evaluated from the same start states (one ``evaluate
--seed`` for all), so each resample draws one set of episode indices for all its seeds, as the
per-task intervals do (``statistics.stratified_bootstrap_ci``'s ``shared_episodes``): a start
state hard for every policy is one draw, not one per seed. ``outcomes_by_encoder`` orders each
seed's episodes by their start state to line them up; where seeds did not share them, drawing
the i-th episodes together is still a resampling of independent episodes, no narrower than
drawing each seed's apart. Cells are resampled independently although encoders share their
start states too, which makes the intervals of differences and ratios a little wide
(conservative). A cell whose
every episode ends alike (Navigate's 300 of 300) has nothing to resample, and a bootstrap of
it would add no width, however few its episodes: its rate is drawn instead from the Jeffreys
posterior of its count, Beta(k + 1/2, n - k + 1/2), whose central interval is a little
narrower than the Wilson interval the per-task table gives it (300 of 300: lower end 99.2%,
Wilson's 98.7%; 0 of 50: upper end 4.9%, Wilson's 7.1%), and every interval is widened to hold
its own point (those draws never reach 0 or 1 exactly). An encoder whose every episode on
every task ends alike gets Wilson's interval of the pooled count for its mean, as the
per-task table does.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from sslrobot.evaluation.statistics import (
    percentile_interval,
    seed_mean_resamples,
    wilson_interval,
)

Outcomes = Mapping[str, Mapping[str, Sequence[Sequence[float]]]]  # encoder -> task -> seeds


def outcomes_by_encoder(
    records: Iterable[Mapping[str, Any]],
    num_demos: int,
    visual_preset: str = "train",
    checkpoint: str = "final",
    algo: str = "bc",
) -> dict[str, dict[str, list[list[float]]]]:
    """Per encoder, per task, per training seed (sorted) the 0/1 outcomes of its evaluation
    episodes, ordered by their start state's seed, from evaluation records (``evaluate``'s, as
    ``sslrobot run`` writes them) of one demonstration count, look, checkpoint and algorithm;
    a policy evaluated on a task other than the one it was trained on (``policy_env_id``) is
    left out.

    Raises:
        ValueError: a record lacks its per-episode results, or one (encoder, task, seed)
            appears twice.
    """
    cells: dict[str, dict[str, dict[int, list[float]]]] = {}
    for record in records:
        if (
            record.get("num_demos") != num_demos
            or record.get("visual_preset") != visual_preset
            or record.get("checkpoint", "final") != checkpoint
            or record.get("algo", "bc") != algo
            or record.get("policy_env_id", record.get("env_id")) != record.get("env_id")
        ):
            continue
        encoder, task, seed = str(record["encoder"]), str(record["env_id"]), int(record["seed"])
        episodes = record.get("episodes")
        if not episodes:
            raise ValueError(
                f"evaluation record of {encoder!r} on {task} (seed {seed}) has no per-episode "
                "results ('episodes'); the mean over tasks resamples episodes"
            )
        by_seed = cells.setdefault(encoder, {}).setdefault(task, {})
        if seed in by_seed:
            raise ValueError(f"{encoder!r} on {task}: training seed {seed} appears twice")
        if all("seed" in e for e in episodes):
            episodes = sorted(episodes, key=lambda e: e["seed"])
        by_seed[seed] = [float(e["success"]) for e in episodes]
    return {
        encoder: {task: [by_seed[s] for s in sorted(by_seed)] for task, by_seed in tasks.items()}
        for encoder, tasks in cells.items()
    }


def _interval(point: float, resamples: np.ndarray, confidence: float) -> dict[str, float]:
    """The percentile interval, widened to hold the point itself: drawn from Jeffreys
    posteriors, a cell at 0 or n of n never resamples to exactly 0% or 100%, and a mean or
    lead made only of such cells would otherwise read "+100.0 [+99.2, +99.9]"."""
    low, high = percentile_interval(resamples, confidence)
    return {"mean": point, "low": min(low, point), "high": max(high, point)}


def _success(
    cells: Sequence[Sequence[Sequence[float]]], point: float, draws: np.ndarray, confidence: float
) -> dict[str, float]:
    """The mean's interval: the bootstrap's, or Wilson's when every episode ended alike (where
    the bootstrap would give a zero width that no finite sample can)."""
    pooled = np.concatenate([np.asarray(seed, dtype=np.float64) for cell in cells for seed in cell])
    if np.ptp(pooled) == 0.0 and np.isin(pooled, (0.0, 1.0)).all():
        _, low, high = wilson_interval(int(pooled.sum()), pooled.size, confidence)
        return {"mean": point, "low": low, "high": high}
    return _interval(point, draws, confidence)


def _cell_resamples(
    per_seed: Sequence[Sequence[float]], num_resamples: int, seed: int
) -> tuple[float, np.ndarray]:
    """One (encoder, task) cell's mean success and its resamples: the two-level bootstrap's
    (the seeds' i-th episodes drawn together where the seeds have as many), or, when every
    episode ended alike, draws from the Jeffreys posterior of the count (a constant would
    claim a certainty the cell's episodes cannot give)."""
    shared = len({len(episodes) for episodes in per_seed}) == 1
    point, resamples = seed_mean_resamples(per_seed, num_resamples, seed, shared_episodes=shared)
    if np.ptp(resamples) > 0.0:
        return point, resamples
    pooled = np.concatenate([np.asarray(s, dtype=np.float64) for s in per_seed])
    if not np.isin(pooled, (0.0, 1.0)).all():
        return point, resamples  # not outcomes: nothing binomial to draw from
    successes = float(pooled.sum())
    rng = np.random.default_rng(seed)
    draws = rng.beta(successes + 0.5, pooled.size - successes + 0.5, size=num_resamples)
    return point, draws


def success_across_tasks(
    outcomes: Outcomes,
    tasks: Sequence[str] | None = None,
    reference: str | None = "state",
    baselines: Sequence[str] = ("none", "scratch"),
    confidence: float = 0.95,
    num_resamples: int = 10_000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Each encoder's mean success over the tasks of the run, its share of
    the ``reference`` encoder's mean (the ratio of the two means, as issue 5 states its bar)
    and its lead in points (success x 100) over each baseline, with bootstrap intervals.

    Args:
        outcomes: encoder -> task -> per training seed, 0/1 outcomes per episode
            (``outcomes_by_encoder``).
        tasks: The tasks to average over (the run's); encoders not evaluated on every one of
            them are left out, tasks beyond them ignored. Default: the tasks every encoder was
            evaluated on.
        reference: The encoder whose mean is the denominator of the share (the state oracle);
            None or absent: no share. A resample where its mean is 0 gives an infinite
            share, so an interval's upper end may be ``inf``.
        baselines: Encoders to give the lead over; absent ones are skipped.
        confidence: Coverage of the intervals.
        num_resamples: Bootstrap resamples per cell.
        seed: Base seed; each cell's resampling is seeded by it and the cell's names alone,
            so adding an encoder leaves the others' intervals over the same tasks as they were.

    Returns:
        One dict per encoder evaluated on every task (in ``outcomes``' order): ``encoder``,
        ``tasks`` (sorted), ``success`` ``{"mean", "low", "high"}`` (a rate),
        ``of_reference`` (a ratio, or None for the reference itself, or when the reference is
        absent or its mean over the tasks is 0; its ``high`` None, unbounded, when a resample
        of the reference's mean was 0) and ``gain_over``
        ``{baseline: {"mean", "low", "high"}}`` in points. Empty with fewer than two tasks.
    """
    if tasks is None:
        shared = [set(by_task) for by_task in outcomes.values()]
        tasks = sorted(set.intersection(*shared)) if shared else []
    tasks = sorted(tasks)
    outcomes = {e: by_task for e, by_task in outcomes.items() if set(tasks) <= set(by_task)}
    if len(tasks) < 2 or not outcomes:
        return []
    points: dict[str, float] = {}
    draws: dict[str, np.ndarray] = {}
    for encoder, by_task in outcomes.items():
        cells = [
            _cell_resamples(
                by_task[task], num_resamples, seed + zlib.crc32(f"{encoder}|{task}".encode())
            )
            for task in tasks
        ]
        points[encoder] = float(np.mean([point for point, _ in cells]))
        draws[encoder] = np.mean([resamples for _, resamples in cells], axis=0)
    has_reference = reference in outcomes and points[reference] > 0
    rows = []
    for encoder in outcomes:
        row: dict[str, Any] = {
            "encoder": encoder,
            "tasks": tasks,
            "success": _success(
                [outcomes[encoder][task] for task in tasks],
                points[encoder],
                draws[encoder],
                confidence,
            ),
            "of_reference": None,
            "gain_over": {},
        }
        if has_reference and encoder != reference:
            assert reference is not None
            denominator = draws[reference]
            with np.errstate(divide="ignore", invalid="ignore"):
                shares = np.where(denominator > 0, draws[encoder] / denominator, np.inf)
            share = _interval(points[encoder] / points[reference], shares, confidence)
            if not np.isfinite(share["high"]):  # JSON has no inf (it was written "Infinity")
                share["high"] = None
            row["of_reference"] = share
        for baseline in baselines:
            if baseline in outcomes and baseline != encoder:
                row["gain_over"][baseline] = _interval(
                    100.0 * (points[encoder] - points[baseline]),
                    100.0 * (draws[encoder] - draws[baseline]),
                    confidence,
                )
        rows.append(row)
    return rows
