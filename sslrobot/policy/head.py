"""The policy head shared by every encoder: an MLP from policy inputs to actions in [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLPHead(nn.Module):
    """``Linear -> ReLU`` per hidden width, then ``Linear -> tanh`` (actions live in [-1, 1]).

    Args:
        input_dim: Width of the policy input (features + proprio, or state), D.
        action_dim: Width of the action, A.
        hidden_dims: Hidden widths, e.g. ``(256, 256)``.
    """

    def __init__(self, input_dim: int, action_dim: int, hidden_dims: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers += [nn.Linear(width, action_dim), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map (B, D) inputs to (B, A) actions."""
        return self.net(inputs)
