"""SAC with its critics on the privileged state and its actor on the policy's inputs: the
asymmetric actor-critic of Pinto et al. (2018), common in simulated robot learning.

Why: in simulation the state is known while training. A critic on frozen features has to
learn what the goal is worth from those features as well as the actor does; a critic on the
state learns it at once and gives the actor better gradients. The state enters training
through the critic, as it already does through the dense reward and the expert's
demonstrations; the policy that is saved, validated and evaluated is the actor alone, on the
frozen features and proprio (session 47: Reach from frozen ``fdm+future`` 76% -> 98%, Push
6% -> 13%, over 3 training seeds x 100 episodes).

The inputs SAC stores and samples are ``[policy inputs (D), standardised state (S)]``; the
actor's network reads the first D columns, the critics and their targets the last S. Acting
(online validation, ``sslrobot evaluate``) pads the policy inputs with S columns of NaN and
refuses a non-finite action, so an actor that read the state would fail rather than cheat.

This module imports Stable-Baselines3 at the top: ``AsymmetricSACPolicy`` must be importable
by name for SB3 to unpickle a saved model. ``rl.py`` imports it only for such runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.sac.policies import SACPolicy

from sslrobot.policy.normalizer import Normalizer


class Columns(BaseFeaturesExtractor):
    """Inputs (B, D) -> their columns ``[start, stop)``: the part one network reads."""

    def __init__(self, observation_space: spaces.Box, start: int, stop: int) -> None:
        super().__init__(observation_space, features_dim=stop - start)
        self.start, self.stop = start, stop

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return observations[:, self.start : self.stop]


class AsymmetricSACPolicy(SACPolicy):
    """SAC's policy with an actor that reads the first ``actor_width`` input columns and
    critics (and their targets) that read the rest, the standardised privileged state."""

    def __init__(self, *args: Any, actor_width: int, **kwargs: Any) -> None:
        self.actor_width = actor_width  # before SACPolicy's _build makes the networks
        super().__init__(*args, **kwargs)

    def make_actor(self, features_extractor: Any = None) -> Any:
        return super().make_actor(Columns(self.observation_space, 0, self.actor_width))

    def make_critic(self, features_extractor: Any = None) -> Any:
        width = int(self.observation_space.shape[0])
        return super().make_critic(Columns(self.observation_space, self.actor_width, width))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "actor_width": self.actor_width}


def with_critic_state(inputs: np.ndarray, states: Any, state_norm: Normalizer) -> np.ndarray:
    """Policy inputs (B, D) -> ``[inputs, standardised state]`` (B, D + S), float32, as SAC
    stores them for the critics."""
    state = torch.as_tensor(np.array(states, dtype=np.float32))
    with torch.no_grad():
        standardised = state_norm(state).numpy()
    return np.concatenate([inputs, standardised], axis=1).astype(np.float32)


def hide_critic_state(inputs: np.ndarray, state_dim: int) -> np.ndarray:
    """Policy inputs (B, D) -> (B, D + ``state_dim``) with NaN where the critics' state would
    be: what the actor is given when it acts."""
    hidden = np.full((len(inputs), state_dim), np.nan, dtype=np.float32)
    return np.concatenate([np.asarray(inputs, dtype=np.float32), hidden], axis=1)
