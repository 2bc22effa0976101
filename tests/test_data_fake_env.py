"""A tiny pixel env for the data-layer tests (importable by spawned collector workers).

Registered as ``FakePixels-v0``; collect it with ``env_id="test_data_fake_env:FakePixels-v0"``
so that worker processes import this module, which registers it.
"""

from __future__ import annotations

import time
from typing import ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

FAKE_ENV_ID = "test_data_fake_env:FakePixels-v0"


def collect_fake(out, num_episodes: int, image_size: int, seed: int = 0):
    """Collect ``num_episodes`` random episodes of the fake env at ``image_size`` into ``out``."""
    from sslrobot.data import CollectConfig, collect

    config = CollectConfig(
        env_id=FAKE_ENV_ID,
        out=out,
        num_episodes=num_episodes,
        seed=seed,
        image_size=image_size,
        env_kwargs={"image_size": image_size},
    )
    return collect(config, progress=False)


class FakePixelEnv(gym.Env):
    """A dot moved by 2-D actions on a noisy background; episode length varies with the seed.

    Observations: ``pixels`` uint8 (S, S, 3), ``proprio`` float32 (2,) (the dot position).
    ``info["state"]`` float32 (3,) (position and a hidden goal coordinate), ``is_success``.
    Episodes terminate after 8 + (seed-derived 0..7) steps; TimeLimit truncates at 20.
    """

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        image_size: int = 16,
        black_from_step: int | None = None,
        step_sleep: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        self.image_size = image_size
        self.black_from_step = black_from_step
        self.step_sleep = step_sleep
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Dict(
            {
                "pixels": gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
                "proprio": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            }
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.state_names = ("x", "y", "goal")
        self._pos = np.zeros(2, np.float32)
        self._goal = 0.0
        self._length = 8
        self._t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        size = self.image_size
        pixels = self.np_random.integers(0, 40, (size, size, 3), dtype=np.uint8)
        if self.black_from_step is not None and self._t >= self.black_from_step:
            pixels[:] = 0
        else:
            row, col = ((self._pos + 1.0) / 2.0 * (size - 1)).round().astype(int)
            pixels[row, col] = (255, 255, 255)
        return {"pixels": pixels, "proprio": self._pos.copy()}

    def _info(self) -> dict:
        state = np.array([*self._pos, self._goal], np.float32)
        return {"state": state, "is_success": bool(self._pos[0] > self._goal)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos = self.np_random.uniform(-0.5, 0.5, 2).astype(np.float32)
        self._goal = float(self.np_random.uniform(-0.5, 0.5))
        self._length = 8 + int(self.np_random.integers(0, 8))
        self._t = 0
        return self._obs(), self._info()

    def step(self, action):
        if self.step_sleep:
            time.sleep(self.step_sleep)
        self._t += 1
        self._pos = np.clip(self._pos + 0.2 * np.asarray(action, np.float32), -1.0, 1.0)
        reward = -abs(float(self._pos[0]) - self._goal)
        return self._obs(), reward, self._t >= self._length, False, self._info()

    def render(self):
        return self._obs()["pixels"]

    def expert_action(self) -> np.ndarray:
        """Scripted expert: move x toward the goal (found by ``sslrobot.envs.expert_action``)."""
        return np.array([np.clip(5.0 * (self._goal - self._pos[0]), -1, 1), 0.0], np.float32)


class FakePixelEnvWithoutRenderMode(FakePixelEnv):
    """A user's pixel-Dict env as many are written: no ``render_mode`` argument, no render
    modes in its metadata (``collect`` passed ``render_mode`` anyway, and it could not be made)."""

    metadata: ClassVar[dict] = {"render_modes": [], "render_fps": 10}

    def __init__(self, image_size: int = 16) -> None:
        super().__init__(image_size=image_size)


if "FakePixels-v0" not in gym.registry:
    gym.register(id="FakePixels-v0", entry_point=FakePixelEnv, max_episode_steps=20)
if "FakePixelsWithoutRenderMode-v0" not in gym.registry:
    gym.register(
        id="FakePixelsWithoutRenderMode-v0",
        entry_point=FakePixelEnvWithoutRenderMode,
        max_episode_steps=20,
    )


def test_fake_env_follows_the_gymnasium_api():
    check_env(FakePixelEnv(), skip_render_check=True)
