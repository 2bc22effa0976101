"""Fixed per-dimension standardisation whose statistics travel with the policy's weights."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: Dimensions whose standard deviation is below this (constant in the data) are only centred.
MIN_STD = 1e-6
#: Standardised inputs are clipped, so an unseen observation cannot blow up the head.
CLIP = 10.0


class Normalizer(nn.Module):
    """``clip((x - mean) / std, -CLIP, CLIP)`` with statistics stored as buffers.

    Buffers (not parameters) so that they are saved in the state dict but never trained.

    Args:
        dim: Width of the inputs, D.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @torch.no_grad()
    def fit(self, values: np.ndarray | torch.Tensor) -> Normalizer:
        """Set the statistics from ``values`` of shape (N, D); returns self."""
        data = torch.as_tensor(np.asarray(values), dtype=torch.float64)
        if data.ndim != 2 or data.shape[1] != self.dim or data.shape[0] == 0:
            raise ValueError(
                f"Normalizer.fit: expected values of shape (N>0, {self.dim}), "
                f"got {tuple(data.shape)}"
            )
        if not torch.isfinite(data).all():
            raise ValueError("Normalizer.fit: values contain NaN or inf")
        std = data.std(dim=0, unbiased=False)
        std = torch.where(std < MIN_STD, torch.ones_like(std), std)
        self.mean.copy_(data.mean(dim=0).float())
        self.std.copy_(std.float())
        return self

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """Standardise ``values`` of shape (B, D)."""
        return ((values - self.mean) / self.std).clamp(-CLIP, CLIP)
