"""File names of a ``sslrobot pretrain --out`` directory, and reading/writing them safely.

Every read failure names the file and says what to do; every write is atomic (temp file in the
same directory, fsync, ``os.replace``), so an interrupted run never leaves a torn file behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
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
#: Beside an encoder trained outside ``sslrobot pretrain``: the episodes it trained on.
TRAINED_EPISODES = "trained_episodes.json"
MODEL_WEIGHTS = "model.safetensors"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.csv"
LOSS_CURVE = "loss_curve.png"
PREDICTIONS = "predictions"
KEYPOINTS = "keypoints"
TENSORBOARD = "tensorboard"

T = TypeVar("T")

_HINT = "is this a `sslrobot pretrain --out` directory from a finished run?"


def _missing_file(path: Path, what: str) -> FileNotFoundError:
    """The error for a missing artifact file; given the stage folder of ``sslrobot run``,
    whose encoder sits one level down in ``encoder/``, it says so (a finished run was asked
    whether it had finished)."""
    inside = path.parent / "encoder" / path.name
    hint = f"the encoder of a run's stage is in {inside.parent}" if inside.is_file() else _HINT
    return FileNotFoundError(f"{what} file {path} is missing ({hint})")


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object, raising ``FileNotFoundError``/``ValueError`` that name ``path``."""
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} is not a directory ({_HINT})")
    if not path.is_file():
        raise _missing_file(path, what)
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
        raise _missing_file(path, what)
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


def save_trained_episodes(
    directory: str | os.PathLike[str], episodes: Mapping[str | os.PathLike[str], Sequence[int]]
) -> Path:
    """Writes ``TRAINED_EPISODES`` for an encoder trained outside ``sslrobot pretrain`` (e.g. on
    labels): the episodes of each data directory it trained on, in the fields a pretraining
    config records them in (by resolved path, and by the dataset's identity, for a moved copy
    or a recollection). Probes and prediction scoring then leave those episodes out, as they do
    a pretrained encoder's, instead of scoring the encoder on what it learned.

    Raises:
        FileNotFoundError: ``directory`` does not exist (a mistyped one would have been made,
            holding the record beside no encoder), or a data directory is not a dataset.
        ValueError: an episode id the dataset does not hold.
    """
    from sslrobot.data.manifest import dataset_identity, read_manifest
    from sslrobot.data.storage import list_episode_ids

    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(
            f"encoder directory {directory} does not exist (save the encoder there first)"
        )
    roots = [Path(root).resolve() for root in episodes]
    lists = [[int(i) for i in ids] for ids in episodes.values()]
    identities = [dataset_identity(read_manifest(root)) for root in roots]
    for root, ids in zip(roots, lists, strict=True):
        missing = sorted(set(ids) - set(list_episode_ids(root)))
        if missing:
            raise ValueError(f"dataset {root} holds no episodes {missing[:10]}")
    return save_json(
        directory / TRAINED_EPISODES,
        {
            "train_episode_ids": {str(root): ids for root, ids in zip(roots, lists, strict=True)},
            "train_episode_id_lists": lists,
            "train_dataset_identities": identities,
        },
    )


def _training_streams(directory: Path) -> list[tuple[dict[str, Any], list[int] | None]]:
    """Each stream a ``pretrain --out`` directory recorded training on: its dataset identity
    and the episode ids of its training split (None where not recorded); empty when it
    records none (an encoder's two files alone, or a pretraining before session 26), or
    trained on nothing (``--steps 0``, a random initialisation: its split is recorded, and a
    policy on it was warned of sharing seeds with a stream it never saw). An encoder trained
    otherwise is read from its ``TRAINED_EPISODES`` record."""
    name = PRETRAIN_CONFIG if (Path(directory) / PRETRAIN_CONFIG).is_file() else TRAINED_EPISODES
    try:
        record = json.loads((Path(directory) / name).read_text())
    except (OSError, ValueError):
        return []
    if isinstance(record, dict) and (record.get("pretrain") or {}).get("steps") == 0:
        return []
    identities = record.get("train_dataset_identities") if isinstance(record, dict) else None
    if not isinstance(identities, list):
        return []
    id_lists = record.get("train_episode_id_lists")
    if not isinstance(id_lists, list) or len(id_lists) != len(identities):
        id_lists = [None] * len(identities)
    return [
        (identity, ids if isinstance(ids, list) else None)
        for identity, ids in zip(identities, id_lists, strict=True)
        if isinstance(identity, dict)
    ]


def pretraining_env_ids(directory: Path) -> list[str]:
    """The envs of the streams a ``pretrain --out`` directory recorded training on (sorted;
    empty when it records none), for the warnings that an encoder meets another task's
    frames."""
    return sorted({str(i["env_id"]) for i, _ in _training_streams(directory) if i.get("env_id")})


def pretraining_reset_seeds(directory: Path, env_id: str) -> list[int]:
    """The reset seeds of the ``env_id`` episodes a ``pretrain --out`` directory trained on
    (sorted; sslrobot collection resets episode i with ``base_seed + i``), so that an
    evaluation can say when it starts from the start states the encoder's stream began
    from."""
    seeds: set[int] = set()
    for identity, ids in _training_streams(directory):
        base = identity.get("base_seed")
        if identity.get("env_id") == env_id and isinstance(base, int) and ids is not None:
            seeds.update(base + int(i) for i in ids)
    return sorted(seeds)
