"""`sslrobot run --preset quick` end to end: artifacts, numbers from files, resume, errors."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from sslrobot.cli import main
from sslrobot.evaluation.report import format_ci
from sslrobot.pipeline.presets import RunConfig, make_run_config, parse_overrides
from sslrobot.pipeline.run import (
    Pipeline,
    _best_is_final,
    run_pipeline,
    warn_of_changed_settings,
    warn_of_dropped_tasks,
    warn_of_unused_run_encoders,
)

QUICK = make_run_config("quick")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    # The command line's default device ("auto"), so every stage is run the way `sslrobot run`
    # runs it without --device (evaluation once failed on "auto").
    run_pipeline(QUICK, out, device="auto", progress=False, command="pytest quick")
    return out


def test_a_rerun_with_other_tasks_keeps_the_earlier_config(tmp_path: Path) -> None:
    """Tasks are left out of the settings warning (a task added is new work, not a redo), but
    the config that named the earlier ones is kept all the same."""
    from sslrobot.pipeline.run import PREVIOUS_CONFIG, keep_previous_config

    (tmp_path / "config.json").write_text(json.dumps(QUICK.to_dict()))
    keep_previous_config(tmp_path, QUICK)
    assert not (tmp_path / PREVIOUS_CONFIG).exists()  # the same settings: nothing to keep
    more = dataclasses.replace(QUICK, tasks=(*QUICK.tasks, "sslrobot/Push-v0"))
    keep_previous_config(tmp_path, more)
    kept = json.loads((tmp_path / PREVIOUS_CONFIG).read_text())
    assert kept["tasks"] == list(QUICK.tasks)


def test_a_rerun_removes_what_writes_cut_short_by_a_kill_left(
    quick_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kill -9 skips an atomic write's cleanup: its temp file (whole weights, videos) stayed
    in the run directory after the rerun that finished the run."""
    run = shutil.copytree(quick_run, tmp_path / "run")
    weights = next(run.rglob("encoder.safetensors"))
    left = [
        run / ".results.json.lvf92l77.tmp",
        weights.with_name(".encoder.safetensors.x1_y2z3a.tmp"),
    ]
    kept = [run / ".my_notes", run / "notes.tmp", run / ".results.json.lvf92l77.png"]
    for path in (*left, *kept):
        path.write_bytes(b"partial")
    run_pipeline(QUICK, run, device="cpu", progress=False, command="pytest quick")
    assert not any(path.exists() for path in left) and all(path.exists() for path in kept)
    assert "[cleanup] removed 2 temp files" in capsys.readouterr().err


def test_quick_run_writes_every_report_artifact(quick_run: Path) -> None:
    for name in ("report.md", "report.html", "results.json", "config.json"):
        assert (quick_run / name).stat().st_size > 0, name
    assert json.loads((quick_run / "config.json").read_text()) == json.loads(
        json.dumps(QUICK.to_dict())
    )
    plots = sorted(p.name for p in (quick_run / "plots").glob("*.png"))
    assert any("success" in p for p in plots) and any("probe_r2" in p for p in plots)
    assert any("pretrain_loss" in p for p in plots)
    assert list((quick_run / "media").glob("*.gif")), "a rollout GIF per encoder is expected"
    assert list((quick_run / "media").glob("*predictions.png"))
    html = (quick_run / "report.html").read_text()
    assert "data:image/png;base64," in html and "data:image/gif;base64," in html
    assert "pytest quick" in html  # the command is at the top, so it can be rerun
    markdown = (quick_run / "report.md").read_text()
    assert markdown.index("Smoke run (quick preset)") < markdown.index("## sslrobot/Reach-v0")
    assert markdown.index("## sslrobot/Reach-v0") < markdown.index("## Run details")
    assert ("Robustness to visual change was not measured" in markdown) == (
        not json.loads((quick_run / "config.json").read_text())["heldout_eval"]
    )
    machine = json.loads((quick_run / "results.json").read_text())["header"]["machine"]
    # What a seeded CPU result depends on beyond versions: the CPU's instruction set.
    assert machine["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert machine["cpu"] and machine["cpu_count"] >= 1 and machine["platform"]
    header = json.loads((quick_run / "results.json").read_text())["header"]
    # What `evaluate --seed` takes to remake an evaluation, and how much this run made.
    assert header["seeds"]["evaluation_episodes_from"] == QUICK.seed + 300_000
    assert header["seeds"]["demonstrations_from"] == QUICK.seed + 200_000
    made = r"\d+ of \d+ made by this invocation(, the others reused .*)?"
    assert re.fullmatch(made, header["stages"])


def test_the_report_says_how_far_few_seeds_intervals_hold() -> None:
    """A review found 3 seeds' "95%" intervals holding the rate 84-93% of the time, with the
    report's notes silent (the README and findings said it)."""
    from sslrobot.pipeline.report_builder import seed_coverage_note

    assert "With 3 training seeds" in seed_coverage_note(3) and "89% at 8" in seed_coverage_note(3)
    assert seed_coverage_note(1) == seed_coverage_note(5) == ""
    # The summary named a bootstrap of training seeds where one seed's interval is Wilson's.
    from sslrobot.pipeline.report_builder import run_summary

    assert "Wilson's, of the one seed's count" in run_summary(RunConfig(policy_seeds=(0,)))
    assert "a bootstrap of training seeds" in run_summary(RunConfig(policy_seeds=(0, 1)))


def test_report_numbers_come_from_result_files(quick_run: Path) -> None:
    results = json.loads((quick_run / "results.json").read_text())["aggregated"]
    report = (quick_run / "report.md").read_text()
    for encoder in QUICK.encoder_names:
        (row,) = [r for r in results if r["encoder"] == encoder]
        result_files = list((quick_run / "Reach-v0" / "eval" / encoder).rglob("result.json"))
        assert len(result_files) == len(QUICK.policy_seeds)
        episodes = json.loads(result_files[0].read_text())["episodes"]
        assert row["success"]["mean"] == pytest.approx(np.mean([e["success"] for e in episodes]))
        success = row["success"]
        assert format_ci(success["mean"], success["low"], success["high"]) in report
    probe = json.loads((quick_run / "Reach-v0" / "probe" / "fdm+future" / "probe.json").read_text())
    assert f"{probe['probe/r2_mean']:.3f}" in report
    # results.json holds the report's table as numbers too, probe and verdict included.
    (task,) = json.loads((quick_run / "results.json").read_text())["tasks"]
    rows = {row["encoder"]: row for row in task["rows"]}
    assert task["task"] == "sslrobot/Reach-v0" and set(rows) == set(QUICK.encoder_names)
    assert rows["fdm+future"]["probe_r2"] == pytest.approx(probe["probe/r2_mean"])
    assert task["verdict"] in report


def test_each_report_row_is_its_own_encoders_results(quick_run: Path, tmp_path: Path) -> None:
    """The quick run's policies all fail, so every row reads the same and a report that gave
    every encoder another's numbers would pass the test above: here each encoder's result
    files say k of 3 episodes succeeded, another k each, and its own row must say so."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(quick_run, copy)
    expected = {}
    for k, encoder in enumerate(QUICK.encoder_names):
        for path in (copy / "Reach-v0" / "eval" / encoder).rglob("result.json"):
            record = json.loads(path.read_text())
            for i, episode in enumerate(record["episodes"]):
                episode["success"] = bool(i < k)
            record["success_rate"] = k / len(record["episodes"])
            path.write_text(json.dumps(record))
        expected[encoder] = k / 3
    run_pipeline(QUICK, copy, device="cpu", progress=False, command="pytest rows")
    rows = {r["encoder"]: r for r in json.loads((copy / "results.json").read_text())["aggregated"]}
    lines = (copy / "report.md").read_text().splitlines()
    for encoder, mean in expected.items():
        success = rows[encoder]["success"]
        assert success["mean"] == pytest.approx(mean)
        (line,) = [x for x in lines if x.startswith(f"| {encoder} |")]
        assert format_ci(success["mean"], success["low"], success["high"]) in line


def test_none_baseline_probe_is_the_mean_over_its_random_inits(quick_run: Path) -> None:
    assert QUICK.none_probe_inits == 2
    task = quick_run / "Reach-v0"
    weights = [
        (task / "pretrain" / name / "encoder" / "model.safetensors").read_bytes()
        for name in ("none", "none-init1")
    ]
    assert weights[0] != weights[1], "each init must be its own random encoder"
    r2 = [
        json.loads((task / "probe" / name / "probe.json").read_text())["probe/r2_mean"]
        for name in ("none", "none-init1", "fdm+future")
    ]
    report = (quick_run / "report.md").read_text()
    mean, std = np.mean(r2[:2]), np.std(r2[:2], ddof=1)
    assert f"{mean:.3f} ± {std:.3f} (2 inits)" in report
    assert f"{r2[2] - mean:+.3f}" in report  # fdm+future's gain over the mean random init


def test_none_baseline_averages_each_variable_and_skips_missing_means() -> None:
    from sslrobot.pipeline.report_builder import _probe_r2_over_draws

    inits = [
        {"probe/r2_mean": 0.2, "probe/r2": {"x": 0.1, "y": 0.3, "z": None}},
        {"probe/r2_mean": 0.4, "probe/r2": {"x": 0.3, "y": 0.5, "z": 0.2}},
        {"probe/r2_mean": None, "probe/r2": {"x": None, "y": None, "z": None}},
    ]
    baseline = _probe_r2_over_draws(inits[:2])
    assert baseline is not None
    assert baseline["probe_r2"] == pytest.approx(0.3) and baseline["probe_r2_inits"] == 2
    assert baseline["probe_r2_std"] == pytest.approx(np.std([0.2, 0.4], ddof=1))
    assert baseline["per_variable"] == {"x": pytest.approx(0.2), "y": pytest.approx(0.4), "z": None}
    assert _probe_r2_over_draws(inits[2:]) is None
    assert baseline["probe_r2_all_frames"] is None  # no view conditions: no second mean
    in_view = [  # Navigate-like records: the headline scored in view, the other on all frames
        {**init, "probe/view_conditions": [["x", "c", 0.5]], "probe/r2_mean_all_frames": value}
        for init, value in zip(inits[:2], (0.1, 0.2), strict=True)
    ]
    assert _probe_r2_over_draws(in_view)["probe_r2_all_frames"] == pytest.approx(0.15)
    in_view[0]["probe/r2_in_view"] = {"x": 0.9}  # the per-variable means score x in view too
    in_view[1]["probe/r2_in_view"] = {"x": 0.7}
    assert _probe_r2_over_draws(in_view)["per_variable"]["x"] == pytest.approx(0.8)


def test_rollout_gifs_show_the_main_comparison_and_end_on_the_outcome(tmp_path: Path) -> None:
    """The data-efficiency sweep's rollouts used to overwrite one GIF under their own captions;
    long episodes were cut to their first 120 frames, before the outcome their caption names."""
    from sslrobot.pipeline.report_builder import _gif_frames, _rollout_gifs

    records = []
    for num_demos, success in ((5, True), (25, False)):
        run = tmp_path / f"demos{num_demos}"
        run.mkdir()
        (run / "rollout.gif").write_bytes(f"demos {num_demos}".encode())
        records.append(
            {
                "encoder": "fdm+future", "visual_preset": "train", "num_demos": num_demos,
                "seed": 0, "videos": ["rollout.gif"],
                # the video is episode 0's; a caption from any other episode would say the
                # opposite here
                "episodes": [{"success": success}, {"success": not success}],
                "_result_path": str(run / "result.json"),
            }
        )  # fmt: skip
    media = _rollout_gifs(records, 25, "Push-v0", tmp_path / "media", tmp_path)
    assert [m["caption"] for m in media] == ["fdm+future (25 demos, training seed 0): failure"]
    assert (tmp_path / media[0]["path"]).read_bytes() == b"demos 25"
    frames = list(range(200))
    kept = _gif_frames(frames, 120)
    assert len(kept) == 120 and kept[0] == 0 and kept[-1] == 199 and kept == sorted(kept)
    assert _gif_frames(frames[:50], 120) == frames[:50]


def test_a_long_rollout_gif_plays_in_the_episodes_own_time(tmp_path: Path) -> None:
    """Thinned to 120 frames but shown 50 ms each, a 271-frame episode played 2.3x fast and
    its held outcome frames for 0.45 s instead of 1 s."""
    import imageio.v2 as imageio
    from PIL import Image

    from sslrobot.pipeline.report_builder import _video_to_gif

    frames = [np.full((16, 16, 3), i % 256, np.uint8) for i in range(240)]
    video = tmp_path / "rollout.mp4"
    imageio.mimwrite(video, frames, fps=20, macro_block_size=1)
    gif = _video_to_gif(video, tmp_path / "rollout.gif")
    assert gif is not None
    with Image.open(gif) as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
    assert len(durations) == 120 and sum(durations) == pytest.approx(12_000, rel=0.02)


def test_report_pictures_are_the_last_step_by_number() -> None:
    from sslrobot.pipeline.report_builder import _image_step

    names = [Path("step_99000.png"), Path("step_100000.png"), Path("step_00500.png")]
    assert sorted(names, key=_image_step)[-1].name == "step_100000.png"


def test_rerun_skips_finished_stages_and_reruns_only_what_changed(
    quick_run: Path, tmp_path: Path
) -> None:
    run = shutil.copytree(quick_run, tmp_path / "run")  # the fixture stays as made
    again = Pipeline(QUICK, run, device="cpu", progress=False, replace=True)
    again.run()
    assert again.runner.results and all(r.skipped for r in again.runner.results)

    changed = dataclasses.replace(QUICK, bc_steps=QUICK.bc_steps + 1)
    pipeline = Pipeline(changed, run, device="cpu", progress=False, replace=True)
    pipeline.run()
    reran = {r.name for r in pipeline.runner.results if not r.skipped}
    assert reran and all("/policy/" in name or "/eval/" in name for name in reran)
    assert any("/data/" in r.name and r.skipped for r in pipeline.runner.results)
    # The seeds listed in another order are the same work (the first listed took the videos,
    # so reordering evaluated a seed again to move them).
    two = dataclasses.replace(changed, policy_seeds=(0, 1))
    Pipeline(two, run, device="cpu", progress=False, replace=True).run()
    reordered = Pipeline(dataclasses.replace(two, policy_seeds=(1, 0)), run, device="cpu",
                         progress=False, replace=True)  # fmt: skip
    reordered.run()
    assert all(r.skipped for r in reordered.runner.results)


def test_augmented_copies_reach_the_frozen_encoders_policies_only(
    quick_run: Path, tmp_path: Path
) -> None:
    """``bc_augment_copies`` retrains the policies of frozen encoders with the copies, and
    leaves the keys of every other policy (and of runs without it) as they were."""
    import json
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(quick_run, copy)
    config = dataclasses.replace(QUICK, bc_augment_copies=1, bc_augment_color=0.5)
    pipeline = Pipeline(config, copy, device="cpu", progress=False, replace=True)
    pipeline.run()
    keys = ("augment_copies", "augment_color")
    for stage in sorted(copy.glob("*/policy/*/demos*/seed*/stage.json")):
        encoder = stage.parts[-4]
        settings = json.loads(stage.read_text())["config"]
        copied = encoder not in ("scratch", "state")
        expected = {"augment_copies": 1, "augment_color": 0.5} if copied else {}
        assert {k: v for k, v in settings.items() if k in keys} == expected, stage
        record = json.loads((stage.parent / "policy" / "policy_config.json").read_text())
        assert record["train_config"]["augment_copies"] == expected.get("augment_copies", 0)
        assert record["train_config"]["augment_color"] == expected.get("augment_color", 0.15)
    with pytest.raises(ValueError, match="bc_augment_copies must be >= 0, got -1"):
        make_run_config("quick", bc_augment_copies=-1)
    with pytest.raises(ValueError, match=r"bc_augment_color must be in \[0, 1\), got 1.0"):
        make_run_config("quick", bc_augment_color=1.0)
    with pytest.raises(ValueError, match="bc_augment_color must be a finite number, got 'x'"):
        make_run_config("quick", **parse_overrides(["bc_augment_color=x"]))
    assert (
        make_run_config("quick", **parse_overrides(["bc_augment_color=0.6"])).bc_augment_color
        == 0.6
    )


def test_first_frame_context_reaches_every_bc_head_but_scratchs(
    quick_run: Path, tmp_path: Path
) -> None:
    """``bc_context="first"`` retrains the policies of frozen encoders and the oracle with the
    context (its key in their stage settings only), keeps scratch's as it was, and evaluates
    the new policies; a context no head knows is refused up front."""
    config = dataclasses.replace(QUICK, bc_context="first")
    copy, reran = _rerun_copy(quick_run, tmp_path, config, "bc_context 'none' -> 'first'")
    stages = sorted(copy.glob("*/policy/*/demos*/seed*/stage.json"))
    assert stages
    for stage in stages:
        encoder = stage.parts[-4]
        expected = "none" if encoder == "scratch" else "first"
        assert json.loads(stage.read_text())["config"].get("context", "none") == expected
        record = json.loads((stage.parent / "policy" / "policy_config.json").read_text())
        assert record["context"] == expected
        name = str(stage.parent.relative_to(copy))
        assert (name in reran) == (encoder != "scratch"), name
    assert "Context: the BC heads of frozen encoders" in (copy / "report.md").read_text()
    with pytest.raises(ValueError, match=r"bc_context must be one of \('none', 'first', 'auto'\)"):
        make_run_config("quick", bc_context="last")


def test_auto_context_keeps_each_policys_better_candidate_on_selection_episodes(
    quick_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``bc_context="auto"``: each frozen and state head is trained with and without the
    first frame, each candidate scored on its own validation episodes, and the better one
    (ties: without) is the policy the run evaluates; scratch trains once; seeds that chose
    differently are still one configuration's (aggregated, reported); the report says what
    was kept."""
    from sslrobot.evaluation import evaluate as evaluation
    from sslrobot.pipeline.run import CONTEXT_CHOICE

    real = evaluation.evaluate

    def selecting(policy_dir, *args, seed=0, **kwargs):
        record = real(policy_dir, *args, seed=seed, **kwargs)
        if seed == 1_100_000:  # the candidates' episodes: seed 0 keeps the context, others not
            first = "/candidates/first/" in str(policy_dir)
            keeps = "/seed0/" in str(policy_dir)
            record["success_rate"] = 1.0 if first == keeps else 0.0
        return record

    monkeypatch.setattr(evaluation, "evaluate", selecting)
    config = dataclasses.replace(QUICK, bc_context="auto", bc_select_episodes=2,
                                 policy_seeds=(0, 1))  # fmt: skip
    copy, _ = _rerun_copy(quick_run, tmp_path, config, "bc_context 'none' -> 'auto'")
    stages = sorted(copy.glob("*/policy/*/demos*/seed*/stage.json"))
    assert stages
    for stage in stages:
        folder, encoder = stage.parent, stage.parts[-4]
        if encoder == "scratch":
            assert not (folder / CONTEXT_CHOICE).exists() and not (folder / "candidates").exists()
            continue
        choice = json.loads((folder / CONTEXT_CHOICE).read_text())
        assert (choice["episodes"], choice["seed"]) == (2, 1_100_000)
        expected = "first" if stage.parts[-2] == "seed0" else "none"
        assert choice["chosen"] == expected
        record = json.loads((folder / "policy" / "policy_config.json").read_text())
        assert record["context"] == expected and record["context_choice"] == choice
        assert record["train_config"]["context"] == "auto"  # the seeds' one configuration
        kept = (folder / "candidates" / expected / "policy" / "final.safetensors").read_bytes()
        assert (folder / "policy" / "final.safetensors").read_bytes() == kept
    assert "Context: every BC head of a frozen encoder" in (copy / "report.md").read_text()
    with pytest.raises(ValueError, match="bc_select_episodes must be >= 1, got 0"):
        make_run_config("quick", bc_context="auto", bc_select_episodes=0)


def test_best_checkpoints_are_evaluated_beside_the_final_ones_and_labelled(
    quick_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 5 asks for the final and the best checkpoint, labelled. With bc_val_episodes every
    policy validates online and keeps its best checkpoint, evaluated on the same episodes; a
    best that is the final weights takes the final's record, relabelled, and a best from an
    earlier check is rolled out itself. The report's headline stays the final checkpoint."""
    import shutil

    from sslrobot.evaluation import evaluate as evaluation

    copy = tmp_path / "run"
    shutil.copytree(quick_run, copy)
    config = dataclasses.replace(QUICK, bc_val_episodes=1)
    rolled_out = []  # the checkpoints actually loaded and rolled out

    def recording(*args, **kwargs):
        rolled_out.append(kwargs.get("checkpoint", "final"))
        return evaluate_for_real(*args, **kwargs)

    evaluate_for_real = evaluation.evaluate
    monkeypatch.setattr(evaluation, "evaluate", recording)
    with pytest.warns(UserWarning, match="bc_val_episodes 0 -> 1"):
        run_pipeline(
            config, copy, device="cpu", progress=False, replace=True, command="pytest best"
        )
    previous = json.loads((copy / "config.previous.json").read_text())
    assert previous["bc_val_episodes"] == 0  # the earlier run's config, kept
    evals = copy / "Reach-v0" / "eval"
    copied = 0
    for encoder in config.encoder_names:
        policy = copy / "Reach-v0" / "policy" / encoder / "demos3" / "seed0" / "policy"
        trained = json.loads((policy / "policy_config.json").read_text())
        assert trained["train_config"]["val_episodes"] == 1 and trained["best"] is not None
        final = json.loads((evals / encoder / "demos3/seed0/train/result.json").read_text())
        best = json.loads((evals / encoder / "demos3/seed0/train-best/result.json").read_text())
        assert (final["checkpoint"], best["checkpoint"]) == ("final", "best")
        if trained["best"]["step"] == trained["metrics"]["step"]:
            assert best["same_weights_as"] == "final"
            assert best["episodes"] == final["episodes"] and best["videos"] == []
            copied += 1
    # 10 BC steps on 3 demonstrations: validation ties, and ties go to the last check.
    assert copied >= 1 and rolled_out.count("best") == len(config.encoder_names) - copied
    results = json.loads((copy / "results.json").read_text())["aggregated"]
    assert sorted(r["checkpoint"] for r in results if r["encoder"] == "state") == [
        "best",
        "final",
    ]
    report = (copy / "report.md").read_text()
    assert "Success, best checkpoint" in report and "Checkpoints: 'Success'" in report

    # A best checkpoint from an earlier check is evaluated, not copied.
    policy = copy / "Reach-v0" / "policy" / "state" / "demos3" / "seed0" / "policy"
    trained = json.loads((policy / "policy_config.json").read_text())
    trained["best"]["step"] = trained["metrics"]["step"] - 1
    (policy / "policy_config.json").write_text(json.dumps(trained))
    shutil.rmtree(evals / "state" / "demos3" / "seed0" / "train-best")
    rolled_out.clear()
    run_pipeline(config, copy, device="cpu", progress=False, replace=True, command="pytest best")
    best = json.loads((evals / "state/demos3/seed0/train-best/result.json").read_text())
    assert best["checkpoint"] == "best" and "same_weights_as" not in best
    assert rolled_out == ["best"]  # loaded from best.safetensors, the only stage redone
    assert best["num_episodes"] == config.eval_episodes
    pipeline = Pipeline(config, copy, device="cpu", progress=False, replace=True)
    pipeline.run()  # all finished: the count includes the best checkpoints' evaluations
    assert pipeline.count_stages() == len(pipeline.runner.results)
    with pytest.raises(ValueError, match="bc_val_episodes must be >= 0, got -1"):
        make_run_config("quick", bc_val_episodes=-1)
    del trained["best"]  # a policy trained without validation has no best to evaluate
    (policy / "policy_config.json").write_text(json.dumps(trained))
    with pytest.raises(ValueError, match=r"kept no best checkpoint .* bc_val_episodes > 0"):
        _best_is_final(policy)


def test_more_demonstrations_extend_the_set_without_retraining_its_users(
    quick_run: Path, tmp_path: Path
) -> None:
    """Adding a demo count past the set's size re-collected every demonstration and so
    retrained and re-evaluated every policy, whose results could not change (episode i has
    seed base + i; BC reads the first num_demos). Now the set grows in place."""
    import shutil

    from sslrobot.data import open_dataset

    run = tmp_path / "run"
    shutil.copytree(quick_run, run)
    # Whatever earlier tests changed:
    Pipeline(QUICK, run, device="cpu", progress=False, replace=True).run()
    slug = QUICK.tasks[0].split("/")[-1]
    demos = run / slug / "data" / "demos" / "dataset"
    first = open_dataset(demos).load_episode(0)["action"].copy()
    more = dataclasses.replace(QUICK, num_demo_episodes=QUICK.num_demo_episodes + 2)
    pipeline = Pipeline(more, run, device="cpu", progress=False, replace=True)
    pipeline.run()
    ran = [r.name for r in pipeline.runner.results if not r.skipped]
    assert ran == [f"{slug}/data/demos" for _ in ran] and len(ran) == len(QUICK.tasks)
    grown = open_dataset(demos)
    assert len(grown.episode_ids) == QUICK.num_demo_episodes + 2
    np.testing.assert_array_equal(grown.load_episode(0)["action"], first)
    # Fewer again: the larger set holds the first ones too, so nothing is redone.
    fewer = Pipeline(QUICK, run, device="cpu", progress=False, replace=True)
    fewer.run()
    assert all(r.skipped for r in fewer.runner.results)
    assert len(open_dataset(demos).episode_ids) == QUICK.num_demo_episodes + 2


def test_a_random_init_killed_after_writing_its_weights_is_written_again(
    quick_run: Path,
    tmp_path: Path,
) -> None:
    """A 0-step stage writes no checkpoint: killed between its weights and its stage record,
    it used to be refused ("holds a finished run without checkpoints") on every rerun."""
    run = shutil.copytree(quick_run, tmp_path / "run")  # the fixture stays as made
    stage = run / "Reach-v0" / "pretrain" / "none"
    weights = (stage / "encoder" / "encoder.safetensors").read_bytes()
    (stage / "stage.json").unlink()  # as if killed right after the weights were written
    pipeline = Pipeline(QUICK, run, device="cpu", progress=False)
    pipeline.run()
    redone = [r.name for r in pipeline.runner.results if not r.skipped]
    assert "Reach-v0/pretrain/none" in redone
    assert (stage / "encoder" / "encoder.safetensors").read_bytes() == weights  # same init
    with pytest.raises(ValueError, match="policy_seeds repeats a value"):
        dataclasses.replace(QUICK, policy_seeds=(0, 0))


def test_an_interrupted_policy_stage_resumes_from_its_last_check(
    quick_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A BC stage killed in training continues from its resume checkpoint on the rerun, and
    ends with the weights it had when it ran uninterrupted."""
    from sslrobot.policy import bc

    run = shutil.copytree(quick_run, tmp_path / "run")  # the fixture stays as made

    stage = run / "Reach-v0" / "policy" / "none" / "demos3" / "seed0"
    weights = (stage / "policy" / "final.safetensors").read_bytes()
    (stage / "stage.json").unlink()  # its record gone: the rerun trains it again
    save = bc._BCResumeCheckpoints.save

    def save_then_stop(self, loop, *args):
        save(self, loop, *args)
        if loop["step"] == 6:
            raise KeyboardInterrupt

    monkeypatch.setattr(bc._BCResumeCheckpoints, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        Pipeline(QUICK, run, device="cpu", progress=False).run()
    monkeypatch.setattr(bc._BCResumeCheckpoints, "save", save)
    Pipeline(QUICK, run, device="cpu", progress=False).run()
    assert (stage / "policy" / "final.safetensors").read_bytes() == weights
    assert json.loads((stage / "policy" / "policy_config.json").read_text())[
        "resumed_at_steps"
    ] == [6]


def test_pretraining_in_two_processes_reruns_the_trained_encoders_only(
    quick_run: Path,
    tmp_path: Path,
) -> None:
    run = shutil.copytree(quick_run, tmp_path / "run")  # the fixture stays as made
    with pytest.raises(ValueError, match="pretrain_processes must be >= 1 and divide"):
        dataclasses.replace(QUICK, pretrain_processes=3)
    two = dataclasses.replace(QUICK, pretrain_processes=2)
    pipeline = Pipeline(two, run, device="cpu", progress=False, replace=True)
    pipeline.run()
    pretrained = {r.name: r.skipped for r in pipeline.runner.results if "/pretrain/" in r.name}
    assert pretrained == {
        "Reach-v0/pretrain/fdm+future": False,
        "Reach-v0/pretrain/none": True,
        "Reach-v0/pretrain/none-init1": True,
    }
    encoder = run / "Reach-v0" / "pretrain" / "fdm+future" / "encoder"
    record = json.loads((encoder / "pretrain_config.json").read_text())
    assert record["world_size"] == 2
    assert record["pretrain"]["batch_size"] * 2 == QUICK.pretrain_batch_size


def test_stage_count_matches_what_runs(quick_run: Path, tmp_path: Path) -> None:
    run = shutil.copytree(quick_run, tmp_path / "run")  # the fixture stays as made
    pipeline = Pipeline(QUICK, run, device="cpu", progress=False)
    pipeline.run()
    assert pipeline.count_stages() == len(pipeline.runner.results)


def test_bad_preset_and_task_give_clear_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="unknown preset 'bogus'"):
        make_run_config("bogus")
    with pytest.raises(ValueError, match="tasks: unknown"):
        make_run_config("quick", tasks=("sslrobot/Fly-v0",))
    assert main(["run", "--preset", "bogus", "--out", "unused"]) == 2
    assert "unknown preset 'bogus'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="transfer_objective: unknown 'bogus'"):
        make_run_config("quick", transfer_objective="bogus")
    with pytest.raises(ValueError, match="encoder_arch: unknown 'vit'"):
        make_run_config("quick", encoder_arch="vit")
    # Refused up front, not by the first evaluation tens of minutes in.
    for settings, message in [
        ({"num_videos": -1}, "num_videos must be >= 0, got -1"),
        ({"seed": -5}, "seed must be >= 0, got -5"),
        ({"policy_seeds": (0, -1)}, r"policy_seeds must be >= 0, got \(0, -1\)"),
        ({"num_demos": (0, 2)}, r"num_demos must all be >= 1, got \(0, 2\)"),
        ({"unlabeled_policy": "bogus"}, "unlabeled_policy: unknown 'bogus'"),
        ({"unlabeled_policy": "mixture"}, "unlabeled_policy: unknown 'mixture'"),
        # Past the generators' limit: the stage taking the seed failed after those before it.
        ({"seed": 2**32}, r"^seed gives seeds up to 42949672\d+; every seed must be <= 4294967295"),
        ({"policy_seeds": (0, 2**32)}, "policy_seeds gives seeds up to 4294967296"),
        (
            {"seed": 2**32 - 2, "policy_seeds": (0, 2), "pretrain_seed_per_policy": True},
            r"seed \+ policy_seeds \(pretrain_seed_per_policy\) gives seeds up to 4294967296",
        ),
    ]:
        with pytest.raises(ValueError, match=message):
            make_run_config("quick", **settings)


def test_set_overrides_parse_types_and_refuse_unknown_fields(
    capsys: pytest.CaptureFixture[str],
) -> None:
    overrides = parse_overrides(
        [
            "num_unlabeled_episodes=2000",
            "num_demos=5,10,25",
            "heldout_eval=true",
            "transfer_objective=fdm+future",
            "data_efficiency_task=null",
            "tasks=sslrobot/Push-v0",
        ]
    )
    assert overrides == {
        "num_unlabeled_episodes": 2000,
        "num_demos": (5, 10, 25),
        "heldout_eval": True,
        "transfer_objective": "fdm+future",
        "data_efficiency_task": None,
        "tasks": ("sslrobot/Push-v0",),
    }
    config = make_run_config("quick", num_demo_episodes=25, **overrides)
    assert config.num_demos == (5, 10, 25) and config.num_unlabeled_episodes == 2000
    assert config.data_efficiency_task is None and config.transfer_objective == "fdm+future"
    assert config.tasks == ("sslrobot/Push-v0",)
    with pytest.raises(ValueError, match="unknown field 'num_epsiodes'"):
        parse_overrides(["num_epsiodes=3"])
    with pytest.raises(ValueError, match="expected KEY=VALUE"):
        parse_overrides(["pretrain_steps"])
    with pytest.raises(ValueError, match="'seed=2': seed is set twice; give it once"):
        parse_overrides(["seed=1", "seed=2"])  # the later value silently won
    assert main(["run", "--preset", "quick", "--set", "pretrain_steps=0", "--out", "x"]) == 2
    assert "pretrain_steps must be >= 1, got 0" in capsys.readouterr().err
    # Frame sizes the envs or the encoder cannot take, refused before any stage runs.
    assert main(["run", "--preset", "quick", "--set", "image_size=7", "--out", "x"]) == 2
    assert "image_size must be in [8, 1024]" in capsys.readouterr().err
    assert main(["run", "--preset", "quick", "--set", "image_size=2000", "--out", "x"]) == 2
    assert "image_size must be in [8, 1024]" in capsys.readouterr().err
    # The frame decoder of future / recon upscales by 16: found after every collection before.
    assert main(["run", "--preset", "quick", "--set", "image_size=40", "--out", "x"]) == 2
    assert "image_size must be a multiple of 16, got 40" in capsys.readouterr().err
    assert make_run_config("quick", image_size=40, objectives=("inverse",)).image_size == 40
    # Evaluation seeds among the online validation's would choose "best" on its own episodes.
    with pytest.raises(ValueError, match="use a seed of at most 699997 or of at least 900002"):
        make_run_config("quick", seed=700_000, bc_val_episodes=2)
    with pytest.raises(ValueError, match="num_unlabeled_episodes=6 gives reset seeds 999,995"):
        make_run_config("quick", seed=899_995, bc_val_episodes=2)
    with pytest.raises(ValueError, match="num_unlabeled_episodes must be >= 3, got 2"):
        make_run_config("quick", num_unlabeled_episodes=2)  # the probe refused it, late
    with pytest.raises(ValueError, match=r"encoders: unknown \['scrach'\]"):
        make_run_config("quick", encoders=("none", "scrach"))
    # Every range above the validation's overlaps nothing (such seeds were refused).
    assert make_run_config("quick", seed=2_000_000, bc_val_episodes=2).seed == 2_000_000
    with pytest.raises(ValueError, match="num_demo_episodes=100001 would reach the next range"):
        make_run_config("quick", num_demo_episodes=100_001)
    # A horizon longer than a task's episodes, refused before its collection.
    command = ["run", "--preset", "quick", "--set", "num_steps_ahead=51", "--out", "x"]
    assert main(command) == 2
    assert "leaves no window in sslrobot/Reach-v0" in capsys.readouterr().err
    assert not Path("x").exists()
    # Python's spellings are read as such, not as (truthy) strings; wrong types are refused.
    assert parse_overrides(["heldout_eval=False", "main_num_demos=None"]) == {
        "heldout_eval": False,
        "main_num_demos": None,
    }
    # Numbers and constants as people type them (".5" was "not a finite number", "20_000",
    # how the presets write it, "not an integer").
    assert parse_overrides(
        ["bc_augment_color=.5", "pretrain_steps=20_000", "seed=+1", "num_demos=05,10",
         "heldout_eval=TRUE", "main_num_demos=NULL", "transfer_objective=off"]
    ) == {
        "bc_augment_color": 0.5, "pretrain_steps": 20_000, "seed": 1, "num_demos": (5, 10),
        "heldout_eval": True, "main_num_demos": None, "transfer_objective": None,
    }  # fmt: skip
    for assignment, message in [
        ("bc_augment_color=nan", "bc_augment_color must be a finite number, got 'nan'"),
        ("heldout_eval=no", "heldout_eval must be true or false, got 'no'"),
        ("image_size=48.5", "image_size must be an integer, got 48.5"),
        ("policy_seeds=[0,1]", "policy_seeds must be a list of int (comma-separated in --set)"),
        ("seed=true", "seed must be an integer, got True"),
        ("transfer_objective=3", "transfer_objective must be a string or null, got 3"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            make_run_config("quick", **parse_overrides([assignment]))
    with pytest.raises(ValueError, match="choose the preset with --preset"):
        parse_overrides(["preset=full"])
    with pytest.raises(ValueError, match=r"baselines .* are fixed"):
        parse_overrides(["encoders=none"])


def test_run_flags_and_set_assignments_both_reach_the_config() -> None:
    """``--set seed=5`` used to be overwritten by the absent ``--seed`` flag (and so for
    ``tasks`` and ``transfer_objective``); now either form applies, and a disagreement is
    refused."""
    from sslrobot.cli import build_parser
    from sslrobot.commands.run import run_config_from_args

    def config(*argv: str):
        return run_config_from_args(build_parser().parse_args(["run", "--preset", "quick", *argv]))

    reach = "sslrobot/Reach-v0"
    by_set = config("--set", "seed=5", "--set", f"tasks={reach}", "--set", "transfer_objective=fdm")
    assert (by_set.seed, by_set.tasks, by_set.transfer_objective) == (5, (reach,), "fdm")
    by_flag = config("--seed", "5", "--tasks", reach, "--transfer-objective", "fdm")
    assert by_flag == by_set
    assert config().seed == QUICK.seed and config().tasks == QUICK.tasks
    assert config("--seed", "5", "--set", "seed=5").seed == 5
    with pytest.raises(ValueError, match="--seed 6 and --set seed=5 disagree"):
        config("--seed", "6", "--set", "seed=5")
    with pytest.raises(ValueError, match="--transfer-objective 'off' and --set transfer_obj"):
        config("--transfer-objective", "off", "--set", "transfer_objective=fdm")
    # The full preset's transfer encoder turned off by the flag as by --set.
    for off in ("off", "None"):
        flagged = run_config_from_args(
            build_parser().parse_args(["run", "--preset", "full", "--transfer-objective", off])
        )
        assert flagged.transfer_objective is None
    assert make_run_config("full", transfer_objective=None) == flagged


def test_a_set_without_effect_is_named_and_not_counted_as_a_change(tmp_path: Path) -> None:
    """The copies' colour is read only when there are copies: ``--set bc_augment_color`` with
    ``bc_augment_copies=0`` used to be accepted silently, and rerunning a copies-free run under
    the default preset's colour named a change that redoes nothing."""
    from sslrobot.cli import build_parser
    from sslrobot.commands.run import run_config_from_args

    def config(*argv: str):
        return run_config_from_args(build_parser().parse_args(["run", *argv]))

    with pytest.warns(UserWarning, match="bc_augment_color=0.3 has no effect: bc_augment_copies"):
        config("--preset", "quick", "--set", "bc_augment_color=0.3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config("--preset", "default", "--set", "bc_augment_color=0.3")  # 8 copies: read
        config("--preset", "quick", "--set", "bc_context=auto", "--set", "bc_select_episodes=5")
    with pytest.warns(UserWarning, match="bc_select_episodes=5 has no effect: bc_context is not"):
        config("--preset", "quick", "--set", "bc_context=first", "--set", "bc_select_episodes=5")
    plain = config("--preset", "default", "--set", "bc_augment_copies=0")
    earlier = {**json.loads(json.dumps(plain.to_dict())), "bc_augment_color": 0.15}
    (tmp_path / "config.json").write_text(json.dumps(earlier))
    assert warn_of_changed_settings(tmp_path, plain) == []
    with pytest.warns(UserWarning, match="bc_augment_copies 0 -> 8, bc_augment_color 0.15"):
        assert warn_of_changed_settings(tmp_path, make_run_config("default")) == [
            "bc_augment_copies",
            "bc_augment_color",
        ]


def test_a_second_run_in_the_same_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sslrobot.pipeline.run import RUN_LOCK
    from sslrobot.utils.io import exclusive_lock

    with (
        exclusive_lock(tmp_path / RUN_LOCK, "held by this test"),
        pytest.raises(BlockingIOError, match="another `sslrobot run` is using"),
    ):
        run_pipeline(QUICK, tmp_path, device="cpu", progress=False)
    with exclusive_lock(tmp_path / RUN_LOCK, "held by this test"):
        assert main(["run", "--preset", "quick", "--out", str(tmp_path)]) == 2
    # One line, without Python's "[Errno 11]" before the sentence.
    assert capsys.readouterr().err.startswith("sslrobot run: error: another `sslrobot run`")
    assert not (tmp_path / "config.json").exists()  # nothing written under the other run


def test_main_demo_count_runs_everywhere_and_the_sweep_on_one_task() -> None:
    reach, push = "sslrobot/Reach-v0", "sslrobot/Push-v0"
    config = make_run_config(
        "quick",
        tasks=(reach, push),
        num_demo_episodes=200,
        num_demos=(10, 200),
        main_num_demos=25,
        data_efficiency_task=reach,
    )
    assert config.demo_counts(reach) == (10, 25, 200) and config.demo_counts(push) == (25,)
    assert make_run_config("quick", num_demo_episodes=9, num_demos=(3, 9)).main_demos == 9
    with pytest.raises(ValueError, match="main_num_demos must be in"):
        make_run_config("quick", main_num_demos=4)
    # A sweep with no task to run it on is said, not dropped in silence.
    from sslrobot.pipeline.run import warn_of_unswept_demo_counts

    unswept = make_run_config("quick", num_demo_episodes=9, num_demos=(3, 9))
    with pytest.warns(UserWarning, match=r"every task runs 9; the other counts \[3\] run on"):
        assert warn_of_unswept_demo_counts(unswept) == [3]
    assert warn_of_unswept_demo_counts(config) == []
    # A transfer encoder of one task mixes nothing; it was reported as if it had.
    from sslrobot.pipeline.run import warn_of_unmixed_transfer

    alone = make_run_config("quick", transfer_objective="fdm+future")
    assert len(alone.tasks) == 1
    with pytest.warns(UserWarning, match=r"fdm\+future-mixed is pretrained on that task's"):
        assert warn_of_unmixed_transfer(alone)
    both = make_run_config("quick", transfer_objective="fdm+future", tasks=(reach, push))
    assert not warn_of_unmixed_transfer(both) and not warn_of_unmixed_transfer(config)


def test_transfer_encoder_is_pretrained_once_on_every_task_and_evaluated_on_each(
    tmp_path: Path,
) -> None:
    config = dataclasses.replace(
        QUICK,
        tasks=("sslrobot/Reach-v0", "sslrobot/Navigate-v1"),
        transfer_objective="fdm+future",
        encoders=("none",),
    )
    assert config.mixed_encoder_name == "fdm+future-mixed"
    assert config.encoder_names == ("fdm+future", "fdm+future-mixed", "none")
    pipeline = Pipeline(config, tmp_path, device="cpu", progress=False)
    pipeline.run()
    names = [r.name for r in pipeline.runner.results]
    assert names.count("mixed/pretrain/fdm+future") == 1
    assert pipeline.count_stages() == len(names)
    saved = json.loads(
        (tmp_path / "mixed/pretrain/fdm+future/encoder/pretrain_config.json").read_text()
    )
    assert [Path(d).parts[-4] for d in saved["pretrain"]["data"]] == ["Reach-v0", "Navigate-v1"]
    for slug in ("Reach-v0", "Navigate-v1"):
        assert (tmp_path / slug / "probe" / "fdm+future-mixed" / "probe.json").is_file()
        assert list((tmp_path / slug / "eval" / "fdm+future-mixed").rglob("result.json"))
    # Two tasks: the report gives each encoder's mean over them (issue 5's bar, with intervals).
    run_pipeline(config, tmp_path, device="cpu", progress=False)  # every stage done: the report
    results = json.loads((tmp_path / "results.json").read_text())
    (block,) = results["across_tasks"]  # final checkpoints under the train look only
    rows = {row["encoder"]: row for row in block["rows"]}
    assert list(rows) == list(config.encoder_names)
    for name, row in rows.items():
        per_task = [
            r["success"]["mean"]
            for r in results["aggregated"]
            if r["encoder"] == name and r["checkpoint"] == "final"
        ]
        assert len(per_task) == 2 and row["success"]["mean"] == pytest.approx(np.mean(per_task))
        assert row["of_reference"] is None  # no state oracle in this run
    assert "none" in rows["fdm+future"]["gain_over"]
    assert "## Over the tasks (3 demonstrations)" in (tmp_path / "report.md").read_text()
    # The same tasks in another order make the same transfer encoder: nothing is redone.
    swapped = dataclasses.replace(config, tasks=tuple(reversed(config.tasks)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning
        again = Pipeline(swapped, tmp_path, device="cpu", progress=False)
        again.run()
    assert all(r.skipped for r in again.runner.results)
    # Another set of tasks remakes it, and the warning says so before anything goes.
    fewer = dataclasses.replace(config, tasks=("sslrobot/Reach-v0",))
    with pytest.warns(UserWarning, match=r"transfer encoder \(fdm\+future, pretrained on every"):
        assert warn_of_dropped_tasks(tmp_path, fewer) == ["sslrobot/Navigate-v1"]


def test_paired_pretraining_seeds_give_each_policy_seed_its_own_encoder(tmp_path: Path) -> None:
    config = dataclasses.replace(
        QUICK, policy_seeds=(0, 1), encoders=("none",), pretrain_seed_per_policy=True
    )
    assert config.extra_pretrain_seeds == (1,)
    assert parse_overrides(["pretrain_seed_per_policy=true"]) == {"pretrain_seed_per_policy": True}
    run_pipeline(config, tmp_path, device="cpu", progress=False, command="pytest paired")
    pipeline = Pipeline(config, tmp_path, device="cpu", progress=False)
    pipeline.run()  # every stage finished: all skipped, and counted
    assert pipeline.count_stages() == len(pipeline.runner.results)

    def policy_encoder(seed: int) -> str:
        policy = tmp_path / "Reach-v0/policy/fdm+future/demos3" / f"seed{seed}" / "policy"
        return json.loads((policy / "policy_config.json").read_text())["encoder"]["source"]

    assert Path(policy_encoder(0)).parent.name == "fdm+future"
    assert Path(policy_encoder(1)).parent.name == "fdm+future-seed1"
    main_weights = (
        tmp_path / "Reach-v0/pretrain/fdm+future/encoder/encoder.safetensors"
    ).read_bytes()
    seed1 = tmp_path / "Reach-v0/pretrain/fdm+future-seed1/encoder/encoder.safetensors"
    assert seed1.read_bytes() != main_weights  # another draw, not a copy
    probes = [
        json.loads((tmp_path / "Reach-v0/probe" / name / "probe.json").read_text())
        for name in ("fdm+future", "fdm+future-seed1")
    ]
    (row,) = [
        r
        for r in json.loads((tmp_path / "results.json").read_text())["aggregated"]
        if r["encoder"] == "fdm+future"
    ]
    assert row["num_seeds"] == 2
    report = (tmp_path / "report.md").read_text()
    mean = np.mean([p["probe/r2_mean"] for p in probes])
    assert f"{mean:.3f} ± " in report and "(2 pretraining seeds)" in report


def test_settings_that_only_add_stages_grow_a_run_without_the_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """RL or the held-out evaluation turned on adds stages and replaces none: said in one
    line, not with the warning that advises stopping; a changed RL budget still warns."""
    config = make_run_config("quick")
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    grown = dataclasses.replace(config, rl_steps=500, rl_demo_share=0.25, heldout_eval=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        changed = warn_of_changed_settings(tmp_path, grown)
    assert changed == ["heldout_eval", "rl_steps", "rl_demo_share"]
    assert "only add stages to it: nothing it finished is made again" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps(grown.to_dict()))
    with pytest.warns(UserWarning, match="rl_steps 500 -> 900"):
        warn_of_changed_settings(tmp_path, dataclasses.replace(grown, rl_steps=900))
    with pytest.warns(UserWarning, match="rl_demo_share 0.25 -> 0.5"):
        warn_of_changed_settings(tmp_path, dataclasses.replace(grown, rl_demo_share=0.5))
    mixed = dataclasses.replace(config, rl_steps=500, pretrain_steps=config.pretrain_steps + 1)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    with pytest.warns(UserWarning, match="pretrain_steps"):  # one real change: the warning
        warn_of_changed_settings(tmp_path, mixed)


def test_rerunning_a_run_directory_with_other_settings_names_them(tmp_path: Path) -> None:
    """A preset default that moved (bc_augment_copies, session 19) would quietly replace a
    finished run's policies: the changed fields are named with the --set that keeps them, and
    a field an older run did not record counts as its default then."""
    config = make_run_config("default")
    assert warn_of_changed_settings(tmp_path, config) == []  # a new directory
    earlier = json.loads(json.dumps(config.to_dict()))
    (tmp_path / "config.json").write_text(json.dumps(earlier))
    assert warn_of_changed_settings(tmp_path, config) == []  # the same run, continued
    earlier.pop("bc_augment_copies")  # written before the field existed: 0
    earlier["num_demos"] = [5, 25]
    (tmp_path / "config.json").write_text(json.dumps(earlier))
    with pytest.warns(UserWarning) as caught:
        changed = warn_of_changed_settings(tmp_path, config)
    assert changed == ["num_demos", "bc_augment_copies"]
    message = str(caught[0].message)
    assert "bc_augment_copies 0 -> 8" in message
    keep = "--preset default --set num_demos=5,25 --set bc_augment_copies=0"
    assert message.endswith(f"sslrobot run {keep} --out {tmp_path}")

    # Continuing a run of another preset takes that preset's values, and sets only what the
    # run changed in it (a full run with a smaller BC batch, rerun as default).
    full = json.loads(json.dumps(make_run_config("full", bc_batch_size=128).to_dict()))
    (tmp_path / "config.json").write_text(json.dumps(full))
    with pytest.warns(UserWarning) as caught:
        warn_of_changed_settings(tmp_path, config)
    assert str(caught[0].message).endswith(
        f"--preset full --set bc_batch_size=128 --out {tmp_path}"
    )

    # A run of the preset as it is, rerun with a --set: nothing to --set back, one space.
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    with pytest.warns(UserWarning) as caught:
        warn_of_changed_settings(tmp_path, make_run_config("default", bc_steps=7))
    assert str(caught[0].message).endswith(f"sslrobot run --preset default --out {tmp_path}")

    # A hand-edited config: no command that cannot work is suggested; unknown fields named.
    edited = {**config.to_dict(), "image_size": "big", "bogus": 1}
    (tmp_path / "config.json").write_text(json.dumps(edited))
    with pytest.warns(UserWarning) as caught:
        warn_of_changed_settings(tmp_path, config)
    message = str(caught[0].message)
    assert "image_size 'big' -> 64" in message and "sslrobot run --preset" not in message
    assert "This version cannot continue that run (" in message
    assert message.endswith("Its config.json also holds fields this version ignores: ['bogus'].")

    # The copies' colour moved too (session 27): a run that did not record it had 0.15.
    older = json.loads(json.dumps(config.to_dict()))
    older.pop("bc_augment_color")
    (tmp_path / "config.json").write_text(json.dumps(older))
    with pytest.warns(UserWarning, match="bc_augment_color 0.15 -> 0.6") as caught:
        assert warn_of_changed_settings(tmp_path, config) == ["bc_augment_color"]
    assert str(caught[0].message).endswith("--set bc_augment_color=0.15 --out " + str(tmp_path))

    # A setting no stage keys on (collection workers) warns of nothing.
    same = {**earlier, "bc_augment_copies": 8, "num_demos": [25], "num_workers": 7}
    (tmp_path / "config.json").write_text(json.dumps(same))
    assert warn_of_changed_settings(tmp_path, config) == []


def test_rerunning_an_older_run_directory_on_other_tasks_warns(tmp_path: Path) -> None:
    """The default tasks became the newest versions (Navigate-v1): rerunning a v0 run
    directory without --tasks would switch it silently, so the earlier tasks are named."""
    config = make_run_config("default")
    assert warn_of_dropped_tasks(tmp_path, config) == []  # a new directory
    earlier = ["sslrobot/Reach-v0", "sslrobot/Push-v0", "sslrobot/Navigate-v0"]
    (tmp_path / "config.json").write_text(json.dumps({"tasks": earlier}))
    with pytest.warns(UserWarning, match=r"earlier run of \['sslrobot/Navigate-v0'\]"):
        assert warn_of_dropped_tasks(tmp_path, config) == ["sslrobot/Navigate-v0"]
    same = dataclasses.replace(config, tasks=tuple(earlier))
    assert warn_of_dropped_tasks(tmp_path, same) == []


def test_the_config_is_recorded_when_a_stage_changes_not_before(
    quick_run: Path, tmp_path: Path
) -> None:
    """A run stopped after the changed-settings warning, before it redid anything, left a
    config.json describing a run that never happened (and lost config.previous.json's)."""
    copy = tmp_path / "run"
    shutil.copytree(quick_run, copy)
    recorded = (copy / "config.json").read_text()
    previous = copy / "config.previous.json"
    kept = previous.read_text() if previous.exists() else None  # (another test's rerun)
    steps = json.loads(recorded)["bc_steps"] + 2  # (another test reran the fixture's)
    changed = dataclasses.replace(QUICK, bc_steps=steps)
    pipeline = Pipeline(changed, copy, device="cpu", progress=False, replace=True)

    def stop() -> None:
        raise KeyboardInterrupt  # the user, at the first change

    pipeline.runner.before_first_change = stop
    with pytest.warns(UserWarning, match="bc_steps"), pytest.raises(KeyboardInterrupt):
        pipeline.run()
    assert (copy / "config.json").read_text() == recorded
    assert (previous.read_text() if previous.exists() else None) == kept
    assert all(r.skipped for r in pipeline.runner.results)  # what ran before the stop
    (copy / "report.md").write_text("the earlier run's report")  # (other tests rerun the
    (copy / "results.json").write_text("{}")  # fixture's directory without reports)
    (copy / "plots").mkdir(exist_ok=True)
    (copy / "plots" / "Reach-v0_success.png").write_bytes(b"the earlier run's plot")
    report, results = (copy / "report.md").read_text(), (copy / "results.json").read_text()
    with pytest.warns(UserWarning, match="bc_steps"):
        Pipeline(changed, copy, device="cpu", progress=False, replace=True).run()
    assert json.loads((copy / "config.json").read_text())["bc_steps"] == steps
    assert json.loads((copy / "config.previous.json").read_text()) == json.loads(recorded)
    # Stages were replaced: the earlier report no longer describes them, so it is set aside
    # (an interrupted rerun left it beside them); the finished run writes its own.
    assert not (copy / "report.md").exists() and not (copy / "results.json").exists()
    assert (copy / "previous" / "report.md").read_text() == report
    assert (copy / "previous" / "results.json").read_text() == results
    # With its pictures: renamed in place, report.previous.md showed the new run's plots.
    earlier_plot = copy / "previous" / "plots" / "Reach-v0_success.png"
    assert earlier_plot.read_bytes() == b"the earlier run's plot"
    assert not (copy / "plots").exists()


def test_the_earlier_report_is_kept_when_every_stage_is_found_done(
    quick_run: Path, tmp_path: Path
) -> None:
    """Other settings that redo no stage (fewer tasks, no held-out look) still rewrite the
    report: the earlier one was overwritten with no copy."""
    from sslrobot.pipeline.run import set_aside_previous_report

    copy = tmp_path / "run"
    shutil.copytree(quick_run, copy)
    (copy / "report.md").write_text("the earlier run's report")
    recorded = json.loads((copy / "config.json").read_text())  # (other tests rerun it)
    recorded["num_workers"] += 1  # keyed on by no stage
    config = RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()})
    pipeline = Pipeline(config, copy, device="auto", progress=False)
    pipeline.run()
    assert all(result.skipped for result in pipeline.runner.results)
    assert (copy / "previous" / "report.md").read_text() == "the earlier run's report"
    # An interrupted setting-aside is put back before the next one moves anything.
    (copy / "report.md").write_text("newer")
    partial = copy / "previous.partial"
    partial.mkdir()
    os.replace(copy / "report.md", partial / "report.md")
    set_aside_previous_report(copy)
    assert not partial.exists() and (copy / "previous" / "report.md").read_text() == "newer"
    # ... and one interrupted between its two renames (the older report set aside, the
    # newer still staged): a stray previous.replaced/ and no previous/ stayed.
    (copy / "report.md").write_text("newest")
    os.replace(copy / "previous", copy / "previous.replaced")
    partial.mkdir()
    os.replace(copy / "report.md", partial / "report.md")
    set_aside_previous_report(copy)
    assert sorted(p.name for p in copy.glob("previous*")) == ["previous"]
    assert (copy / "previous" / "report.md").read_text() == "newest"


def test_pretraining_is_keyed_on_the_process_setting_not_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An accelerator runs one process where the CPU runs pretrain_processes: keyed on the
    effective count, the default preset continued on a GPU redid every finished stage as
    'changed' (the device is no stage's key)."""
    from sslrobot.pipeline.stages import StageResult
    from sslrobot.utils import device as devices

    settings = {}

    def capture(self, name, stage_settings, fn, depends_on=(), count=None, resumes=False):
        settings[self.device] = stage_settings

    monkeypatch.setattr(Pipeline, "_stage", capture)
    data = StageResult("Reach-v0/data/unlabeled", tmp_path, "0" * 16, 0.0, True, {})
    config = make_run_config("default")
    for kind in ("cpu", "cuda"):
        monkeypatch.setattr(devices, "resolve_device", lambda *a, k=kind, **kw: torch.device(k))
        pipeline = Pipeline(config, tmp_path / kind, device=kind, progress=False)
        assert pipeline._pretrain_processes(6000) == (2 if kind == "cpu" else 1)
        pipeline._pretrain("Reach-v0", "fdm+future", (data,))
    assert settings["cpu"] == settings["cuda"] and settings["cpu"]["processes"] == 2
    # Continued under another count, an interrupted pretraining starts again (its data order
    # cannot continue); a record without the count is left to the trainer's own check.
    from sslrobot.pipeline.run import _trained_in_other_processes

    encoder = tmp_path / "encoder"
    encoder.mkdir()
    assert not _trained_in_other_processes(encoder, 2)
    (encoder / "pretrain_config.json").write_text(json.dumps({"world_size": 1}))
    assert _trained_in_other_processes(encoder, 2) and not _trained_in_other_processes(encoder, 1)
    (encoder / "pretrain_config.json").write_text(json.dumps({"pretrain": {}}))
    assert not _trained_in_other_processes(encoder, 2)


def test_run_refuses_a_missing_device_and_another_commands_directory(tmp_path: Path) -> None:
    """Both before anything is written: a missing device used to fail after the first
    collection, and a dataset given as --out had the run's files mixed into it."""
    with pytest.raises(ValueError, match="cuda:99"):
        run_pipeline(QUICK, tmp_path / "new", device="cuda:99")
    assert not (tmp_path / "new").exists()
    dataset = tmp_path / "data"
    dataset.mkdir()
    (dataset / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match=r"is a dataset \(`sslrobot collect --out`\), not a "
                       r"run's directory"):  # fmt: skip
        run_pipeline(QUICK, dataset, device="cpu")
    assert sorted(p.name for p in dataset.iterdir()) == ["manifest.json"]
    # A file as --out, or a path under one: named (a bare "[Errno 17] File exists" before).
    for out in (dataset / "manifest.json", dataset / "manifest.json" / "run"):
        with pytest.raises(ValueError, match=r"manifest\.json is a file"):
            run_pipeline(QUICK, out, device="cpu")


def test_every_look_and_checkpoint_evaluated_gets_its_mean_over_the_tasks() -> None:
    """With the held-out look and validation both on (the full preset) the held-out best
    checkpoints were evaluated but left out of the means over the tasks."""
    from sslrobot.pipeline.report_builder import across_tasks_blocks

    config = make_run_config(
        "quick", tasks=("sslrobot/Reach-v0", "sslrobot/Push-v0"), heldout_eval=True,
        bc_val_episodes=2,
    )  # fmt: skip
    fixed = {"seed": 0, "num_demos": config.main_demos, "algo": "bc"}
    episodes = [{"success": 1.0}, {"success": 0.0}]
    records = [
        {"encoder": encoder, "env_id": task, "visual_preset": look, "checkpoint": checkpoint}
        | fixed
        | {"episodes": episodes}
        for encoder in config.encoder_names
        for task in config.tasks
        for look in ("train", "heldout")
        for checkpoint in ("final", "best")
    ]
    labels = [block["label"] for block in across_tasks_blocks(config, records)]
    assert labels == [
        "final checkpoints",
        "best checkpoints",
        "held-out look, final checkpoints",
        "held-out look, best checkpoints",
    ]


def test_a_report_made_from_python_records_the_command_that_remakes_its_run() -> None:
    """``run_pipeline`` without a command recorded a bare ``sslrobot run``, which runs the
    default preset elsewhere; the equivalent command now gives back the same config."""
    import shlex

    from sslrobot.pipeline.run import equivalent_command

    config = make_run_config(
        "default", tasks=("sslrobot/Reach-v0",), num_demos=(10, 25), bc_augment_copies=0
    )
    command = equivalent_command(config, Path("my run"))
    words = shlex.split(command)
    assert words[:4] == ["sslrobot", "run", "--preset", "default"]
    assert words[-2:] == ["--out", "my run"]
    assignments = [words[i + 1] for i, word in enumerate(words) if word == "--set"]
    assert make_run_config("default", **parse_overrides(assignments)) == config


def test_run_records_the_command_it_was_given(tmp_path: Path, monkeypatch) -> None:
    """``main(argv)`` recorded the host program's own arguments (pytest's, a notebook's) as
    the command that remakes the run."""
    import sys

    import sslrobot.pipeline.run as pipeline_run

    given = {}

    def fake_pipeline(config, out, **kwargs):
        given.update(kwargs)
        return Path(out) / "report.html"

    monkeypatch.setattr(pipeline_run, "run_pipeline", fake_pipeline)
    monkeypatch.setattr(sys, "argv", ["host", "--unrelated"])
    assert main(["run", "--preset", "quick", "--out", str(tmp_path / "r")]) == 0
    assert given["command"] == f"sslrobot run --preset quick --out {tmp_path / 'r'}"


def test_per_policy_pretraining_without_seed_0_says_the_runs_encoders_go_unused() -> None:
    """The run's own encoders are pretrained for probes and predictions whatever the policy
    seeds; with pretrain_seed_per_policy and no seed 0 no policy used them, without a word,
    and the report's probes averaged them in."""
    per_policy = dataclasses.replace(QUICK, pretrain_seed_per_policy=True, policy_seeds=(1, 2))
    with pytest.warns(UserWarning, match="no policy uses them; add policy seed 0"):
        assert warn_of_unused_run_encoders(per_policy)
    assert not warn_of_unused_run_encoders(dataclasses.replace(per_policy, policy_seeds=(0, 1)))
    assert not warn_of_unused_run_encoders(dataclasses.replace(QUICK, policy_seeds=(1, 2)))


def test_a_rerun_with_other_settings_adds_stages_but_replaces_none_unless_told(
    quick_run: Path, tmp_path: Path
) -> None:
    """A mistyped --set used to make finished stages again at once, deleting an hour of
    pretraining before the warning could be read; now a finished stage of other settings is
    never deleted without --replace, while settings that only add stages (another training
    seed, the held-out look, a transfer encoder) still extend the run."""
    from sslrobot.pipeline.stages import StageReplaceRefusedError

    copy = tmp_path / "run"
    shutil.copytree(quick_run, copy)
    Pipeline(QUICK, copy, device="cpu", progress=False, replace=True).run()  # earlier tests'
    before = {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()}
    steps = QUICK.pretrain_steps + 10
    changed = dataclasses.replace(QUICK, pretrain_steps=steps)
    refused = (
        rf"fdm\+future was finished with other settings \(.*steps \d+ -> {steps}.*\); making it "
        "again would delete it"
    )
    with (
        pytest.warns(UserWarning, match=rf"pretrain_steps \d+ -> {steps}.*stops before deleting"),
        pytest.raises(StageReplaceRefusedError, match=refused + r"\. Add --replace"),
    ):
        run_pipeline(changed, copy, device="cpu", progress=False)
    assert {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file()} == before
    more_seeds = dataclasses.replace(QUICK, policy_seeds=(*QUICK.policy_seeds, 7))
    with pytest.warns(UserWarning, match="policy_seeds"):
        pipeline = Pipeline(more_seeds, copy, device="cpu", progress=False)
        pipeline.run()
    made = [r.name for r in pipeline.runner.results if not r.skipped]
    assert made and all("seed7" in name for name in made)


def test_a_variable_too_rarely_in_view_is_plotted_as_the_mean_counts_it() -> None:
    """A goal too rarely in view to score there counts on every frame in the probe's mean;
    the plot took its in-view n/a instead, and left out what the table counted."""
    from sslrobot.pipeline.report_builder import _headline_r2

    probe = {
        "probe/r2": {"goal": 0.91, "heading": 0.5},
        "probe/r2_in_view": {"goal": None, "bearing": 0.7, "far": float("nan")},
    }
    assert _headline_r2(probe) == {"goal": 0.91, "heading": 0.5, "bearing": 0.7}


def test_each_training_seed_can_draw_its_own_demonstrations(
    quick_run: Path, tmp_path: Path
) -> None:
    """All seeds trained on the same first N demonstrations, so the intervals left out which
    demonstrations were drawn (on Reach four draws of 25 moved fdm+future by 12 points)."""
    from sslrobot.policy.demos import select_demo_ids

    copy = tmp_path / "run"
    shutil.copytree(quick_run, copy)
    Pipeline(QUICK, copy, device="cpu", progress=False, replace=True).run()  # earlier tests'
    config = dataclasses.replace(QUICK, policy_seeds=(0, 1), demos_per_policy_seed=True)
    n = config.largest_demos
    assert config.demo_episodes_collected == 2 * n and config.demo_offset(1) == n
    with pytest.warns(UserWarning, match="policy_seeds"):
        run_pipeline(config, copy, device="cpu", progress=False, command="pytest draws")
    pipeline = Pipeline(config, copy, device="cpu", progress=False)
    pipeline.run()  # every stage found done
    assert all(r.skipped for r in pipeline.runner.results)
    # The seeds pool into one row (the offset is a per-seed setting, as the seed is).
    rows = json.loads((copy / "results.json").read_text())["aggregated"]
    assert {r["num_seeds"] for r in rows if r["checkpoint"] == "final"} == {2}
    assert "its own draw" in (copy / "report.md").read_text()

    def trained_on(encoder: str, seed: int) -> list[int]:
        policy = copy / f"Reach-v0/policy/{encoder}/demos{n}/seed{seed}/policy"
        return json.loads((policy / "policy_config.json").read_text())["demo_episode_ids"]

    for encoder in config.encoder_names:
        assert trained_on(encoder, 0) == list(range(n))  # seed 0's policies kept as they were
        assert trained_on(encoder, 1) == list(range(n, 2 * n))
    with pytest.raises(ValueError, match=r"hold 6 episodes; num_demos=4 plus num_val_demos=0 "
                       r"from demo_offset=3 do not fit"):  # fmt: skip
        select_demo_ids(list(range(6)), 4, 0, Path("demos"), offset=3)


def _rerun_copy(
    quick_run: Path, tmp_path: Path, config: RunConfig, changed: str
) -> tuple[Path, set[str]]:
    """A copy of the quick run run again with ``config`` (warning ``changed``) and its report
    built; returns the copy and the names of the stages that ran."""
    from sslrobot.pipeline.report_builder import build_report

    copy = tmp_path / "run"
    shutil.copytree(quick_run, copy)
    pipeline = Pipeline(config, copy, device="cpu", progress=False, replace=True)
    with pytest.warns(UserWarning, match=changed):
        artifacts = pipeline.run()
    build_report(
        config, copy, artifacts, pipeline.runner.results, command="pytest", wall_time_s=0.0
    )
    return copy, {r.name for r in pipeline.runner.results if not r.skipped}


def test_look_targets_pretrain_on_the_stream_collected_again_in_the_authored_look(
    quick_run: Path, tmp_path: Path
) -> None:
    """``look_targets``: the stream's look twin is collected (its own stage, the same
    episodes in the authored look) and the objectives with targets take theirs from it; the
    random init, the other stages and the earlier run's data stay as they were."""
    config = dataclasses.replace(QUICK, look_targets=True)
    copy, ran = _rerun_copy(quick_run, tmp_path, config, "look_targets False -> True")
    assert "Reach-v0/data/unlabeled_authored" in ran
    assert "Reach-v0/pretrain/fdm+future" in ran
    assert not ran & {"Reach-v0/data/unlabeled", "Reach-v0/pretrain/none"}
    twin = copy / "Reach-v0/data/unlabeled_authored/dataset"
    manifest = json.loads((twin / "manifest.json").read_text())
    assert manifest["env_kwargs"]["visual_preset"] == "none"
    saved = json.loads(
        (copy / "Reach-v0/pretrain/fdm+future/encoder/pretrain_config.json").read_text()
    )
    assert saved["pretrain"]["look_target_data"] == str(twin)
    assert "Look targets: each task's unlabeled stream" in (copy / "report.md").read_text()
    with pytest.raises(ValueError, match="objectives \\['inverse'\\] have none of them"):
        dataclasses.replace(QUICK, look_targets=True, objectives=("inverse",))


def test_transport_pretrains_fixed_camera_tasks_with_batch_pairs_from_the_twin(
    quick_run: Path, tmp_path: Path
) -> None:
    """``transport_weight``: on a task whose camera is fixed each objective is pretrained with
    ``+transport:<w>``, batch pairs and the configured keypoints, under its own name; the
    random init keeps its stage, and a moving camera (Navigate) or the mixed streams never
    get the term (batch pairs there share no background)."""
    config = dataclasses.replace(
        QUICK, look_targets=True, transport_weight=3.0, transport_keypoints=4
    )
    copy, ran = _rerun_copy(quick_run, tmp_path, config, "transport_weight 0.0 -> 3.0")
    assert "Reach-v0/pretrain/fdm+future" in ran and "Reach-v0/pretrain/none" not in ran
    saved = json.loads(
        (copy / "Reach-v0/pretrain/fdm+future/encoder/pretrain_config.json").read_text()
    )["pretrain"]
    assert saved["objective"] == "fdm+future+transport:3"
    assert (saved["transport_pairs"], saved["transport_keypoints"]) == ("batch", 4)
    assert saved["look_target_data"].endswith("unlabeled_authored/dataset")
    assert "Transport: on sslrobot/Reach-v0 (fixed cameras)" in (copy / "report.md").read_text()

    assert config.transport_objective("fdm", "sslrobot/Push-v0") == "fdm+transport:3"
    assert config.transport_objective("fdm", "sslrobot/Navigate-v1") == "fdm"
    assert config.transport_objective("fdm", None) == "fdm"  # the mixed streams
    assert config.transport_objective("none", "sslrobot/Reach-v0") == "none"
    with pytest.raises(ValueError, match="set look_targets=true"):
        dataclasses.replace(QUICK, transport_weight=3.0)
    with pytest.raises(ValueError, match="needs encoder_arch='keypoints', got 'cnn'"):
        dataclasses.replace(QUICK, look_targets=True, transport_weight=3.0, encoder_arch="cnn")
    with pytest.raises(ValueError, match="transport_keypoints=40: the encoder has 32 keypoints"):
        dataclasses.replace(QUICK, look_targets=True, transport_weight=3.0, transport_keypoints=40)
    with pytest.raises(ValueError, match="transport_weight must be >= 0"):
        dataclasses.replace(QUICK, transport_weight=-1.0)


def test_online_rl_stages_add_their_own_tables_to_a_finished_run(
    quick_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rl_steps`` adds SAC policies on the run's frozen encoders and the oracle, evaluated
    on BC's episodes, without redoing any earlier stage; the report gives them a table of
    their own per task, and results.json their records under their own algorithm."""
    run = shutil.copytree(quick_run, tmp_path / "run")
    config = dataclasses.replace(QUICK, rl_steps=120, rl_encoders=("fdm+future", "state"))
    assert config.rl_encoder_names == ("fdm+future", "state")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # growing a finished run is not a settings change
        run_pipeline(config, run, device="cpu", progress=False, command="pytest rl")
    err = capsys.readouterr().err
    assert "rl_steps 0 -> 120, rl_encoders [] -> ['fdm+future', 'state'] only add stages" in err
    started = [line for line in err.splitlines() if line.startswith("[start]")]
    assert sorted(line.split()[1] for line in started) == sorted(
        f"Reach-v0/{kind}/{encoder}/{where}"
        for encoder in ("fdm+future", "state")
        for kind, where in (("rl", "seed0"), ("eval_rl", "demos3/seed0/train"))
    )
    saved = json.loads((run / "Reach-v0/rl/fdm+future/seed0/policy/policy_config.json").read_text())
    trained = saved["train_config"]
    assert (trained["algo"], trained["steps"], trained["num_demos"]) == ("rl", 120, 3)
    assert trained["rl_demo_share"] == 0.5
    assert (
        Path(trained["encoder"]).resolve()
        == (run / "Reach-v0/pretrain/fdm+future/encoder").resolve()
    )
    results = json.loads((run / "results.json").read_text())
    (task,) = results["tasks"]
    assert [row["encoder"] for row in task["rl_rows"]] == ["fdm+future", "state"]
    assert all(row["success"] is not None for row in task["rl_rows"])
    rl_rows = [row for row in results["aggregated"] if row["algo"] == "rl-sac"]
    assert {(row["encoder"], row["num_demos"]) for row in rl_rows} == {
        ("fdm+future", 3),
        ("state", 3),
    }
    bc_rows = [row for row in results["aggregated"] if row["algo"] == "bc"]
    assert {row["encoder"] for row in bc_rows} == set(QUICK.encoder_names)
    report = (run / "report.md").read_text()
    heading = "### Online RL (SAC, 120 environment steps, 3 demonstrations in 0.5 of each batch)"
    assert heading in report and "Online RL: Stable-Baselines3 SAC" in report
    assert f"<h3>{heading[4:]}</h3>" in (run / "report.html").read_text()
    assert (run / "plots" / "Reach-v0_rl_success.png").stat().st_size > 0
    assert (run / "media" / "Reach-v0_rl_fdm_future.gif").stat().st_size > 0
    assert "RL fdm+future (3 demos, training seed 0)" in report
    # Finished: a rerun redoes nothing, and the progress bar's count holds the RL stages.
    run_pipeline(config, run, device="cpu", progress=False, command="pytest rl")
    assert "[start]" not in capsys.readouterr().err
    pipeline = Pipeline(config, run, device="cpu", progress=False)
    pipeline.run()
    assert pipeline.count_stages() == len(pipeline.runner.results)
    # Critics on the state: the frozen encoders' RL stages train again (told to replace
    # them), the oracle's stays.
    asymmetric = dataclasses.replace(config, rl_critic_input="state")
    with pytest.warns(UserWarning, match="rl_critic_input 'policy' -> 'state'"):
        run_pipeline(asymmetric, run, device="cpu", progress=False, command="pytest rl",
                     replace=True)  # fmt: skip
    started = [line for line in capsys.readouterr().err.splitlines() if "[start]" in line]
    assert sorted(line.split()[1] for line in started if "/rl/" in line) == [
        "Reach-v0/rl/fdm+future/seed0"
    ]
    saved = json.loads((run / "Reach-v0/rl/fdm+future/seed0/policy/policy_config.json").read_text())
    assert saved["train_config"]["rl_critic_input"] == "state"
    assert saved["rl_critic_state_dim"] > 0
    report = (run / "report.md").read_text()
    assert "3 demonstrations in 0.5 of each batch, critics on the state)" in report
    assert "with SAC's critics reading the privileged state" in report


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rl_steps": -1}, "rl_steps must be >= 0"),
        ({"rl_steps": 100, "rl_demo_share": 1.0}, r"rl_demo_share must be in \[0, 1\)"),
        ({"rl_steps": 100, "rl_encoders": ("scratch",)}, "scratch trains its encoder"),
        ({"rl_steps": 100, "rl_encoders": ("fdm",)}, r"rl_encoders: \['fdm'\] not among"),
        ({"rl_steps": 100, "rl_encoders": ("none", "none")}, "rl_encoders repeats"),
        ({"rl_critic_input": "states"}, r"rl_critic_input must be one of \('policy', 'state'\)"),
    ],
)
def test_online_rl_settings_are_checked_before_anything_runs(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(QUICK, **overrides)


def test_online_rl_covers_the_frozen_encoders_and_oracle_unless_told() -> None:
    assert QUICK.rl_encoder_names == ()  # off by default
    config = dataclasses.replace(QUICK, rl_steps=100)
    assert config.rl_encoder_names == ("fdm+future", "none", "state")
    assert config.rl_num_demos == QUICK.main_demos
    assert dataclasses.replace(config, rl_demo_share=0.0).rl_num_demos == 0
    # Set while RL is off: no stage reads them, so a rerun does not count them as changed.
    from sslrobot.pipeline.presets import inert_settings

    assert {"rl_encoders", "rl_demo_share"} <= inert_settings(QUICK.to_dict())
    # "none" on the command line is the encoder, not JSON's null.
    assert parse_overrides(["rl_encoders=fdm+future, none,state"]) == {
        "rl_encoders": ("fdm+future", "none", "state")
    }


def test_online_rl_gets_its_own_means_over_the_tasks_against_its_own_oracle() -> None:
    """RL's records (algo ``rl-sac``) make blocks of their own after BC's, with RL's oracle
    as the reference, and never enter BC's means."""
    from sslrobot.pipeline.report_builder import across_tasks_blocks

    config = make_run_config(
        "quick", tasks=("sslrobot/Reach-v0", "sslrobot/Push-v0"), rl_steps=100,
        rl_encoders=("fdm+future", "state"),
    )  # fmt: skip

    def record(encoder: str, task: str, algo: str, success: float) -> dict:
        num_demos = config.main_demos if algo == "bc" else config.rl_num_demos
        return {
            "encoder": encoder, "env_id": task, "visual_preset": "train", "checkpoint": "final",
            "seed": 0, "num_demos": num_demos, "algo": algo,
            "episodes": [{"success": success, "seed": i} for i in range(4)],
        }  # fmt: skip

    records = [record(e, t, "bc", 0.0) for e in config.encoder_names for t in config.tasks]
    records += [record("fdm+future", t, "rl-sac", 1.0) for t in config.tasks]
    records += [record("state", t, "rl-sac", 1.0) for t in config.tasks]
    bc, rl = across_tasks_blocks(config, records)
    assert bc["label"] == "final checkpoints"
    assert [row["encoder"] for row in bc["rows"]] == list(config.encoder_names)
    assert all(row["success"]["mean"] == 0.0 for row in bc["rows"])
    assert rl["label"] == "online RL (SAC, 100 steps, 3 demos), final checkpoints"
    assert [row["encoder"] for row in rl["rows"]] == ["fdm+future", "state"]
    (pretrained,) = [row for row in rl["rows"] if row["encoder"] == "fdm+future"]
    assert pretrained["success"]["mean"] == 1.0 and pretrained["of_reference"]["mean"] == 1.0
