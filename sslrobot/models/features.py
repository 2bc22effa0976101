"""Encoding many frames with a frozen module, in batches: one routine for probes, the feature
cache of behaviour cloning, its augmented copies and RL's normaliser statistics."""

from __future__ import annotations

import numpy as np
import torch


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def extract_features(
    encoder: torch.nn.Module, frames: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Encode frames in batches, in eval mode, without gradients, on the encoder's device.

    The encoder's train/eval mode is restored afterwards, so a caller's module is unchanged.
    Each batch is copied into memory before it goes to torch, so ``frames`` may be a read-only
    memory map of a dataset file.

    Args:
        encoder: Maps uint8 frames (B, H, W, C) to features (B, D).
        frames: uint8 frames, shape (N, H, W, C), N >= 1.
        batch_size: Frames per forward pass.

    Returns:
        Features, float32, shape (N, D), on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    frames = np.asarray(frames)  # a memory map stays one (no copy)
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"frames must be uint8 (N, H, W, C), got {frames.dtype} {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError("frames is empty; nothing to encode")
    device = module_device(encoder)
    was_training = encoder.training
    encoder.eval()
    outputs = []
    try:
        with torch.no_grad():
            for start in range(0, frames.shape[0], batch_size):
                batch = torch.from_numpy(np.array(frames[start : start + batch_size]))
                outputs.append(encoder(batch.to(device)).float().cpu())  # (B, D)
    finally:
        encoder.train(was_training)
    return torch.cat(outputs).numpy()
