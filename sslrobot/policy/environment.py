"""Making a task's environment for a policy, and reading the shapes a policy must match."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


@dataclass(frozen=True)
class EnvShapes:
    """Shapes of a task's observations and actions.

    Attributes:
        obs_mode: ``"pixels"`` or ``"state"``.
        frame_shape: (H, W, C) of ``obs["pixels"]`` (None in state mode).
        proprio_dim: Width of ``obs["proprio"]`` (0 in state mode).
        state_dim: Width of the state observation (0 in pixel mode).
        action_dim: Width of the action.
        fps: Control frequency, for videos.
    """

    obs_mode: str
    frame_shape: tuple[int, ...] | None
    proprio_dim: int
    state_dim: int
    action_dim: int
    fps: int


def check_env_id(env_id: str) -> list[str]:
    """Refuse an id gymnasium does not know; returns the registered sslrobot ids.

    Raises:
        ValueError: naming the id, the closest registered ids and the sslrobot ids.
    """
    import sslrobot.envs  # noqa: F401 - registers the sslrobot ids
    from sslrobot.data.collect_config import find_env_spec

    if env_id not in gym.registry:
        find_env_spec(env_id, own_envs=False)  # raises, naming close ids and ours
    return sorted(i for i in gym.registry if i.startswith("sslrobot/"))


def make_env(
    env_id: str,
    image_size: int,
    obs_mode: str,
    visual_preset: str = "train",
    **kwargs: Any,
) -> gym.Env:
    """``gymnasium.make`` with the sslrobot keyword arguments, and a clear error for bad ids.

    Raises:
        ValueError: an unknown id, an env gymnasium cannot make (e.g. a missing extra
            dependency) or, outside ``sslrobot/``, one that takes no sslrobot arguments; each
            names the env and the cause.
    """
    ours = check_env_id(env_id)
    try:
        return gym.make(
            env_id, image_size=image_size, obs_mode=obs_mode, visual_preset=visual_preset, **kwargs
        )
    except gym.error.Error as error:  # DependencyNotInstalled and kin: the user's to fix
        from sslrobot.data.episode_runner import env_error

        raise env_error(env_id, "be made", error) from error
    except TypeError as error:
        if env_id in ours:  # a bug in our own env: its traceback is what helps
            raise
        raise ValueError(
            f"env {env_id!r} does not take the sslrobot env arguments ('image_size', "
            f"'obs_mode', 'visual_preset'): {error}; policies train and evaluate on {ours}"
        ) from error


def env_shapes(env: gym.Env, env_id: str) -> EnvShapes:
    """Read the shapes a policy for ``env`` must match.

    Raises:
        ValueError: naming ``env_id`` when the spaces are not the sslrobot kind (a Dict with
            ``pixels`` and ``proprio``, or a flat state Box; a Box action space).
    """
    action_space = env.action_space
    if not isinstance(action_space, spaces.Box) or len(action_space.shape) != 1:
        raise ValueError(f"{env_id}: need a flat Box action space, got {action_space}")
    fps = int(env.metadata.get("render_fps", 20))
    space = env.observation_space
    if isinstance(space, spaces.Dict):
        if "pixels" not in space.spaces or "proprio" not in space.spaces:
            raise ValueError(
                f"{env_id}: pixel observations must be a Dict with 'pixels' and 'proprio', got "
                f"keys {sorted(space.spaces)}"
            )
        frame_shape = tuple(space["pixels"].shape)
        if space["pixels"].dtype != np.uint8 or len(frame_shape) != 3:
            raise ValueError(
                f"{env_id}: obs['pixels'] must be uint8 (H, W, C), got {space['pixels'].dtype} "
                f"{frame_shape}"
            )
        return EnvShapes(
            "pixels",
            frame_shape,
            int(np.prod(space["proprio"].shape)),
            0,
            action_space.shape[0],
            fps,
        )
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return EnvShapes("state", None, 0, space.shape[0], action_space.shape[0], fps)
    raise ValueError(f"{env_id}: unsupported observation space {space}")


class StateInObservation(gym.Wrapper):
    """Adds the privileged ``info["state"]`` to each dict observation as ``obs["state"]``, for
    the critics (and diagnostics); policies never read it.

    Raises:
        ValueError: the env reports no privileged state (``state_names``), naming it.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        names = getattr(env.unwrapped, "state_names", None)
        if not names or not isinstance(env.observation_space, spaces.Dict):
            raise ValueError(
                f"env {env.spec.id if env.spec else env!r} reports no privileged state beside "
                "dict observations (state_names, info['state']): its critics cannot read one"
            )
        state = spaces.Box(-np.inf, np.inf, shape=(len(names),), dtype=np.float32)
        self.observation_space = spaces.Dict({**env.observation_space.spaces, "state": state})

    def reset(self, **kwargs: Any) -> tuple[dict, dict]:
        obs, info = self.env.reset(**kwargs)
        return {**obs, "state": info["state"]}, info

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return {**obs, "state": info["state"]}, reward, terminated, truncated, info
