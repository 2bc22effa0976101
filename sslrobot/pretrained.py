"""Encoders shipped in the wheel: the default preset's ``fdm+future`` encoder of each task.

Public weights in this field (R3M, VC-1, MVP) are hard to tie to numbers a user can
reproduce. Each of these was pretrained by ``sslrobot run --preset default`` and copied by
``scripts/ship_encoders.py`` with a ``provenance.json``: where it was pretrained, the run
and command that measured it and what they measured (probe R², 25-demonstration success
beside the random encoder's and the state oracle's), the weights' SHA-256 and the commit that
copied them. ``--encoder pretrained:sslrobot/Push-v0`` (or
``load_encoder("pretrained:sslrobot/Push-v0")``) uses one without pretraining first.

The provenance also keeps the hashes of the scene files each task loads and the encoder's
features of a few reset frames, so a test notices when the environments change under the
weights (a new scene or look would make them describe a world they never saw).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from sslrobot.data.collect_config import SSLROBOT_NAMESPACE

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
    # Any folder holding weights or a provenance: one missing the other is a damaged install,
    # which shipped_encoder_dir says, not an encoder that was never shipped.
    from sslrobot.pretraining.artifacts import ENCODER_WEIGHTS

    return tuple(
        SSLROBOT_NAMESPACE + path.name
        for path in sorted(root.iterdir())
        if (path / PROVENANCE).is_file() or (path / ENCODER_WEIGHTS).is_file()
    )


def is_pretrained_spec(spec: str | os.PathLike[str]) -> bool:
    """Whether ``spec`` names a shipped encoder (``pretrained:<env id>``) rather than a path."""
    return isinstance(spec, str) and spec.startswith(PRETRAINED_PREFIX)


def canonical_spec(spec: str) -> str:
    """``spec`` with the env id's namespace: ``"pretrained:Push-v0"`` and
    ``"pretrained:sslrobot/Push-v0"`` name one encoder, and a resumed run must see one setting.

    Raises:
        ValueError: ``spec`` names no shipped encoder (the message lists those that exist).
    """
    if not is_pretrained_spec(spec):
        raise ValueError(f"{spec!r} does not start with {PRETRAINED_PREFIX!r}")
    env_id = spec[len(PRETRAINED_PREFIX) :]
    if not env_id.startswith(SSLROBOT_NAMESPACE):
        env_id = SSLROBOT_NAMESPACE + env_id
    names = shipped_encoder_names()
    if env_id not in names:  # exact names only: no paths, no case folding
        available = ", ".join(PRETRAINED_PREFIX + name for name in names) or "none"
        raise ValueError(f"no shipped encoder {spec!r}; the wheel ships: {available}")
    return PRETRAINED_PREFIX + env_id


def shipped_encoder_dir(spec: str) -> Path:
    """The directory of the shipped encoder ``spec`` names.

    Args:
        spec: ``"pretrained:sslrobot/Push-v0"``; the namespace may be left out
            (``"pretrained:Push-v0"``).

    Raises:
        ValueError: ``spec`` has no ``pretrained:`` prefix or names no shipped encoder (the
            message lists those that exist), or its weights are not the ones its provenance
            names (safetensors keeps no checksum: a damaged file would load, NaNs and all).
    """
    env_id = canonical_spec(spec)[len(PRETRAINED_PREFIX) :]
    path = shipped_encoders_root() / env_id.removeprefix(SSLROBOT_NAMESPACE)
    from sslrobot.pretraining.artifacts import ENCODER_WEIGHTS

    weights = path / ENCODER_WEIGHTS
    expected = read_provenance(path).get("weights_sha256")
    if not weights.is_file() or file_sha256(weights) != expected:
        raise ValueError(
            f"{weights} is missing or not the file {path / PROVENANCE} names (sha256 "
            f"{str(expected)[:16]}...): the installed package is damaged; reinstall sslrobot"
        )
    return path


def encoder_directory(spec: str | os.PathLike[str]) -> Path:
    """The directory an ``--encoder`` value names: a shipped encoder's, or the path itself."""
    return shipped_encoder_dir(spec) if is_pretrained_spec(spec) else Path(spec)


def read_provenance(path: Path) -> dict[str, Any]:
    """The ``provenance.json`` of a shipped encoder directory.

    Raises:
        ValueError: it is missing, unreadable or not a JSON object: the installed package is
            damaged (named, with what to do, instead of a bare ``JSONDecodeError``).
    """
    file = path / PROVENANCE
    try:
        record = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"{file} is missing or damaged ({error}): the installed package is damaged; "
            "reinstall sslrobot"
        ) from error
    if not isinstance(record, dict):
        raise ValueError(
            f"{file} holds a JSON {type(record).__name__}, not an object: the installed "
            "package is damaged; reinstall sslrobot"
        )
    return record


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def scene_hashes(env_id: str) -> dict[str, str]:
    """SHA-256 of the MJCF files ``env_id`` loads (its scene and what that includes), by name.

    Only that env's files: a new scene elsewhere must not make another task's weights stale.
    Builds the env without rendering to ask it for its scene.
    """
    import gymnasium as gym

    env = gym.make(env_id)
    try:
        pending = [env.unwrapped.task.scene.xml_file]
    finally:
        env.close()
    assets = Path(str(resources.files("sslrobot.assets")))
    hashes: dict[str, str] = {}
    while pending:
        name = pending.pop()
        if name not in hashes:
            text = (assets / name).read_bytes()
            hashes[name] = hashlib.sha256(text).hexdigest()
            pending += [m.decode() for m in re.findall(rb'<include\s+file="([^"]+)"', text)]
    return dict(sorted(hashes.items()))


#: Reset seeds whose first frames the provenance keeps the features of.
REFERENCE_SEEDS = (0, 1, 2, 3)


def reset_frame_features(
    encoder: Any,
    env_id: str,
    image_size: int,
    seeds: tuple[int, ...] = REFERENCE_SEEDS,
    visual_preset: str = "train",
) -> list[list[float]]:
    """The encoder's features of the first frame of ``env_id`` reset with each seed, as nested
    lists for JSON: what the provenance compares to see whether the environment still renders
    the world the weights were trained on (in the training look, ``visual_preset="train"``)."""
    import gymnasium as gym
    import numpy as np

    from sslrobot.models.features import extract_features

    env = gym.make(env_id, image_size=image_size, visual_preset=visual_preset)
    try:
        frames = np.stack([env.reset(seed=seed)[0]["pixels"] for seed in seeds])
    finally:
        env.close()
    return extract_features(encoder, frames).astype(float).tolist()
