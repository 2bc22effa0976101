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


def feature_code_fingerprint(module: nn.Module) -> str:
    """SHA-256 of the source files that compute a module's features (its class's module and
    ``sslrobot.models.features``) and of torch's version: the same weights and config give
    other features once that code changes (the keypoint expectations did, with the package's
    version unchanged), and a cache keyed on weights alone served the old ones. A class
    whose source cannot be found (defined interactively) is keyed on its name only."""
    import inspect

    from sslrobot.models import features

    digest = hashlib.sha256(torch.__version__.encode())
    for source in (type(module), features):
        try:
            path = inspect.getsourcefile(source)
        except TypeError:
            path = None
        if path is not None and Path(path).is_file():
            digest.update(Path(path).read_bytes())
        else:
            digest.update(getattr(source, "__qualname__", source.__name__).encode())
    return digest.hexdigest()


class FeatureCache:
    """Per-episode feature arrays keyed by encoder weights, code and dataset identity.

    With ``root=None`` it only computes (no disk). With a directory, features are stored at
    ``root/<encoder hash>/<device type>/<dataset and code hash>/episode_<id>.npy`` (atomic
    writes), so BC runs that share an encoder and a dataset (other seeds, other ``num_demos``)
    encode each frame once. The device type is in the key because a GPU's convolutions round
    differently from a CPU's: a policy trained on CPU must see CPU features, or a rerun on CPU
    would not repeat the run whose cache a GPU job filled. The code that computes features,
    torch's version and the batch size are in it too (``feature_code_fingerprint``; a batch's
    size moves the last bits of CPU convolutions). Episodes are encoded one by one with or
    without a directory, so a run computes the same features either way.

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
            dataset_hash = config_hash(
                {
                    "dataset": dataset_key,
                    "code": feature_code_fingerprint(encoder),
                    "batch_size": batch_size,
                }
            )
            device_type = module_device(encoder).type
            self.directory = (
                Path(root) / module_fingerprint(encoder)[:16] / device_type / dataset_hash
            )
        self.num_computed_frames = 0

    def _width(self) -> int | None:
        width = getattr(self.encoder, "feature_dim", None)
        return int(width) if isinstance(width, int) else None

    def features(
        self, episode_ids: tuple[int, ...], lengths: np.ndarray, pixels: np.ndarray
    ) -> np.ndarray:
        """Features (N, F) of concatenated episode frames ``pixels`` (N, H, W, 3).

        Args:
            episode_ids: Episodes whose frames are concatenated in ``pixels``.
            lengths: Frames per episode, shape (E,), summing to N.
            pixels: uint8 frames, shape (N, H, W, 3).
        """
        parts = []
        start = 0
        for episode_id, length in zip(episode_ids, lengths.tolist(), strict=True):
            path = None
            if self.directory is not None:
                path = self.directory / f"episode_{episode_id:06d}.npy"
            cached = None if path is None else _read_cached(path, length, self._width())
            if cached is None:
                frames = pixels[start : start + length]
                cached = extract_features(self.encoder, frames, self.batch_size)
                self.num_computed_frames += length
                if path is not None:
                    _write_array(path, cached)
            parts.append(cached)
            start += length
        return np.concatenate(parts)


def _read_cached(path: Path, length: int, width: int | None) -> np.ndarray | None:
    """The cached features at ``path`` if they are ``(length, width)`` float32, else None (a
    damaged or foreign entry is recomputed and replaced: an empty file raised EOFError, and
    an array of another width failed later, in the concatenation)."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if array.ndim != 2 or array.shape[0] != length or array.dtype != np.float32:
        return None
    return array if width is None or array.shape[1] == width else None


def _write_array(path: Path, array: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write(path, lambda file: file.write(buffer.getvalue()))
