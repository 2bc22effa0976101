"""``load_encoder``: the frozen encoder of a ``sslrobot pretrain --out`` directory (or of one
shipped in the wheel, ``sslrobot.pretrained``).

Reads only ``encoder_config.json`` and ``encoder.safetensors``, so a user can ship those two
files alone.
"""

from __future__ import annotations

import os

import torch

from sslrobot.models.encoder import Encoder, EncoderConfig
from sslrobot.pretrained import encoder_directory
from sslrobot.pretraining import artifacts
from sslrobot.utils.device import as_device


def load_encoder(
    path: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[Encoder, EncoderConfig]:
    """Load a pretrained encoder, frozen: eval mode, ``requires_grad`` False on every weight.

    Example::

        encoder, config = sslrobot.load_encoder("runs/push_fdm")
        frames = torch.as_tensor(obs["pixels"])[None]   # uint8 (1, H, W, 3)
        with torch.no_grad():
            features = encoder(frames)                  # float32 (1, config.feature_dim)

    Args:
        path: A ``sslrobot pretrain --out`` directory, or ``"pretrained:<env id>"`` for an
            encoder shipped in the wheel (``sslrobot.pretrained``), e.g.
            ``"pretrained:sslrobot/Push-v0"``.
        device: Where to put the weights: ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA, then MPS,
            then CPU), ... or a ``torch.device``.

    Returns:
        ``(encoder, config)``.

    Raises:
        FileNotFoundError: the directory or one of its two files is missing (named).
        ValueError: a file is corrupt or does not match the architecture (named), or no
            encoder of that name is shipped.
    """
    path = encoder_directory(path)
    config_path = path / artifacts.ENCODER_CONFIG
    values = artifacts.read_json(config_path, "encoder config")
    try:
        config = EncoderConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"encoder config {config_path} is invalid: {error}") from error
    encoder = Encoder(config)
    weights = path / artifacts.ENCODER_WEIGHTS
    state = artifacts.read_safetensors(weights, "encoder weights")
    # NaN weights load silently and surface far away ("Normalizer.fit: values contain NaN").
    broken = sorted(name for name, tensor in state.items() if not torch.isfinite(tensor).all())
    if broken:
        raise ValueError(f"encoder weights {weights} hold NaN or inf values in {broken}")
    artifacts.load_state(encoder, state, weights)
    encoder.requires_grad_(False)
    return encoder.eval().to(as_device(device)), config
