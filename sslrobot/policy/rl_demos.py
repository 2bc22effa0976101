"""Demonstrations inside SAC's replay buffer: a fixed share of every batch is drawn from them.

Why: behaviour cloning on 25 demonstrations has a few hundred labelled frames to learn where
the goal is from, and RL from scratch on the same frozen features spends its first tens of
thousands of steps finding the goal at all (session 10: 44% on Reach after 30,000 SAC steps
on ``fdm+future``). RLPD (Ball et al., 2023, "Efficient Online Reinforcement Learning with
Offline Data") shows that plain SAC with *symmetric sampling*, half of each batch from the
offline data and half from the online buffer, learns from few demonstrations without any
behaviour-cloning term; a buffer merely pre-filled with them would dilute them to ~1% of the
samples by the end of a 30,000-step run.

The demonstrations' observations go through the same ``ObservationEncoder`` as the online
ones (its statistics were fitted on these demonstrations), and their rewards and terminations
are the ones the environment gave the expert, so the two halves of a batch are one MDP's.

This module imports Stable-Baselines3 at the top: the buffer's class must be importable by
name for ``save_replay_buffer`` (a resume checkpoint) to pickle it. ``rl.py`` imports it only
when a run asks for demonstrations in the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from sslrobot.policy.network import ObservationEncoder, policy_inputs
from sslrobot.policy.normalizer import Normalizer
from sslrobot.policy.rl_critic import with_critic_state


@dataclass(frozen=True)
class DemoReplay:
    """Demonstration transitions as SAC's buffer stores them, all float32.

    Attributes:
        observations: Policy inputs before each action, (N, D).
        next_observations: Policy inputs after it, (N, D).
        actions: Actions scaled to [-1, 1] as SB3 stores them, (N, A).
        rewards: (N,).
        dones: 1.0 where the episode terminated at this step (success), never on truncation,
            so the critic bootstraps through a time limit as it does online.
    """

    observations: np.ndarray
    next_observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def load_demo_replay(
    dataset: Any,
    episode_ids: list[int],
    obs_encoder: ObservationEncoder,
    obs_mode: str,
    action_space: spaces.Box,
    device: torch.device,
    state_norm: Normalizer | None = None,
) -> DemoReplay:
    """Encode the demonstrations ``episode_ids`` of an opened dataset into replay transitions.

    Every stored observation (L + 1 per episode) is encoded once; step t pairs observation t
    with t + 1. With ``state_norm`` (critics on the state, ``rl_critic``) each observation's
    standardised privileged state is appended, as ``make_feature_vec_env`` appends it online.
    """
    parts: dict[str, list[np.ndarray]] = {key: [] for key in DemoReplay.__dataclass_fields__}
    low, high = action_space.low, action_space.high
    for episode_id in episode_ids:
        episode = dataset.load_episode(
            episode_id,
            include_state=obs_mode == "state" or state_norm is not None,
            verify=True,
            in_memory=True,
        )
        length = int(np.asarray(episode["action"]).shape[0])
        if obs_mode == "state":
            observations: Any = np.asarray(episode["state"][: length + 1], dtype=np.float32)
        else:
            observations = {
                "pixels": np.asarray(episode["pixels"][: length + 1], dtype=np.uint8),
                "proprio": np.asarray(episode["proprio"][: length + 1], dtype=np.float32),
            }
        inputs = policy_inputs(obs_encoder, observations, obs_mode, device).cpu().numpy()
        if state_norm is not None:
            states = np.asarray(episode["state"][: length + 1], dtype=np.float32)
            inputs = with_critic_state(inputs, states, state_norm)
        action = np.asarray(episode["action"], dtype=np.float32)
        parts["observations"].append(inputs[:length])
        parts["next_observations"].append(inputs[1 : length + 1])
        parts["actions"].append(np.clip(2.0 * (action - low) / (high - low) - 1.0, -1.0, 1.0))
        parts["rewards"].append(np.asarray(episode["reward"], dtype=np.float32))
        parts["dones"].append(np.asarray(episode["terminated"], dtype=np.float32))
    return DemoReplay(
        **{key: np.concatenate(value).astype(np.float32) for key, value in parts.items()}
    )


class DemoReplayBuffer(ReplayBuffer):
    """SB3's replay buffer, with ``demo_share`` of every sampled batch drawn from fixed
    demonstration transitions (uniformly, with replacement) and the rest from the online
    buffer as usual."""

    def __init__(self, *args: Any, demo: DemoReplay, demo_share: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 < demo_share < 1.0:
            raise ValueError(f"demo_share must be in (0, 1), got {demo_share}")
        if len(demo) == 0:
            raise ValueError("demo holds no transitions")
        self.demo = demo
        self.demo_share = demo_share

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        num_demo = min(round(batch_size * self.demo_share), batch_size - 1)
        online = super().sample(batch_size - num_demo, env=env)
        if num_demo == 0:
            return online
        rows = np.random.randint(0, len(self.demo), size=num_demo)  # SB3's own generator
        demo = ReplayBufferSamples(
            *map(
                self.to_torch,
                (
                    self.demo.observations[rows],
                    self.demo.actions[rows],
                    self.demo.next_observations[rows],
                    self.demo.dones[rows, None],
                    self.demo.rewards[rows, None],
                ),
            )
        )
        # Fields the online half leaves None (SB3's n-step ``discounts``) stay None.
        return ReplayBufferSamples(
            *(None if a is None else torch.cat([a, b]) for a, b in zip(online, demo, strict=True))
        )
