"""One PNG per environment in docs/scenes/<Name>.png, so a reader sees what the camera sees.

Each PNG is a row of three 256x256 panels from the observation camera, all of the same episode
start (seed 0 unless --seed): the 64x64 observation with the ``train`` preset (each pixel
drawn 4x4, nothing smoothed), the same view rendered at 256x256, and the 64x64 observation
with the ``heldout`` preset (4x4 pixels). Files are written atomically.

Usage:
    python scripts/render_scenes.py                        # every id whose module exists
    python scripts/render_scenes.py --envs sslrobot/Reach-v0 sslrobot/Push-v0 --seed 3
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np

import sslrobot.envs
from sslrobot.utils.io import atomic_write

PANEL = 256
SEPARATOR = 4  # white columns between panels


def observation(env_id: str, seed: int, image_size: int, preset: str) -> np.ndarray:
    """(image_size, image_size, 3) uint8: the camera image right after ``reset(seed)``."""
    env = gym.make(env_id, image_size=image_size, visual_preset=preset)
    try:
        obs, _ = env.reset(seed=seed)
    finally:
        env.close()
    return obs["pixels"]


def scene_strip(env_id: str, seed: int) -> np.ndarray:
    """(256, 3*256 + 2*SEPARATOR, 3) uint8: 64px train, 256px train, 64px heldout."""
    scale = PANEL // 64
    panels = [
        np.kron(observation(env_id, seed, 64, "train"), np.ones((scale, scale, 1), np.uint8)),
        observation(env_id, seed, PANEL, "train"),
        np.kron(observation(env_id, seed, 64, "heldout"), np.ones((scale, scale, 1), np.uint8)),
    ]
    gap = np.full((PANEL, SEPARATOR, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def scene_name(env_id: str) -> str:
    """``sslrobot/Push-v0`` -> ``Push``."""
    return env_id.split("/")[-1].split("-v")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--envs", nargs="*", default=None, help="ids (default: the newest version of each task)"
    )
    parser.add_argument("--seed", type=int, default=0, help="episode seed (default: 0)")
    parser.add_argument("--out-dir", type=Path, default=Path("docs/scenes"))
    args = parser.parse_args()
    for env_id in args.envs or sslrobot.envs.LATEST_ENV_IDS:
        module = gym.spec(env_id).entry_point.split(":")[0]
        if importlib.util.find_spec(module) is None:
            print(f"skipping {env_id}: module {module} does not exist yet")
            continue
        buffer = io.BytesIO()
        iio.imwrite(buffer, scene_strip(env_id, args.seed), extension=".png")
        png = buffer.getvalue()
        path = atomic_write(
            args.out_dir / f"{scene_name(env_id)}.png", lambda file, png=png: file.write(png)
        )
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
