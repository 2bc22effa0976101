"""Encoders shipped in the wheel: the default preset's ``fdm+future`` encoder of each task.

Public pretrained weights in this field (R3M, VC-1, MVP) come without the code that made them
or numbers anyone can reproduce. These are the opposite: each was written by
``sslrobot run --preset default`` and ``scripts/ship_encoders.py`` copied it, with a
``provenance.json`` that names the run, the command, the commit, the weights' SHA-256 and what
the run measured with them. ``--encoder pretrained:sslrobot/Push-v0`` (or
``load_encoder("pretrained:sslrobot/Push-v0")``) uses one without pretraining first.

The provenance also keeps the scene files' hashes and the encoder's features of a few reset
frames, so a test notices when the environments change under the weights (a new scene or
look would make them describe a world they never saw).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

#: What ``--encoder`` and ``load_encoder`` take before a task id to name a shipped encoder.
PRETRAINED_PREFIX = "pretrained:"
PROVENANCE = "provenance.json"
_ENCODERS_DIR = "encoders"


def shipped_encoders_root() -> Path:
    """The directory holding one sub-directory per shipped encoder (``Push-v0``, ...)."""
    return Path(str(resources.files("sslrobot.assets").joinpath(_ENCODERS_DIR)))


def shipped_encoder_names() -> tuple[str, ...]:
    """Env ids with a shipped encoder, e.g. ``("sslrobot/Navigate-v1", ...)``, sorted."""
    root = shipped_encoders_root()
    if not root.is_dir():
        return ()
    return tuple(
        f"sslrobot/{path.name}" for path in sorted(root.iterdir()) if (path / PROVENANCE).is_file()
    )


def is_pretrained_spec(spec: str | Path) -> bool:
    """Whether ``spec`` names a shipped encoder (``pretrained:<env id>``) rather than a path."""
    return isinstance(spec, str) and spec.startswith(PRETRAINED_PREFIX)


def shipped_encoder_dir(spec: str) -> Path:
    """The directory of the shipped encoder ``spec`` names.

    Args:
        spec: ``"pretrained:sslrobot/Push-v0"``; the namespace may be left out
            (``"pretrained:Push-v0"``).

    Raises:
        ValueError: ``spec`` has no ``pretrained:`` prefix or names no shipped encoder (the
            message lists those that exist).
    """
    if not is_pretrained_spec(spec):
        raise ValueError(f"{spec!r} does not start with {PRETRAINED_PREFIX!r}")
    env_id = spec[len(PRETRAINED_PREFIX) :]
    name = env_id.removeprefix("sslrobot/")
    path = shipped_encoders_root() / name
    if "/" in name or not name or not (path / PROVENANCE).is_file():
        available = ", ".join(PRETRAINED_PREFIX + n for n in shipped_encoder_names()) or "none"
        raise ValueError(f"no shipped encoder {spec!r}; the wheel ships: {available}")
    return path


def read_provenance(path: Path) -> dict[str, Any]:
    """The ``provenance.json`` of a shipped encoder directory."""
    return json.loads((path / PROVENANCE).read_text())


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scene_hashes() -> dict[str, str]:
    """SHA-256 of every MJCF scene file the envs load, by file name."""
    assets = Path(str(resources.files("sslrobot.assets")))
    return {path.name: file_sha256(path) for path in sorted(assets.glob("*.xml"))}


#: Reset seeds whose first frames the provenance keeps the features of.
REFERENCE_SEEDS = (0, 1, 2, 3)


def reset_frame_features(
    encoder: Any, env_id: str, image_size: int, seeds: tuple[int, ...] = REFERENCE_SEEDS
) -> list[list[float]]:
    """The encoder's features of the first frame of ``env_id`` reset with each seed (the
    training look), as nested lists for JSON: what the provenance compares to see whether
    the environment still renders the world the weights were trained on."""
    import gymnasium as gym
    import numpy as np

    from sslrobot.models.features import extract_features

    env = gym.make(env_id, image_size=image_size)
    try:
        frames = np.stack([env.reset(seed=seed)[0]["pixels"] for seed in seeds])
    finally:
        env.close()
    return extract_features(encoder, frames).astype(float).tolist()
