"""Cached, resumable stages keyed by a hash of their config and of what they depend on.

A stage's directory holds ``stage.json`` once it has finished. Running it again with the same
config hash skips it; a different hash (the stage's own settings or any upstream stage's
changed) reruns it from an empty directory; a directory without ``stage.json`` is an
interrupted run and the stage is called with ``resume=True`` so it can continue.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslrobot.utils.config import config_hash
from sslrobot.utils.io import atomic_write_json

MARKER = "stage.json"


@dataclass
class StageResult:
    """What one stage produced: where, under which hash, how long it took, and whether it ran."""

    name: str
    path: Path
    config_hash: str
    seconds: float
    skipped: bool
    value: Any = None


@dataclass
class StageRunner:
    """Runs stages under ``root`` and remembers their results for the report.

    Args:
        root: the run's output directory.
        log: called with one line per stage event (start, skip, done).
    """

    root: Path
    log: Callable[[str], None] = print
    results: list[StageResult] = field(default_factory=list)

    def run(
        self,
        name: str,
        config: dict[str, Any],
        fn: Callable[[Path, bool], Any],
        depends_on: tuple[StageResult, ...] = (),
    ) -> StageResult:
        """Run ``fn(stage_dir, resume)`` unless an identical finished stage exists.

        ``fn`` returns a JSON-serialisable value (metrics, paths) kept in ``stage.json``.
        """
        full_config = {"config": config, "upstream": [dep.config_hash for dep in depends_on]}
        digest = config_hash(full_config)
        stage_dir = self.root / name
        marker = stage_dir / MARKER
        if marker.is_file():
            record = json.loads(marker.read_text())
            if record.get("config_hash") == digest:
                result = StageResult(
                    name, stage_dir, digest, record["seconds"], True, record["value"]
                )
                self.log(f"[skip] {name} (finished earlier in {record['seconds']:.0f}s)")
                self.results.append(result)
                return result
            self.log(f"[redo] {name}: its config changed")
            shutil.rmtree(stage_dir)
        started_file = stage_dir / "stage_started.json"
        resume = started_file.is_file() and (
            json.loads(started_file.read_text()).get("config_hash") == digest
        )
        if stage_dir.is_dir() and not resume:
            shutil.rmtree(stage_dir)  # a leftover of another config: start clean
        stage_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(stage_dir / "stage_started.json", {"config_hash": digest, **full_config})
        self.log(f"[{'resume' if resume else 'start'}] {name}")
        start = time.perf_counter()
        value = fn(stage_dir, resume)
        seconds = time.perf_counter() - start
        atomic_write_json(
            marker,
            {"config_hash": digest, "seconds": seconds, "value": value, **full_config},
        )
        self.log(f"[done] {name} in {seconds:.0f}s")
        result = StageResult(name, stage_dir, digest, seconds, False, value)
        self.results.append(result)
        return result
