"""Policy networks: an observation encoder (frozen or trainable) plus normalisers plus the head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sslrobot.policy.head import MLPHead
from sslrobot.policy.normalizer import Normalizer


class ObservationEncoder(nn.Module):
    """Turns an observation into the policy input: ``[norm(features), norm(proprio)]``.

    For pixel policies ``features = encoder(pixels)``; for the state oracle there is no encoder
    and the "features" are the privileged state itself (and there is no proprio).

    A frozen encoder stays in eval mode whatever ``train()`` is called with, never receives
    gradients, and is always run under ``torch.no_grad()`` (DrQ-v2, TD-MPC2 habit).

    Args:
        encoder: Module mapping uint8 frames (B, H, W, 3) to (B, feature_dim), or None (state).
        feature_dim: Width of the features (or of the state), F.
        proprio_dim: Width of the proprio vector, P (0 for the state oracle).
        frozen: Whether the encoder is frozen (everything but ``scratch``).
        normalize_features: Standardise features with fitted statistics; off for ``scratch``,
            whose features are learned together with the head.
        context: The head also reads the features (or state) of the episode's first frame,
            given beside the current ones (``PolicyConfig.context == "first"``): the inputs
            ``from_features`` takes are then 2F wide, and ``Policy`` keeps the first frame's.
    """

    def __init__(
        self,
        encoder: nn.Module | None,
        feature_dim: int,
        proprio_dim: int,
        frozen: bool,
        normalize_features: bool = True,
        context: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.feature_dim = feature_dim
        self.proprio_dim = proprio_dim
        self.frozen = frozen
        self.context = context
        self.feature_norm: nn.Module = (
            Normalizer(self.input_feature_dim) if normalize_features else nn.Identity()
        )
        self.proprio_norm: nn.Module = Normalizer(proprio_dim) if proprio_dim else nn.Identity()
        if encoder is not None and frozen:
            freeze(encoder)

    @property
    def input_feature_dim(self) -> int:
        """Width of the features ``from_features`` takes: F, or 2F with the first frame's."""
        return self.feature_dim * (2 if self.context else 1)

    @property
    def output_dim(self) -> int:
        return self.input_feature_dim + self.proprio_dim

    def train(self, mode: bool = True) -> ObservationEncoder:
        super().train(mode)
        if self.encoder is not None and self.frozen:
            self.encoder.eval()
        return self

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Raw encoder features (B, F) of uint8 frames (B, H, W, 3)."""
        if self.encoder is None:
            raise ValueError("this policy has no pixel encoder (state oracle); pass the state")
        if self.frozen:
            with torch.no_grad():
                return self.encoder(pixels).float()
        return self.encoder(pixels).float()

    def from_features(self, features: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
        """Policy input (B, F + P) from raw features (B, F) (or state) and proprio (B, P);
        with ``context``, features (B, 2F): the current ones, then the first frame's."""
        inputs = self.feature_norm(features)
        if self.proprio_dim:
            if proprio is None:
                raise ValueError(f"proprio of width {self.proprio_dim} is required")
            inputs = torch.cat([inputs, self.proprio_norm(proprio)], dim=-1)
        return inputs

    def forward(self, pixels: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
        """Policy input (B, F + P) from uint8 frames (B, H, W, 3) and proprio (B, P)."""
        self.refuse_context()
        return self.from_features(self.features(pixels), proprio)

    def refuse_context(self) -> None:
        """Raise where inputs are made from the current frame alone, which a head with
        ``context`` would read as half its width (or fail on, deep in the normaliser)."""
        if self.context:
            raise ValueError(
                "this policy reads its episode's first frame too: act through Policy, which "
                "keeps it (reset() at each episode's start)"
            )


class BCNetwork(nn.Module):
    """Observation encoder and MLP head, trained by behaviour cloning.

    Args:
        obs_encoder: The observation encoder.
        action_dim: Width of the action, A.
        hidden_dims: Hidden widths of the head.
    """

    def __init__(
        self, obs_encoder: ObservationEncoder, action_dim: int, hidden_dims: Sequence[int]
    ):
        super().__init__()
        self.obs_encoder = obs_encoder
        self.head = MLPHead(obs_encoder.output_dim, action_dim, hidden_dims)

    def act_from_features(
        self, features: torch.Tensor, proprio: torch.Tensor | None
    ) -> torch.Tensor:
        """Actions (B, A) from cached raw features (B, F) and proprio (B, P)."""
        return self.head(self.obs_encoder.from_features(features, proprio))

    def forward(self, pixels: torch.Tensor, proprio: torch.Tensor | None) -> torch.Tensor:
        """Actions (B, A) from uint8 frames (B, H, W, 3) and proprio (B, P)."""
        return self.act_from_features(self.obs_encoder.features(pixels), proprio)


def policy_inputs(
    obs_encoder: ObservationEncoder, observations: Any, obs_mode: str, device: torch.device
) -> torch.Tensor:
    """Policy inputs (B, F + P) for a batch of raw observations, in one encoder forward.

    The one place where observations become policy inputs, shared by evaluation, online
    validation and the RL vector-env wrapper, so that training and acting cannot drift apart.

    Args:
        obs_encoder: The observation encoder with fitted normalisers.
        observations: Dict of stacked arrays (``pixels`` uint8 (B, H, W, 3), ``proprio``
            (B, P)), or a state array (B, S) when ``obs_mode == "state"``.
        obs_mode: ``"pixels"`` or ``"state"``.
        device: Where the encoder runs.
    """
    obs_encoder.refuse_context()
    features, proprio = raw_features(obs_encoder, observations, obs_mode, device)
    with torch.no_grad():
        return obs_encoder.from_features(features, proprio)


def raw_features(
    obs_encoder: ObservationEncoder, observations: Any, obs_mode: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Raw features (B, F) (the state, for ``obs_mode == "state"``) and proprio (B, P) (None
    for the state) of a batch of raw observations, before normalisation and context."""
    with torch.no_grad():
        if obs_mode == "state":
            state = torch.as_tensor(np.array(observations, dtype=np.float32), device=device)
            return state, None
        # np.array copies: observations may be read-only (memory-mapped demonstrations).
        pixels = torch.as_tensor(np.array(observations["pixels"], dtype=np.uint8), device=device)
        proprio = np.array(observations["proprio"], dtype=np.float32)
        return obs_encoder.features(pixels), torch.as_tensor(proprio, device=device)


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and ``requires_grad=False`` for every parameter; returns ``module``."""
    module.eval()
    module.requires_grad_(False)
    return module
