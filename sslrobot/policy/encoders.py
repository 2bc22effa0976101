"""Resolve ``--encoder`` (a pretrain directory or a baseline name) and check that it fits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslrobot.models.encoder import Encoder, EncoderConfig, encoder_config_for
from sslrobot.policy.cache import module_fingerprint
from sslrobot.policy.config import BASELINE_ENCODERS
from sslrobot.pretrained import encoder_directory
from sslrobot.pretraining.artifacts import PRETRAIN_CONFIG
from sslrobot.utils.architectures import DEFAULT_ENCODER_ARCH


@dataclass
class ResolvedEncoder:
    """What ``--encoder`` names, ready to use.

    Attributes:
        kind: ``"pretrained"``, ``"none"``, ``"scratch"`` or ``"state"``.
        name: Label for results: the pretraining objective for a directory (e.g. ``"fdm+future"``),
            else the baseline name.
        source: The directory (resolved) or the baseline name.
        module: The encoder (an ``Encoder``), or None for ``state``.
        config: Its ``EncoderConfig``, or None for ``state``.
    """

    kind: str
    name: str
    source: str
    module: Encoder | None
    config: EncoderConfig | None

    @property
    def frozen(self) -> bool:
        return self.kind in ("pretrained", "none")

    def describe(self) -> dict[str, Any]:
        """JSON-able record for ``policy_config.json``: with a frozen encoder's weights'
        fingerprint, which a resumed run checks (a directory retrained, or a shipped encoder
        updated, between the interruption and the resume would change the features)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "source": self.source,
            "config": None if self.config is None else self.config.to_dict(),
            "weights_fingerprint": (
                module_fingerprint(self.module)[:16]
                if self.frozen and self.module is not None
                else None
            ),
        }


def resolve_encoder(
    spec: str, image_size: int, seed: int, arch: str = DEFAULT_ENCODER_ARCH
) -> ResolvedEncoder:
    """Build or load the encoder that ``spec`` names.

    Args:
        spec: A ``pretrain --out`` directory, ``"pretrained:<env id>"`` (an encoder shipped in
            the wheel, ``sslrobot.pretrained``), or ``"none"``, ``"scratch"``, ``"state"``.
        image_size: Side of the frames the policy will see (used to build baselines).
        seed: Seeds the random initialisation of ``none`` and ``scratch``.
        arch: Their architecture (``utils.architectures.ENCODER_ARCHS``).

    Raises:
        ValueError: naming the path when it is not an encoder directory, or the shipped
            encoders when ``spec`` names none of them.
    """
    if spec == "state":
        return ResolvedEncoder("state", "state", "state", None, None)
    if spec in ("none", "scratch"):
        config = encoder_config_for(arch, image_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = Encoder(config)
        return ResolvedEncoder(spec, spec, spec, module, config)
    path = encoder_directory(spec)
    if not path.exists():
        raise ValueError(
            f"encoder {spec!r} is neither a directory, nor one of {BASELINE_ENCODERS}, nor "
            f"pretrained:ENV_ID (a shipped encoder; `sslrobot envs` lists them): {path} does "
            "not exist"
        )
    if not path.is_dir():
        raise ValueError(f"encoder path {path} is not a directory (expected a pretrain --out dir)")
    module, config = _load_pretrained(path)
    if not isinstance(module, Encoder):
        raise ValueError(
            f"encoder directory {path} loads a {type(module).__name__}, expected an Encoder"
        )
    return ResolvedEncoder("pretrained", _objective_name(path), str(path.resolve()), module, config)


def _load_pretrained(path: Path) -> tuple[nn.Module, EncoderConfig]:
    from sslrobot.load import load_encoder

    try:
        return load_encoder(path)
    except FileNotFoundError as error:
        raise ValueError(f"encoder directory {path} is not usable: {error}") from error


def _objective_name(path: Path) -> str:
    """The objective in the directory's ``pretrain_config.json``, else the directory name
    (a user's own encoder directory needs only the encoder config and weights)."""
    try:
        values = json.loads((path / PRETRAIN_CONFIG).read_text())
        objective = values["pretrain"]["objective"]
    except (OSError, ValueError, KeyError, TypeError):
        return path.resolve().name
    return objective if isinstance(objective, str) and objective else path.resolve().name


def build_encoder(record: dict[str, Any]) -> Encoder | None:
    """Rebuild the (untrained) encoder a ``describe()`` record names; weights load separately."""
    if record["kind"] == "state":
        return None
    return Encoder(EncoderConfig.from_dict(record["config"]))


def check_encoder_fits(resolved: ResolvedEncoder, frame_shape: tuple[int, ...], where: str) -> None:
    """Raise a ValueError naming the encoder and the sizes when frames don't fit the encoder.

    Args:
        resolved: The encoder.
        frame_shape: Shape of one observed frame, (H, W, C).
        where: What gives the frames, for the message (an env id or a dataset path).
    """
    if resolved.config is None:
        return
    config = resolved.config
    expected = (config.image_size, config.image_size, config.in_channels)
    if tuple(frame_shape) != expected:
        if tuple(frame_shape[:2]) == expected[:2]:  # the size fits, the channels do not
            advice = (
                f"policies see one RGB frame, and this encoder stacks {config.frame_stack}: "
                "use an encoder pretrained with frame_stack 1"
            )
        else:
            advice = "use a matching --image-size or an encoder pretrained at this size"
        raise ValueError(
            f"encoder {resolved.source} expects {config.image_size}x{config.image_size} frames "
            f"with {config.in_channels} channels (frame_stack={config.frame_stack}), but {where} "
            f"gives frames of shape {tuple(frame_shape)} (H, W, C); {advice}"
        )
