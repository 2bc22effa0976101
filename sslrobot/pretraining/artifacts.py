"""File names of a ``sslrobot pretrain --out`` directory, and reading/writing them safely.

Every read failure names the file and says what to do; every write is atomic (temp file in the
same directory, fsync, ``os.replace``), so an interrupted run never leaves a torn file behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import safetensors
import safetensors.torch
import torch
from torch import nn

from sslrobot.utils.io import atomic_write, atomic_write_json

ENCODER_WEIGHTS = "encoder.safetensors"
ENCODER_CONFIG = "encoder_config.json"
PRETRAIN_CONFIG = "pretrain_config.json"
MODEL_WEIGHTS = "model.safetensors"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.csv"
LOSS_CURVE = "loss_curve.png"
PREDICTIONS = "predictions"
KEYPOINTS = "keypoints"
TENSORBOARD = "tensorboard"

T = TypeVar("T")

_HINT = "is this a `sslrobot pretrain --out` directory from a finished run?"


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object, raising ``FileNotFoundError``/``ValueError`` that name ``path``."""
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} is not a directory ({_HINT})")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} is missing ({_HINT})")
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{what} file {path} is unreadable or corrupt: {error}") from error
    if not isinstance(value, dict):
        raise ValueError(f"{what} file {path} must hold a JSON object, got {type(value).__name__}")
    return value


def read_config_section(root: Path, section: str, parse: Callable[[Any], T]) -> T:
    """``parse(values[section])`` of ``root/pretrain_config.json``, with errors naming the file.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is corrupt, or the section is missing or does not parse.
    """
    path = root / PRETRAIN_CONFIG
    values = read_json(path, "pretraining config")
    try:
        return parse(values[section])
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path} has no valid {section!r} section: {error}") from error


def read_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """Load tensors on CPU, raising ``FileNotFoundError``/``ValueError`` that name ``path``."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} is missing ({_HINT})")
    try:
        return safetensors.torch.load_file(str(path), device="cpu")
    except (OSError, safetensors.SafetensorError) as error:
        raise ValueError(f"{what} file {path} is unreadable or corrupt: {error}") from error


def load_state(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict(strict=True)`` with an error that names ``path`` and the mismatch."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(
            f"weights in {path} do not fit the architecture in its config: {error}"
        ) from error


def save_safetensors(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """Atomically write tensors (moved to CPU, made contiguous) as safetensors."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    data = safetensors.torch.save(tensors)
    return atomic_write(path, lambda file: file.write(data))


def save_json(path: Path, value: Any) -> Path:
    """Atomically write indented, key-sorted JSON."""
    return atomic_write_json(path, value)


def pretraining_env_ids(directory: Path) -> list[str]:
    """The envs of the streams a ``pretrain --out`` directory recorded training on (sorted;
    empty when it records none: an encoder's two files alone, or a pretraining before
    session 26), for the warnings that an encoder meets another task's frames."""
    try:
        record = json.loads((Path(directory) / PRETRAIN_CONFIG).read_text())
    except (OSError, ValueError):
        return []
    identities = record.get("train_dataset_identities") if isinstance(record, dict) else None
    if not isinstance(identities, list):
        return []
    return sorted({str(i["env_id"]) for i in identities if isinstance(i, dict) and i.get("env_id")})
