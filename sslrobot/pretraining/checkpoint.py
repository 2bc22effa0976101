"""Training checkpoints: written atomically, the newest few kept, the latest one found again.

Layout under ``OUT/checkpoints/``::

    step_0001000/model.safetensors   all module weights, momentum targets included
    step_0001000/optimizer.pt        optimizer state (torch.save)
    step_0001000/state.json          {"step": 1000, ...}
    latest.json                      {"step": 1000, "name": "step_0001000"}

A checkpoint directory is assembled under a hidden temporary name, synced, and renamed into
place, so a ``step_*`` directory is always complete; ``latest.json`` is replaced (and synced)
only after that rename, and older checkpoints are pruned only after it. Resuming takes the
newest ``step_*`` directory, whatever ``latest.json`` says: a crash between the rename and
``latest.json`` left a complete checkpoint that a resume ignored and the next save deleted.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sslrobot.pretraining import artifacts
from sslrobot.utils.io import atomic_write, atomic_write_json, fsync_dir

WEIGHTS = "model.safetensors"
OPTIMIZER = "optimizer.pt"
STATE = "state.json"
LATEST = "latest.json"
_PREFIX = "step_"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the step it was taken after, and the saved states."""

    step: int
    path: Path
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    state: dict[str, Any]


def checkpoint_name(step: int) -> str:
    return f"{_PREFIX}{step:07d}"


def save_checkpoint(
    root: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any] | None,
    state: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write a checkpoint for ``step`` under ``root`` and keep only the newest ``keep``.

    Returns:
        The checkpoint directory.
    """
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    tmp.chmod(0o755)  # mkdtemp makes it private
    try:
        artifacts.save_safetensors(tmp / WEIGHTS, model_state)
        if optimizer_state is not None:
            atomic_write(tmp / OPTIMIZER, lambda file: torch.save(optimizer_state, file))
        artifacts.save_json(tmp / STATE, {**(state or {}), "step": step})
        fsync_dir(tmp)  # its files' entries before the directory's rename
        if final.exists():  # a run that crashed after its rename: this step again, replaced
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_json(root / LATEST, {"step": step, "name": name}, sync_dir=True)
    _prune(root, keep, current=name)
    return final


def tidy_after_resume(root: Path, current: Path, keep: int) -> None:
    """What a kill between a checkpoint's rename and its pruning left, put right once a
    resume has loaded ``current`` (a run resumed at its last step saves nothing more, so the
    next save would never come): ``latest.json`` pointing to the one before, checkpoints past
    ``keep``, and a pruned one half deleted."""
    latest = {"step": _step_of(current.name), "name": current.name}
    atomic_write_json(root / LATEST, latest, sync_dir=True)
    _prune(root, keep, current=current.name)


def _step_of(name: str) -> int | None:
    """The step of a ``step_*`` name (any number of digits), else None."""
    digits = name.removeprefix(_PREFIX)
    return int(digits) if name.startswith(_PREFIX) and digits.isdigit() else None


def _checkpoint_dirs(root: Path) -> list[Path]:
    """The ``step_*`` directories under ``root``, oldest first by step (not by name: past
    9,999,999 steps the names outgrow their padding and sort as text no longer)."""
    found = [(_step_of(p.name), p) for p in root.glob(f"{_PREFIX}*") if p.is_dir()]
    return [path for step, path in sorted((s, p) for s, p in found if s is not None)]


def _prune(root: Path, keep: int, current: str) -> None:
    """Remove all but the newest ``keep`` checkpoints, stale temporary directories (of steps
    up to this one: a later step's could be another process's in flight), and checkpoints
    half deleted by a kill during an earlier prune (no ``state.json``: every checkpoint is
    renamed into place whole, so only a removal leaves one so)."""
    current_step = _step_of(current)
    for stale in root.glob(f".{_PREFIX}*"):
        step = _step_of(stale.name[1:].split(".")[0])
        if stale.is_dir() and step is not None and step <= current_step:
            shutil.rmtree(stale, ignore_errors=True)
    for path in _checkpoint_dirs(root):
        if path.name != current and not (path / STATE).is_file():
            shutil.rmtree(path, ignore_errors=True)
    for path in _checkpoint_dirs(root)[:-keep]:
        if path.name != current:
            shutil.rmtree(path, ignore_errors=True)


def latest_checkpoint_path(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (every ``step_*`` directory is: each is
    renamed into place whole), or None when there is none.

    ``latest.json`` is not needed to find it: a crash after a checkpoint's rename and before
    ``latest.json`` was replaced left it pointing to the one before, or to nothing.
    """
    dirs = [path for path in _checkpoint_dirs(root) if (path / STATE).is_file()]
    return dirs[-1] if dirs else None


def load_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint directory written by ``save_checkpoint`` (tensors on CPU).

    Raises:
        ValueError: a damaged file, named, with the way on: the checkpoint before it, where
            one is kept, continues the run once this one is moved aside.
    """
    try:
        return _load_checkpoint(path)
    except ValueError as error:
        step = _step_of(path.name)
        older = [
            p
            for p in _checkpoint_dirs(path.parent)
            if (_step_of(p.name) or 0) < (step or 0) and (p / STATE).is_file()
        ]
        if older:
            hint = (
                f"; move {path} aside and --resume continues from {older[-1].name}, the "
                "checkpoint before it"
            )
        else:
            hint = "; no earlier checkpoint is kept beside it"
        raise ValueError(f"{error}{hint}") from error


def _load_checkpoint(path: Path) -> Checkpoint:
    state = artifacts.read_json(path / STATE, "checkpoint state")
    model_state = artifacts.read_safetensors(path / WEIGHTS, "checkpoint weights")
    optimizer_state = None
    if (path / OPTIMIZER).is_file():
        try:
            optimizer_state = torch.load(path / OPTIMIZER, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            if isinstance(error, EOFError):  # its text is empty
                reason = "the file ends early"
            elif isinstance(error, pickle.UnpicklingError):  # torch's text suggests an unsafe load
                reason = "not a saved optimizer state: damaged, or another file"
            else:
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(
                f"optimizer state {path / OPTIMIZER} is unreadable ({reason})"
            ) from error
    if not isinstance(state.get("step"), int):
        raise ValueError(f"{path / STATE} has no integer 'step'")
    return Checkpoint(state["step"], path, model_state, optimizer_state, state)
