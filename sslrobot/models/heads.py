"""Small MLP heads: projections and predictors (SPR/BYOL), the inverse-dynamics action head."""

from __future__ import annotations

from torch import nn


def make_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """Linear -> LayerNorm -> ReLU -> Linear.

    LayerNorm instead of BYOL's BatchNorm: the heads then behave the same for any batch size and
    under DistributedDataParallel without synchronising batch statistics.
    """
    for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.LayerNorm(hidden_dim),
        nn.ReLU(),
        nn.Linear(hidden_dim, out_dim),
    )
