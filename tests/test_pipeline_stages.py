"""The stage cache on its own: skipping, redoing, resuming, timing and damaged records."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from sslrobot.pipeline.stages import MARKER, STARTED, StageRunner
from sslrobot.utils.config import config_hash


def _runner(root: Path) -> StageRunner:
    return StageRunner(root, log=lambda line: None)


def test_a_finished_stage_is_skipped_and_a_changed_one_redone(tmp_path: Path) -> None:
    calls = []

    def work(stage_dir: Path, resume: bool) -> dict:
        calls.append(resume)
        (stage_dir / "out.txt").write_text("done")
        return {"n": len(calls)}

    first = _runner(tmp_path).run("a", {"x": 1}, work)
    again = _runner(tmp_path).run("a", {"x": 1}, work)
    assert not first.skipped and again.skipped and again.value == {"n": 1}
    changed = _runner(tmp_path).run("a", {"x": 2}, work)
    assert not changed.skipped and calls == [False, False]
    # The log says which config changed: a dependent's own was blamed for its upstream's.
    lines: list[str] = []
    for lr in (1, 1, 2):
        runner = StageRunner(tmp_path, log=lines.append)
        runner.run("b", {"lr": 0}, work, depends_on=(runner.run("up", {"lr": lr}, work),))
    runner.run("b", {"lr": 1}, work, depends_on=(runner.run("up", {"lr": 2}, work),))
    redone = [line for line in lines if line.startswith("[redo]")]
    assert redone == [
        "[redo] up: its config changed",
        "[redo] b: the config of a stage it depends on changed",
        "[redo] b: its config changed",
    ]


def test_a_resumed_stage_counts_the_time_of_its_interrupted_attempt(tmp_path: Path) -> None:
    """The report's stage times (and the sum of them) were the last attempt's alone."""

    def interrupted(stage_dir: Path, resume: bool) -> None:
        (stage_dir / "checkpoint").write_text("half")
        raise KeyboardInterrupt

    for name, resumes in (("a", True), ("b", False)):
        with pytest.raises(KeyboardInterrupt):
            _runner(tmp_path).run(name, {"x": 1}, interrupted, resumes=resumes)
        started = json.loads((tmp_path / name / STARTED).read_text())
        # As if the attempt had begun 100 s before its last write.
        started["started_at"] = (tmp_path / name / "checkpoint").stat().st_mtime - 100.0
        (tmp_path / name / STARTED).write_text(json.dumps(started))
    resumed = []
    result = _runner(tmp_path).run(
        "a", {"x": 1}, lambda d, resume: resumed.append(resume), resumes=True
    )
    assert resumed == [True]
    assert 100.0 <= result.seconds < 110.0
    assert json.loads((tmp_path / "a" / MARKER).read_text())["seconds"] == result.seconds
    # A stage that redoes its job on resume (training a policy, a probe) counts the redo only.
    redone = _runner(tmp_path).run("b", {"x": 1}, lambda d, resume: None)
    assert redone.seconds < 10.0


def test_a_growing_stage_keeps_its_hash_and_adopts_records_from_before(tmp_path: Path) -> None:
    """Demonstration sets grow in place; a run directory made before the size left the hash
    (it was a setting) keeps its stages: its record is taken as made with that size."""
    sizes = []

    def collect(stage_dir: Path, resume: bool) -> None:
        sizes.append(resume)

    first = _runner(tmp_path).run("d", {"seed": 0}, collect, count=("num_episodes", 25))
    grown = _runner(tmp_path).run("d", {"seed": 0}, collect, count=("num_episodes", 50))
    assert grown.config_hash == first.config_hash and sizes == [False, True]
    again = _runner(tmp_path).run("d", {"seed": 0}, collect, count=("num_episodes", 50))
    assert again.skipped and again.config_hash == first.config_hash
    # Shrunk, even below the size first made: the finished stage holds the first N episodes
    # too, so it is kept, and what depends on it keeps its hash (nothing is redone; a shrink
    # used to recollect the stage, and below the first size every policy on it).
    shrunk = _runner(tmp_path).run("d", {"seed": 0}, collect, count=("num_episodes", 40))
    assert shrunk.skipped and shrunk.config_hash == first.config_hash
    fewer = _runner(tmp_path).run("d", {"seed": 0}, collect, count=("num_episodes", 10))
    assert fewer.skipped and fewer.config_hash == first.config_hash and len(sizes) == 2
    # ... and growing again past what it holds extends it, under the same hash.
    regrown = _runner(tmp_path).run("d", {"seed": 0}, collect, count=("num_episodes", 60))
    assert not regrown.skipped and regrown.config_hash == first.config_hash and sizes[-1]
    # A record of the earlier layout: the size among the settings, no count of its own.
    legacy = {"seed": 0, "num_episodes": 25}
    old = _runner(tmp_path).run("e", legacy, collect)
    record = json.loads((tmp_path / "e" / MARKER).read_text())
    del record["count"], record["made_with"]
    (tmp_path / "e" / MARKER).write_text(json.dumps(record))
    adopted = _runner(tmp_path).run("e", {"seed": 0}, collect, count=("num_episodes", 25))
    assert adopted.skipped and adopted.config_hash == old.config_hash
    grown = _runner(tmp_path).run("e", {"seed": 0}, collect, count=("num_episodes", 30))
    assert not grown.skipped and grown.config_hash == old.config_hash


def test_a_damaged_stage_record_is_named(tmp_path: Path) -> None:
    _runner(tmp_path).run("a", {"x": 1}, lambda d, resume: None)
    marker = tmp_path / "a" / MARKER
    marker.write_text(marker.read_text()[:20])
    with pytest.raises(ValueError, match=rf"{marker} is not valid JSON .* delete it"):
        _runner(tmp_path).run("a", {"x": 1}, lambda d, resume: None)


def test_an_old_start_record_without_a_time_resumes_from_zero(tmp_path: Path) -> None:
    stage = tmp_path / "a"
    stage.mkdir()
    digest = config_hash({"config": {"x": 1}, "upstream": []})
    (stage / STARTED).write_text(json.dumps({"config_hash": digest}))
    old = time.time() - 1000
    (stage / "checkpoint").write_text("half")
    os.utime(stage / "checkpoint", (old, old))
    result = _runner(tmp_path).run("a", {"x": 1}, lambda d, resume: None)
    assert result.seconds < 10.0


def test_the_first_change_is_announced_once_and_never_by_skips(tmp_path: Path) -> None:
    """The run records its config there: stopped while stages were still being found done,
    it must leave the directory's record alone."""

    def work(stage_dir: Path, resume: bool) -> dict:
        return {}

    _runner(tmp_path).run("a", {"x": 1}, work)
    _runner(tmp_path).run("b", {"x": 1}, work)
    events: list[str] = []
    runner = StageRunner(
        tmp_path, log=events.append, before_first_change=lambda: events.append("!")
    )
    runner.run("a", {"x": 1}, work)
    assert events[-1].startswith("[skip] a") and "!" not in events
    runner.run("b", {"x": 2}, work)  # changed: announced before the old stage goes
    runner.run("c", {"x": 1}, work)  # new: no second announcement
    assert events.count("!") == 1 and events.index("!") == 1 and events[2].startswith("[redo] b")


def test_a_stage_made_again_loses_its_records_before_its_files(tmp_path, monkeypatch):
    """rmtree deletes in listing order: a Ctrl-C after the data but before stage.json left a
    finished-looking stage with half its files, which a rerun of the earlier settings skipped."""
    import shutil

    from sslrobot.pipeline import stages

    stage = tmp_path / "stage"
    stage.mkdir()
    for name in (MARKER, STARTED, "data.bin"):
        (stage / name).write_text("x")

    def interrupted(path, *args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(stages.shutil, "rmtree", interrupted)
        with pytest.raises(KeyboardInterrupt):
            stages.remove_stage_dir(stage)
    assert sorted(p.name for p in stage.iterdir()) == ["data.bin"]  # not finished any more
    assert shutil.rmtree is not interrupted
    stages.remove_stage_dir(stage)
    assert not stage.exists()


def test_stages_keep_what_they_were_made_with_and_the_report_names_the_others(
    tmp_path: Path,
) -> None:
    """A rerun that skips a stage reports its numbers under the header of this invocation's
    versions and machine: each stage now keeps its own, and the report names those made with
    other package versions, another instruction set or device, or before they were kept."""
    from sslrobot.pipeline.report_builder import stages_made_otherwise
    from sslrobot.pipeline.stages import StageResult

    now = {
        "package_versions": {"sslrobot": "0.1", "torch": "2.13.0"},
        "machine": {"cpu": "EPYC", "torch_cpu_capability": "AVX512", "platform": "a"},
        "device": "cpu",
    }
    made = StageRunner(tmp_path, log=lambda line: None, provenance=now).run("a", {}, lambda d, r: 1)
    assert made.made_on == now
    assert json.loads((tmp_path / "a" / MARKER).read_text())["made_on"] == now
    assert _runner(tmp_path).run("a", {}, lambda d, r: 1).made_on == now  # kept on a skip

    described = {**now, "machine": {**now["machine"], "cpu": "Other", "platform": "b"}}
    older = {
        "package_versions": {"sslrobot": "0.1", "torch": "2.12.0"},
        "machine": {"cpu": "Xeon", "torch_cpu_capability": "AVX2"},
        "device": "cpu",
    }

    def result(name: str, made_on: dict | None) -> StageResult:
        return StageResult(name, tmp_path / name, "h", 1.0, True, None, made_on)

    # Another CPU of the same instruction set rounds the same: not named.
    assert stages_made_otherwise([result("a", now), result("b", described)], now) is None
    text = stages_made_otherwise(
        [result("a", now), result("b", older), result("c", older), result("d", None)], now
    )
    assert text is not None and text.startswith("of the 4 stages, ")
    assert "1 made before stages recorded their versions and machine (e.g. d)" in text
    assert "2 made with torch 2.12.0 (now 2.13.0), CPU AVX2 on Xeon (now AVX512) (e.g. b)" in text


def test_a_stage_whose_upstream_was_made_again_is_made_again(tmp_path: Path) -> None:
    """Deleting a stage's directory redoes it (as a damaged record's message advises), and
    its dependents, keyed on its config alone, stayed on what the deleted stage had made;
    a grown stage keeps its id, so its users are not redone."""
    import shutil

    calls = []

    def stage(name: str):
        return lambda d, resume: calls.append(name)

    def chain() -> None:
        runner = _runner(tmp_path)
        data = runner.run("data", {"seed": 0}, stage("data"), count=("n", 5))
        runner.run("model", {"lr": 1}, stage("model"), depends_on=(data,))

    chain()
    chain()
    assert calls == ["data", "model"]  # the second time, both skipped
    shutil.rmtree(tmp_path / "data")
    chain()
    assert calls == ["data", "model", "data", "model"]
    runner = _runner(tmp_path)
    grown = runner.run("data", {"seed": 0}, stage("data"), count=("n", 9))
    runner.run("model", {"lr": 1}, stage("model"), depends_on=(grown,))
    assert calls[-1] == "data" and len(calls) == 5  # grown, its user kept
    # A record from before stages drew ids: its users are not redone for want of one.
    record = json.loads((tmp_path / "model" / MARKER).read_text())
    del record["upstream_made"]
    (tmp_path / "model" / MARKER).write_text(json.dumps(record))
    shutil.rmtree(tmp_path / "data")
    chain()
    assert calls[-1] == "data" and len(calls) == 6


def test_an_interrupted_stage_resumes_only_on_the_upstream_it_started_on(tmp_path: Path) -> None:
    """An attempt cut short continued on top of an upstream made again meanwhile; and a
    grow cut short, rerun at a smaller size, recollected everything and redid its users."""
    import shutil

    calls: list[tuple[str, bool]] = []

    def stage(name: str, fail: bool = False):
        def run(stage_dir: Path, resume: bool) -> None:
            calls.append((name, resume))
            if fail:
                raise KeyboardInterrupt

        return run

    runner = _runner(tmp_path)
    up = runner.run("up", {}, stage("up"))
    with pytest.raises(KeyboardInterrupt):
        runner.run("down", {}, stage("down", fail=True), depends_on=(up,))
    shutil.rmtree(tmp_path / "up")
    runner = _runner(tmp_path)
    up = runner.run("up", {}, stage("up"))
    runner.run("down", {}, stage("down"), depends_on=(up,))
    assert calls[-1] == ("down", False)  # started afresh, not resumed on the old upstream

    runner = _runner(tmp_path)
    data = runner.run("data", {}, stage("data"), count=("n", 10))
    runner.run("user", {}, stage("user"), depends_on=(data,))
    with pytest.raises(KeyboardInterrupt):
        _runner(tmp_path).run("data", {}, stage("data", fail=True), count=("n", 30))
    runner = _runner(tmp_path)
    data = runner.run("data", {}, stage("data"), count=("n", 8))
    runner.run("user", {}, stage("user"), depends_on=(data,))
    assert calls[-1] == ("data", True)  # resumed to the smaller size; its user kept

    # What a stage was made with follows it through a grow: its first episodes' makers.
    older = {"package_versions": {"torch": "2.12.0"}, "machine": {}, "device": "cpu"}
    now = {"package_versions": {"torch": "2.13.0"}, "machine": {}, "device": "cpu"}
    StageRunner(tmp_path, log=lambda line: None, provenance=older).run(
        "grown", {}, stage("g"), count=("n", 5)
    )
    grown = StageRunner(tmp_path, log=lambda line: None, provenance=now).run(
        "grown", {}, stage("g"), count=("n", 9)
    )
    assert calls[-1] == ("g", True) and grown.made_on == older


def test_a_ctrl_c_swallowed_inside_a_stage_stops_the_run_at_the_next(tmp_path: Path) -> None:
    """A KeyboardInterrupt raised inside a finalizer (tqdm's, logging's at-fork hook) is
    printed and dropped by Python, and `sslrobot run` went on to finish with exit code 0."""
    import contextlib
    import signal

    from sslrobot.pipeline.stages import noting_interrupts

    def swallowing(stage_dir: Path, resume: bool) -> None:
        with contextlib.suppress(KeyboardInterrupt):  # as a finalizer's is
            signal.raise_signal(signal.SIGINT)

    # Python's own handler, whatever this process inherited (a test run started in the
    # background, under nohup, ignores SIGINT, which noting_interrupts leaves alone).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with noting_interrupts():
            runner = _runner(tmp_path)
            runner.run("a", {}, swallowing)
            with pytest.raises(KeyboardInterrupt, match="interrupted earlier"):
                runner.run("b", {}, lambda d, r: None)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, inherited)
    assert not _runner(tmp_path).run("b", {}, lambda d, r: None).skipped  # noted no longer
