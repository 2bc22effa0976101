"""Frozen-encoder features of demonstration frames, computed once (optionally kept on disk)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sslrobot.models.features import extract_features, module_device
from sslrobot.utils.config import config_hash
from sslrobot.utils.io import atomic_write


def module_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's class, its ``config`` if it has one (settings such as paddings
    change the features without changing a tensor), and its state dict (names, dtypes,
    shapes, bytes)."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    config = getattr(module, "config", None)
    if config is not None:
        digest.update(repr(config).encode())
    for name, tensor in sorted(module.state_dict().items()):
        value = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d tensors cannot be viewed
        digest.update(f"{name}|{value.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


class FeatureCache:
    """Per-episode feature arrays keyed by encoder weights and dataset identity.

    With ``root=None`` it only computes (no disk). With a directory, features are stored at
    ``root/<encoder hash>/<device type>/<dataset hash>/episode_<id>.npy`` (atomic writes), so
    BC runs that share an encoder and a dataset (other seeds, other ``num_demos``) encode each
    frame once. The device type is in the key because a GPU's convolutions round differently
    from a CPU's: a policy trained on CPU must see CPU features, or a rerun on CPU would not
    repeat the run whose cache a GPU job filled.

    Args:
        root: Cache directory, or None.
        encoder: The frozen encoder.
        dataset_key: JSON-able identity of the dataset's episodes
            (``setup.demos_cache_key``).
        batch_size: Frames per forward pass (on the encoder's own device).
    """

    def __init__(
        self,
        root: Path | None,
        encoder: nn.Module,
        dataset_key: Any,
        batch_size: int,
    ) -> None:
        self.encoder = encoder
        self.batch_size = batch_size
        self.directory: Path | None = None
        if root is not None:
            dataset_hash = config_hash(dataset_key)
            device_type = module_device(encoder).type
            self.directory = (
                Path(root) / module_fingerprint(encoder)[:16] / device_type / dataset_hash
            )
        self.num_computed_frames = 0

    def features(
        self, episode_ids: tuple[int, ...], lengths: np.ndarray, pixels: np.ndarray
    ) -> np.ndarray:
        """Features (N, F) of concatenated episode frames ``pixels`` (N, H, W, 3).

        Args:
            episode_ids: Episodes whose frames are concatenated in ``pixels``.
            lengths: Frames per episode, shape (E,), summing to N.
            pixels: uint8 frames, shape (N, H, W, 3).
        """
        if self.directory is None:
            self.num_computed_frames += pixels.shape[0]
            return extract_features(self.encoder, pixels, self.batch_size)
        parts = []
        start = 0
        for episode_id, length in zip(episode_ids, lengths.tolist(), strict=True):
            path = self.directory / f"episode_{episode_id:06d}.npy"
            cached = _read_cached(path, length)
            if cached is None:
                frames = pixels[start : start + length]
                cached = extract_features(self.encoder, frames, self.batch_size)
                self.num_computed_frames += length
                _write_array(path, cached)
            parts.append(cached)
            start += length
        return np.concatenate(parts)


def _read_cached(path: Path, length: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged entry is recomputed and replaced
    return array if array.shape[0] == length and array.dtype == np.float32 else None


def _write_array(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write(path, lambda file: file.write(buffer.getvalue()))
