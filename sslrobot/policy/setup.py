"""Shared start of BC and RL runs: demonstrations, encoder, image size, the record."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sslrobot.policy.config import PolicyConfig
from sslrobot.policy.encoders import ResolvedEncoder, check_encoder_fits, resolve_encoder
from sslrobot.policy.environment import EnvShapes

if TYPE_CHECKING:
    import torch

DEFAULT_IMAGE_SIZE = 64


def open_demos(config: PolicyConfig) -> tuple[Any, dict[str, Any]]:
    """Open ``config.demos`` and check it was collected on ``config.env_id``.

    Returns:
        The dataset, and a JSON-able identity of it (for the feature cache).

    Raises:
        ValueError: naming the path when it is missing, not a dataset, or of another task.
    """
    from sslrobot.data import open_dataset

    path = config.demos
    if path is None or not path.exists():
        raise ValueError(f"demonstrations directory {path} does not exist")
    if not path.is_dir():
        raise ValueError(
            f"demonstrations {path} is a file; give the directory `sslrobot collect --out` made"
        )
    try:
        dataset = open_dataset(path)
    except FileNotFoundError as error:
        raise ValueError(
            f"{path} is not a dataset directory (`sslrobot collect --out`): {error}"
        ) from error
    env_id = dataset.manifest.get("env_id")
    if env_id != config.env_id:
        raise ValueError(
            f"demonstrations {path} were collected on {env_id!r}, but the policy is for "
            f"{config.env_id!r}"
        )
    if not dataset.episode_ids:
        raise ValueError(f"demonstrations {path} hold no episodes")
    return dataset, demos_cache_key(dataset.manifest)


def warn_unless_expert(dataset: Any, path: Path) -> None:
    """Warn when the demonstrations were not collected by the expert: cloning imitates
    whatever acted, and a noisy or random stream passed by mistake would train quietly into a
    policy that copies the noise. (Said once the env is known to be one a policy can use, so
    that a wrong env is the one thing said about it.)"""
    collected_by = (dataset.manifest.get("policy") or {}).get("name")
    if collected_by != "expert":
        warnings.warn(
            f"demonstrations {path} were collected by the {collected_by!r} policy, not "
            "'expert': behaviour cloning imitates whatever acted (collect demonstrations with "
            "`sslrobot collect --policy expert`)",
            stacklevel=3,
        )


def demos_settings(manifest: dict[str, Any]) -> str:
    """A hash of how demonstrations were collected, their seed aside (env, arguments and look,
    time limit, policy, image size): the training seeds of one configuration may each have
    demonstrations of their own seed, never another policy's or look's, which evaluation's
    aggregation refuses to pool (``evaluate.RECORDED_SAME_WITHIN_GROUP``)."""
    from sslrobot.data.manifest import EPISODE_FIELDS
    from sslrobot.utils.config import config_hash

    return config_hash({name: manifest.get(name) for name in EPISODE_FIELDS if name != "base_seed"})


def demos_cache_key(manifest: dict[str, Any]) -> dict[str, Any]:
    """What fixes the frames of a dataset's episode i, to key cached features on: the fields
    that make resume refuse other data (env, arguments, policy, seed, image size, what the
    env reported) and the package versions it was made with.

    Not the whole manifest: its ``updated`` time and counts change with every ``collect
    --resume``, which re-encoded every episode of a grown dataset. Not the path either: a
    moved copy, or another directory collected alike, holds the same episodes.
    """
    from sslrobot.data.manifest import DESCRIBED_FIELDS, IDENTITY_FIELDS

    # ``created`` too: it survives --resume and moves, and keeps apart two datasets collected
    # alike before and after a change to the env's or the expert's code.
    fields = (*IDENTITY_FIELDS, *DESCRIBED_FIELDS, "versions", "versions_earlier", "created")
    return {name: manifest.get(name) for name in fields}


def resolve_policy_encoder(
    config: PolicyConfig, manifest: dict[str, Any] | None
) -> tuple[ResolvedEncoder, int]:
    """The encoder ``config.encoder`` names, and the image size the policy will see.

    The image size is ``config.image_size`` if given, else the pretrained encoder's, else the
    demonstrations', else 64. A pretrained encoder at another size is an error (checked
    against the environment's frames by the caller).
    """
    if config.encoder_kind == "pretrained":
        resolved = resolve_encoder(config.encoder, DEFAULT_IMAGE_SIZE, config.seed)
        assert resolved.config is not None
        warn_of_ignored_arch(config, resolved.config)
        warn_of_another_tasks_encoder(config, Path(resolved.source))
        return resolved, config.image_size or resolved.config.image_size
    image_size = config.image_size
    if image_size is None and manifest is not None and manifest.get("image_size"):
        image_size = int(manifest["image_size"])
    image_size = image_size or DEFAULT_IMAGE_SIZE
    resolved = resolve_encoder(config.encoder, image_size, config.seed, config.encoder_arch)
    return resolved, image_size


def warn_of_another_tasks_encoder(config: PolicyConfig, directory: Path) -> None:
    """An encoder pretrained on another task's frames (``pretrained:Push-v0``, or a ``pretrain
    --out`` directory whose recorded streams are all of other envs) beside ``--env
    sslrobot/Reach-v0`` is most often a copy-paste slip that trains a poor policy without a
    word; as a transfer test it is allowed, and said."""
    from sslrobot.pretrained import (
        PRETRAINED_PREFIX,
        canonical_spec,
        is_pretrained_spec,
        shipped_encoder_names,
    )

    if not is_pretrained_spec(config.encoder):
        from sslrobot.pretraining.artifacts import pretraining_env_ids

        envs = pretraining_env_ids(directory)
        if envs and config.env_id not in envs:
            warnings.warn(
                f"encoder {config.encoder} was pretrained on streams of {', '.join(envs)}; "
                f"training on {config.env_id} with it is a transfer test",
                stacklevel=2,
            )
        return
    shipped_for = canonical_spec(str(config.encoder)).removeprefix(PRETRAINED_PREFIX)
    if shipped_for != config.env_id:
        own = (
            f"pretrained:{config.env_id} is the task's own"
            if config.env_id in shipped_encoder_names()
            else f"no encoder is shipped for {config.env_id}"
        )
        warnings.warn(
            f"encoder {config.encoder} was pretrained on {shipped_for}'s frames; training on "
            f"{config.env_id} with it is a transfer test ({own})",
            stacklevel=2,
        )


def warn_of_ignored_arch(config: PolicyConfig, pretrained: Any) -> None:
    """A pretrained encoder brings its own architecture: an ``encoder_arch`` given beside it
    (not the default) that names another one is ignored, and the user is told so."""
    from sslrobot.models.encoder import encoder_config_for

    default = PolicyConfig.__dataclass_fields__["encoder_arch"].default
    if config.encoder_arch == default:
        return
    named = encoder_config_for(config.encoder_arch, pretrained.image_size)
    if (named.arch, named.readout) != (pretrained.arch, pretrained.readout):
        warnings.warn(
            f"encoder_arch {config.encoder_arch!r} is ignored: {config.encoder} brings its own "
            f"encoder ({pretrained.arch} trunk, {pretrained.readout} readout); the architecture "
            "is for the none and scratch baselines",
            stacklevel=2,
        )


def check_fits(resolved: ResolvedEncoder, shapes: EnvShapes, env_id: str) -> None:
    """The encoder must accept the environment's frames."""
    if shapes.frame_shape is not None:
        check_encoder_fits(resolved, shapes.frame_shape, env_id)


def base_record(
    config: PolicyConfig,
    resolved: ResolvedEncoder,
    shapes: EnvShapes,
    image_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """The part of ``policy_config.json`` that BC and RL share."""
    feature_dim = shapes.state_dim if resolved.module is None else resolved.module.feature_dim
    return {
        "algo": config.algo,
        "env_id": config.env_id,
        "obs_mode": shapes.obs_mode,
        "image_size": image_size,
        "action_dim": shapes.action_dim,
        "proprio_dim": shapes.proprio_dim,
        "feature_dim": feature_dim,
        "encoder": resolved.describe(),
        "head": {"hidden_dims": list(config.hidden_dims)},
        "context": config.context,
        "seed": config.seed,
        # What --device auto chose (train_config keeps what was asked): CPU and GPU results
        # differ in their last bits, and so do the curves that follow from them.
        "device_type": device.type,
        "train_config": config.to_dict(),
    }
