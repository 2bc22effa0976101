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


def test_a_resumed_stage_counts_the_time_of_its_interrupted_attempt(tmp_path: Path) -> None:
    """The report's stage times (and the sum of them) were the last attempt's alone."""

    def interrupted(stage_dir: Path, resume: bool) -> None:
        (stage_dir / "checkpoint").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _runner(tmp_path).run("a", {"x": 1}, interrupted)
    started = json.loads((tmp_path / "a" / STARTED).read_text())
    # As if the attempt had begun 100 s before its last write.
    started["started_at"] = (tmp_path / "a" / "checkpoint").stat().st_mtime - 100.0
    (tmp_path / "a" / STARTED).write_text(json.dumps(started))
    resumed = []
    result = _runner(tmp_path).run("a", {"x": 1}, lambda d, resume: resumed.append(resume))
    assert resumed == [True]
    assert 100.0 <= result.seconds < 110.0
    assert json.loads((tmp_path / "a" / MARKER).read_text())["seconds"] == result.seconds


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
