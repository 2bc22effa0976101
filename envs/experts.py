"""Scripted experts, reachable from any (wrapped) sslrobot environment."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def expert_action(env: gym.Env) -> np.ndarray:
    """The scripted expert's action for ``env``'s current state, float32 in [-1, 1].

    Works through Gymnasium wrappers. Raises ``ValueError`` for environments without an expert
    (anything that is not an sslrobot environment).
    """
    base = env.unwrapped
    act = getattr(base, "expert_action", None)
    if act is None:
        spec_id = env.spec.id if env.spec is not None else type(base).__name__
        raise ValueError(f"environment {spec_id!r} has no scripted expert (only sslrobot/* do)")
    return act()
