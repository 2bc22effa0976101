"""Cached, resumable stages keyed by a hash of their config and of what they depend on.

A stage's directory holds ``stage.json`` once it has finished. Running it again with the same
config hash skips it; a different hash (the stage's own settings or any upstream stage's
changed), or an upstream stage made again since (its directory deleted), reruns it from an
empty directory; a directory without ``stage.json`` is an interrupted run and the stage is
called with ``resume=True`` so it can continue.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslrobot.utils.config import config_hash
from sslrobot.utils.io import atomic_write_json

MARKER = "stage.json"
STARTED = "stage_started.json"

#: Set by ``noting_interrupts``'s handler when Ctrl-C arrives: a KeyboardInterrupt raised
#: inside a finalizer (tqdm's, logging's at-fork hook) is printed and dropped by Python, and
#: the run went on to finish; the next stage then stops it instead.
_INTERRUPTED = threading.Event()


@contextlib.contextmanager
def noting_interrupts() -> Iterator[None]:
    """Within it, Ctrl-C raises KeyboardInterrupt as usual and is also noted, so that
    ``StageRunner.run`` stops at the next stage if the exception was swallowed. Only in the
    main thread and over Python's own handler (another's is left alone)."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def note(signum: int, frame: Any) -> None:
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    _INTERRUPTED.clear()
    signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _INTERRUPTED.clear()


def stop_if_interrupted() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that something swallowed since."""
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt("interrupted earlier (Ctrl-C), where it could not stop the run")


def remove_stage_dir(stage_dir: Path) -> None:
    """Delete a stage's directory, its records first: ``rmtree`` goes in listing order, and a
    Ctrl-C after the data but before ``stage.json`` left a finished-looking stage with half
    its files, which a rerun of the earlier settings skipped. ``stage_started.json`` goes
    before ``stage.json``: a stop between them leaves the stage whole and finished."""
    for record in (STARTED, MARKER):
        (stage_dir / record).unlink(missing_ok=True)
    shutil.rmtree(stage_dir)


def read_json_file(path: Path) -> Any:
    """A run's JSON file; a damaged one (written atomically, so only by hand or a bad disk)
    is a ``ValueError`` naming it, not a bare decoder message naming no file."""
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); delete it (for a stage file: its stage "
            "directory) to redo what wrote it"
        ) from error


@dataclass
class StageResult:
    """What one stage produced: where, under which hash, how long it took, and whether it ran."""

    name: str
    path: Path
    config_hash: str
    seconds: float
    skipped: bool
    value: Any = None
    #: What the stage was made with (``StageRunner.provenance`` when it ran; None for one
    #: finished before stages recorded it).
    made_on: dict[str, Any] | None = None
    #: An id drawn each time the stage is made (kept when it grows): a stage whose upstream
    #: was made again since it finished, under the same config (its directory deleted to
    #: redo it), is made again too. None for one finished before stages drew it.
    made_id: str | None = None


@dataclass
class StageRunner:
    """Runs stages under ``root`` and remembers their results for the report.

    Args:
        root: the run's output directory.
        log: called with one line per stage event (start, skip, done).
        before_first_change: called once, before the first stage that will write or delete
            anything (not before skips): the run records its config there, so a run stopped
            while every stage was still being found done leaves the directory's record alone.
        provenance: what this invocation makes stages with (package versions, machine,
            device), kept in each stage it finishes: a rerun that skips a stage reports the
            stage's numbers, which are those of the code and machine that made it.
        replace: whether a stage made (or begun) with other settings of its own may be made
            again, deleting it; if not, ``StageReplaceRefusedError`` is raised before anything of
            it is touched (a mistyped ``--set`` deleted an hour of pretraining). Stages made
            on an upstream that was made again are redone either way: they describe data or
            encoders that are gone.
    """

    root: Path
    log: Callable[[str], None] = print
    results: list[StageResult] = field(default_factory=list)
    before_first_change: Callable[[], None] | None = None
    provenance: dict[str, Any] | None = None
    replace: bool = True

    def run(
        self,
        name: str,
        config: dict[str, Any],
        fn: Callable[[Path, bool], Any],
        depends_on: tuple[StageResult, ...] = (),
        count: tuple[str, int] | None = None,
        resumes: bool = False,
    ) -> StageResult:
        """Run ``fn(stage_dir, resume)`` unless an identical finished stage exists.

        ``fn`` returns a JSON-serialisable value (metrics, paths) kept in ``stage.json``.

        Args:
            count: ``(setting name, size)`` for stages whose output only grows with a size (a
                demonstration set: episode i is the same whatever the count, and its users
                read the first N). The hash holds the size the stage was first made with, so
                a larger size calls ``fn(stage_dir, True)`` to extend the finished stage and
                what depends on it keeps its hash; a smaller one keeps the finished stage as
                it is (it holds the first N too: recollecting it, and redoing everything
                below a shrink past the first size, changed nothing). Records written before,
                with the size in the settings, are taken as made with that size.
            resumes: ``fn`` continues an interrupted attempt (collection, training) rather
                than redoing it, so the attempt's time counts towards the stage's.
        """
        stop_if_interrupted()
        stage_dir = self.root / name
        marker = stage_dir / MARKER
        record = read_json_file(marker) if marker.is_file() else None
        made_with = None  # the size in the hash
        if count is not None:
            key, size = count
            made_with = size
            # A finished record, else an interrupted attempt's (a grow cut short).
            earlier_record = record
            if earlier_record is None and (stage_dir / STARTED).is_file():
                earlier_record = read_json_file(stage_dir / STARTED)
            if earlier_record is not None:
                kept = earlier_record.get(
                    "made_with", (earlier_record.get("config") or {}).get(key)
                )
                # The size first made names the data while it holds those episodes: grown,
                # or at any size (a finished stage asked for fewer is skipped, below; an
                # interrupted one resumes, and collection keeps the first N whatever the
                # count), dependents keep their hash.
                if kept is not None:
                    made_with = kept
            config = {**config, key: made_with}
        full_config = {"config": config, "upstream": [dep.config_hash for dep in depends_on]}
        digest = config_hash(full_config)
        size = None if count is None else count[1]
        upstream_made = [dep.made_id for dep in depends_on]
        same = record is not None and record.get("config_hash") == digest
        # Made on the upstream stages as they are now (a record from before this was kept
        # cannot tell, and counts as made on them).
        remade_upstream = same and record.get("upstream_made", upstream_made) != upstream_made
        same = same and not remade_upstream
        held = None if record is None else record.get("count", made_with)  # its size now
        if record is not None and same and (size is None or held >= size):
            result = StageResult(
                name, stage_dir, digest, record["seconds"], True, record["value"],
                record.get("made_on"), record.get("made_id"),
            )  # fmt: skip
            larger = "" if held == size else f", holding {held} >= {size}"
            self.log(f"[skip] {name} (finished earlier in {record['seconds']:.0f}s{larger})")
            self.results.append(result)
            return result
        started_file = stage_dir / STARTED
        started = read_json_file(started_file) if started_file.is_file() else {}
        if not self.replace:
            self._refuse_replacing(name, record, same, started, config, digest)
        if self.before_first_change is not None:
            self.before_first_change()
            self.before_first_change = None
        if record is not None:
            if same and size is not None and held < size:
                # Extend it: an interrupted run of the larger size, its time so far carried.
                self.log(f"[grow] {name}: {held} -> {size}")
                atomic_write_json(
                    stage_dir / STARTED,
                    {"config_hash": digest, "seconds_before": record["seconds"],
                     "made_id": record.get("made_id"), "made_on": record.get("made_on"),
                     "upstream_made": upstream_made, **full_config},
                )  # fmt: skip
                marker.unlink()
                resumes = True
            else:
                if remade_upstream:
                    why = "a stage it depends on was made again"
                elif record.get("config") == json.loads(json.dumps(config)):
                    why = "the config of a stage it depends on changed"
                else:
                    why = "its config changed"
                self.log(f"[redo] {name}: {why}")
                remove_stage_dir(stage_dir)
        started = read_json_file(started_file) if started_file.is_file() else {}
        # An attempt continues on the upstream stages it started on (an older attempt's
        # record, without them, cannot tell and continues).
        resume = started.get("config_hash") == digest and (
            started.get("upstream_made", upstream_made) == upstream_made
        )
        if stage_dir.is_dir() and not resume:
            remove_stage_dir(stage_dir)  # a leftover of another config: start clean
        earlier = _earlier_seconds(stage_dir, started) if resume and resumes else 0.0
        stage_dir.mkdir(parents=True, exist_ok=True)
        # A grown stage keeps its id: the episodes its users read are the ones they read. A
        # resumed or grown one keeps what its first attempt was made with (None: unknown),
        # the report's conservative account of a stage made partly elsewhere.
        made_id = started["made_id"] if resume and "made_id" in started else uuid.uuid4().hex
        made_on = started["made_on"] if resume and "made_on" in started else self.provenance
        atomic_write_json(
            started_file,
            {"config_hash": digest, "started_at": time.time(), "seconds_before": earlier,
             "made_id": made_id, "made_on": made_on, "upstream_made": upstream_made,
             **full_config},
        )  # fmt: skip
        self.log(f"[{'resume' if resume else 'start'}] {name}")
        start = time.perf_counter()
        value = fn(stage_dir, resume)
        seconds = earlier + time.perf_counter() - start
        atomic_write_json(
            marker,
            {"config_hash": digest, "seconds": seconds, "value": value, "count": size,
             "made_with": made_with, "made_on": made_on, "made_id": made_id,
             "upstream_made": upstream_made, **full_config},
        )  # fmt: skip
        self.log(f"[done] {name} in {seconds:.0f}s")
        result = StageResult(name, stage_dir, digest, seconds, False, value, made_on, made_id)
        self.results.append(result)
        return result

    def _refuse_replacing(
        self,
        name: str,
        record: dict[str, Any] | None,
        same: bool,
        started: dict[str, Any],
        config: dict[str, Any],
        digest: str,
    ) -> None:
        """Raise ``StageReplaceRefusedError`` when running ``name`` would delete a finished stage,
        or an interrupted attempt, made with other settings of its own."""
        own = json.loads(json.dumps(config))
        if record is not None and not same and record.get("config") != own:
            what, earlier = "finished", record.get("config") or {}
        elif started and started.get("config_hash") != digest and started.get("config") != own:
            what, earlier = "begun (an interrupted attempt)", started.get("config") or {}
        else:
            return
        # Named here: a stage's settings can change with the package's version too, where no
        # run setting did and no warning above names them.
        changed = ", ".join(
            f"{key} {earlier.get(key)!r} -> {own.get(key)!r}"
            for key in sorted({*earlier, *own})
            if earlier.get(key) != own.get(key)
        )
        raise StageReplaceRefusedError(
            f"{self.root / name} was {what} with other settings ({changed}); making it again "
            "would delete it. Add --replace to do so (replace=True from Python), or choose "
            "another --out"
        )


class StageReplaceRefusedError(ValueError):
    """A stage of another config would be deleted, and the run was not told to replace it."""


def _earlier_seconds(stage_dir: Path, started: dict[str, Any]) -> float:
    """Seconds the interrupted attempts of a stage ran: theirs before, plus the last one's
    from its start to its newest file (a checkpoint, a log line), so that a resumed stage's
    time is the whole job's, as an uninterrupted run would report it. 0 for records that
    predate the start time (or a grown stage's record, which carries its time)."""
    started_at = started.get("started_at")
    if started_at is None:
        return float(started.get("seconds_before", 0.0))
    written = [p.stat().st_mtime for p in stage_dir.rglob("*") if p.is_file() and p.name != STARTED]
    last = max(0.0, max(written, default=started_at) - started_at)
    return float(started.get("seconds_before", 0.0)) + last
