"""A synthetic, in-memory window dataset: a square pushed around by the actions.

It yields exactly what ``sslrobot.data.WindowDataset`` yields (see ``docs/CONTRACTS.md``), so
tests, benchmarks and users without MuJoCo data can run the whole pretraining path. The motion
is driven by the actions, so forward dynamics and future frames are learnable, and the true
positions are known (``state``) for probing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

STATE_NAMES = ("square_x", "square_y", "marker_x", "marker_y")


class MovingSquareDataset(Dataset):
    """Windows of o_t..o_{t+K} from episodes of a coloured square on a textured background.

    Per episode: a background gradient with fixed noise, a static marker (a "goal") and a
    square that moves by ``speed * a_t`` pixels per step (clamped at the borders). Actions are
    a smoothed random walk in [-1, 1].

    Args:
        num_episodes: Episodes to generate.
        episode_length: Actions per episode (frames: one more).
        num_steps: K, actions per window.
        image_size: Frame side in pixels.
        action_dim: 2 moves the square; extra dimensions are distractor noise.
        seed: Generates everything.
        include_state: Add ``state`` (K+1, 4): square and marker position in [0, 1].
    """

    def __init__(
        self,
        num_episodes: int = 16,
        episode_length: int = 32,
        num_steps: int = 3,
        image_size: int = 32,
        action_dim: int = 2,
        seed: int = 0,
        include_state: bool = False,
    ) -> None:
        if episode_length < num_steps:
            raise ValueError(f"episode_length={episode_length} < num_steps={num_steps}")
        if action_dim < 2 or image_size < 8 or num_episodes < 1 or num_steps < 1:
            raise ValueError(
                "need action_dim >= 2, image_size >= 8, num_episodes >= 1, num_steps >= 1; got "
                f"{action_dim}, {image_size}, {num_episodes}, {num_steps}"
            )
        self.num_steps = num_steps
        self.include_state = include_state
        rng = np.random.default_rng(seed)
        size, frames = image_size, episode_length + 1
        side = max(2, size // 6)
        speed = size / 12.0
        self.pixels = np.empty((num_episodes, frames, size, size, 3), np.uint8)
        self.actions = np.empty((num_episodes, episode_length, action_dim), np.float32)
        self.state = np.empty((num_episodes, frames, len(STATE_NAMES)), np.float32)
        ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
        for e in range(num_episodes):
            low, high = rng.uniform(20, 120, 3), rng.uniform(60, 200, 3)
            background = low + (high - low) * ramp[None, :, None] * ramp[:, None, None]
            background = background + rng.normal(0, 8, (size, size, 3))
            marker = rng.integers(1, size - side - 1, 2)
            background[marker[1] : marker[1] + side, marker[0] : marker[0] + side] = (250, 250, 250)
            background = np.clip(background, 0, 255).astype(np.uint8)
            colour = rng.uniform(150, 255, 3) * rng.permutation([1.0, 0.2, 0.5])
            position = rng.uniform(0, size - side, 2)
            action = np.zeros(action_dim, np.float32)
            for t in range(frames):
                frame = background.copy()
                x, y = np.round(position).astype(int)
                frame[y : y + side, x : x + side] = colour.astype(np.uint8)
                self.pixels[e, t] = frame
                self.state[e, t] = (*(position / (size - side)), *(marker / (size - side)))
                if t < episode_length:
                    noise = rng.uniform(-1, 1, action_dim)
                    action = np.clip(0.6 * action + 0.6 * noise, -1, 1).astype(np.float32)
                    self.actions[e, t] = action
                    position = np.clip(position + speed * action[:2], 0, size - side)
        starts = episode_length - num_steps + 1
        self._episode = np.repeat(np.arange(num_episodes), starts)
        self._start = np.tile(np.arange(starts), num_episodes)

    def __len__(self) -> int:
        return len(self._start)

    def _slices(self, episode: np.ndarray, start: np.ndarray) -> dict[str, np.ndarray]:
        frames = start[..., None] + np.arange(self.num_steps + 1)  # (..., K+1)
        episode = episode[..., None]
        item = {
            "pixels": self.pixels[episode, frames],
            "action": self.actions[episode, frames[..., :-1]],
            # Proprioception stand-in: the previous action (zeros at an episode's start).
            "proprio": np.where(
                (frames > 0)[..., None], self.actions[episode, np.maximum(frames - 1, 0)], 0.0
            ).astype(np.float32),
        }
        if self.include_state:
            item["state"] = self.state[episode, frames]
        return item

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """One window: pixels uint8 (K+1, H, W, 3), action (K, A), proprio (K+1, A)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        return self._slices(self._episode[index], self._start[index])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        """A whole batch in one fancy-indexing call (``DataLoader`` uses it when present)."""
        index = np.asarray(indices)
        return self._slices(self._episode[index], self._start[index])
