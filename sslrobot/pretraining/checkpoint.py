"""Training checkpoints: written atomically, the newest few kept, the latest one found again.

Layout under ``OUT/checkpoints/``::

    step_0001000/model.safetensors   all module weights, momentum targets included
    step_0001000/optimizer.pt        optimizer state (torch.save)
    step_0001000/state.json          {"step": 1000, ...}
    latest.json                      {"step": 1000, "name": "step_0001000"}

A checkpoint directory is assembled under a hidden temporary name and renamed into place;
``latest.json`` is replaced only after that rename, so a crash at any moment leaves the
previous checkpoint complete and pointed to.
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
from sslrobot.utils.io import atomic_write, fsync_dir

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
        if final.exists():  # left by a run that crashed before updating latest.json
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    artifacts.save_json(root / LATEST, {"step": step, "name": name})
    _prune(root, keep, current=name)
    return final


def _prune(root: Path, keep: int, current: str) -> None:
    """Remove all but the newest ``keep`` checkpoints and stale temporary directories."""
    for stale in root.glob(f".{_PREFIX}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    names = sorted(p.name for p in root.glob(f"{_PREFIX}*") if p.is_dir())
    for name in names[:-keep]:
        if name != current:
            shutil.rmtree(root / name, ignore_errors=True)


def latest_checkpoint_path(root: Path) -> Path | None:
    """The directory ``latest.json`` points to, or None when there is no checkpoint."""
    latest = root / LATEST
    if not latest.is_file():
        return None
    info = artifacts.read_json(latest, "latest-checkpoint pointer")
    path = root / str(info.get("name", ""))
    if not path.is_dir():
        raise FileNotFoundError(f"{latest} points to {path}, which does not exist")
    return path


def load_checkpoint(path: Path) -> Checkpoint:
    """Load a checkpoint directory written by ``save_checkpoint`` (tensors on CPU)."""
    state = artifacts.read_json(path / STATE, "checkpoint state")
    model_state = artifacts.read_safetensors(path / WEIGHTS, "checkpoint weights")
    optimizer_state = None
    if (path / OPTIMIZER).is_file():
        try:
            optimizer_state = torch.load(path / OPTIMIZER, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
            raise ValueError(
                f"optimizer state {path / OPTIMIZER} is unreadable: {error}"
            ) from error
    if not isinstance(state.get("step"), int):
        raise ValueError(f"{path / STATE} has no integer 'step'")
    return Checkpoint(state["step"], path, model_state, optimizer_state, state)
