"""The mean over tasks with intervals (issue 5's bar): numbers, intervals and what they skip."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from sslrobot.evaluation.across_tasks import outcomes_by_encoder, success_across_tasks
from sslrobot.evaluation.report import render_markdown
from sslrobot.evaluation.statistics import (
    percentile_interval,
    seed_mean_resamples,
    wilson_interval,
)


def _outcomes(rates: dict[str, dict[str, list[float]]], episodes: int = 50) -> dict:
    """0/1 outcomes with the given per-seed success rates (deterministic order)."""
    return {
        encoder: {
            task: [
                [1.0] * round(r * episodes) + [0.0] * (episodes - round(r * episodes))
                for r in seeds
            ]
            for task, seeds in by_task.items()
        }
        for encoder, by_task in rates.items()
    }


RATES = {
    "fdm+future": {"A": [0.4, 0.3, 0.5], "B": [0.2, 0.1, 0.3]},
    "none": {"A": [0.2, 0.2, 0.3], "B": [0.0, 0.1, 0.06]},
    "state": {"A": [0.9, 0.8, 0.9], "B": [0.7, 0.8, 0.8]},
}


def test_points_are_the_means_over_tasks_their_ratio_and_difference() -> None:
    rows = {r["encoder"]: r for r in success_across_tasks(_outcomes(RATES), num_resamples=2000)}
    fdm = np.mean([np.mean(RATES["fdm+future"][t]) for t in "AB"])
    none = np.mean([np.mean(RATES["none"][t]) for t in "AB"])
    state = np.mean([np.mean(RATES["state"][t]) for t in "AB"])
    assert rows["fdm+future"]["success"]["mean"] == pytest.approx(fdm)
    assert rows["fdm+future"]["of_reference"]["mean"] == pytest.approx(fdm / state)
    assert rows["fdm+future"]["gain_over"]["none"]["mean"] == pytest.approx(100 * (fdm - none))
    assert rows["state"]["of_reference"] is None  # not its own share
    assert "none" not in rows["none"]["gain_over"] and "scratch" not in rows["none"]["gain_over"]
    for row in rows.values():
        for value in [row["success"], row["of_reference"], *row["gain_over"].values()]:
            if value is not None:
                assert value["low"] < value["mean"] < value["high"]
        assert row["tasks"] == ["A", "B"]


def test_each_cell_is_resampled_as_the_per_task_interval_is() -> None:
    """The mean over tasks is made of the per-task table's resampling (seeds, then the
    episodes they share), each cell seeded by its names: the same draws, averaged."""
    outcomes = _outcomes(RATES)
    (row,) = [
        r for r in success_across_tasks(outcomes, num_resamples=500) if r["encoder"] == "none"
    ]
    cells = [
        seed_mean_resamples(
            outcomes["none"][t], 500, zlib.crc32(f"none|{t}".encode()), shared_episodes=True
        )[1]
        for t in "AB"
    ]
    low, high = percentile_interval(np.mean(cells, axis=0))
    assert (row["success"]["low"], row["success"]["high"]) == (low, high)


def test_intervals_are_deterministic_and_do_not_move_when_an_encoder_is_added() -> None:
    outcomes = _outcomes(RATES)
    first = success_across_tasks(outcomes, num_resamples=1000, seed=3)
    assert first == success_across_tasks(outcomes, num_resamples=1000, seed=3)
    more = dict(outcomes, scratch=_outcomes({"s": {"A": [0.3, 0.2, 0.3], "B": [0.1] * 3}})["s"])
    again = {r["encoder"]: r for r in success_across_tasks(more, num_resamples=1000, seed=3)}
    for row in first:
        assert again[row["encoder"]]["success"] == row["success"]
        assert again[row["encoder"]]["of_reference"] == row["of_reference"]
    assert "scratch" in again["fdm+future"]["gain_over"]


def test_encoders_missing_a_task_are_left_out_and_extra_tasks_ignored() -> None:
    outcomes = _outcomes(RATES)
    outcomes["partial"] = {"A": outcomes["none"]["A"]}
    names = [r["encoder"] for r in success_across_tasks(outcomes, tasks=["A", "B"])]
    assert names == ["fdm+future", "none", "state"]
    # An encoder evaluated on one more task does not take the others out (nor move them).
    outcomes = _outcomes(RATES)
    base = success_across_tasks(outcomes, num_resamples=300)
    outcomes["extra"] = {**outcomes["none"], "C": outcomes["none"]["A"]}
    rows = {r["encoder"]: r for r in success_across_tasks(outcomes, num_resamples=300)}
    assert list(rows) == ["fdm+future", "none", "state", "extra"]
    assert rows["extra"]["tasks"] == ["A", "B"]
    for row in base:
        assert rows[row["encoder"]]["success"] == row["success"]
    assert success_across_tasks({"e": {"A": [[1.0, 0.0]]}}, num_resamples=100) == []
    assert success_across_tasks({}, num_resamples=100) == []


def test_a_reference_resampled_to_zero_gives_an_open_share_not_none() -> None:
    rates = {
        "e": {"A": [0.2, 0.1, 0.2], "B": [0.1] * 3},
        "state": {"A": [0.06, 0, 0], "B": [0.04, 0, 0]},
    }
    (row, _) = success_across_tasks(_outcomes(rates), num_resamples=2000)
    share = row["of_reference"]
    expected = (0.5 / 3 + 0.1) / 2 / (0.1 / 3 / 2)
    # Unbounded above, as None: results.json held "Infinity", which strict JSON parsers refuse.
    assert share["mean"] == pytest.approx(expected) and share["high"] is None
    json.dumps(row, allow_nan=False)


def test_a_mean_whose_every_episode_ended_alike_gets_wilson_s_interval() -> None:
    """As the per-task table: 120 of 120 is not a certainty, nor 0 of 120."""
    outcomes = {
        "e": {"A": [[1.0] * 20] * 3, "B": [[1.0] * 20] * 3},
        "z": {"A": [[0.0] * 20] * 3, "B": [[0.0] * 20] * 3},
    }
    rows = success_across_tasks(outcomes, reference=None, num_resamples=200)
    assert rows[0]["success"] == pytest.approx(
        {"mean": 1.0, "low": wilson_interval(120, 120)[1], "high": 1.0}
    )
    assert rows[1]["success"]["low"] == 0.0 and 0.0 < rows[1]["success"]["high"] < 0.05
    # A cell alike among others: the mean's interval comes mostly from the rest.
    mixed = {"e": {"A": [[1.0] * 20] * 3, "B": _outcomes({"x": {"B": [0.5, 0.4, 0.6]}})["x"]["B"]}}
    (row,) = success_across_tasks(mixed, reference=None, num_resamples=500)
    assert row["success"]["low"] < row["success"]["mean"] < row["success"]["high"] < 1.0


def test_cells_that_each_ended_alike_still_give_the_mean_a_width() -> None:
    """Every cell all-alike but the cells differing (an oracle at 12 of 12 on two tasks and
    0 of 12 on the third): each is drawn from its count's Jeffreys posterior, so neither the
    mean nor a share built on it claims a certainty that 12 episodes per cell cannot give."""
    outcomes = {
        "state": {"A": [[1.0] * 4] * 3, "B": [[1.0] * 4] * 3, "C": [[0.0] * 4] * 3},
        "e": _outcomes({"e": {"A": [0.9] * 3, "B": [0.8] * 3, "C": [0.0] * 3}}, 200)["e"],
    }
    rows = {r["encoder"]: r for r in success_across_tasks(outcomes, num_resamples=4000)}
    state = rows["state"]["success"]
    assert state["mean"] == pytest.approx(2 / 3)
    assert state["low"] < 2 / 3 - 0.003 and state["high"] > 2 / 3 + 0.001
    # The share's interval is wider than e's own noise over a constant oracle would make it.
    share, e = rows["e"]["of_reference"], rows["e"]["success"]
    assert share["high"] - share["low"] > 1.2 * (e["high"] - e["low"]) / (2 / 3)
    # Those draws never reach 0 or 1 exactly; the intervals still hold their points.
    alike = {
        "e": {"A": [[1.0] * 10], "B": [[1.0] * 10]},
        "z": {"A": [[0.0] * 10], "B": [[0.0] * 10]},
    }
    (row, _) = success_across_tasks(alike, reference="z", baselines=("z",))
    assert row["gain_over"]["z"]["mean"] == 100.0 == row["gain_over"]["z"]["high"]
    # Wilson's pooled interval still stands in when every episode of every task ended alike.
    alike = success_across_tasks({"z": {"A": [[1.0] * 50], "B": [[1.0] * 50]}}, reference=None)
    assert alike[0]["success"]["low"] == pytest.approx(wilson_interval(100, 100)[1])


def _record(encoder: str, env_id: str, seed: int, successes: list[bool], **keys: object) -> dict:
    base = {"num_demos": 25, "visual_preset": "train", "checkpoint": "final"}
    episodes = [{"success": s} for s in successes]
    return {
        **base,
        **keys,
        "encoder": encoder,
        "env_id": env_id,
        "seed": seed,
        "episodes": episodes,
    }


def test_outcomes_are_read_from_records_of_one_count_look_and_checkpoint() -> None:
    records = [
        _record("none", "R", 1, [True, False]),
        _record("none", "R", 0, [False, False]),
        _record("none", "R", 0, [True, True], checkpoint="best"),
        _record("none", "R", 0, [True, True], visual_preset="heldout"),
        _record("none", "R", 0, [True, True], num_demos=5),
        _record("none", "R", 0, [True, True], algo="rl"),
        _record("none", "R", 3, [True, True], policy_env_id="P"),  # trained elsewhere
    ]
    assert outcomes_by_encoder(records, 25) == {"none": {"R": [[0.0, 0.0], [1.0, 0.0]]}}
    assert outcomes_by_encoder(records, 25, checkpoint="best") == {"none": {"R": [[1.0, 1.0]]}}
    with pytest.raises(ValueError, match="seed 0 appears twice"):
        outcomes_by_encoder([*records, _record("none", "R", 0, [True])], 25)
    with pytest.raises(ValueError, match="no per-episode results"):
        outcomes_by_encoder([{**_record("none", "R", 2, []), "episodes": []}], 25)


def test_outcomes_are_lined_up_by_start_state() -> None:
    """Each seed's i-th outcome must be the same start state's, since the cells draw the
    seeds' episodes together; a record whose episodes were listed in another order is sorted."""
    record = _record("none", "R", 0, [True, False, False])
    for episode, start in zip(record["episodes"], (7, 5, 6), strict=True):
        episode["seed"] = start
    assert outcomes_by_encoder([record], 25) == {"none": {"R": [[0.0, 0.0, 1.0]]}}


def test_the_report_shows_the_table_and_says_how_it_was_made(tmp_path: Path) -> None:
    rows = success_across_tasks(_outcomes(RATES), num_resamples=500)
    block = {"label": "final checkpoints", "num_demos": 25, "reference": "state", "rows": rows}
    text = render_markdown({"tasks": [], "across_tasks": [block]}, tmp_path)
    assert "## Over the tasks (25 demonstrations)" in text and "### final checkpoints" in text
    (fdm,) = [r for r in rows if r["encoder"] == "fdm+future"]
    share = fdm["of_reference"]
    (line,) = [row for row in text.splitlines() if row.startswith("| fdm+future |")]
    assert f"| {100 * share['mean']:.0f} [{100 * share['low']:.0f}, " in line  # its own row
    gain = fdm["gain_over"]["none"]
    assert f"{gain['mean']:+.1f} [{gain['low']:+.1f}, {gain['high']:+.1f}]" in line
    assert "Over the tasks" not in render_markdown({"tasks": [], "across_tasks": []}, tmp_path)
    share["high"] = None  # unbounded: a resample of the oracle's mean was 0
    text = render_markdown({"tasks": [], "across_tasks": [block]}, tmp_path)
    assert f"| {100 * share['mean']:.0f} [{100 * share['low']:.0f}, unbounded] |" in text
