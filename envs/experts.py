"""Scripted experts, reachable from any (wrapped) sslrobot environment."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def expert_action(env: gym.Env) -> np.ndarray:
    """The scripted expert's action for ``env``'s current state, float32 in [-1, 1].

    Works through Gymnasium wrappers. Raises ``ValueError`` for environments without an expert
    (anything that is not an sslrobot environment), and for vector environments and other
    objects (ask each sub-environment, e.g. ``[expert_action(e) for e in vec.envs]`` of a
    ``SyncVectorEnv``).
    """
    if isinstance(env, gym.vector.VectorEnv):
        raise ValueError(
            f"expert_action takes one environment, got a vector env ({type(env).__name__}); "
            "ask each sub-environment (a SyncVectorEnv's .envs)"
        )
    if not isinstance(env, gym.Env):
        raise ValueError(f"expert_action takes a gymnasium environment, got {type(env).__name__}")
    base = env.unwrapped
    act = getattr(base, "expert_action", None)
    if act is None:
        spec_id = env.spec.id if env.spec is not None else type(base).__name__
        raise ValueError(f"environment {spec_id!r} has no scripted expert (only sslrobot/* do)")
    return act()
